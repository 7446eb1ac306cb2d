"""The run's journal: created exclusively, appended by many processes at once, readable after a crash; the
packet rendered from it once and never over a sealed one."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from fix7_pipeline.core.evidence import audit, journal
from fix7_pipeline.core.shared.model import PASSED, STAGES, StageOutcome
from fix7_pipeline.core.evidence.packet_files import JOURNAL, RENDER_CLAIM, REPORT, sha256_file
from fix7_pipeline.core.evidence.report import REHEARSAL_PASSED, EvidencePacket, render


@pytest.fixture
def chain(tmp_path, monkeypatch):
    path = tmp_path / "audit-chain.jsonl"
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(path))
    return path


def _started(tmp_path) -> journal.Journal:
    ev = tmp_path / "ev"
    EvidencePacket.start(ev, run_id="run-j", request={"clone_path": "/x.dump"})
    return journal.Journal(ev)


def test_the_first_entry_creates_the_journal_exclusively(tmp_path):
    journal.create(tmp_path / "ev", {"run_id": "first"})
    with pytest.raises(journal.JournalTaken):
        journal.create(tmp_path / "ev", {"run_id": "second"})
    assert journal.fold(journal.read(tmp_path / "ev")) == {"run_id": "first"}


def test_the_journal_appears_with_its_first_entry_and_leaves_no_draft(tmp_path, monkeypatch):
    """A reader (audit, a test polling a run) never finds the journal empty: it is linked in already written."""
    seen = []
    real_link = journal.os.link

    def link(src, dst):
        seen.append((journal.JOURNAL in str(dst), (tmp_path / "ev" / journal.JOURNAL).exists()))
        return real_link(src, dst)

    monkeypatch.setattr(journal.os, "link", link)
    journal.create(tmp_path / "ev", {"run_id": "first"})
    assert seen == [(True, False)]  # the name did not exist until the written draft was linked to it
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [journal.JOURNAL]
    with pytest.raises(journal.JournalTaken):
        journal.create(tmp_path / "ev", {"run_id": "second"})
    assert sorted(p.name for p in (tmp_path / "ev").iterdir()) == [journal.JOURNAL]


def _append_many(directory, worker: int, n: int) -> None:
    j = journal.Journal(directory)
    for i in range(n):
        j.put(["throwaways", "created"], [f"w{worker}-{i}-" + "x" * 3000], "extend")


def test_processes_appending_at_once_each_land_whole_lines(tmp_path):
    """Stages in separate processes (the multiprocess executor, parallel checks) append to one journal."""
    j = _started(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(j.dir, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = journal.read(j.dir)  # every line parses: no two writes interleaved
    created = journal.fold(entries)["throwaways"]["created"]
    assert len(entries) == 1 + 4 * 150 and len(created) == 4 * 150 and len(set(created)) == 4 * 150
    for w in range(4):  # and each process's entries stay in its order
        mine = [c for c in created if c.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}-" + "x" * 3000 for i in range(150)]


def test_a_crash_mid_write_leaves_every_entry_before_it_readable(tmp_path):
    j = _started(tmp_path)
    j.record_stage("intake", StageOutcome(status=PASSED, reason="ok"), 0.5)
    with open(j.dir / JOURNAL, "ab") as f:
        f.write(b'{"op":"set","path":["stages","isol')  # the write a kill -9 cut short
    data = EvidencePacket.load(j.dir).data  # no packet yet: the journal's view
    assert data["verdict"] is None and data["stages"]["intake"]["status"] == PASSED
    assert data["stages"]["intake"]["duration_s"] == 0.5
    with open(j.dir / JOURNAL, "ab") as f:
        f.write(b"\n{}\n")  # but a damaged line followed by more is not skipped
    with pytest.raises(ValueError):
        journal.read(j.dir)


def test_fold_applies_each_operation_in_order(tmp_path):
    j = _started(tmp_path)
    j.throwaways("dropped", ["a", "b"], "extend_new")
    j.throwaways("dropped", ["b", "c"], "extend_new")
    j.throwaways("drop_error", "OperationalError")
    j.throwaways("drop_error", None, "pop")
    j.set(anchor_id="anc-1")
    j.put(["impact", "apply"], {"statement_count": 2})
    data = journal.fold(journal.read(j.dir))
    assert data["throwaways"]["dropped"] == ["a", "b", "c"] and "drop_error" not in data["throwaways"]
    assert data["anchor_id"] == "anc-1" and data["impact"] == {"apply": {"statement_count": 2}}
    assert list(data) == list(EvidencePacket.load(j.dir).data)  # the packet's own field order is kept


def test_the_packet_is_rendered_once_and_never_over_a_sealed_one(tmp_path, chain):
    j = _started(tmp_path)
    for s in STAGES:
        j.record_stage(s, StageOutcome(status=PASSED, reason="ok"))
    packet = render(j.dir)
    assert packet.data["verdict"] == REHEARSAL_PASSED and packet.sealed["packet_sha256"] == sha256_file(j.dir / REPORT)
    sealed = sha256_file(j.dir / REPORT)
    j.record_stage("apply", StageOutcome(status="failed", reason="late"))  # appended after the seal
    assert render(j.dir) is None and render(j.dir, incomplete_reason="again") is None
    assert sha256_file(j.dir / REPORT) == sealed and len(audit.read_chain(chain)) == 1
    assert audit.verify_chain(chain).ok


def test_a_render_that_crashed_is_not_redone_and_audit_shows_the_journal(tmp_path, chain):
    j = _started(tmp_path)
    j.set(clone={"sha256": "ab" * 32})
    (j.dir / RENDER_CLAIM).touch()  # a renderer died before it wrote the packet
    assert render(j.dir) is None and not (j.dir / REPORT).exists()
    row = audit.packet_row(str(j.dir), None)
    assert row["chain"] == "journal only, not sealed" and row["verdict"] == "(unfinished)"
    assert row["clone_sha256"] == "ab" * 32 and row["packet_sha256"] == ""
    assert json.loads((j.dir / JOURNAL).read_text().splitlines()[0])["op"] == "start"
