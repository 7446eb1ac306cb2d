"""The connection ledger against the server's own account: with connection logging turned on for one CLI
rehearsal, every connection the embedded PostgreSQL authorized for it is in the packet's `connections`, as
often as it is there, and none is there that the server did not see (nor went anywhere else).

The ledger records a grant of the one guard (`RehearsalServer.grant`) and the server logs a backend it
authorized; this test is what shows that the two are the same thing: one grant, one connection, for psycopg,
the libpq tools and SQLAlchemy (Great Expectations) alike.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import psycopg
import pytest

from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, ServerLogTail, left_on_server, load_packet, rehearse_args
from fix7_pipeline_tests.pg import superuser

SOURCE = "fix7_t_e2e_connlog_src"
NAMEDATALEN = 64
DAGSTER_STORAGE_ROLE = "dagster_storage"  # Dagster's own run storage on the same server: not a rehearsal session
AUTHORIZED = re.compile(rb"LOG:  connection authorized: user=(\S+) database=(\S+)(?: application_name=(.*))?$")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("connlog_dagster_home"), "connlog")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    builder.build_clone(SOURCE, registry_rows=80, seed=31)
    try:
        return builder.dump_clone(SOURCE, "custom", tmp_path_factory.mktemp("connlog") / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)


def _log_connections(server, value: str) -> None:
    """ALTER SYSTEM as the embedded server's superuser, reloaded, and waited for in a new session."""
    with superuser(server, server.admin_db) as c:
        if value == "reset":
            c.execute("alter system reset log_connections")
        else:
            c.execute(psycopg.sql.SQL("alter system set log_connections = {}").format(psycopg.sql.Literal(value)))
        c.execute("select pg_catalog.pg_reload_conf()")
    deadline = time.monotonic() + 10
    while True:
        with superuser(server, server.admin_db) as c:
            now = c.execute("select setting, boot_val from pg_catalog.pg_settings "
                            "where name = 'log_connections'").fetchone()
        if now[0] == (now[1] if value == "reset" else value):
            return
        assert time.monotonic() < deadline, f"log_connections is still {now[0]!r}"
        time.sleep(0.05)


@pytest.fixture
def connection_log(server):
    """Connection logging on for the test (PostgreSQL 18 names the stage to log; older majors take on/off)."""
    with superuser(server, server.admin_db) as c:
        major = int(c.execute("show server_version_num").fetchone()[0]) // 10000
    _log_connections(server, "authorization" if major >= 18 else "on")
    try:
        yield
    finally:
        _log_connections(server, "reset")


def _authorized(log: bytes) -> list[tuple[str, str, str]]:
    out = []
    for line in log.splitlines():
        m = AUTHORIZED.search(line)
        if m:
            out.append(tuple((g or b"").decode("utf-8", "replace") for g in m.groups()))
    return out


def _app_name(purpose: str) -> str:
    """What the server keeps of application_name: NAMEDATALEN - 1 bytes, printable ASCII."""
    name = "".join(ch if 32 <= ord(ch) <= 126 else "?" for ch in f"fix7:{purpose}")
    return name.encode()[:NAMEDATALEN - 1].decode("ascii")


def test_every_connection_the_server_saw_is_in_the_ledger_and_no_other(dump, home, connection_log, server,
                                                                          tmp_path):
    # a residue, so every stage runs, the restore proof's second restore included
    apply_sql, rollback_sql = tmp_path / "apply.sql", tmp_path / "rollback.sql"
    apply_sql.write_text("insert into public.system_issues (code, severity, details, opened_at)\n"
                         "  values ('FIX7_T', 'info', '{}'::jsonb, now());\n")
    rollback_sql.write_text("update public.system_issues set severity = severity where code = 'NONE';\n")
    ev = tmp_path / "ev"
    with left_on_server(server) as left:
        log = ServerLogTail()
        r = home.cli(*rehearse_args(dump, (apply_sql, rollback_sql), ev))
        seen = _authorized(log.read())
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    packet = load_packet(ev)
    assert packet["stages"]["restore_diff"]["status"] == "failed"
    assert packet["stages"]["restore_diff"]["anchor_restore_path"]["proven"] is True
    assert left == set()

    # the ledger also names Dagster's own storage connection (one entry for the instance, not per session)
    storage = [c for c in packet["connections"] if c["purpose"] == "dagster storage"]
    assert [c["role"] for c in storage] == [DAGSTER_STORAGE_ROLE]
    ledger = [c for c in packet["connections"] if c["purpose"] != "dagster storage"]
    assert ledger and {(c["host"], c["port"]) for c in ledger} == {(server.host, server.port)}
    rehearsal = [s for s in seen if s[0] != DAGSTER_STORAGE_ROLE]
    assert len(rehearsal) < len(seen), "the log shows no Dagster storage session: is it the run's server log?"
    expected = Counter((c["role"], c["database"], _app_name(c["purpose"])) for c in ledger)
    got = Counter(rehearsal)
    assert got - expected == Counter(), f"seen by the server, not in the ledger: {sorted((got - expected).elements())}"
    assert expected - got == Counter(), f"in the ledger, not seen by the server: {sorted((expected - got).elements())}"
    # and none went anywhere but this run's throwaways, or the maintenance database for the admin
    ours = set(packet["throwaways"]["created"])
    assert {(role, db) for role, db, _ in rehearsal if role == server.admin.role} <= {(server.admin.role,
                                                                                       server.admin_db)}
    assert {db for role, db, _ in rehearsal if role != server.admin.role} <= ours
    # the restoring role, and the traffic probe's own login (one a stage, core/change/probe_role.py)
    assert {role for role, _, _ in rehearsal} <= {server.admin.role} | {
        x for x in ours if "restorer" in x or x.startswith("fix7_probe_")}
    clients = Counter(c["client"] for c in ledger)
    assert {"psycopg", "pg_restore"} <= set(clients), clients  # GX opens no session: it gates counts and findings
