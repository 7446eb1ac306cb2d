"""Findings and stage outcomes: the vocabulary every gate and the evidence share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASSED, FAILED, BLOCKED, SKIPPED = "passed", "failed", "blocked", "skipped"
INTERRUPTED = "interrupted"  # SIGINT/SIGTERM/UI termination stopped the stage: it decided nothing
from .names import STAGES  # noqa: F401 - the stages' order, defined in names.py


@dataclass
class Finding:
    """One thing a gate found. Never carries a secret value: only where it is and a salted fingerprint."""

    rule: str
    message: str
    severity: str = "error"  # error | warning | note
    table: str | None = None
    column: str | None = None
    row_key: str | None = None
    fingerprint: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if v not in (None, {}, [])}
        return d

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


@dataclass
class StageOutcome:
    status: str
    findings: list[Finding] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    reason: str = ""
    duration_s: float | None = None  # how long the stage ran, set as it ends (not part of as_dict)
    # what the stage recorded at the packet's top level (impact, restore_diff), for the Dagster layer's
    # metadata: read from the outcome, never from the packet (not part of as_dict)
    published: dict = field(default_factory=dict)

    @classmethod
    def from_findings(cls, findings: list[Finding], details: dict | None = None, fail_status: str = BLOCKED,
                      ok_reason: str = "") -> StageOutcome:
        errors = [f for f in findings if f.is_error]
        warnings = [f for f in findings if f.severity == "warning"]
        status = fail_status if errors else PASSED
        reason = errors[0].message if errors else ok_reason
        if not errors and warnings:
            reason += f"; {len(warnings)} warning(s), e.g. {warnings[0].message}"
        if len(errors) > 1:
            reason += f" (+{len(errors) - 1} more)"
        return cls(status=status, findings=findings, details=details or {}, reason=reason)

    @property
    def notes(self) -> list[Finding]:
        """What the gate only notes (an isolated host named, an optional table absent): not findings."""
        return [f for f in self.findings if f.severity == "note"]

    @property
    def finding_count(self) -> int:
        """Every finding of the stage (its complete count when it lists fewer), notes left out."""
        return int(self.details.get("finding_total", len(self.findings) - len(self.notes)))

    def as_dict(self) -> dict:
        out = {"status": self.status, "reason": self.reason,
               "findings": [f.as_dict() for f in self.findings if f.severity != "note"], **self.details}
        if self.notes:
            out["notes"] = [f.as_dict() for f in self.notes]
        return out
