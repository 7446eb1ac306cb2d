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
        def __init__(self, *a, **kw):
            pass

        def wait(self):
            return 0

        def poll(self):
            return 0

    monkeypatch.setattr(ui.subprocess, "Popen", Done)
    monkeypatch.setattr(ui, "_stop_on_signal", lambda proc: __import__("threading").Event())
    assert ui.cmd_ui(argparse.Namespace(port=3999, host="127.0.0.1")) == 0
    out = capsys.readouterr().out
    assert "database `fix7_banner_db`, role `dagster_storage`" in out
    assert "database `dagster`)" not in out and "/nowhere" not in out
