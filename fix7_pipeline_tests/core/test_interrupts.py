"""An interrupted rehearsal in the packet, the audit chain and JUnit: recorded as interrupted, never judged.

The signal-level behaviour (a real CLI process, real signals, the server's own catalog) is in
test_interrupt_e2e.py; this covers the verdict logic and the signal deferral on their own.
"""

from __future__ import annotations

import json
import os
import signal
import xml.etree.ElementTree as ET

import pytest

from fix7_pipeline.core.evidence import audit
from fix7_pipeline.core.run import interrupts
from fix7_pipeline.core.evidence.junit import junit_xml
from fix7_pipeline.core.shared.model import INTERRUPTED, PASSED, SKIPPED, STAGES, StageOutcome
from fix7_pipeline.core.evidence.packet_files import PROVENANCE, READABLE
from fix7_pipeline.core.evidence.report import REHEARSAL_INTERRUPTED, SAFE_CLONE, EvidencePacket


@pytest.fixture
def chain(tmp_path, monkeypatch):
    path = tmp_path / "audit-chain.jsonl"
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(path))
    return path


def _interrupted_packet(tmp_path, stage: str, signame: str | None = "SIGINT") -> EvidencePacket:
    p = EvidencePacket.start(tmp_path / "ev", run_id="run-i", request={"clone_path": "/x.dump"})
    for s in STAGES[:STAGES.index(stage)]:
        p.record_stage(s, StageOutcome(status=PASSED, reason="ok"))
    p.record_stage(stage, StageOutcome(status=INTERRUPTED, reason=f"interrupted by {signame} during {stage}"))
    p.finalize(interrupted={"stage": stage, "signal": signame})
    return p


def test_interrupted_during_a_clone_gate_judges_nothing(tmp_path, chain):
    p = _interrupted_packet(tmp_path, "isolation")
    d = p.data
    assert d["verdict"] == REHEARSAL_INTERRUPTED
    assert d["clone_verdict"] is None and d["exact_operator_input_needed"] is None
    assert d["interrupted"]["stage"] == "isolation" and d["interrupted"]["signal"] == "SIGINT"
    later = STAGES[STAGES.index("isolation") + 1:]
    assert all(d["stages"][s]["status"] == SKIPPED for s in later)
    assert all(d["stages"][s]["reason"].startswith("not run: the rehearsal was interrupted by SIGINT during "
                                                   "isolation") for s in later)
    prov = json.loads((tmp_path / "ev" / PROVENANCE).read_text())
    assert prov["verdict"] == REHEARSAL_INTERRUPTED and prov["rehearsal_verdict"] == REHEARSAL_INTERRUPTED
    row = prov["table_A_clone_provenance"][0]
    assert row["allowed"] is False and row["isolated"] == "NOT_CHECKED" and row["contains_secrets"] == "NOT_CHECKED"
    assert row["note"].startswith("NOT JUDGED") and prov["exact_operator_input_needed"] is None
    assert "interrupted by SIGINT during isolation" in (tmp_path / "ev" / READABLE).read_text()


def test_interrupted_after_the_clone_gates_keeps_their_judgment_but_not_the_rehearsals(tmp_path, chain):
    p = _interrupted_packet(tmp_path, "apply", "SIGTERM")
    assert p.data["verdict"] == REHEARSAL_INTERRUPTED and p.data["clone_verdict"] == SAFE_CLONE
    assert p.verdict() == REHEARSAL_INTERRUPTED  # never REHEARSAL_PASSED/FAILED, whatever passed before


def test_the_chain_records_an_interruption_not_a_judgment_and_still_verifies(tmp_path, chain):
    _interrupted_packet(tmp_path, "isolation")
    entry = audit.read_chain(chain)[-1]
    assert entry["verdict"] == REHEARSAL_INTERRUPTED and entry["judged"] is False
    assert entry["interrupted"]["stage"] == "isolation" and entry["interrupted"]["signal"] == "SIGINT"
    report = audit.verify_chain(chain)
    assert report.ok and report.verified == 1, report.problems
    assert audit.packet_row(str(tmp_path / "ev"), entry)["verdict"] == REHEARSAL_INTERRUPTED


def test_junit_fails_the_interrupted_stage_and_the_verdict(tmp_path, chain):
    p = _interrupted_packet(tmp_path, "isolation")
    suite = ET.fromstring(junit_xml(p.data)).find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["isolation"].find("failure").get("type") == INTERRUPTED
    assert cases["sanitization"].find("skipped") is not None
    assert REHEARSAL_INTERRUPTED in cases["verdict"].find("failure").get("message")


def test_deferred_signals_wait_for_the_cleanup_then_raise():
    done = []
    with pytest.raises(interrupts.Interrupted) as raised:
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)  # would end the process without the deferral
            os.kill(os.getpid(), signal.SIGINT)
            done.append("cleanup finished")
    assert done == ["cleanup finished"] and raised.value.signum == signal.SIGTERM
    assert interrupts.exit_code(signal.SIGINT) == 130 and interrupts.exit_code(signal.SIGTERM) == 143


def test_dagsters_interruption_counts_as_one():
    from dagster import DagsterExecutionInterruptedError

    assert interrupts.is_interrupt(DagsterExecutionInterruptedError())
    assert interrupts.is_interrupt(KeyboardInterrupt()) and not interrupts.is_interrupt(ValueError())
