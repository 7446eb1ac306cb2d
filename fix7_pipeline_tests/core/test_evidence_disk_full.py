"""A full evidence disk at the moment the packet is rendered (every stage done, nothing more fits): the run is
sealed REHEARSAL_NOT_JUDGED into the audit chain with the cause and the path, no half-written packet file is
left, it is never sealed twice, and a packet file that appears later is a forgery. On a real 1 MiB tmpfs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fix7_pipeline.core.evidence import audit
from fix7_pipeline.core.evidence.packet_files import JOURNAL, PROVENANCE, READABLE, REPORT
from fix7_pipeline.core.evidence.report import REHEARSAL_NOT_JUDGED, EvidencePacket, render
from fix7_pipeline_tests import e2e_support


@pytest.fixture
def small_disk(tmp_path):
    with e2e_support.small_disk(tmp_path / "disk", "1m") as mnt:
        yield mnt


def test_a_packet_that_cannot_be_written_is_sealed_not_judged(small_disk, tmp_path, monkeypatch):
    chain = tmp_path / "audit-chain.jsonl"  # the chain lives beside the instance, not on the full disk
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(chain))
    ev = small_disk / "ev"
    EvidencePacket.start(ev, run_id="run-disk-full", request={"clone_path": "/nowhere/clone.dump"})
    filler = e2e_support.fill_disk(small_disk)

    rendered = render(ev)
    assert rendered is not None and rendered.data["verdict"] == REHEARSAL_NOT_JUDGED
    entry = rendered.sealed
    fault = entry["evidence_not_written"]
    assert entry["verdict"] == REHEARSAL_NOT_JUDGED and entry["judged"] is False
    assert fault["errno"] == "ENOSPC" and fault["path"].startswith(str(ev)) and "(ENOSPC)" in fault["message"]
    assert entry["rendered_sha256"] == {} and len(entry["packet_sha256"]) == 64
    left = sorted(p.name for p in ev.iterdir())
    assert not {REPORT, PROVENANCE, READABLE} & set(left) and not [n for n in left if n.startswith(".rehearsal-r")
                                                                   and not n.endswith(".claim")], left
    assert (ev / JOURNAL).is_file()

    assert audit.verify_chain(chain).ok, audit.verify_chain(chain).problems
    assert render(ev) is None and len(audit.read_chain(chain)) == 1  # never sealed twice
    loaded = EvidencePacket.load(ev).data
    assert loaded["verdict"] == REHEARSAL_NOT_JUDGED and loaded["evidence_fault"]["errno"] == "ENOSPC"
    row = audit.packet_row(str(ev), entry)
    assert audit.run_state(row, entry, running=False) == audit.NOT_JUDGED and "not written (ENOSPC)" in row["chain"]

    filler.unlink()  # space again: still sealed as it was, and no render happens over it
    assert render(ev) is None and len(audit.read_chain(chain)) == 1 and audit.verify_chain(chain).ok
    (ev / REPORT).write_text('{"verdict": "REHEARSAL_PASSED", "run_id": "run-disk-full"}\n')
    report = audit.verify_chain(chain)
    assert not report.ok and "packet forged" in report.problems[0], report.problems
