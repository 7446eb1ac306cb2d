"""pg_restore -j N (issue 25 item 2): the same clone as one stream, as the same least-privileged role; a parallel
restore that fails keeps nothing, as one transaction did."""

from __future__ import annotations

from pathlib import Path

import pytest

from fix7_pipeline.core.anchor import fingerprint
from fix7_pipeline.core.clone import restore_jobs
from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.clone.restore import restore
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.core import hostile
from fix7_pipeline_tests.pg import proof


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("restore_jobs")
    name = "fix7h_restore_jobs"
    builder.build_clone(name, registry_rows=400, seed=8)
    try:
        return {fmt: builder.dump_clone(name, fmt, d / f"demo.{fmt}") for fmt in ("custom", "directory", "tar")}
    finally:
        builder.drop_clone(name)


def _content(server, tw) -> dict:
    with proof(server, tw) as c:
        fp = fingerprint.fingerprint(c)
    return {"tables": fp["tables"], "sequences": fp.get("sequences")}


def test_jobs_follow_the_cores_and_the_format(monkeypatch):
    monkeypatch.delenv(restore_jobs.ENV, raising=False)
    assert restore_jobs.restore_jobs("custom") == restore_jobs.default_jobs() >= 1
    assert restore_jobs.restore_jobs("directory") == restore_jobs.default_jobs()
    assert restore_jobs.restore_jobs("tar") == restore_jobs.restore_jobs("plain") == 1
    assert restore_jobs.restore_jobs("custom", schema_only=True) == 1
    monkeypatch.setenv(restore_jobs.ENV, "3")
    assert restore_jobs.restore_jobs("custom") == 3 and restore_jobs.restore_jobs("tar") == 1


@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_a_parallel_restore_gives_the_one_stream_clone(fmt, server, dumps, monkeypatch):
    info = inspect_dump(dumps[fmt])
    got = {}
    for jobs in ("2", "1"):
        monkeypatch.setenv(restore_jobs.ENV, jobs)
        tw = create_throwaway(server)
        try:
            details = restore(server, tw, info, timeout=120)
            got[jobs] = _content(server, tw)
            assert details["role"] == tw.login.role and details["least_privilege"]["superuser"] is False
            assert ("-j 2" in details["command"]) == (jobs == "2")
            assert ("--single-transaction" in details["command"]) == (jobs == "1")
        finally:
            drop_throwaway(server, tw)
    assert got["2"] == got["1"] and got["1"]["tables"]


def test_a_tar_archive_stays_one_stream(server, dumps, throwaway, monkeypatch):
    monkeypatch.setenv(restore_jobs.ENV, "4")
    details = restore(server, throwaway, inspect_dump(dumps["tar"]), timeout=120)
    assert "-j" not in details["command"].split() and "--single-transaction" in details["command"]


def test_a_parallel_restore_that_fails_keeps_nothing(server, throwaway, tmp_path, monkeypatch):
    monkeypatch.setenv(restore_jobs.ENV, "2")
    marker = hostile.marker_path()
    info = inspect_dump(hostile.check_constraint_file_writer(tmp_path, marker, "custom"))
    with pytest.raises(Fix7Error) as e:
        restore(server, throwaway, info, timeout=60)
    assert e.value.rule == "restore_failed" and not marker.exists()
    with proof(server, throwaway) as c:
        assert c.execute("select count(*) from pg_class where relnamespace = 'public'::regnamespace").fetchone()[0] == 0
        assert c.execute("select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
                         ).fetchone()[0] == throwaway.login.role
