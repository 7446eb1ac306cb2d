"""The four clone gates on the restored clone, in order, each with one source per rule.

`isolation_proven` (the catalog proof: no foreign server, subscription, dblink or URL to a live host),
`sanitized` (the secret scan, validated by the GX sanitization suite), `production_shaped` (the catalog
shape against the contract) and `data_rules` (the GX data-rules suite, run in PostgreSQL). A finding
belongs to exactly one gate, so one bad value fails one gate.

They run one after another in one call (a generator), so the journal has one writer for them whatever
executor runs the job; the first that fails has sealed the packet (its stage did, core/run/stage_run.run_stage),
and every later gate is reported not evaluated. They read the clone and create at most the scratch database the
restore named: a record they pass hands the change stages nothing the restored clone's record lacks (no
name matched a secret rule, or `sanitized` failed), so the Dagster layer can run them as asset checks,
which hand no output on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..shared.model import PASSED, Finding, StageOutcome
from ..shared.names import GATES, STAGE_OF_GATE
from . import clone_reuse, rehearsal
from .run_record import RunRecord

DATA_RULES_PREFIX = "data_rules."  # core/shape/data_rules.data_rules_findings names the data-rules suite's findings so


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict. `outcome` is its stage's recorded outcome, given to the stage's last evaluated gate
    only (the one line per stage that whoever follows the run prints)."""

    name: str
    passed: bool
    reason: str
    evaluated: bool = True
    findings: list[Finding] = field(default_factory=list)
    gx: dict | None = None  # the Great Expectations suite backing the gate, if any
    none_declared: bool = False  # data_rules: the contract declares none, the shape alone decides
    outcome: StageOutcome | None = None

    @property
    def stage(self) -> str:
        return STAGE_OF_GATE[self.name]


def not_evaluated(name: str, failed: str) -> GateResult:
    return GateResult(name, passed=False, reason=f"not evaluated: {failed} failed", evaluated=False)


def evaluate(record: RunRecord, servers: rehearsal.ServerSource | None = None
             ) -> Iterator[tuple[RunRecord, GateResult]]:
    """Each gate's result in GATES order as soon as its stage has run, with the record as that stage left it
    (so whoever follows the run sees each stage's line when it ends, not when the last gate does)."""
    restore = record.restore or {}
    if restore.get("status") != PASSED:  # the restore stopped the run: its stage entry is isolation's
        outcome = StageOutcome(status=restore.get("status", "blocked"), reason=restore.get("reason") or
                               "the clone was not restored",
                               findings=[Finding(**f) for f in [*(restore.get("findings") or []),
                                                                 *(restore.get("notes") or [])]],
                               duration_s=restore.get("duration_s"))
        yield record, GateResult("isolation_proven", False, outcome.reason, findings=outcome.findings,
                                 outcome=outcome)
        yield from ((record, not_evaluated(g, "isolation_proven")) for g in GATES[1:])
        return
    if (restore.get("reused_clone") or {}).get("reused"):  # a verified template: its sealed packet gated it
        yield from clone_reuse.gates(record, servers, GateResult)
        return
    done: list[GateResult] = []
    for stage in (rehearsal.prove_isolation, rehearsal.sanitization, rehearsal.schema_shape):
        failed = next((r.name for r in done if not r.passed), None)
        if failed:
            yield from ((record, not_evaluated(g, failed)) for g in GATES[len(done):])
            return
        record, outcome = stage(record, servers)
        for result in _split(stage.__name__, outcome):
            done.append(result)
            yield record, result


def _split(stage: str, outcome: StageOutcome) -> list[GateResult]:
    passed = outcome.status == PASSED
    gx = outcome.details.get("gx")
    if stage == "prove_isolation":
        return [GateResult("isolation_proven", passed, outcome.reason, findings=outcome.findings, outcome=outcome)]
    if stage == "sanitization":
        return [GateResult("sanitized", passed, outcome.reason, findings=outcome.findings, gx=gx, outcome=outcome)]
    shape = [f for f in outcome.findings if not f.rule.startswith(DATA_RULES_PREFIX)]
    rules = [f for f in outcome.findings if f.rule.startswith(DATA_RULES_PREFIX)]
    shaped = not any(f.is_error for f in shape)
    shape_reason = next((f.message for f in shape if f.is_error), "tables, columns, types and keys match the contract")
    if not shaped:  # the stage's line goes with the gate that stopped it
        return [GateResult("production_shaped", False, shape_reason, findings=shape, outcome=outcome),
                not_evaluated("data_rules", "production_shaped")]
    first = GateResult("production_shaped", True, shape_reason, findings=shape)
    ok = not any(f.is_error for f in rules)
    none = outcome.details.get("data_rules") == "none declared"
    reason = next((f.message for f in rules if f.is_error), None) or (
        "no data rules declared: the contract names none, so only the shape was checked" if none else
        f"Great Expectations suite data_rules: {(gx or {}).get('evaluated', 0)} expectations, none failed")
    return [first, GateResult("data_rules", ok, reason, findings=rules, gx=gx, none_declared=none, outcome=outcome)]
