"""Issue 21 item 2: what `fix7 audit` says each run is, from the packet on disk, its chain entry and Dagster's
record: judged, not judged (any verdict sealed `judged: false`), crashed, running and TAMPERED."""

from __future__ import annotations

from pathlib import Path

import pytest

from fix7_pipeline.core.evidence import audit
from fix7_pipeline.core.evidence.packet_files import REPORT
from fix7_pipeline.core.evidence.report import EvidencePacket


@pytest.fixture
def chain(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "audit-chain.jsonl"
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(path))
    return path


def _started(root: Path, name: str) -> EvidencePacket:
    return EvidencePacket.start(root / name, run_id=f"run-{name}", request={"clone_path": f"/drop/{name}.dump"})


def _state(directory: Path, *, running: bool = False, witness: bool = False) -> str:
    entry = audit.chain_by_run().get(f"run-{directory.name}")
    row = {**audit.packet_row(str(directory), entry), "dagster_witness": witness}
    return audit.run_state(row, entry, running=running)


def test_a_judged_verdict_and_any_other_are_told_apart(tmp_path, chain):
    judged = _started(tmp_path, "judged")
    judged.finalize()  # no clone: NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE, a judgment of the clone
    assert _state(judged.dir) == audit.JUDGED and "judged" not in audit.read_chain(chain)[-1]
    # a not-judged verdict of a kind this module never heard of (issue 20's server fault, say) is not judged
    other = _started(tmp_path, "server-fault")
    other.data["verdict"] = "REHEARSAL_SERVER_FAULT"
    audit.seal(other)
    assert audit.read_chain(chain)[-1]["judged"] is False
    assert _state(other.dir) == audit.NOT_JUDGED
    interrupted = _started(tmp_path, "interrupted")
    interrupted.finalize(interrupted={"stage": "apply", "signal": "SIGTERM"})
    assert _state(interrupted.dir) == audit.NOT_JUDGED
    assert audit.verify_chain(chain).ok


def test_a_journal_without_a_seal_is_crashed_or_running_never_tampered(tmp_path, chain):
    killed = _started(tmp_path, "killed")
    assert _state(killed.dir) == audit.CRASHED
    assert _state(killed.dir, running=True) == audit.RUNNING
    assert audit.verify_chain(chain).ok


def test_a_sealed_packet_deleted_or_edited_is_tampered(tmp_path, chain):
    for name in ("deleted", "deleted-with-witness", "edited"):
        _started(tmp_path, name).finalize()
    (tmp_path / "deleted" / REPORT).unlink()  # the journal stays: it looks like a crash, but the chain sealed it
    assert _state(tmp_path / "deleted") == audit.TAMPERED
    (tmp_path / "deleted-with-witness" / REPORT).unlink()
    assert _state(tmp_path / "deleted-with-witness", witness=True) == audit.TAMPERED
    report = tmp_path / "edited" / REPORT
    report.write_text(report.read_text().replace("/drop/edited.dump", "/drop/other.dump"))
    assert _state(tmp_path / "edited") == audit.TAMPERED
    assert not audit.verify_chain(chain).ok


def test_tags_a_run_shows_in_progress_are_no_witness_of_a_seal():
    assert audit.witness_from_tags({"fix7/verdict": "IN_PROGRESS", "fix7/evidence": "/ev"}) is None
    w = audit.witness_from_tags({"fix7/chain_seq": "3", "fix7/evidence": "/ev"})
    assert w is not None and w["chain_seq"] == "3" and w["packet_sha256"] == ""  # incomplete: still compared
