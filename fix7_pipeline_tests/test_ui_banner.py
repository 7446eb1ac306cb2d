"""`fix7 ui` names the storage database it really uses (FIX7_DAGSTER_PG_URL), never a password or host."""

from __future__ import annotations

import argparse

from fix7_pipeline.cli import ui
from fix7_pipeline.instance import storage_database


def test_storage_database_reads_the_url_and_nothing_secret():
    assert storage_database("postgresql+psycopg2://dagster_storage@/dagster_storage?host=/x&port=5") == (
        "dagster_storage", "dagster_storage")
    assert storage_database("postgresql://ops:s3cr3t@db.internal:5432/dag%20store") == ("dag store", "ops")


def test_the_banner_names_the_database_of_the_instance(monkeypatch, tmp_path, capsys):
    url = "postgresql+psycopg2://dagster_storage@/fix7_banner_db?host=/nowhere&port=1"
    monkeypatch.setenv("FIX7_DAGSTER_PG_URL", url)
    monkeypatch.setattr("fix7_pipeline.instance.prepare_dagster_home", lambda: tmp_path)

    class Done:
        pid = 0

        def __init__(self, *a, **kw):
            pass

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(ui.subprocess, "Popen", Done)
    monkeypatch.setattr(ui, "_stop_on_signal", lambda proc: __import__("threading").Event())
    monkeypatch.setattr(ui, "stop_group", lambda pgid: None)
    assert ui.cmd_ui(argparse.Namespace(port=3999, host="127.0.0.1")) == 0
    out = capsys.readouterr().out
    assert "database `fix7_banner_db`, role `dagster_storage`" in out
    assert "database `dagster`)" not in out and "/nowhere" not in out


def _alive(pgid: int) -> bool:
    import os

    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_what_dagster_dev_leaves_behind_is_stopped_with_it():
    """dagster dev killed before it could stop its webserver, daemon and code server (the grace ran out):
    fix7 ui still ends every process of the group it started."""
    import subprocess
    import time

    proc = subprocess.Popen(["bash", "-c", "sleep 300 & sleep 300 & wait"], process_group=0)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert _alive(proc.pid), "the orphans should still be running before the reap"
    ui.stop_group(proc.pid, grace_s=2)
    assert not _alive(proc.pid)


def test_an_orphan_that_ignores_sigterm_is_killed():
    import subprocess
    import time

    proc = subprocess.Popen(["bash", "-c", "(trap '' TERM; sleep 300) & wait"], process_group=0)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    started = time.monotonic()
    ui.stop_group(proc.pid, grace_s=1)
    assert not _alive(proc.pid) and time.monotonic() - started < 10
