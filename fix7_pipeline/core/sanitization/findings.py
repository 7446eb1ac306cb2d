"""What the scan finds before it is printed (`RawHit`, only ever in this process) and the list of
printed findings the stage keeps (`ScanFindings`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .redact import RedactedNames

@dataclass
class RawHit:
    """A confirmed hit before names are redacted: only ever in this process."""

    rule: str
    fingerprint: str
    kind: str                       # "table" | "catalog" | "large object" | "setting" | "unreadable"
    table: str | None = None        # contract name of the table (schema.table, bare for public)
    column: str | None = None
    row_key: str | None = None      # already printable (or fingerprinted)
    ref: tuple | None = None        # catalog (classid, objid, subid)
    part: str | None = None         # catalog field: name, body, comment, ...
    name: str | None = None         # the identifier itself, when field == "name"
    place: str | None = None        # for settings, large objects and unreadable places: printable
    extra: dict = field(default_factory=dict)
    rules: tuple[str, ...] = ()     # every rule that matched this one occurrence (textscan.Hit.rules)


class ScanFindings(list):
    """The findings (a list of Finding), with the names to redact and the counts the report keeps."""

    def __init__(self, items=(), *, redacted: RedactedNames | None = None, stats: dict | None = None,
                 present_tables: set[str] | None = None):
        super().__init__(items)
        self.redacted = redacted if redacted is not None else RedactedNames()
        self.stats = stats or {}
        self.present_tables = present_tables or set()  # contract names of the clone's tables (never printed)

    def counts(self) -> dict:
        """Finding counts per rule, per table and per table.column (names as printed)."""
        by_rule, by_table, by_column = Counter(), Counter(), Counter()
        for f in self:
            by_rule[f.rule] += 1
            if f.table:
                by_table[f.table] += 1
                if f.column:
                    by_column[f"{f.table}.{f.column}"] += 1
        return {"total": len(self), "by_rule": dict(sorted(by_rule.items())),
                "by_table": dict(sorted(by_table.items())), "by_column": dict(sorted(by_column.items()))}
