"""Names that matched a secret rule, redacted wherever the project prints a name.

A schema, table, column, function or role name can itself be a secret (a token used as a table name).
The sanitization scan adds every such name here; the registry travels in the run record
(`RunRecord.redacted_names`), and every later stage's outcome (findings, reasons, details: shape findings
and notes, table lists, the restore diff) and so its Dagster metadata and the packet pass through
`scrub`. The registry holds no name: only a keyed digest (HMAC-SHA-256 with a key of the run) and
the name's length, so the record can be stored without the names; `scrub` tests every substring of
that length of the text it is given.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field, replace

STATE_KEY = "redacted_names"


@dataclass
class RedactedNames:
    key: str = field(default_factory=lambda: secrets.token_hex(16))
    entries: dict[str, int] = field(default_factory=dict)  # digest -> length in characters

    # -- the registry ---------------------------------------------------------------------
    def _digest(self, name: str) -> str:
        return hmac.new(bytes.fromhex(self.key), name.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def add(self, name: str) -> str:
        """Register `name`; returns the label printed in its place."""
        if name:
            self.entries[self._digest(name)] = len(name)
        return self.label(name)

    def label(self, name: str) -> str:
        return f"[redacted name {self._digest(name)[:16]}]"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(name) and self._digest(name) in self.entries

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    # -- printing -------------------------------------------------------------------------
    def name(self, name: str | None) -> str | None:
        """A name as it may be printed: its label when it matched a rule, else itself."""
        if name is None or not self.entries:
            return name
        return self.label(name) if name in self else self.scrub(name)

    def scrub(self, text):
        """`text` with every registered name in it replaced by its label (longest names first)."""
        if not self.entries or not isinstance(text, str) or not text:
            return text
        for length in sorted(set(self.entries.values()), reverse=True):
            if length > len(text):
                continue
            i = 0
            while i <= len(text) - length:
                window = text[i:i + length]
                if self._digest(window) in self.entries:
                    label = self.label(window)
                    text = text[:i] + label + text[i + length:]
                    i += len(label)
                    continue
                i += 1
        return text

    def scrub_obj(self, obj):
        """Strings anywhere in a JSON-like value (dict keys included) scrubbed."""
        if not self.entries:
            return obj
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.scrub_obj(v) for v in obj)
        return obj

    def scrub_outcome(self, outcome):
        """A StageOutcome whose findings, reason and details print no registered name."""
        if not self.entries:
            return outcome
        findings = [replace(f, message=self.scrub(f.message), table=self.name(f.table), column=self.name(f.column),
                            row_key=self.scrub(f.row_key), extra=self.scrub_obj(f.extra))
                    for f in outcome.findings]
        return replace(outcome, findings=findings, reason=self.scrub(outcome.reason),
                       details=self.scrub_obj(outcome.details))

    # -- state ----------------------------------------------------------------------------
    def as_state(self) -> dict:
        return {"key": self.key, "entries": dict(self.entries)}

    @classmethod
    def from_state(cls, state: dict | None) -> RedactedNames:
        data = (state or {}).get(STATE_KEY) or {}
        if not data:
            return cls()
        return cls(key=data["key"], entries={k: int(v) for k, v in data.get("entries", {}).items()})
