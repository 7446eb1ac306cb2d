"""One source per rule: how a stage's outcome becomes the clone gates' results (core/run/clone_gates.py).

The gates' runs on real dumps are in test_hostile_e2e.py and test_operator_dumps_e2e.py; here, the split of one
schema_shape outcome between production_shaped and data_rules, which decides which check a finding fails."""

from __future__ import annotations

from fix7_pipeline.core.run import clone_gates
from fix7_pipeline.core.shared.model import Finding, StageOutcome

SHAPE = Finding("shape.column_missing", "os_proposal_approvals.comment: column missing", table="os_proposal_approvals")
RULE = Finding("data_rules.row_version_positive", "birth_registry: row_version_positive failed (1 unexpected row(s))")
NOTE = Finding("shape.extra_table", "file_digests: not in the contract", severity="note")
GX = {"suite": "data_rules", "evaluated": 16, "failed": 1, "success": False, "expectations": []}


def _results(*findings: Finding) -> dict[str, clone_gates.GateResult]:
    outcome = StageOutcome.from_findings(list(findings), details={"gx": GX} if RULE in findings else {})
    return {r.name: r for r in clone_gates._split("schema_shape", outcome)}


def test_a_broken_data_rule_fails_data_rules_alone():
    r = _results(NOTE, RULE)
    assert r["production_shaped"].passed and r["production_shaped"].findings == [NOTE]
    assert r["production_shaped"].outcome is None  # the stage's line goes with its last evaluated gate
    assert not r["data_rules"].passed and r["data_rules"].findings == [RULE] and r["data_rules"].gx == GX
    assert r["data_rules"].outcome is not None and r["data_rules"].reason == RULE.message


def test_a_shape_mismatch_fails_production_shaped_and_the_suite_is_not_evaluated():
    r = _results(SHAPE, NOTE)
    assert not r["production_shaped"].passed and r["production_shaped"].reason == SHAPE.message
    assert r["production_shaped"].outcome is not None
    assert not r["data_rules"].evaluated and r["data_rules"].reason == "not evaluated: production_shaped failed"
    assert r["data_rules"].findings == [] and r["data_rules"].outcome is None


def test_a_restore_that_failed_is_the_isolation_gates_failure_and_nothing_else_runs():
    from fix7_pipeline.core.intake.request import RehearsalRequest
    from fix7_pipeline.core.run.run_record import RunRecord

    failed = StageOutcome.from_findings([Finding("partial_dump", "The dump is partial: …")])
    record = RunRecord(request=RehearsalRequest(), run_id="r", evidence_dir="/nonexistent",
                       restore={**failed.as_dict(), "duration_s": 0.1})
    results = [r for _, r in clone_gates.evaluate(record)]  # no server is touched: nothing was restored
    assert [(r.name, r.passed, r.evaluated) for r in results] == [
        ("isolation_proven", False, True), ("sanitized", False, False), ("production_shaped", False, False),
        ("data_rules", False, False)]
    assert results[0].reason == "The dump is partial: …" and results[0].findings[0].rule == "partial_dump"
    assert {r.reason for r in results[1:]} == {"not evaluated: isolation_proven failed"}
