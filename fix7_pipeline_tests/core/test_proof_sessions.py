"""Sessions inside a throwaway: the admin never enters, and nothing the dump set steers a proof."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.anchor.fingerprint import fingerprint
from fix7_pipeline.core.postgres.proof_sql import as_text
from fix7_pipeline.core.postgres.throwaways import planted_settings
from fix7_pipeline_tests.pg import as_owner, proof, superuser

SHADOW = """
create function public.md5(text) returns text language sql as $$ select 'constant' $$;
create type public.mood as enum ('calm', 'angry');
create function public.mood_text(public.mood) returns text language sql as $$ select 'calm' $$;
create cast (public.mood as text) with function public.mood_text(public.mood);
create table public.moods (id int primary key, m public.mood);
insert into public.moods values (1, 'angry');
"""


def test_the_admin_never_connects_inside_a_throwaway(server, throwaway):
    for db in (throwaway.database, "fix7_anchor_whatever", "dagster_storage"):
        with pytest.raises(Fix7Error) as e:
            server.connect(db, purpose="anything")
        assert e.value.rule == "admin_in_clone"
        with pytest.raises(Fix7Error):
            server.tool_env(db, server.admin, "anything", "pg_dump")
        with pytest.raises(Fix7Error):
            server.sqlalchemy_source(db, server.admin, "anything")
    with server.connect(purpose="maintenance") as c:
        assert c.execute("select current_database()").fetchone()[0] == server.admin_db


def test_settings_the_dump_placed_do_not_reach_a_proof_session(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(SHADOW)
        c.execute(sql.SQL("alter database {} set search_path = public, pg_catalog").format(
            sql.Identifier(throwaway.database)))
        c.execute(sql.SQL("alter role {} set default_transaction_read_only = off").format(
            sql.Identifier(throwaway.login.role)))
        c.execute(sql.SQL("alter role {} set row_security = on").format(sql.Identifier(throwaway.login.role)))
    with proof(server, throwaway) as c:
        assert c.execute("show search_path").fetchone()[0] == "pg_catalog,pg_temp"
        assert c.execute("show default_transaction_read_only").fetchone()[0] == "on"
        assert c.execute("show row_security").fetchone()[0] == "off"
        assert c.execute("select md5('x')").fetchone()[0] == "9dd4e461268c8034f5c8564e155c67a6"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("create table public.written (id int)")
    # found without entering the clone, named without their values
    planted = planted_settings(server, [throwaway.database], throwaway.login.role)
    assert sorted((p["database"], p["role"], p["name"]) for p in planted) == [
        ("", throwaway.login.role, "default_transaction_read_only"), ("", throwaway.login.role, "row_security"),
        (throwaway.database, "", "search_path")]
    assert all("public" not in str(p) for p in planted)


def test_a_user_cast_is_not_how_a_proof_prints_a_value(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute(SHADOW)
        oid = c.execute("select 'public.mood'::regtype::oid::int8").fetchone()[0]
    with proof(server, throwaway) as c:
        col = sql.Identifier("m")
        assert c.execute(sql.SQL("select {}::text from public.moods").format(col)).fetchone()[0] == "calm"  # lied
        assert c.execute(sql.SQL("select {} from public.moods").format(as_text(col, oid))).fetchone()[0] == "angry"
        assert c.execute(sql.SQL("select {} from public.moods").format(as_text(col))).fetchone()[0] == "angry"
        assert c.execute(sql.SQL("select {} from public.moods").format(
            as_text(sql.Identifier("id"), 23))).fetchone()[0] == "1"


def test_a_forced_row_security_policy_cannot_filter_a_proof(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table public.hidden (id int primary key, v text);"
                  "insert into public.hidden values (1, 'a'), (2, 'residue');"
                  "alter table public.hidden enable row level security;"
                  "alter table public.hidden force row level security;"
                  "create policy only_one on public.hidden using (id = 1)")
    with proof(server, throwaway) as c, pytest.raises(psycopg.errors.InsufficientPrivilege) as e:
        fingerprint(c)
    assert "row-level security" in str(e.value)


def test_superuser_setup_is_outside_the_guard(server, throwaway):
    """The tests' own superuser plants are not pipeline connections: they pass no guard and no ledger."""
    before = len(server.ledger.entries)
    with superuser(server, throwaway.database) as c:
        assert c.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]
    assert len(server.ledger.entries) == before
