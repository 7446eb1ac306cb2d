"""The anchor fingerprint: stable, equal for a physical copy, blind to dropped columns, alert to everything else."""

from __future__ import annotations

import os
import subprocess

import pytest

from fix7_pipeline.core.anchor.fingerprint import (anchor_id, fingerprint, schema_objects, sequence_positions, snapshot,
                                                   table_fingerprints)
from fix7_pipeline.demo.builder import build_clone, drop_clone, dump_clone
from fix7_pipeline.core.postgres.server import pg_tool
from fix7_pipeline.core.postgres.throwaways import create_database
from fix7_pipeline_tests.pg import as_owner, proof


@pytest.fixture(scope="module")
def clone_dump(tmp_path_factory):
    name = f"demo_fp_{os.getpid()}"
    build_clone(name, registry_rows=1500, seed=3)
    out = dump_clone(name, "custom", tmp_path_factory.mktemp("fp") / "clone.dump")
    drop_clone(name)
    return out


def _restore(server, tw, dump):
    env = server.tool_env(tw.database, tw.login, "test restore", "pg_restore")
    r = subprocess.run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                        "-d", tw.database, str(dump)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _copy(server, tw, suffix="anchor") -> str:
    name = f"{tw.database}_{suffix}"
    tw.extra_databases.append(name)
    create_database(server, name, tw.login, template=tw.database)
    return name


def test_stable_and_equal_for_template_copy(server, throwaway, clone_dump):
    _restore(server, throwaway, clone_dump)
    with as_owner(server, throwaway) as c:
        first, second = fingerprint(c), fingerprint(c)
    assert first == second and anchor_id(first) == anchor_id(second)
    assert anchor_id(first).startswith("anc-") and len(anchor_id(first)) == 20
    reg = first["tables"]["public.birth_registry"]
    assert reg["rows"] == 1500 and reg["key"] == ["id"] and "status" in reg["columns"]
    assert first["tables"]["public.os_proposal_approvals"]["rows"] == 1650
    assert first["sequences"]["public.system_issues_id_seq"] == {"last_value": 300, "is_called": True,
                                                                 "increment": 1}
    for key in ("table public.birth_registry", "column public.birth_registry.status",
                "constraint public.birth_registry.birth_registry_pkey", "index public.birth_registry_status_idx",
                "sequence public.directus_activity_id_seq",
                "constraint public.os_proposal_approvals.os_proposal_approvals_birth_registry_id_fkey"):
        assert key in first["schema"], key
    anchor = _copy(server, throwaway)
    with proof(server, throwaway, anchor) as c:
        assert anchor_id(fingerprint(c)) == anchor_id(first)


def test_content_hash_is_order_independent_and_sensitive(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table a (id int primary key, v text); create table b (id int primary key, v text)")
        c.execute("insert into a select g, 'v' || g from generate_series(1, 500) g")
        c.execute("insert into b select g, 'v' || g from generate_series(500, 1, -1) g")
        t = table_fingerprints(c)
        assert t["public.a"]["hash"] == t["public.b"]["hash"] and t["public.a"]["rows"] == 500
        c.execute("update b set v = 'w' where id = 250")
        assert table_fingerprints(c)["public.b"]["hash"] != t["public.a"]["hash"]
        c.execute("update b set v = 'v250' where id = 250")
        c.execute("create table nokey (v text)")
        c.execute("insert into nokey values ('x'), ('x')")
        t = table_fingerprints(c)
        assert t["public.b"]["hash"] == t["public.a"]["hash"]
        assert t["public.nokey"]["key"] is None and t["public.nokey"]["rows"] == 2
        c.execute("create table ts (id int primary key, at timestamptz, d interval)")
        c.execute("insert into ts values (1, '2025-01-01 00:00:00+00', '1 day 2 hours')")
        c.execute("set timezone = 'Pacific/Auckland'; set datestyle = 'SQL, DMY'; set intervalstyle = 'iso_8601'")
        far = fingerprint(c)["tables"]["public.ts"]["hash"]
        c.execute("set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'")
        assert fingerprint(c)["tables"]["public.ts"]["hash"] == far


def test_dropped_column_leaves_no_trace(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table r (id int primary key, status text not null, note text)")
        c.execute("insert into r select g, 's' || (g % 3), 'n' || g from generate_series(1, 200) g")
        before = fingerprint(c)
        text_before = c.execute("select string_agg(r::text, ';' order by id) from r").fetchone()[0]
        c.execute("alter table r add column fix7_migrated boolean not null default true")
        c.execute("update r set status = status")
        mid = fingerprint(c)
        assert "column public.r.fix7_migrated" in mid["schema"]
        assert mid["tables"]["public.r"]["hash"] != before["tables"]["public.r"]["hash"]
        c.execute("alter table r drop column fix7_migrated")
        assert c.execute("select count(*) from pg_attribute where attrelid = 'r'::regclass "
                         "and attisdropped").fetchone()[0] == 1
        assert c.execute("select string_agg(r::text, ';' order by id) from r").fetchone()[0] == text_before
        assert fingerprint(c) == before
        c.execute("create temp table keep as select id, note from r")
        c.execute("alter table r drop column note")
        c.execute("alter table r add column note text")
        c.execute("update r set note = keep.note from keep where keep.id = r.id")
        assert fingerprint(c) == before


def test_schema_objects_cover_the_catalog(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("""
            create type mood as enum ('calm', 'tense');
            create domain hex64 as text check (value ~ '^[0-9a-f]{64}$');
            create table t (id int primary key, m mood, h hex64, n int check (n > 0));
            create index t_n_idx on t (n);
            create sequence s;
            create function f(a int, b text) returns int language sql as 'select a';
            create view v as select id from t;
            create function trg() returns trigger language plpgsql as 'begin return new; end';
            create trigger t_trg before insert on t for each row execute function trg();
            alter table t enable row level security;
            create policy p on t using (n > 1);
            create schema other;
            create table other.t (id int);
        """)
        objects = schema_objects(c)
        for key in ("type public.mood", "type public.hex64", "constraint public.hex64.hex64_check",
                    "constraint public.t.t_n_check", "index public.t_n_idx", "sequence public.s",
                    "function public.f(a integer, b text)", "view public.v", "trigger public.t.t_trg",
                    "policy public.t.p", "table other.t", "column other.t.id", "schema other",
                    "function public.trg()"):
            assert key in objects, key
        assert not any(k.startswith(("table pg_catalog", "table information_schema")) for k in objects)
        c.execute("alter type mood add value 'joyful'")
        c.execute("alter table t drop constraint t_n_check, add constraint t_n_check check (n > 5)")
        after = schema_objects(c)
        assert after["type public.mood"] != objects["type public.mood"]
        assert after["constraint public.t.t_n_check"] != objects["constraint public.t.t_n_check"]
        assert after["index public.t_n_idx"] == objects["index public.t_n_idx"]
        c.execute("grant select on t to public; grant update (n) on t to public; grant execute on function f to public")
        granted = schema_objects(c)
        assert granted["table public.t"] != after["table public.t"]
        assert granted["column public.t.n"] != after["column public.t.n"]
        c.execute("revoke select on t from public; revoke update (n) on t from public")
        c.execute("revoke execute on function f from public")
        revoked = schema_objects(c)
        assert revoked["table public.t"] == after["table public.t"]
        assert revoked["column public.t.n"] == after["column public.t.n"]
        assert revoked["function public.f(a integer, b text)"] != after["function public.f(a integer, b text)"]
        c.execute("grant execute on function f to public")
        assert schema_objects(c) == after
        c.execute("select nextval('s'), nextval('s')")
        assert sequence_positions(c)["public.s"] == {"last_value": 2, "is_called": True, "increment": 1}


def test_shared_among_sessions_it_reads_one_snapshot(server, throwaway):
    """Tables fingerprinted by a second session read the first one's exported snapshot, not a later state."""
    with as_owner(server, throwaway) as c:
        c.execute("create table public.big (id int primary key, v text);"
                  "insert into public.big select g, 'v' || g from generate_series(1, 5000) g;"
                  "create table public.small (id int primary key)")
    with proof(server, throwaway) as a, proof(server, throwaway) as helper:
        alone = fingerprint(a)
        with snapshot(a):
            with as_owner(server, throwaway) as w:
                w.execute("insert into public.big values (5001, 'late'); insert into public.small values (1)")
            shared = fingerprint(a, [helper])
    assert shared == alone
    with proof(server, throwaway) as a, proof(server, throwaway) as helper:
        later = fingerprint(a, [helper])
    assert later["tables"]["public.big"]["rows"] == 5001 and later["tables"]["public.small"]["rows"] == 1


@pytest.fixture(scope="module")
def format_dumps(tmp_path_factory):
    from fix7_pipeline.demo.builder import DUMP_FORMATS

    name = f"demo_fp_fmt_{os.getpid()}"
    build_clone(name, registry_rows=120, seed=13)
    try:
        d = tmp_path_factory.mktemp("fp_formats")
        return {fmt: dump_clone(name, fmt, d / f"clone.{fmt}") for fmt in DUMP_FORMATS}
    finally:
        drop_clone(name)


@pytest.mark.parametrize("fmt", ["plain", "plain-gz", "custom", "directory", "tar"])
def test_a_dump_restored_twice_by_its_role_fingerprints_exactly_the_same(server, throwaway, format_dumps, fmt):
    """What the restore proof rests on: the same dump, restored again the same way by the same role into a fresh
    database, has the same fingerprint, sequence positions included; so any difference it reports is real."""
    from fix7_pipeline.core.anchor.diff import fingerprint_differences
    from fix7_pipeline.core.dumps.identify import inspect_dump
    from fix7_pipeline.core.clone.restore import restore
    from fix7_pipeline.core.postgres.throwaways import Throwaway

    info = inspect_dump(format_dumps[fmt])
    restore(server, throwaway, info, timeout=120)
    again = f"{throwaway.database}_again"
    throwaway.extra_databases.append(again)
    create_database(server, again, throwaway.login)
    restore(server, Throwaway(database=again, login=throwaway.login, tag=throwaway.tag), info, timeout=120)
    with proof(server, throwaway) as a, proof(server, throwaway, again) as b:
        first, second = fingerprint(a), fingerprint(b)
    assert first["sequences"] and all(s["is_called"] for s in first["sequences"].values() if s["last_value"] > 1)
    assert fingerprint_differences(first, second) == [] and anchor_id(first) == anchor_id(second)


def test_fingerprint_differences_name_every_difference_and_no_value(server, throwaway):
    from fix7_pipeline.core.anchor.diff import fingerprint_differences

    with as_owner(server, throwaway) as c:
        c.execute("create table t (id int primary key, v text); create table gone (id int);"
                  "insert into t select g, 'v' || g from generate_series(1, 20) g; create sequence s")
        before = fingerprint(c)
        c.execute("update t set v = 'hunter2-not-shown' where id = 3; drop table gone; create table extra (id int);"
                  "select nextval('s'); comment on table t is 'now commented'")
        after = fingerprint(c)
    got = fingerprint_differences(before, after)
    assert {(d["section"], d["object"], d["change"], tuple(d.get("fields", ()))) for d in got} == {
        ("schema", "table public.t", "changed", ("comment",)),
        ("schema", "table public.gone", "missing", ()), ("schema", "column public.gone.id", "missing", ()),
        ("schema", "table public.extra", "extra", ()), ("schema", "column public.extra.id", "extra", ()),
        ("tables", "public.t", "changed", ("hash",)),
        ("tables", "public.gone", "missing", ()), ("tables", "public.extra", "extra", ()),
        ("sequences", "public.s", "changed", ("is_called",)),
    }, got
    assert "hunter2" not in repr(got)
    assert fingerprint_differences(after, after) == [] and fingerprint_differences({}, {"tables": {}}) != []
