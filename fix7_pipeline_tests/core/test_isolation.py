"""The post-restore isolation proof, on a real restored clone; hostile pointers are planted per test and
rolled back, so every test sees the same clean clone."""

from __future__ import annotations

import pytest

from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.dumps.screening import screen_dump
from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.clone.isolation import display_url, isolation_proven, production_regex, prove_isolation
from fix7_pipeline.core.clone.restore import restore
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.core import hostile
from fix7_pipeline_tests.pg import as_owner, proof, superuser

PROD = HostPolicy(production_patterns=("*.corp.internal",))


@pytest.fixture(scope="module")
def clone(server, tmp_path_factory):
    name = "fix7h_isolation_demo"
    builder.build_clone(name, registry_rows=20, seed=11)
    try:
        dump = builder.dump_clone(name, "custom", tmp_path_factory.mktemp("iso") / "demo.dump")
    finally:
        builder.drop_clone(name)
    tw = create_throwaway(server)
    try:
        restore(server, tw, inspect_dump(dump), timeout=120)
        yield tw
    finally:
        drop_throwaway(server, tw)


@pytest.fixture
def conn(server, clone):
    c = as_owner(server, clone, autocommit=False)
    yield c
    c.rollback()
    c.close()


def errors(findings):
    return [f for f in findings if f.is_error]


def test_clean_demo_clone_is_isolated(conn):
    findings = prove_isolation(conn, PROD)
    assert errors(findings) == [] and isolation_proven(findings)
    notes = {(f.table, f.column) for f in findings if f.rule == "outward_pointer"}
    assert notes == {("directus_webhooks", "url"), ("directus_operations", "options->>'url'"),
                     ("directus_settings", "project_url")}


def test_active_webhook_to_production_is_found(conn):
    conn.execute("insert into directus_webhooks (id, name, url, status, actions, collections) values "
                 "(77, 'prod', 'https://alice:s3cr3t@hooks.prod.corp.internal/services/T0/B0/XXXXXXXXXXXX?token=abc',"
                 " 'active', 'create', 'birth_registry')")
    findings = errors(prove_isolation(conn, PROD))
    assert len(findings) == 1
    f = findings[0]
    assert (f.rule, f.table, f.column, f.row_key) == ("outward_pointer", "directus_webhooks", "url", "77")
    assert f.extra["host"] == "hooks.prod.corp.internal" and f.extra["status"] == ["active"]
    blob = f.message + repr(f.extra)
    assert "s3cr3t" not in blob and "alice" not in blob and "token=abc" not in blob and "XXXXXXXXXXXX" not in blob
    assert "*.corp.internal" in f.message


def test_inactive_or_unlisted_hosts_fail_closed_without_production_patterns(conn):
    conn.execute("update directus_webhooks set url = 'https://hooks.partner.com/x' where status = 'inactive'")
    conn.execute("update directus_settings set project_url = 'cms.internal-company.net'")
    findings = errors(prove_isolation(conn, HostPolicy()))
    by_table = {f.table: f for f in findings}
    assert by_table["directus_webhooks"].extra["status"] == ["inactive"]
    assert "hooks.partner.com" in by_table["directus_webhooks"].message
    assert by_table["directus_settings"].extra["host"] is None  # no scheme: cannot be proven, so it fails
    allowed = HostPolicy(allow_patterns=("hooks.partner.com",))
    assert {f.table for f in errors(prove_isolation(conn, allowed))} == {"directus_settings"}


def test_request_operation_and_free_text_production_hosts(conn):
    conn.execute("""update directus_operations
                    set options = json_build_object('url', 'https://api.prod.corp.internal/announce')
                    where type = 'request'""")
    conn.execute("""update system_issues set details = details || '{"seen_at": "psql -h db7.prod.corp.internal"}'
                    where id = 4""")
    conn.execute("update directus_activity set ip = 'gw.prod.corp.internal' where id = 1")
    findings = prove_isolation(conn, PROD)
    errs = {(f.table, f.column): f for f in errors(findings)}
    assert set(errs) == {("directus_operations", "options->>'url'"), ("system_issues", "details")}
    assert errs[("system_issues", "details")].row_key == "4"
    assert errs[("system_issues", "details")].extra["host"] == "db7.prod.corp.internal"
    history = [f for f in findings if f.rule == "production_host_in_history"]
    assert history and history[0].severity == "note" and history[0].column == "ip"
    other = errors(prove_isolation(conn, HostPolicy(production_patterns=("*.other.example.net",))))
    assert [(f.table, f.extra["host"]) for f in other] == [("directus_operations", "api.prod.corp.internal")]



def test_a_production_host_in_a_large_value_is_found_across_a_window_edge(conn, monkeypatch):
    """A value longer than LARGE_VALUE_BYTES is searched in overlapping windows (the server's regex refuses a text
    over 256 MB): a host that starts 10 characters before a window's edge is still found, in its row."""
    from fix7_pipeline.core.clone import isolation

    monkeypatch.setattr(isolation, "LARGE_VALUE_BYTES", 64 << 10)
    monkeypatch.setattr(isolation, "VALUE_WINDOW", 32 << 10)
    edge = 3 * (32 << 10) - 10
    conn.execute("create table public.iso_notes (id int primary key, body text)")
    conn.execute("insert into public.iso_notes select 1, rpad('', %s, 'note ') || ' db9.prod.corp.internal ' || "
                 "rpad('', 100000, 'more ')", (edge - 1,))
    conn.execute("insert into public.iso_notes values (2, 'psql -h db2.prod.corp.internal')")
    errs = [f for f in errors(prove_isolation(conn, PROD)) if f.table == "iso_notes"]
    assert sorted((f.extra["host"], f.row_key) for f in errs) == [("db2.prod.corp.internal", "2"),
                                                                   ("db9.prod.corp.internal", "1")]

def test_one_scan_of_a_table_finds_each_column_s_hosts_apart(conn):
    """A table whose values all sit in their rows is read once for all its text columns (isolation._one_scan):
    each column's hosts, row counts and first keys come out as a scan per column would give them, whatever the
    type (text, varchar, char, jsonb, a domain over text, name), and a history column stays a note."""
    from fix7_pipeline.core.clone import isolation

    conn.execute("create domain public.iso_label as text")
    conn.execute("create table public.iso_wide (id int primary key, a text, b varchar(80), c char(40), d jsonb, "
                 "e public.iso_label, user_agent text, n name)")
    conn.execute("""insert into public.iso_wide values
        (1, 'see db1.prod.corp.internal', null, null, null, null, null, null),
        (2, null, 'x db1.prod.corp.internal and db2.prod.corp.internal', 'db3.prod.corp.internal', null, null,
         'bot db4.prod.corp.internal', null),
        (3, 'db1.prod.corp.internal', 'db2.prod.corp.internal', null, '{"h": "db5.prod.corp.internal"}',
         'db6.prod.corp.internal', null, 'db7.prod.corp.internal'),
        (4, 'ssh ops@DB8.Prod.Corp.Internal', 'café db9.prod.corp.internal', null, null, null, null, null),
        (5, null, null, null, null, 'DB10.PROD.CORP.INTERNAL', null, null)""")
    scanned = []
    one_scan = isolation._one_scan
    isolation._one_scan = lambda c, schema, table, *a: scanned.append(table) or one_scan(c, schema, table, *a)
    try:
        findings = [f for f in prove_isolation(conn, PROD) if f.table == "iso_wide"]
    finally:
        isolation._one_scan = one_scan
    assert scanned.count("iso_wide") == 1
    got = [(f.column, f.extra["host"], f.extra["rows"], f.row_key, f.rule) for f in findings]
    # upper case and a value beyond ASCII pass the cheap first test (isolation._prefilter) to the regex
    assert got == [("a", "db1.prod.corp.internal", 2, "1", "production_host"),
                   ("a", "db8.prod.corp.internal", 1, "4", "production_host"),
                   ("b", "db1.prod.corp.internal", 1, "2", "production_host"),
                   ("b", "db2.prod.corp.internal", 2, "2", "production_host"),
                   ("b", "db9.prod.corp.internal", 1, "4", "production_host"),
                   ("c", "db3.prod.corp.internal", 1, "2", "production_host"),
                   ("d", "db5.prod.corp.internal", 1, "3", "production_host"),
                   ("e", "db10.prod.corp.internal", 1, "5", "production_host"),
                   ("e", "db6.prod.corp.internal", 1, "3", "production_host"),
                   ("user_agent", "db4.prod.corp.internal", 1, "2", "production_host_in_history"),
                   ("n", "db7.prod.corp.internal", 1, "3", "production_host")]


def test_catalog_pointers_are_found_without_printing_credentials(server, clone):
    """Foreign servers and user mappings need a superuser to plant; the proof's queries are what is tested."""
    conn = superuser(server, clone.database, autocommit=False)
    try:
        _catalog_pointers(conn)
    finally:
        conn.rollback()
        conn.close()


def _catalog_pointers(conn):
    conn.execute("create extension postgres_fdw")
    conn.execute("create server prod_db foreign data wrapper postgres_fdw "
                 "options (host 'db.prod.corp.internal', dbname 'directus')")
    conn.execute("create user mapping for public server prod_db options (user 'u', password 'pw-never-print')")
    conn.execute("create foreign table public.remote_registry (id uuid) server prod_db")
    conn.execute("create view public.v_remote as select * from public.remote_registry")
    conn.execute("""create function public.pull() returns int language plpgsql as $f$
                    begin perform dblink_connect('host=db.prod.corp.internal'); return 1; end $f$""")
    findings = errors(prove_isolation(conn, PROD))
    rules = {f.rule for f in findings}
    assert {"foreign_data_wrapper", "foreign_server", "user_mapping", "foreign_table", "extension_not_allowed",
            "remote_call"} <= rules
    server = next(f for f in findings if f.rule == "foreign_server")
    assert server.extra["host"] == "db.prod.corp.internal" and "production pattern" in server.message
    assert "pw-never-print" not in " ".join(f.message + repr(f.extra) for f in findings)
    assert all(f.extra.get("isolation") for f in findings)


def test_fdw_dump_is_refused_and_the_restorable_part_still_fails_the_proof(server, throwaway, tmp_path):
    made = hostile.fdw_and_prod_webhook(tmp_path)
    whole = [f for f in screen_dump(inspect_dump(made["custom"])) if f.is_error]
    assert {"foreign_server", "user_mapping"} <= {f.rule for f in whole}
    assert all(f.extra.get("isolation") for f in whole if f.rule in ("foreign_server", "user_mapping"))
    part = inspect_dump(made["webhooks"])
    assert [f for f in screen_dump(part) if f.is_error] == []
    restore(server, throwaway, part, timeout=60)
    with proof(server, throwaway) as c:
        findings = errors(prove_isolation(c, PROD))
    assert [(f.table, f.row_key, f.extra["host"]) for f in findings] == [
        ("directus_webhooks", "1", "hooks.prod.corp.internal")]


def test_pattern_translation_and_url_display():
    rx = production_regex(PROD)
    assert rx and "corp\\.internal" in rx
    assert production_regex(HostPolicy()) is None
    assert display_url("https://u:p@h.example.test/services/T0/B0/abc?x=1") == "https://<redacted>@h.example.test/…"
    assert display_url("https://h.example.test") == "https://h.example.test"
