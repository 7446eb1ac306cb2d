"""The factory makes production-shaped clones and real dumps in every format pg_dump offers."""

from __future__ import annotations

import gzip
import os
import subprocess

import psycopg
import pytest

from fix7_pipeline.core.postgres.server import pg_tool
from fix7_pipeline.demo import builder
from fix7_pipeline.demo.builder import (DUMP_FORMATS, build_clone, drop_clone, dump_clone, factory_conninfo,
                                        reference_schema_sql, run_sql, system_pg_dump, write_sample_change)

HEX64 = "^[0-9a-f]{64}$"


@pytest.fixture(scope="module")
def clone():
    name = f"demo_builder_{os.getpid()}"
    build_clone(name, registry_rows=2000, seed=11)
    yield name
    drop_clone(name)


def _q(database: str, query: str):
    with psycopg.connect(**factory_conninfo(database)) as c:
        return c.execute(query).fetchall()


def test_counts_and_sequences(clone):
    counts = dict(_q(clone, """
        select 'registry', count(*) from birth_registry union all
        select 'approvals', count(*) from os_proposal_approvals union all
        select 'activity', count(*) from directus_activity union all
        select 'revisions', count(*) from directus_revisions union all
        select 'sessions', count(*) from directus_sessions union all
        select 'users', count(*) from directus_users union all
        select 'settings', count(*) from directus_settings union all
        select 'issues', count(*) from system_issues"""))
    assert counts["registry"] == 2000 and counts["activity"] == 2000 and counts["revisions"] == 2000
    assert counts["approvals"] == 2200 and counts["sessions"] == 0 and counts["users"] == 20
    assert counts["settings"] == 1 and counts["issues"] == 300
    seqs = dict(_q(clone, "select sequencename, last_value from pg_sequences where schemaname = 'public'"))
    assert seqs == {"directus_activity_id_seq": 2000, "directus_revisions_id_seq": 2000,
                    "os_proposal_approvals_id_seq": 2200, "system_issues_id_seq": 300}
    statuses = dict(_q(clone, "select status, count(*) from birth_registry group by 1"))
    assert set(statuses) == {"proposed", "approved", "born", "rejected", "retired"}
    assert all(v > 50 for v in statuses.values())


def test_data_rules_hold(clone):
    violations = _q(clone, f"""
        select 'hash', count(*) from birth_registry where content_hash !~ '{HEX64}'
          or (birth_certificate_hash is not null and birth_certificate_hash !~ '{HEX64}')
        union all select 'born', count(*) from birth_registry
          where (status = 'born') <> (born_at is not null) or (status = 'born') <> (birth_certificate_hash is not null)
        union all select 'times', count(*) from birth_registry
          where updated_at < created_at or updated_at > now() or created_at > now() or born_at > now()
        union all select 'rollback fields', count(*) from birth_registry where row_version < 1
          or (previous_status is not null
              and previous_status not in ('proposed','approved','born','rejected','retired'))
        union all select 'approval hash', count(*) from os_proposal_approvals where approval_hash !~ '{HEX64}'
        union all select 'approval fk', count(*) from os_proposal_approvals a
          where not exists (select 1 from birth_registry r where r.id = a.birth_registry_id)
             or not exists (select 1 from directus_users u where u.id = a.approver_id)
        union all select 'revision item', count(*) from directus_revisions v where v.collection = 'birth_registry'
          and not exists (select 1 from birth_registry r where r.id::text = v.item)
        union all select 'activity item', count(*) from birth_registry r
          where not exists (select 1 from directus_activity a where a.collection = 'birth_registry'
                            and a.item = r.id::text)
        union all select 'issues', count(*) from system_issues where resolved_at < opened_at or opened_at > now()
        union all select 'secrets', count(*) from directus_users
          where password is not null or token is not null or tfa_secret is not null or auth_data is not null
             or email not like '%@example.test'
        union all select 'settings', count(*) from directus_settings
          where mapbox_key is not null or project_url <> 'https://directus.example.test'
        union all select 'webhooks', count(*) from directus_webhooks
          where url !~ '^https://[a-z.]+\\.example\\.test/' or headers::text ilike '%authorization%'
        union all select 'operations', count(*) from directus_operations
          where type = 'request' and options->>'url' !~ '^https://[a-z.]+\\.(invalid|test)/'""")
    assert {k: v for k, v in violations if v} == {}
    assert _q(clone, "select count(*) from directus_operations where type = 'request'")[0][0] == 1


def test_owners_grants_and_determinism(clone):
    owners = {r[0] for r in _q(clone, "select distinct tableowner from pg_tables where schemaname = 'public'")}
    assert owners == {"directus"}
    grants = _q(clone, "select count(*) from information_schema.role_table_grants where grantee = 'birth_app'")
    assert grants[0][0] >= 3
    digest = "select md5(string_agg(t::text, ',' order by id)) from birth_registry t"
    again = f"demo_builder_again_{os.getpid()}"
    build_clone(again, registry_rows=2000, seed=11)
    try:
        assert _q(clone, digest) == _q(again, digest)
        build_clone(again, registry_rows=2000, seed=12)
        assert _q(clone, digest) != _q(again, digest)
    finally:
        drop_clone(again)


def test_every_format_is_what_it_says(clone, tmp_path):
    for fmt in DUMP_FORMATS:
        out = dump_clone(clone, fmt, tmp_path / f"clone.{fmt}")
        if fmt == "plain":
            text = out.read_text()
            assert text.startswith("--\n-- PostgreSQL database dump")
            assert "ALTER TABLE public.birth_registry OWNER TO directus;" in text
            assert "GRANT SELECT ON TABLE public.birth_registry TO birth_app;" in text
            assert "SELECT pg_catalog.setval('public.directus_activity_id_seq', 2000, true);" in text
        elif fmt == "plain-gz":
            assert out.read_bytes()[:2] == b"\x1f\x8b"
            assert gzip.decompress(out.read_bytes()).decode().startswith("--\n-- PostgreSQL database dump")
        else:
            if fmt == "directory":
                assert (out / "toc.dat").is_file()
            toc = subprocess.run([pg_tool("pg_restore"), "-l", str(out)], capture_output=True, text=True)
            assert toc.returncode == 0, toc.stderr
            expected = {"custom": "Format: CUSTOM", "tar": "Format: TAR", "directory": "Format: DIRECTORY"}[fmt]
            assert expected in toc.stdout
            assert "TABLE DATA public birth_registry directus" in toc.stdout
            assert "COMMENT public TABLE birth_registry directus" in toc.stdout
    schema = dump_clone(clone, "custom", tmp_path / "schema.custom", schema_only=True)
    toc = subprocess.run([pg_tool("pg_restore"), "-l", str(schema)], capture_output=True, text=True).stdout
    assert "TABLE public birth_registry" in toc and "TABLE DATA" not in toc


def test_failed_dump_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="pg_dump"):
        dump_clone("demo_builder_no_such_db", "custom", tmp_path / "x.custom")
    assert not (tmp_path / "x.custom").exists()
    with pytest.raises(ValueError):
        dump_clone("postgres", "zip", tmp_path / "x.zip")


def test_drifted_shape_and_hostile_plant(tmp_path):
    name = f"demo_builder_drift_{os.getpid()}"
    drifted = reference_schema_sql().replace("    previous_status text,                     "
                                             "-- rollback field: status before the last transition\n", "")
    assert drifted != reference_schema_sql()
    build_clone(name, registry_rows=50, schema_sql=drifted)
    try:
        cols = {r[0] for r in _q(name, "select column_name from information_schema.columns "
                                       "where table_name = 'birth_registry'")}
        assert "previous_status" not in cols and "row_version" in cols
        assert _q(name, "select count(*) from birth_registry")[0][0] == 50
        run_sql(name, "insert into directus_sessions (token, expires) values ('planted', now())")
        assert _q(name, "select count(*) from directus_sessions")[0][0] == 1
    finally:
        drop_clone(name)


def test_sample_change_files(tmp_path):
    apply, rollback = write_sample_change(tmp_path / "change")
    for p in (apply, rollback):
        text = p.read_text().lower()
        statements = [ln.strip() for ln in text.splitlines() if not ln.strip().startswith("--")]
        assert not any(s.startswith(("begin", "commit", "start transaction")) for s in statements)
    assert "fix7_backup_birth_registry" in apply.read_text()
    assert "drop table public.fix7_backup_birth_registry" in rollback.read_text()


@pytest.mark.skipif(system_pg_dump(15) is None or builder.system_pg_bin(15) is None,
                    reason="no system PostgreSQL 15")
def test_dump_made_by_postgresql_15(tmp_path):
    name = f"demo_builder_pg15_{os.getpid()}"
    build_clone(name, registry_rows=100, major=15)
    try:
        out = dump_clone(name, "custom", tmp_path / "pg15.custom", major=15)
        toc = subprocess.run([pg_tool("pg_restore"), "-l", str(out)], capture_output=True, text=True).stdout
        assert "Dumped from database version: 15." in toc and "Dumped by pg_dump version: 15." in toc
        plain = dump_clone(name, "plain", tmp_path / "pg15.sql", major=15).read_text()
        assert "-- Dumped by pg_dump version 15." in plain
    finally:
        drop_clone(name, major=15)
