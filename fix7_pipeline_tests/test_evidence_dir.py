"""Issue 9.4, evidence is never overwritten: an evidence directory that holds any packet file, is not a
directory or cannot be written is refused with exit 2 before any Dagster run exists (CLI), and the intake
stage itself refuses it for runs that pass config directly (launchpad, schedule, sensor) without writing a
byte into it. The packet file is created exclusively, so of two runs naming one directory only one writes.

"Unwritable" is real for root: a directory made immutable (chattr +i), or /proc where chattr is unavailable.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from fix7_pipeline.cli.rehearse import UsageError, validate_request
from fix7_pipeline.core.evidence import audit
from fix7_pipeline.core.run import intake_stage, rehearsal
from fix7_pipeline.core.evidence.packet_files import JOURNAL, PROVENANCE, READABLE, REPORT
from fix7_pipeline.core.evidence.report import EvidencePacket
from fix7_pipeline.core.evidence.evidence_dir import EvidenceDirRefused, evidence_dir_problem
from fix7_pipeline_tests.e2e_support import DagsterHome, config, minimal_plain_dump, tiny_change

REFUSED = "already holds an evidence packet"


@pytest.fixture
def chain(tmp_path, monkeypatch) -> Path:
    """An audit chain of this test alone, for this process and the CLI processes it starts."""
    path = tmp_path / "audit-chain.jsonl"
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(path))
    return path


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("evidence_dir_home"), "evdir")
    yield h
    h.drop()


@pytest.fixture
def change(tmp_path):
    return tiny_change(tmp_path / "change")


@pytest.fixture
def unwritable(tmp_path):
    """A directory root cannot write into."""
    d = tmp_path / "locked"
    d.mkdir()
    if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0:
        try:
            yield d
        finally:
            subprocess.run(["chattr", "-i", str(d)], check=True)
    else:
        yield Path("/proc")


def _assert_unwritable(d: Path) -> None:
    with pytest.raises(OSError):
        fd, name = tempfile.mkstemp(dir=d)
        os.close(fd)
        os.unlink(name)


def _snapshot(d: Path) -> dict:
    return {f.name: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in sorted(d.iterdir())}


def _runs(home: DagsterHome) -> int:
    with home.instance() as inst:
        return len(inst.get_runs())


def _rehearse(home, clone, change, ev, *extra):
    return home.cli("rehearse", "--clone", str(clone), "--apply", str(change[0]), "--rollback", str(change[1]),
                    "--evidence-dir", str(ev), *extra)


def _usage_error(r) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fix7: "), r.stderr
    return lines[0]


# -- the CLI ---------------------------------------------------------------------------------

def test_a_sealed_packet_is_refused_and_the_chain_still_verifies(home, change, tmp_path, chain):
    ev = tmp_path / "ev"
    first = _rehearse(home, tmp_path / "missing.dump", change, ev)  # intake blocks: sealed within seconds
    assert first.returncode == 3, first.stdout + first.stderr
    sealed = _snapshot(ev)
    assert set(sealed) == {REPORT, PROVENANCE, READABLE, JOURNAL}
    runs = _runs(home)

    again = _rehearse(home, minimal_plain_dump(tmp_path / "clone.sql"), change, ev, "--attested-by", "ops")
    assert REFUSED in _usage_error(again) and str(ev) in again.stderr
    assert _snapshot(ev) == sealed  # not a byte, not a timestamp
    assert _runs(home) == runs  # refused before any Dagster run was created
    verify = home.cli("audit", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "1 packet(s) re-hashed" in verify.stdout


def test_an_evidence_dir_that_is_a_file_is_refused(home, change, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("the operator's notes\n")
    runs = _runs(home)
    r = _rehearse(home, tmp_path / "x.dump", change, target)
    assert "is not a directory" in _usage_error(r)
    assert target.read_text() == "the operator's notes\n"
    r = _rehearse(home, tmp_path / "x.dump", change, target / "ev")  # its parent is a file
    assert "cannot be created" in _usage_error(r) and "is not a directory" in r.stderr
    assert _runs(home) == runs


def test_an_unwritable_evidence_dir_is_refused(home, change, tmp_path, unwritable):
    _assert_unwritable(unwritable)
    runs = _runs(home)
    r = _rehearse(home, tmp_path / "x.dump", change, unwritable)
    assert "is not writable" in _usage_error(r)
    r = _rehearse(home, tmp_path / "x.dump", change, unwritable / "ev")
    assert "cannot be created" in _usage_error(r) and "not writable" in r.stderr
    assert _runs(home) == runs
    assert not (unwritable / "ev").exists()


@pytest.mark.parametrize("held", [REPORT, PROVENANCE, READABLE, f".{REPORT}.k2j3h4", "junit.xml"])
def test_any_packet_file_makes_the_directory_taken(held, change, tmp_path):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / held).write_text("{}")
    (ev / "unrelated.txt").write_text("fine")
    cfg = config(tmp_path / "x.dump", *change, ev)
    with pytest.raises(UsageError, match=REFUSED) as e:
        validate_request(cfg, junit=str(ev / "junit.xml"))
    assert e.value.exit_code == 2 and held in e.value.message
    assert sorted(p.name for p in ev.iterdir()) == sorted([held, "unrelated.txt"])


def test_junit_may_not_overwrite_a_packet_file(change, tmp_path):
    ev = tmp_path / "ev"
    cfg = config(tmp_path / "x.dump", *change, ev)
    validate_request(cfg, junit=str(ev / "junit.xml"))  # a fresh directory: fine
    with pytest.raises(UsageError, match=REPORT):
        validate_request(cfg, junit=str(ev / REPORT))
    ev.mkdir()
    (ev / "other.txt").write_text("x")
    assert evidence_dir_problem(ev) is None  # other files do not make a directory taken


# -- inside the intake stage (config passed directly) ---------------------------------------

def _request(tmp_path, ev) -> rehearsal.RehearsalRequest:
    """A request intake blocks at once (no dump); the external server URL is never connected to when blocked."""
    change = tiny_change(tmp_path / "change")
    return rehearsal.RehearsalRequest(clone_path=str(tmp_path / "missing.dump"), apply_sql=str(change[0]),
                                      rollback_sql=str(change[1]), attested_by="ops", evidence_dir=str(ev),
                                      server_url="postgresql://ops@db.example.test/postgres")


@pytest.mark.parametrize("held", [REPORT, READABLE, f".{PROVENANCE}.x9"])
def test_intake_blocks_on_a_taken_directory_and_writes_nothing_there(held, tmp_path, chain):
    ev = tmp_path / "ev"
    if held == REPORT:
        EvidencePacket.start(ev, run_id="earlier", request={"clone_path": "/x.dump"}).finalize()
    else:
        ev.mkdir()
        (ev / held).write_text("earlier")
    before = _snapshot(ev)
    state, outcome = rehearsal.intake(_request(tmp_path, ev), "run-later", evidence_root=tmp_path / "fresh")
    assert outcome.status == "blocked"
    assert any(f.rule == "evidence_dir" and REFUSED in f.message for f in outcome.findings)
    assert _snapshot(ev) == before
    packet = EvidencePacket.load(Path(state.evidence_dir))  # the refusal is itself evidence, sealed elsewhere
    assert Path(state.evidence_dir).parent == tmp_path / "fresh"
    assert packet.data["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert packet.data["request"]["evidence_dir"] == str(ev)
    assert audit.verify_chain(chain).ok, audit.verify_chain(chain).problems


def test_intake_blocks_on_an_unwritable_directory(tmp_path, chain, unwritable):
    state, outcome = rehearsal.intake(_request(tmp_path, unwritable / "ev"), "run-x", evidence_root=tmp_path / "f")
    assert outcome.status == "blocked"
    assert any(f.rule == "evidence_dir" and "not writable" in f.message for f in outcome.findings)
    assert not (unwritable / "ev").exists() and Path(state.evidence_dir).parent == tmp_path / "f"


def test_a_packet_is_started_exclusively(tmp_path, chain):
    ev = tmp_path / "ev"
    EvidencePacket.start(ev, run_id="first", request={})
    with pytest.raises(EvidenceDirRefused) as e:
        EvidencePacket.start(ev, run_id="second", request={})
    assert e.value.exit_code == 2
    assert EvidencePacket.load(ev).data["run_id"] == "first"


def test_two_runs_naming_one_directory_cannot_both_write(tmp_path, chain):
    ev = tmp_path / "shared"
    n = 6
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        request = _request(tmp_path / f"r{i}", ev)
        barrier.wait()
        results[i] = rehearsal.intake(request, f"run-{i}", evidence_root=tmp_path / f"fallback{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    winners = [i for i, (state, _) in enumerate(results) if Path(state.evidence_dir) == ev]
    assert len(winners) == 1
    assert EvidencePacket.load(ev).data["run_id"] == f"run-{winners[0]}"
    for i, (state, outcome) in enumerate(results):
        if i not in winners:
            assert any(f.rule == "evidence_dir" for f in outcome.findings)
    assert audit.verify_chain(chain).ok


def test_a_run_that_loses_the_race_after_its_check_is_blocked(tmp_path, chain, monkeypatch):
    """The interleaving the threads above rarely hit: our check passes, the other run claims, we claim."""
    ev = tmp_path / "shared"
    real_check = intake_stage.evidence_dir_problem

    def check_then_the_other_run_claims(directory, **kw):
        problem = real_check(directory, **kw)
        EvidencePacket.start(directory, run_id="run-other", request={})
        return problem

    monkeypatch.setattr(intake_stage, "evidence_dir_problem", check_then_the_other_run_claims)
    state, outcome = rehearsal.intake(_request(tmp_path, ev), "run-late", evidence_root=tmp_path / "fallback")
    assert outcome.status == "blocked"
    assert any(f.rule == "evidence_dir" and REFUSED in f.message for f in outcome.findings)
    assert EvidencePacket.load(ev).data["run_id"] == "run-other"  # the winner's packet, untouched
    assert Path(state.evidence_dir).parent == tmp_path / "fallback"
