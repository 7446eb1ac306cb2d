"""The audit chain: sealed packets link to each other, and any edit, gap or missing packet is reported."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from fix7_pipeline.core.evidence import audit, audit_listing
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.evidence.packet_files import READABLE, REPORT, sha256_file
from fix7_pipeline.core.evidence.report import EvidencePacket


@pytest.fixture
def chain(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "audit-chain.jsonl"
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(path))
    return path


def _packet(root: Path, name: str) -> Path:
    directory = root / name
    p = EvidencePacket.start(directory, run_id=f"run-{name}", request={"clone_path": f"/drop/{name}.dump",
                                                                       "attestation": {"attested_by": "ops"}})
    p.finalize()
    return directory


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b"fix7-rehearsal-report")
    data[i] = ord("F")
    path.write_bytes(bytes(data))


def test_each_packet_records_the_previous_packets_sha256(tmp_path, chain):
    dirs = [_packet(tmp_path, n) for n in ("a", "b", "c")]
    shas = [sha256_file(d / REPORT) for d in dirs]
    previous = [json.loads((d / REPORT).read_text())["previous_packet_sha256"] for d in dirs]
    assert previous == [None, shas[0], shas[1]]
    entries = audit.read_chain(chain)
    assert [e["packet_sha256"] for e in entries] == shas
    assert [e["seq"] for e in entries] == [1, 2, 3]
    report = audit.verify_chain(chain)
    assert report.ok, report.problems
    assert report.verified == 3


def test_one_changed_byte_in_a_packet_fails_verification(tmp_path, chain):
    dirs = [_packet(tmp_path, n) for n in ("a", "b", "c")]
    _flip_one_byte(dirs[1] / REPORT)
    report = audit.verify_chain(chain)
    assert not report.ok
    assert len(report.problems) == 1
    assert "packet edited" in report.problems[0] and str(dirs[1]) in report.problems[0]


def test_an_edited_rendered_report_fails_verification(tmp_path, chain):
    d = _packet(tmp_path, "a")
    (d / READABLE).write_text((d / READABLE).read_text() + "\nall good, trust me\n")
    problems = audit.verify_chain(chain).problems
    assert any(READABLE in p and "edited" in p for p in problems)


def test_a_removed_chain_entry_is_a_gap(tmp_path, chain):
    for n in ("a", "b", "c"):
        _packet(tmp_path, n)
    lines = chain.read_text().splitlines()
    chain.write_text("\n".join([lines[0], lines[2]]) + "\n")
    problems = audit.verify_chain(chain).problems
    assert any(p.startswith("gap:") and "sequence number 3" in p for p in problems)
    assert any(p.startswith("gap:") and "links to previous packet" in p for p in problems)


def test_rewriting_the_chain_to_hide_an_edit_still_breaks_the_next_link(tmp_path, chain):
    dirs = [_packet(tmp_path, n) for n in ("a", "b", "c")]
    _flip_one_byte(dirs[1] / REPORT)
    entries = audit.read_chain(chain)
    entries[1]["packet_sha256"] = sha256_file(dirs[1] / REPORT)
    entries[2]["previous_packet_sha256"] = entries[1]["packet_sha256"]
    chain.write_text("".join(json.dumps(e) + "\n" for e in entries))
    problems = audit.verify_chain(chain).problems
    assert any("relinked" in p and str(dirs[2]) in p for p in problems)


def test_a_deleted_packet_is_reported_missing(tmp_path, chain):
    dirs = [_packet(tmp_path, n) for n in ("a", "b")]
    for f in dirs[0].iterdir():
        f.unlink()
    problems = audit.verify_chain(chain).problems
    assert len(problems) == 1 and "packet missing" in problems[0]


def test_a_refinalized_packet_supersedes_its_earlier_seal(tmp_path, chain):
    d = _packet(tmp_path, "a")
    first = sha256_file(d / REPORT)
    EvidencePacket.load(d).finalize(incomplete_reason="re-executed")
    entries = audit.read_chain(chain)
    assert entries[1]["supersedes"] == first
    assert entries[1]["previous_packet_sha256"] == first
    report = audit.verify_chain(chain)
    assert report.ok, report.problems
    assert (report.verified, report.superseded) == (1, 1)


def test_a_damaged_chain_stops_sealing_but_keeps_the_packet(tmp_path, chain):
    _packet(tmp_path, "a")
    chain.write_text(chain.read_text() + "not json\n")
    with pytest.raises(Fix7Error, match="damaged at line 2"):
        _packet(tmp_path, "b")
    assert json.loads((tmp_path / "b" / REPORT).read_text())["verdict"]
    assert "damaged" in audit.verify_chain(chain).problems[0]


def test_listing_rows_compare_the_packet_on_disk_with_its_seal(tmp_path, chain):
    d = _packet(tmp_path, "a")
    entry = audit.chain_by_run(chain)["run-a"]
    row = audit.packet_row(str(d), entry)
    assert row["chain"] == "sealed #1" and row["packet_sha256"] == entry["packet_sha256"]
    assert row["attested_by"] == "ops" and row["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    _flip_one_byte(d / REPORT)
    assert audit.packet_row(str(d), entry)["chain"] == "EDITED since sealed"
    assert audit.packet_row(str(tmp_path / "gone"), None)["chain"] == "packet missing"


def test_render_formats(tmp_path, chain):
    rows = [audit.packet_row(str(_packet(tmp_path, n)), None) | {"run_id": f"run-{n}"} for n in ("a", "b")]
    parsed = list(csv.DictReader(io.StringIO(audit_listing.render(rows, "csv"))))
    assert [r["run_id"] for r in parsed] == ["run-a", "run-b"] and list(parsed[0]) == list(audit_listing.COLUMNS)
    assert json.loads(audit_listing.render(rows, "json"))[1]["evidence_dir"] == str(tmp_path / "b")
    table = audit_listing.render(rows, "table").splitlines()
    assert table[0].split()[0] == "run_id" and len(table) == 3
    with pytest.raises(Fix7Error):
        audit_listing.render(rows, "xml")


# -- the listing and --verify over a real Dagster instance ------------------------------------------

@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    """Two real rehearsals through the job: one passing on a small demo clone, one blocked (no attestation)."""
    import dagster as dg

    from fix7_pipeline.cli.rehearse import run_rehearsal
    from fix7_pipeline.demo import builder

    root = tmp_path_factory.mktemp("audit_runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIX7_AUDIT_CHAIN", str(root / "audit-chain.jsonl"))
    builder.build_clone("fix7_t_audit_src", registry_rows=200, seed=5)
    try:
        dump = builder.dump_clone("fix7_t_audit_src", "custom", root / "clone.dump")
        apply_sql, rollback_sql = builder.write_sample_change(root)
        base = {"clone_path": str(dump), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
                "production_hosts": ["*.prod.corp.internal"]}
        (root / "dagster_home").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
            passed = run_rehearsal({**base, "attested_by": "auditor test", "evidence_dir": str(root / "ev1")},
                                   instance=instance, echo=False, tags={"fix7/source": "test"})
            blocked = run_rehearsal({**base, "attested_by": "", "evidence_dir": str(root / "ev2")},
                                    instance=instance, echo=False)
            yield {"instance": instance, "passed": passed, "blocked": blocked, "chain": root / "audit-chain.jsonl"}
    finally:
        builder.drop_clone("fix7_t_audit_src")
        mp.undo()


def test_audit_lists_every_rehearsal_from_the_instance(rehearsed):
    from fix7_pipeline.cli.audit import collect_rows, parse_since, verify

    rows = collect_rows(rehearsed["instance"], chain_path=rehearsed["chain"])
    assert [r["run_id"] for r in rows] == [rehearsed["passed"]["run_id"], rehearsed["blocked"]["run_id"]]
    ok, blocked = rows
    assert ok["verdict"] == "REHEARSAL_PASSED" and ok["run_status"] == "SUCCESS" and ok["source"] == "test"
    assert ok["attested_by"] == "auditor test" and ok["anchor_id"].startswith("anc-")
    assert ok["clone_sha256"] == rehearsed["passed"]["packet"]["clone"]["sha256"]
    assert ok["packet_sha256"] == ok["dagster_packet_sha256"] == sha256_file(Path(ok["evidence_dir"]) / REPORT)
    assert ok["chain"] == "sealed #1" and blocked["chain"] == "sealed #2"
    assert blocked["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" and blocked["attested_by"] == ""
    assert collect_rows(rehearsed["instance"], since=parse_since("2999-01-01"), chain_path=rehearsed["chain"]) == []
    report, _ = verify(rehearsed["instance"], chain_path=rehearsed["chain"])
    assert report.ok, report.problems


def test_audit_verify_catches_one_changed_byte_even_with_a_rewritten_chain(rehearsed, tmp_path):
    from fix7_pipeline.cli.audit import verify

    packet = Path(rehearsed["passed"]["evidence_dir"]) / REPORT
    original = packet.read_bytes()
    chain_text = rehearsed["chain"].read_text()
    try:
        _flip_one_byte(packet)
        report, _ = verify(rehearsed["instance"], chain_path=rehearsed["chain"])
        assert any("packet edited" in p and "chain sealed" in p for p in report.problems)
        assert any("packet file sha256" in p and "differs from Dagster's record" in p for p in report.problems)
        entries = audit.read_chain(rehearsed["chain"])
        entries[0]["packet_sha256"] = sha256_file(packet)  # a forger rewrites the whole index...
        entries[1]["previous_packet_sha256"] = entries[0]["packet_sha256"]
        rehearsed["chain"].write_text("".join(json.dumps(e) + "\n" for e in entries))
        report, _ = verify(rehearsed["instance"], chain_path=rehearsed["chain"])
        assert any("relinked" in p for p in report.problems)  # ...and the next packet still names the old hash
        assert any("chain entry differs from Dagster's record" in p for p in report.problems)
        assert any("rewritten to match the edited file" in p for p in report.problems)
        rehearsed["chain"].write_text("\n".join(chain_text.splitlines()[:1]) + "\n")
        packet.write_bytes(original)
        report, _ = verify(rehearsed["instance"], chain_path=rehearsed["chain"])
        assert len(report.problems) == 1, report.problems
        assert report.problems[0].startswith(
            f"run {rehearsed['blocked']['run_id']} ({rehearsed['blocked']['evidence_dir']}): "
            "gap: the finalized packet is not in the audit chain (Dagster recorded it as chain entry 2")
    finally:
        packet.write_bytes(original)
        rehearsed["chain"].write_text(chain_text)


# -- cross_check: the chain and the packets against Dagster's record (records as the audit command reads them) ----

def _record(run_id: str, created: float, entry: dict | None = None, root: str | None = None) -> dict:
    return {"run_id": run_id, "root_run_id": root or run_id, "created": created,
            "witness": audit.witness_from_tags(audit.witness_tags(audit.witness(entry))) if entry else None}


def test_cross_check_names_the_witness_that_is_missing_or_disagrees(tmp_path, chain):
    for n in ("a", "b", "c"):
        _packet(tmp_path, n)
    a, b, c = audit.read_chain(chain)
    problems, warnings, compared = audit.cross_check([a, b, c], [_record("run-a", 1, a), _record("run-b", 2, b),
                                                                  _record("run-c", 3, c)])
    assert (problems, warnings, compared) == ([], [], 3)
    problems, warnings, _ = audit.cross_check([a, b, c], [_record("run-a", 1, a), _record("run-b", 2)])
    assert warnings == []
    assert any(p.startswith("run run-b (chain entry 2,") and p.endswith("Dagster has no record of this run's packet")
               for p in problems), problems
    assert any(p.startswith("run run-c (chain entry 3,") and "Dagster has no record of this run:" in p
               for p in problems), problems
    # sealed before the first run that recorded a witness: only the chain vouches, and verify says so
    problems, warnings, _ = audit.cross_check([a, b, c], [_record("run-a", 1), _record("run-b", 2, b),
                                                          _record("run-c", 3, c)])
    assert problems == [] and len(warnings) == 1 and "run run-a (chain entry 1," in warnings[0]
    # sealed a moment ago by a run that is still recording it: not yet a problem
    problems, warnings, _ = audit.cross_check([a, b, c], [_record("run-a", 1, a), _record("run-b", 2, b),
                                                          {**_record("run-c", 3), "finished": False}])
    assert problems == [] and len(warnings) == 1 and "run run-c (chain entry 3," in warnings[0]
    # a re-execution (another run id, same root) that sealed the entry is the record of it
    records = [_record("run-a", 1, a), _record("run-b", 2), _record("rerun-b", 2.5, b, "run-b"), _record("run-c", 3, c)]
    assert audit.cross_check([a, b, c], records) == ([], [], 3)
    # a packet Dagster saw sealed that the chain lost is a gap
    problems, _, compared = audit.cross_check([a, b], [_record("run-a", 1, a), _record("run-b", 2, b),
                                                       _record("run-c", 3, c)])
    assert compared == 2 and problems == [f"run run-c ({c['evidence_dir']}): gap: the finalized packet is not in "
                                          f"the audit chain (Dagster recorded it as chain entry 3, packet sha256 "
                                          f"{c['packet_sha256']})"]
    w = audit.witness(c) | {"chain_seq": "2"}
    problems, _, _ = audit.cross_check([a, b, c], [_record("run-a", 1, a), _record("run-b", 2, b),
                                                   {**_record("run-c", 3), "witness": w}])
    assert any("run run-c (chain entry 3," in p and "Dagster's record of this run is chain entry 2" in p
               for p in problems), problems
    incomplete = audit.witness(c) | {"chain_entry_sha256": ""}
    problems, _, _ = audit.cross_check([a, b, c], [_record("run-a", 1, a), _record("run-b", 2, b),
                                                   {**_record("run-c", 3), "witness": incomplete}])
    assert any("incomplete (no fix7/chain_entry_sha256)" in p for p in problems), problems
