"""Issue 11 items 4 and 1, end to end: intake reads each input once, what it read is what every stage uses, and
the packet is rendered once, from the journal the stages appended to, by whatever ended the run.

Real rehearsals of a built clone through the Dagster job (the CLI's path, in process), with counting wrappers
around the functions that read an input (each delegates to the real one): the dump is inspected and screened
once, each change file read once, the contract parsed once. A change file edited after intake is not what
runs; a dump swapped after intake is refused by the restore's guard, and by the restore proof's. A passing
run writes rehearsal-report.json once, and nothing loads the packet before that.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core import journal, report, restore
from fix7_pipeline.core.change import change
from fix7_pipeline.core.contract import load as contract_load
from fix7_pipeline.core.model import STAGES
from fix7_pipeline.core.dumps import identify, screening
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, config, left_on_server

SOURCE = "fix7_t_read_once_src"


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "readonce")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps")
    builder.build_clone(SOURCE, registry_rows=300, seed=17)
    try:
        return {fmt: builder.dump_clone(SOURCE, fmt, d / f"clone.{fmt}") for fmt in ("custom", "plain")}
    finally:
        builder.drop_clone(SOURCE)


@pytest.fixture
def reads(monkeypatch):
    """How often each input-reading function was called, by name (each call goes on to the real function)."""
    calls: Counter = Counter()

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    counted(identify, "inspect_dump")
    counted(screening, "screen_dump")
    counted(change, "read_change")
    counted(contract_load, "load_contract")
    return calls


@pytest.fixture
def packet_io(monkeypatch):
    """The packet's reads and writes in order: ("load", sealed yet?) and ("write", file name)."""
    events: list[tuple[str, object]] = []
    real_write, real_load = report.write_evidence, report.EvidencePacket.load.__func__

    def write(path, text):
        events.append(("write", Path(path).name))
        return real_write(path, text)

    def load(cls, directory):
        events.append(("load", (Path(directory) / report.REPORT).exists()))
        return real_load(cls, directory)
    monkeypatch.setattr(report, "write_evidence", write)
    monkeypatch.setattr(report.EvidencePacket, "load", classmethod(load))
    return events


def _copy(dump: Path, tmp_path: Path) -> Path:
    target = tmp_path / dump.name
    target.write_bytes(dump.read_bytes())
    return target


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_passing_rehearsal_reads_each_input_once_and_runs_the_change_intake_read(dumps, instance, tmp_path,
                                                                                   reads, packet_io, server):
    apply_sql, rollback_sql = builder.write_sample_change(tmp_path / "change")
    intake_sha = {"apply": _sha(apply_sql), "rollback": _sha(rollback_sql)}

    copies_root = change.copies_dir("any").parent
    copied: list[Path] = []

    def edit_after_intake(stage, metadata, evidence_dir):  # what runs must be what intake read
        if stage == "intake":
            apply_sql.write_text("select 1/0;\n")
            rollback_sql.write_text("drop table public.birth_registry;\n")
            copied.extend(copies_root.glob("*/*.sql"))

    with left_on_server(server) as left:
        out = run_rehearsal(config(_copy(dumps["custom"], tmp_path), apply_sql, rollback_sql, tmp_path / "ev"),
                            instance=instance, echo=False, on_stage=edit_after_intake)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_PASSED", packet["stages"]
    assert dict(reads) == {"inspect_dump": 1, "screen_dump": 1, "read_change": 2, "load_contract": 1}
    # intake's private copies of the two files (what ran) existed during the run and went with it
    assert sorted(p.name.split("-")[0] for p in copied if p.parent.name == out["run_id"]) == ["apply", "rollback"]
    assert not change.copies_dir(out["run_id"]).exists()
    for label in ("apply", "rollback"):
        assert packet["stages"]["intake"][f"{label}_sql"]["sha256"] == intake_sha[label]
        assert packet["stages"][label]["change"]["sha256"] == intake_sha[label]
    assert left == set()
    # one render, at the end; nothing loaded the packet before it (the stages only appended to the journal)
    writes = [e for e in packet_io if e[0] == "write" and e[1] == report.REPORT]
    assert len(writes) == 1, packet_io
    first_write = packet_io.index(writes[0])
    assert not [e for e in packet_io[:first_write] if e[0] == "load"], packet_io
    assert all(sealed for kind, sealed in packet_io if kind == "load")
    entries = journal.read(tmp_path / "ev")
    assert [e["path"][1] for e in entries if e.get("path", [None])[0] == "stages"] == list(STAGES)


def test_a_plain_dump_is_streamed_once_at_intake_and_once_as_the_restore_guard(dumps, instance, tmp_path,
                                                                             monkeypatch, server):
    """Intake hashes, inspects and screens a plain dump in one pass; the restore streams it once more, hashing
    it as it goes (the guard). Nothing else opens it."""
    streams: Counter = Counter()
    for module in (identify, screening, restore):
        real = module.open_plain

        def counted(*args, _real=real, _name=module.__name__.rsplit(".", 1)[-1], **kwargs):
            streams[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, "open_plain", counted)
    with left_on_server(server) as left:
        out = run_rehearsal(config(_copy(dumps["plain"], tmp_path), *builder.write_sample_change(tmp_path / "change"),
                                   tmp_path / "ev"), instance=instance, echo=False)
    assert out["verdict"] == "REHEARSAL_PASSED", out["packet"]["stages"]
    assert dict(streams) == {"identify": 1, "restore": 1}
    assert left == set()


def _residue_change(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    apply_sql, rollback_sql = directory / "apply.sql", directory / "rollback.sql"
    apply_sql.write_text("insert into public.system_issues (code, severity, details, opened_at)\n"
                         "  values ('FIX7_T', 'info', '{}'::jsonb, now());\n")
    rollback_sql.write_text("update public.system_issues set severity = severity where code = 'NONE';\n")
    return apply_sql, rollback_sql


def test_the_restore_proof_restores_intake_facts_and_refuses_a_dump_swapped_since(dumps, instance, tmp_path,
                                                                                   reads, server):
    """A residue makes restore_diff prove the restore path by restoring the dump again: by the record's facts (no
    second inspection), guarded by intake's sha256, so a dump changed after the rollback proves nothing."""
    clone = _copy(dumps["custom"], tmp_path)

    def swap_before_the_proof(stage, metadata, evidence_dir):
        if stage == "rollback":
            with open(clone, "ab") as f:
                f.write(b"swapped after intake")

    with left_on_server(server) as left:
        out = run_rehearsal(config(clone, *_residue_change(tmp_path / "change"), tmp_path / "ev"),
                            instance=instance, echo=False, on_stage=swap_before_the_proof)
    stage = out["packet"]["stages"]["restore_diff"]
    assert out["verdict"] == "REHEARSAL_FAILED" and stage["status"] == "failed"
    proof = stage["anchor_restore_path"]
    assert reads["inspect_dump"] == 1 and reads["screen_dump"] == 1 and reads["read_change"] == 2
    assert proof["proven"] is False and "changed" in proof["error"] and "sha256" in proof["error"], proof
    assert left == set()


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_a_dump_swapped_after_intake_is_not_restored(fmt, dumps, instance, tmp_path, server):
    clone = _copy(dumps[fmt], tmp_path)
    apply_sql, rollback_sql = builder.write_sample_change(tmp_path / "change")

    def swap_after_intake(stage, metadata, evidence_dir):
        if stage == "intake":
            with open(clone, "ab") as f:
                f.write(b"\n-- swapped after intake\n")

    with left_on_server(server) as left:
        out = run_rehearsal(config(clone, apply_sql, rollback_sql, tmp_path / "ev"), instance=instance, echo=False,
                            on_stage=swap_after_intake)
    iso = out["packet"]["stages"]["isolation"]
    assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert iso["status"] == "blocked" and [f["rule"] for f in iso["findings"]] == ["dump_changed"], iso
    assert out["packet"]["stages"]["sanitization"]["status"] == "skipped"
    assert left == set()
