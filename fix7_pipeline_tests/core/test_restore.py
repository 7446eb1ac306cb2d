"""Restoring untrusted dumps as a least-privileged role: real dumps restore, hostile ones are contained."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql

from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.dumps.screening import screen_dump
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.clone.restore import restore
from fix7_pipeline.core.postgres.throwaways import RULE_ATTRIBUTES, RULE_MEMBERSHIP, RULE_SERVER_FILES
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.core import hostile
from fix7_pipeline_tests.pg import proof

ROWS = 25


@pytest.fixture(scope="module")
def demo_dumps(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("restore")
    name = "fix7h_restore_demo"
    builder.build_clone(name, registry_rows=ROWS, seed=5)
    try:
        return {fmt: builder.dump_clone(name, fmt, d / f"demo.{fmt}") for fmt in builder.DUMP_FORMATS}
    finally:
        builder.drop_clone(name)


def _tables(server, tw) -> dict:
    with proof(server, tw) as c:
        return dict(c.execute("select relname, pg_get_userbyid(relowner) from pg_class "
                              "where relnamespace = 'public'::regnamespace and relkind = 'r'").fetchall())


@pytest.mark.parametrize("fmt", builder.DUMP_FORMATS)
def test_every_format_restores_as_the_throwaway_role(server, throwaway, demo_dumps, fmt):
    info = inspect_dump(demo_dumps[fmt])
    details = restore(server, throwaway, info, timeout=120)
    assert details["role"] == throwaway.login.role and details["least_privilege"]["superuser"] is False
    assert details["entries_restored"] > 20
    skipped = details["entries_skipped"]
    assert (skipped.get("owner", 0) >= 10 and skipped.get("privileges", 0) >= 3) if not info.is_archive \
        else skipped.get("acl", 0) >= 3
    assert "PGPASSWORD" not in details["command"]
    tables = _tables(server, throwaway)
    assert set(tables.values()) == {throwaway.login.role}
    assert {"birth_registry", "directus_webhooks", "system_issues"} <= set(tables)
    with proof(server, throwaway) as c:
        assert c.execute("select count(*) from public.birth_registry").fetchone()[0] == ROWS
        comment = c.execute("select obj_description('public.birth_registry'::regclass)").fetchone()[0]
        assert comment and comment.startswith("One row per object")
        assert c.execute("select last_value > 1 from public.system_issues_id_seq").fetchone()[0]
        assert not c.execute("select 1 from pg_roles where rolname in ('directus', 'birth_app')").fetchone()
        # the planner's statistics, as production has them (restore.analyze): every restored table analyzed
        unanalyzed = c.execute("select relname from pg_stat_user_tables where schemaname = 'public' "
                               "and last_analyze is null").fetchall()
        assert details["statistics"]["analyzed"] is True and unanalyzed == []
        assert c.execute("select count(*) from pg_stats where schemaname = 'public' "
                         "and tablename = 'birth_registry'").fetchone()[0] > 5


def test_a_dump_whose_analyze_fails_is_restored_and_says_it_plans_without_statistics(server, throwaway, tmp_path):
    """ANALYZE runs an index expression again, here one of the dump's functions that fails outside the restore's
    session: the clone is restored, the packet's restore details say ANALYZE failed and why in SQLSTATE only."""
    name = "fix7h_analyze_fails"
    # it fails in the session fix7 names for ANALYZE (application_name), nowhere else
    hostile.factory_db(name, """
        create function public.fails_in_analyze(integer) returns integer language plpgsql immutable as $f$
        begin
          if current_setting('application_name') like '%ANALYZE%' then raise exception 'not here'; end if;
          return $1;
        end $f$;
        create table public.t (n integer);
        insert into public.t values (1), (2), (3);
        create index t_expr on public.t (public.fails_in_analyze(n));""")
    try:
        dump = hostile.pg_dump(name, tmp_path / "analyze-fails.dump", "-Fc")
    finally:
        builder.drop_clone(name)
    details = restore(server, throwaway, inspect_dump(dump), timeout=120)
    assert details["statistics"] == {"analyzed": False, "why": "ANALYZE failed (SQLSTATE P0001); the rehearsal "
                                                               "plans without statistics"}


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_check_constraint_writing_a_server_file_is_contained(server, throwaway, tmp_path, fmt):
    marker = hostile.marker_path()
    dump = hostile.check_constraint_file_writer(tmp_path, marker, fmt)
    info = inspect_dump(dump)
    assert [f for f in screen_dump(info) if f.is_error] == []
    with pytest.raises(Fix7Error) as e:
        restore(server, throwaway, info, timeout=60)
    assert e.value.rule == "restore_failed"
    assert "permission denied" in e.value.message or "must be superuser" in e.value.message.lower() \
        or "pg_write_server_files" in e.value.message
    assert not marker.exists()
    assert _tables(server, throwaway) == {}  # single transaction: nothing kept


def test_restrict_escape_is_refused_before_anything_runs(server, throwaway, demo_dumps, tmp_path):
    marker = hostile.marker_path()
    dump = hostile.with_lines_after_unrestrict(demo_dumps["plain"], tmp_path / "escape.sql",
                                               [f"\\! touch {marker}"])
    info = inspect_dump(dump)
    with pytest.raises(Fix7Error) as e:
        restore(server, throwaway, info, timeout=60)
    assert e.value.rule == "psql_meta_command" and str(marker) not in e.value.message
    assert not marker.exists() and _tables(server, throwaway) == {}
    # Even unscreened, the streaming filter refuses it and psql never commits.
    with pytest.raises(Fix7Error) as e:
        restore(server, throwaway, info, timeout=60, screen=False)
    assert e.value.rule == "psql_meta_command"
    assert not marker.exists() and _tables(server, throwaway) == {}


# what the restoring role is given, the guard that must refuse it, a word its message must name
ESCALATIONS = [
    pytest.param("alter role {role} superuser", RULE_ATTRIBUTES, "SUPERUSER", id="SUPERUSER"),
    pytest.param("alter role {role} createdb", RULE_ATTRIBUTES, "CREATEDB", id="CREATEDB"),
    pytest.param("alter role {role} createrole", RULE_ATTRIBUTES, "CREATEROLE", id="CREATEROLE"),
    pytest.param("alter role {role} replication", RULE_ATTRIBUTES, "REPLICATION", id="REPLICATION"),
    pytest.param("alter role {role} bypassrls", RULE_ATTRIBUTES, "BYPASSRLS", id="BYPASSRLS"),
    pytest.param("grant pg_read_server_files to {role}", RULE_SERVER_FILES, "pg_read_server_files",
                 id="pg_read_server_files"),
    pytest.param("grant pg_write_server_files to {role}", RULE_SERVER_FILES, "pg_write_server_files",
                 id="pg_write_server_files"),
    pytest.param("grant pg_execute_server_program to {role}", RULE_SERVER_FILES, "pg_execute_server_program",
                 id="pg_execute_server_program"),
    pytest.param("grant pg_write_server_files to {ordinary}; grant {ordinary} to {role}", RULE_SERVER_FILES,
                 "pg_write_server_files", id="pg_write_server_files-through-an-ordinary-role"),
    pytest.param("grant {ordinary} to {role}", RULE_MEMBERSHIP, "{ordinary}", id="ordinary-role"),
    pytest.param("grant pg_read_all_data to {role}", RULE_MEMBERSHIP, "pg_read_all_data", id="pg_read_all_data"),
]


@pytest.mark.parametrize("grant, rule, named", ESCALATIONS)
def test_restore_refuses_a_role_that_is_more_than_least_privileged(server, throwaway, demo_dumps, grant, rule, named):
    """Each escalation is refused by the guard meant for it: `assert_least_privilege` (attributes, server-file
    roles, however reached) or the membership guard (any role at all), told apart by the rule, so deleting
    either guard from restore() turns a case red."""
    ordinary = f"fix7_t_ordinary_{throwaway.tag}"
    names = {"role": sql.Identifier(throwaway.login.role), "ordinary": sql.Identifier(ordinary)}
    with server.connect(purpose="test") as c:
        c.execute(sql.SQL("create role {} nologin").format(names["ordinary"]))
        try:
            for statement in grant.split("; "):
                c.execute(sql.SQL(statement).format(**names))
            with pytest.raises(Fix7Error) as e:
                restore(server, throwaway, inspect_dump(demo_dumps["custom"]), timeout=60)
            assert (e.value.rule, named.format(ordinary=ordinary) in e.value.message) == (rule, True), \
                e.value.message
            assert _tables(server, throwaway) == {}
        finally:
            c.execute(sql.SQL("drop role {}").format(names["ordinary"]))


def test_restore_error_quotes_the_server_but_not_the_row(server, throwaway, tmp_path):
    secret = "hunter2-do-not-echo"
    name = "fix7h_restore_err"
    hostile.factory_db(name, f"""
        create table public.t (id int primary key, note text);
        insert into public.t values (1, 'fine'), (2, '{secret}');
        alter table public.t add constraint short_note check (length(note) < 10) not valid;
        update pg_constraint set convalidated = true where conname = 'short_note';
        alter table public.t owner to directus;""")
    try:
        dumps = {fmt: hostile.pg_dump(name, tmp_path / f"err.{fmt}", flag) for fmt, flag in
                 (("plain", "-Fp"), ("custom", "-Fc"))}
    finally:
        builder.drop_clone(name)
    for fmt, path in dumps.items():
        with pytest.raises(Fix7Error) as e:
            restore(server, throwaway, inspect_dump(path), timeout=60)
        msg = e.value.message
        assert e.value.rule == "restore_failed" and "short_note" in msg, msg
        assert secret not in msg and "hunter2" not in msg, msg
        assert _tables(server, throwaway) == {}


def test_a_dump_changed_after_inspection_is_not_restored(server, throwaway, demo_dumps, tmp_path):
    for fmt in ("plain", "custom"):
        p = tmp_path / f"moving.{fmt}"
        p.write_bytes(demo_dumps[fmt].read_bytes())
        info = inspect_dump(p)
        with open(p, "ab") as f:
            f.write(b"\n-- appended later\n" if fmt == "plain" else b"\0")
        with pytest.raises(Fix7Error) as e:
            restore(server, throwaway, info, timeout=60)
        assert e.value.rule == "dump_changed"
        assert _tables(server, throwaway) == {}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", builder.DUMP_FORMATS)
def test_dumps_from_an_older_major_restore(server, throwaway, tmp_path, fmt):
    """Production runs older majors: a system PostgreSQL 15 factory and its own pg_dump, when installed."""
    if builder.system_pg_dump(15) is None:
        pytest.skip("no system PostgreSQL 15 installed")
    name = "fix7h_restore_pg15"
    builder.build_clone(name, registry_rows=10, major=15)
    try:
        dump = builder.dump_clone(name, fmt, tmp_path / f"pg15.{fmt}", major=15)
    finally:
        builder.drop_clone(name, major=15)
    info = inspect_dump(dump)
    assert info.pg_dump_version.startswith("15.") and [f for f in screen_dump(info) if f.is_error] == []
    restore(server, throwaway, info, timeout=120)
    assert set(_tables(server, throwaway).values()) == {throwaway.login.role}
