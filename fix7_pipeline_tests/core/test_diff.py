"""The restore diff against a physical anchor: empty for a faithful rollback, exact counts for a residue."""

from __future__ import annotations

import os
import subprocess

import pytest
from psycopg import sql

from fix7_pipeline.core.anchor.diff import restore_diff
from fix7_pipeline.core.anchor.fingerprint import fingerprint
from fix7_pipeline.core.postgres.server import pg_tool
from fix7_pipeline.demo.builder import build_clone, demo_file, drop_clone, dump_clone
from fix7_pipeline.core.postgres.throwaways import create_database
from fix7_pipeline_tests.pg import as_owner, proof

APPLY = demo_file("fix7_apply.sql").read_text()
ROLLBACK = demo_file("fix7_rollback.sql").read_text()


@pytest.fixture(scope="module")
def clone_dump(tmp_path_factory):
    name = f"demo_diff_{os.getpid()}"
    build_clone(name, registry_rows=3000, seed=7)
    out = dump_clone(name, "custom", tmp_path_factory.mktemp("diff") / "clone.dump")
    drop_clone(name)
    return out


@pytest.fixture
def rehearsal(server, throwaway, clone_dump):
    """A restored clone and its anchor (a TEMPLATE copy), fingerprinted."""
    env = server.tool_env(throwaway.database, throwaway.login, "test restore", "pg_restore")
    r = subprocess.run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                        "-d", throwaway.database, str(clone_dump)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    anchor = _copy(server, throwaway)
    with proof(server, throwaway, anchor) as c:
        fp = fingerprint(c)
    return throwaway, anchor, fp


def _copy(server, tw) -> str:
    name = f"{tw.database}_anchor"
    tw.extra_databases.append(name)
    create_database(server, name, tw.login, template=tw.database)
    return name


def _change(server, tw, text: str) -> None:
    with as_owner(server, tw, autocommit=False) as c:
        c.execute(text)
        c.commit()


def _diff(server, tw, anchor, anchor_fp) -> dict:
    with proof(server, tw) as after, proof(server, tw, anchor) as anchor_conn:
        return restore_diff(anchor_fp, fingerprint(after), anchor_conn, after)


def _table(result, name):
    return next((t for t in result["tables"] if t["table"] == name), None)


def test_faithful_rollback_is_empty(server, rehearsal):
    tw, anchor, fp = rehearsal
    assert _diff(server, tw, anchor, fp) == {"tables": [], "schema": [], "sequences": [], "empty": True,
                                             "large_objects": {"added": [], "removed": [], "changed": []},
                                             "tables_unchanged": 11, "tables_compared": 0}
    _change(server, tw, APPLY)
    with as_owner(server, tw) as c:
        certified = c.execute("select count(*) from fix7_backup_birth_registry").fetchone()[0]
    assert certified > 100
    applied = _diff(server, tw, anchor, fp)
    assert not applied["empty"]
    assert _table(applied, "public.birth_registry")["changed"] == certified
    assert _table(applied, "public.directus_activity")["added"] == certified
    assert _table(applied, "public.directus_revisions")["added"] == certified
    assert _table(applied, "public.system_issues")["added"] == certified + 1
    assert _table(applied, "public.fix7_backup_birth_registry")["only_in"] == "after"
    assert {"object": "column public.birth_registry.fix7_migrated", "change": "added"} in applied["schema"]

    _change(server, tw, ROLLBACK)
    result = _diff(server, tw, anchor, fp)
    assert result["empty"] and result["tables"] == [] and result["schema"] == []
    moved = {s["sequence"]: s for s in result["sequences"]}
    assert set(moved) == {"public.directus_activity_id_seq", "public.directus_revisions_id_seq",
                          "public.system_issues_id_seq"}
    assert all(s["severity"] == "warning" and s["after"] > s["anchor"] for s in moved.values())
    assert moved["public.system_issues_id_seq"]["after"] == 300 + certified + 1


def test_sloppy_rollback_gives_exact_counts(server, rehearsal):
    tw, anchor, fp = rehearsal
    _change(server, tw, APPLY)
    with as_owner(server, tw) as c:
        certified = c.execute("select count(*) from fix7_backup_birth_registry").fetchone()[0]
        three = [str(r[0]) for r in c.execute("select id from fix7_backup_birth_registry order by id limit 3")]
    forgetful = ROLLBACK.replace("delete from public.system_issues where code in ('FIX7_CERTIFIED', 'FIX7_SUMMARY');",
                                 "")
    assert forgetful != ROLLBACK
    forgetful = forgetful.replace(
        "alter table public.birth_registry drop column fix7_migrated;",
        "update public.birth_registry set row_version = row_version + 1 where id in "
        "(select id from public.fix7_backup_birth_registry order by id limit 3);\n"
        "alter table public.birth_registry drop column fix7_migrated;")
    _change(server, tw, forgetful)
    result = _diff(server, tw, anchor, fp)
    assert not result["empty"] and result["schema"] == []
    issues, registry = _table(result, "public.system_issues"), _table(result, "public.birth_registry")
    assert (issues["added"], issues["removed"], issues["changed"]) == (certified + 1, 0, 0)
    assert (registry["added"], registry["removed"], registry["changed"]) == (0, 0, 3)
    assert registry["examples"]["changed"] == sorted(three)
    assert {t["table"] for t in result["tables"]} == {"public.system_issues", "public.birth_registry"}


def test_schema_residue_and_sequences(server, rehearsal):
    tw, anchor, fp = rehearsal
    _change(server, tw, """
        drop index public.birth_registry_status_idx;
        alter table public.system_issues drop constraint system_issues_severity_check;
        alter table public.system_issues add constraint system_issues_severity_check
          check (severity = any (array['info', 'warning', 'error', 'critical', 'fatal']));
        select nextval('public.os_proposal_approvals_id_seq');
    """)
    result = _diff(server, tw, anchor, fp)
    assert result["schema"] == [
        {"object": "constraint public.system_issues.system_issues_severity_check", "change": "changed",
         "attributes": ["definition"]},
        {"object": "index public.birth_registry_status_idx", "change": "removed"}]
    assert result["tables"] == [] and not result["empty"]
    assert result["sequences"] == [{"sequence": "public.os_proposal_approvals_id_seq", "anchor": 3300,
                                    "after": 3301, "severity": "warning"}]


def test_sequence_moved_back_is_an_error(server, rehearsal):
    tw, anchor, fp = rehearsal
    _change(server, tw, "select setval('public.system_issues_id_seq', 10)")
    result = _diff(server, tw, anchor, fp)
    assert result["sequences"] == [{"sequence": "public.system_issues_id_seq", "anchor": 300, "after": 10,
                                    "severity": "error"}]
    assert not result["empty"]


def test_every_row_changed_and_keyless_tables(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table wide (id int primary key, v text)")
        c.execute("insert into wide select g, md5(g::text) from generate_series(1, 20000) g")
        c.execute("create table bag (v text)")
        c.execute("insert into bag values ('a'), ('a'), ('b')")
        c.execute("create table pair (a int, b int, v text, primary key (a, b))")
        c.execute("insert into pair select g, g % 7, 'x' from generate_series(1, 100) g")
    anchor = _copy(server, throwaway)
    with proof(server, throwaway, anchor) as c:
        fp = fingerprint(c)
    _change(server, throwaway, """
        update wide set v = v || '!';
        delete from wide where id <= 10;
        insert into wide values (20001, 'new'), (20002, 'new');
        delete from bag where ctid = (select min(ctid) from bag where v = 'a');
        insert into bag values ('c');
        update pair set v = 'y' where a = 5;
        create table extra (id int);
        insert into extra values (1), (2);
    """)
    result = _diff(server, throwaway, anchor, fp)
    wide, bag, pair = (_table(result, f"public.{n}") for n in ("wide", "bag", "pair"))
    assert (wide["added"], wide["removed"], wide["changed"]) == (2, 10, 19990)
    assert wide["buckets"] > 4000 and wide["examples"]["added"] == ["20001", "20002"]
    assert (bag["added"], bag["removed"], bag["changed"]) == (1, 1, 0) and "examples" not in bag
    assert (pair["added"], pair["removed"], pair["changed"]) == (0, 0, 1)
    assert pair["examples"]["changed"] == ["a=5, b=5"]
    assert _table(result, "public.extra") == {"table": "public.extra", "added": 2, "removed": 0, "changed": 0,
                                              "only_in": "after"}
    assert {"object": "table public.extra", "change": "added"} in result["schema"]


def test_column_left_behind_is_schema_not_rows(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table r (id int primary key, status text)")
        c.execute("insert into r select g, 'ok' from generate_series(1, 300) g")
    anchor = _copy(server, throwaway)
    with proof(server, throwaway, anchor) as c:
        fp = fingerprint(c)
    _change(server, throwaway, "alter table r add column migrated boolean default true")
    result = _diff(server, throwaway, anchor, fp)
    assert result["tables"] == [] and result["tables_compared"] == 1
    assert result["schema"] == [{"object": "column public.r.migrated", "change": "added"}]
    _change(server, throwaway, "alter table r drop column migrated")
    assert _diff(server, throwaway, anchor, fp)["empty"]


@pytest.mark.slow
def test_million_row_clone_diff_is_exact_and_bounded():
    """1M registry rows (5M rows in all): fingerprint and diff stay in the server and give exact counts."""
    import time

    import psycopg

    from fix7_pipeline.demo.builder import factory_conninfo, run_sql

    name, anchor = f"demo_diff_1m_{os.getpid()}", f"demo_diff_1m_{os.getpid()}_anchor"
    build_clone(name, registry_rows=1_000_000)
    try:
        with psycopg.connect(**factory_conninfo(), autocommit=True) as c:
            c.execute(sql.SQL("create database {} template {}").format(sql.Identifier(anchor), sql.Identifier(name)))
        run_sql(name, "update birth_registry set row_version = row_version + 1 where object_id like '%000';"
                      "delete from system_issues where id <= 7;"
                      "insert into directus_activity (action, collection, item) values ('update', 'x', 'y')")
        with psycopg.connect(**factory_conninfo(anchor), autocommit=True) as a, \
                psycopg.connect(**factory_conninfo(name), autocommit=True) as b:
            started = time.monotonic()
            anchor_fp = fingerprint(a)
            fingerprinted = time.monotonic() - started
            result = restore_diff(anchor_fp, fingerprint(b), a, b)
            total = time.monotonic() - started
        assert (_table(result, "public.birth_registry")["changed"], _table(result, "public.system_issues")["removed"],
                _table(result, "public.directus_activity")["added"]) == (1000, 7, 1)
        assert _table(result, "public.birth_registry")["buckets"] <= 1000
        assert fingerprinted < 60 and total < 240, (fingerprinted, total)
    finally:
        drop_clone(anchor)
        drop_clone(name)
