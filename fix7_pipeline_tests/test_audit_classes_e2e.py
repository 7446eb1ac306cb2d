"""Issue 21 item 2: `fix7 audit` tells each run for what it is, and `--verify` fails only on tampering.

Real rehearsals through `fix7 rehearse` in a Dagster home and audit chain of their own: one SIGKILLed during apply
(crashed: a journal, no seal; its Dagster run left STARTED and closed as failed by the next run), one whose evidence
folder is a small tmpfs that fills while the packet is written (sealed, not judged, the cause and path named), clean
runs, and packets edited or deleted afterwards (tampered: exit 1).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from fix7_pipeline.core.evidence.audit import read_chain
from fix7_pipeline.core.evidence.packet_files import JOURNAL, REPORT
from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.demo import builder
from fix7_pipeline_tests import e2e_support
from fix7_pipeline_tests.e2e_support import DAGSTER_ENV, DagsterHome, rehearse_args

SOURCE = "fix7_t_audit_classes"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("audit_classes_home"), "auditcls")
    h.env["FIX7_AUDIT_CHAIN"] = str(h.path / "audit-chain.jsonl")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit_classes_inputs")
    builder.build_clone(SOURCE, registry_rows=200, seed=41)
    try:
        dump = builder.dump_clone(SOURCE, "custom", d / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)
    apply_sql, rollback_sql = builder.write_sample_change(d)
    sleepy = d / "apply_sleeps.sql"
    sleepy.write_text("-- still running when the run is killed\nselect pg_sleep(60);\n")
    return {"dump": dump, "sample": (apply_sql, rollback_sql), "sleeps": (sleepy, rollback_sql), "root": d}


def _env(home: DagsterHome) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DAGSTER_ENV and k != "FIX7_DEBUG"}
    env.update(home.env)
    return env


def _cli(home: DagsterHome, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", *args], cwd=str(project_dir()),
                          env=_env(home), capture_output=True, text=True, timeout=timeout)


def _applying(server, ev: Path) -> bool:
    """The apply statement of this run (on a database its journal names) is running on the server."""
    if not (ev / JOURNAL).is_file():
        return False
    from fix7_pipeline.core.evidence.report import EvidencePacket

    names = [p["name"] for p in EvidencePacket.load(ev).data["throwaways"].get("planned") or []]
    with psycopg.connect(host=server.host, port=server.port, user=server.admin.role, dbname="postgres",
                         autocommit=True) as c:
        return bool(c.execute("select 1 from pg_stat_activity where application_name = 'fix7:apply' "
                              "and state = 'active' and datname = any(%s)", (names,)).fetchone())


def _in_process(home: DagsterHome, *args: str) -> SimpleNamespace:
    """`fix7 <args>` through the CLI's main in this process, in the module's Dagster home and audit chain: the
    re-checks of `fix7 audit` (the first --verify of the module is the real CLI, a process of its own)."""
    from fix7_pipeline.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(err):
        mp.delenv("FIX7_DEBUG", raising=False)
        for k, v in home.env.items():
            mp.setenv(k, v)
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def _audit_json(home: DagsterHome) -> list[dict]:
    r = _in_process(home, "audit", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


RUNS: dict[str, Path] = {}


def _verify(home: DagsterHome, *, real_cli: bool = False) -> subprocess.CompletedProcess | SimpleNamespace:
    r = _cli(home, "audit", "--verify") if real_cli else _in_process(home, "audit", "--verify")
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _row(home: DagsterHome, ev: Path) -> dict:
    return next(row for row in _audit_json(home) if row["evidence_dir"] == str(ev))


def test_a_run_killed_during_apply_is_listed_as_crashed_and_verify_passes(home, inputs, server, tmp_path_factory):
    ev = tmp_path_factory.mktemp("killed") / "ev"
    proc = subprocess.Popen([sys.executable, "-m", "fix7_pipeline.cli",
                             *rehearse_args(inputs["dump"], inputs["sleeps"], ev)], cwd=str(project_dir()),
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _applying(server, ev):  # select pg_sleep(60) is running
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "apply never started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    RUNS["killed"] = ev
    assert (ev / JOURNAL).is_file() and not (ev / REPORT).exists()
    killed = _row(home, ev)
    assert killed["run_status"] == "STARTED"  # what Dagster shows of it until something closes it
    assert killed["state"] == "crashed" and killed["verdict"] == "(unfinished)", killed
    r = _verify(home, real_cli=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"crashed: run {killed['run_id']} ({ev}): crashed during apply" in r.stdout, r.stdout
    assert "AUDIT CHAIN BROKEN" not in r.stderr


def test_the_next_run_closes_the_crashed_one_as_failed_and_passes(home, inputs, tmp_path_factory):
    ev = tmp_path_factory.mktemp("clean") / "ev"
    r = _cli(home, *rehearse_args(inputs["dump"], inputs["sample"], ev))
    assert r.returncode == 0 and "verdict: REHEARSAL_PASSED" in r.stdout, r.stdout + r.stderr
    RUNS["clean"] = ev
    killed = _row(home, RUNS["killed"])
    assert killed["run_status"] == "FAILURE" and killed["state"] == "crashed", killed
    with home.instance() as inst:
        from dagster import DagsterEventType

        failure = inst.all_logs(killed["run_id"], of_type=DagsterEventType.RUN_FAILURE)
        assert len(failure) == 1 and failure[0].message.startswith("fix7 crashed: the process that ran"), failure
        # what fix7_verdict_sensor does with a failed run: a crash is not rendered into a verdict
        from fix7_pipeline.defs.automation import end_finished_run

        end_finished_run(inst, killed["run_id"])
    assert not (RUNS["killed"] / REPORT).exists()
    assert _row(home, ev)["state"] == "judged"
    r = _verify(home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "crashed: run " in r.stdout and "runs: 1 crashed, 1 judged" in r.stdout, r.stdout


@pytest.mark.parametrize("how", ["edited", "deleted"])
def test_an_edited_or_deleted_packet_is_tampering(home, how):
    report = RUNS["clean"] / REPORT
    original = report.read_bytes()
    try:
        if how == "edited":
            report.write_bytes(original.replace(b"e2e test operator", b"e2e test 0perator"))
        else:
            report.unlink()
        r = _verify(home)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "AUDIT CHAIN BROKEN" in r.stderr and ("packet edited" if how == "edited" else "packet missing") \
            in r.stderr, r.stderr
        assert _row(home, RUNS["clean"])["state"] == "TAMPERED"
    finally:
        report.write_bytes(original)
    assert _verify(home).returncode == 0


# -- the evidence disk fills while the run writes it ---------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB tmpfs for the evidence folder."""
    with e2e_support.small_disk(tmp_path / "small-disk", "8m") as mnt:
        yield mnt


@pytest.mark.slow  # a whole rehearsal more; core/test_evidence_disk_full.py is the fast one (render-time)
def test_a_disk_that_fills_during_the_run_is_not_judged_and_named(home, inputs, server, small_disk, tmp_path):
    ev = small_disk / "ev"
    pause = tmp_path / "apply_pauses.sql"
    pause.write_text("-- the disk fills while this runs\nselect pg_sleep(4);\n")
    proc = subprocess.Popen([sys.executable, "-m", "fix7_pipeline.cli",
                             *rehearse_args(inputs["dump"], (pause, inputs["sample"][1]), ev)], cwd=str(project_dir()),
                            env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _applying(server, ev):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "apply never started"
            time.sleep(0.05)
        e2e_support.fill_disk(small_disk)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 74, out + err
    assert "Traceback" not in err, err
    assert "verdict: REHEARSAL_NOT_JUDGED" in out, out
    line = [ln for ln in err.splitlines() if ln.startswith("fix7: The evidence could not be written")]
    assert line and "(ENOSPC)" in line[0] and str(ev / JOURNAL) in line[0], err
    assert not (ev / REPORT).exists()  # nothing half-written is left to pass for a packet
    entry = [e for e in read_chain(Path(home.env["FIX7_AUDIT_CHAIN"])) if e["evidence_dir"] == str(ev)][-1]
    assert entry["verdict"] == "REHEARSAL_NOT_JUDGED" and entry["judged"] is False, entry
    # where it ran out: apply's own line may still fit in the journal's last allocated page
    assert entry["evidence_not_written"]["errno"] == "ENOSPC"
    assert entry["evidence_not_written"]["stage"] in ("apply", "rollback", "restore_diff", "evidence_packet"), entry
    row = _row(home, ev)
    assert row["state"] == "not judged" and row["verdict"] == "REHEARSAL_NOT_JUDGED", row
    r = _verify(home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"not judged: run {row['run_id']} ({ev}): REHEARSAL_NOT_JUDGED: the evidence could not be written" \
        in r.stdout and "ENOSPC at " in r.stdout, r.stdout
    # the throwaways were dropped although nothing more could be written about them
    with psycopg.connect(host=server.host, port=server.port, user=server.admin.role, dbname="postgres",
                         autocommit=True) as c:
        from fix7_pipeline.core.evidence.report import EvidencePacket

        planted = [p["name"] for p in EvidencePacket.load(ev).data["throwaways"]["planned"] if p["kind"] == "database"]
        left = c.execute("select datname from pg_database where datname = any(%s)", (planted,)).fetchall()
    assert planted and left == [], left
