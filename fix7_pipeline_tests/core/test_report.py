"""The evidence packet: verdicts from stage outcomes, atomic files, seed-shaped provenance."""

from __future__ import annotations

import json

import pytest

from fix7_pipeline.core.shared.model import BLOCKED, FAILED, PASSED, STAGES, Finding, StageOutcome
from fix7_pipeline.core.evidence.packet_files import JOURNAL, PROVENANCE, READABLE, REPORT, write_atomic
from fix7_pipeline.core.evidence.report import (NO_SAFE_CLONE, REHEARSAL_FAILED, REHEARSAL_PASSED, SAFE_CLONE,
                                                EvidencePacket)

def _packet(tmp_path, name="ev", **statuses) -> EvidencePacket:
    p = EvidencePacket.start(tmp_path / name, run_id="run-1", request={"clone_path": "/x.dump"})
    for stage, status in statuses.items():
        findings = [] if status == PASSED else [Finding(rule="r", message=f"{stage} went wrong")]
        p.record_stage(stage, StageOutcome(status=status, findings=findings, reason="because"))
    return p

def test_all_passed_is_the_only_pass(tmp_path):
    p = _packet(tmp_path, **{s: PASSED for s in STAGES})
    assert p.finalize() == REHEARSAL_PASSED
    assert json.loads((tmp_path / "ev" / PROVENANCE).read_text())["verdict"] == SAFE_CLONE
    assert p.data["exact_operator_input_needed"] is None

@pytest.mark.parametrize("stage", ["intake", "isolation", "sanitization", "schema_shape"])
def test_a_blocked_clone_gate_means_no_safe_clone(tmp_path, stage):
    p = _packet(tmp_path, **{s: PASSED for s in STAGES[:STAGES.index(stage)]}, **{stage: BLOCKED})
    assert p.finalize() == NO_SAFE_CLONE
    need = p.data["exact_operator_input_needed"]
    assert need["problems"] == [f"{stage}: {stage} went wrong"]
    later = STAGES[STAGES.index(stage) + 1:]
    assert all(p.data["stages"][s]["status"] == "skipped" for s in later)
    assert all("earlier stage" in p.data["stages"][s]["reason"] for s in later)

@pytest.mark.parametrize("stage", ["snapshot_anchor", "apply", "rollback", "restore_diff"])
def test_a_failed_change_stage_on_a_safe_clone_is_a_failed_rehearsal(tmp_path, stage):
    p = _packet(tmp_path, **{s: PASSED for s in STAGES[:STAGES.index(stage)]}, **{stage: FAILED})
    assert p.finalize() == REHEARSAL_FAILED
    assert json.loads((tmp_path / "ev" / PROVENANCE).read_text())["verdict"] == SAFE_CLONE

def test_a_run_that_stopped_without_a_decision_never_passes(tmp_path):
    p = _packet(tmp_path, **{s: PASSED for s in STAGES[:6]})  # rollback and restore_diff never ran
    assert p.finalize(incomplete_reason="the worker died") == REHEARSAL_FAILED
    assert "the worker died" in p.data["stages"]["rollback"]["reason"]
    p = _packet(tmp_path, "ev2", intake=PASSED)  # a packet starts in a directory of its own
    assert p.finalize() == NO_SAFE_CLONE

def test_every_file_is_rewritten_whole_and_readable(tmp_path):
    p = _packet(tmp_path, intake=PASSED)
    p.save()
    d = tmp_path / "ev"
    assert sorted(f.name for f in d.iterdir()) == sorted([REPORT, PROVENANCE, READABLE, JOURNAL])
    assert json.loads((d / REPORT).read_text())["stages"]["intake"]["status"] == PASSED
    assert EvidencePacket.load(d).data == json.loads((d / REPORT).read_text())

def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path):
    target = tmp_path / "f.json"
    write_atomic(target, "old")

    with pytest.raises(TypeError):
        write_atomic(target, object())  # not text: the write fails half-way
    assert target.read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["f.json"]


def test_a_breached_impact_threshold_fails_a_rehearsal_whose_stages_all_passed(tmp_path):
    p = _packet(tmp_path, **{s: PASSED for s in STAGES})
    breach = {"message": "apply line 1 (LOCK TABLE) held ACCESS EXCLUSIVE on public.t for 2.00 s > max_lock_s 1 s"}
    p.data["impact"] = {"apply": {"thresholds": {"set": True, "passed": False, "results": [
        {"name": "max_lock_s", "limit": 1.0, "measured": 2.0, "passed": False, "breaches": [breach]}]}},
        "rollback": {"thresholds": {"set": False, "passed": True, "results": []}}}
    assert p.impact_breaches() == [breach["message"]]
    assert p.finalize() == REHEARSAL_FAILED
    p2 = _packet(tmp_path, "ev2", **{s: PASSED for s in STAGES})
    p2.data["impact"] = {"apply": {"thresholds": {"set": True, "passed": True, "results": [
        {"name": "max_lock_s", "limit": 1.0, "measured": 0.2, "passed": True, "breaches": []}]}}}
    assert p2.finalize() == REHEARSAL_PASSED
