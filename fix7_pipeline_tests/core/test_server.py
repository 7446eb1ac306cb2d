"""The host guard, throwaway databases and roles, and the sweep of crashed runs' leftovers."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading

import pytest
from psycopg import sql

from fix7_pipeline.core.shared.errors import Fix7Error, HostRefused
from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.postgres.server import RehearsalServer
from fix7_pipeline.core.postgres.throwaways import (assert_least_privilege, create_throwaway, drop_throwaway, leftovers,
                                                    role_attributes, sweep)


class Listener:
    """A loopback TCP listener that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def test_guard_opens_a_socket_to_an_allowed_host(listener):
    srv = RehearsalServer.from_url(f"postgresql://u@127.0.0.1:{listener.port}/postgres", HostPolicy())
    with pytest.raises(Fix7Error):
        srv.connect(purpose="probe")
    assert listener.accepted >= 1  # the control: this listener does see connections


def test_production_pattern_server_is_refused_before_any_socket(listener):
    with pytest.raises(HostRefused):
        RehearsalServer.from_url(f"postgresql://u@127.0.0.1:{listener.port}/postgres",
                                 HostPolicy(production_patterns=("127.0.0.*",)))
    assert listener.accepted == 0


def test_external_host_must_be_reserved_or_allowed():
    with pytest.raises(HostRefused):
        RehearsalServer.from_url("postgresql://u@db.corp.com:5432/postgres", HostPolicy())
    srv = RehearsalServer.from_url("postgresql://u@db.corp.com:5432/postgres",
                                   HostPolicy(allow_patterns=("db.corp.com",)))
    assert srv.kind == "external" and srv.host == "db.corp.com"
    with pytest.raises(HostRefused):  # production wins over allow
        RehearsalServer.from_url("postgresql://u@db.corp.com/postgres",
                                 HostPolicy(("*.corp.com",), ("db.corp.com",)))


def test_cli_server_at_production_host_exits_3_without_contact(listener, tmp_path):
    change = tmp_path / "c.sql"
    change.write_text("select 1;\n")
    dump = tmp_path / "clone.sql"
    dump.write_text("-- PostgreSQL database dump\n")
    r = subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", "rehearse", "--clone", str(dump), "--apply",
                        str(change), "--rollback", str(change), "--attested-by", "ops", "--evidence-dir",
                        str(tmp_path / "ev"), "--server", f"postgresql://u:pw-not-printed@127.0.0.1:{listener.port}/p",
                        "--production-host", "127.0.0.1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 3, r.stdout + r.stderr
    assert listener.accepted == 0
    assert "Traceback" not in r.stdout + r.stderr and "pw-not-printed" not in r.stdout + r.stderr
    report = (tmp_path / "ev" / "rehearsal-report.json").read_text()
    assert "production host pattern" in report and "pw-not-printed" not in report


def test_throwaway_role_is_least_privileged_and_owns_only_its_database(server):
    tw = create_throwaway(server)
    try:
        attrs = role_attributes(server, tw.login.role)
        assert_least_privilege(attrs)
        assert not any(attrs[k] for k in ("superuser", "createrole", "createdb", "replication", "bypassrls"))
        with server.connect(purpose="test") as c:
            owned = [r[0] for r in c.execute(
                "select datname from pg_database d join pg_roles r on r.oid = d.datdba where r.rolname = %s",
                (tw.login.role,))]
            assert owned == [tw.database]
            c.execute(sql.SQL("grant pg_write_server_files to {}").format(sql.Identifier(tw.login.role)))
        with pytest.raises(Fix7Error) as e:  # NOINHERIT does not hide a membership the role could SET ROLE into
            assert_least_privilege(role_attributes(server, tw.login.role))
        assert e.value.rule == "least_privilege.server_files" and "pg_write_server_files" in e.value.message
    finally:
        drop_throwaway(server, tw)
    assert f"database {tw.database}" not in leftovers(server)


def test_sweep_drops_leftovers_of_dead_runs_only(server):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = create_throwaway(server), create_throwaway(server)
    try:
        with server.connect(purpose="test") as c:
            mark = f"fix7-throwaway pid={dead.pid} host={socket.gethostname()} created=2026-01-01T00:00:00+00:00"
            c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(stale.database), sql.Literal(mark)))
            c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(stale.login.role), sql.Literal(mark)))
        dropped = sweep(server)
        assert f"database {stale.database}" in dropped and f"role {stale.login.role}" in dropped
        assert f"database {live.database}" not in dropped
        assert f"database {live.database}" in leftovers(server)
    finally:
        drop_throwaway(server, live)
        drop_throwaway(server, stale)


def test_dagster_storage_has_its_own_role_that_no_rehearsal_role_can_reach(server, throwaway):
    from fix7_pipeline.core.postgres.embedded import DAGSTER_STORAGE_ROLE, embedded_dagster_url

    embedded_dagster_url("dagster_t_role_probe")
    try:
        with server.connect(purpose="test") as c:
            row = c.execute("select rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = %s",
                            (DAGSTER_STORAGE_ROLE,)).fetchone()
            assert row == (False, False, False)
            owners = dict(c.execute("select datname, pg_get_userbyid(datdba) from pg_database").fetchall())
            assert owners["dagster_t_role_probe"] == DAGSTER_STORAGE_ROLE
            assert owners[throwaway.database] == throwaway.login.role != DAGSTER_STORAGE_ROLE
        with pytest.raises(Fix7Error):
            server.connect("dagster_t_role_probe", throwaway.login, purpose="reach storage")
    finally:
        with server.connect(purpose="test") as c:
            c.execute("drop database if exists dagster_t_role_probe with (force)")


def test_kept_throwaways_are_never_swept(server):
    from fix7_pipeline.core.postgres.throwaways import keep_throwaway

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tw = create_throwaway(server)
    try:
        with server.connect(purpose="test") as c:  # as a crashed run would have left it
            mark = f"fix7-throwaway pid={dead.pid} host={socket.gethostname()} created=2026-01-01T00:00:00+00:00"
            c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(tw.database), sql.Literal(mark)))
            c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(tw.login.role), sql.Literal(mark)))
        keep_throwaway(server, tw)
        dropped = sweep(server)
        assert f"database {tw.database}" not in dropped and f"role {tw.login.role}" not in dropped
        assert f"database {tw.database}" in leftovers(server)
    finally:
        drop_throwaway(server, tw)


def test_every_sqlalchemy_connection_of_a_source_is_recorded_and_only_through_its_creator(server, throwaway):
    """One source, as many ledger entries as connections its engines open, in the ledger of the server that
    granted it (bound to the engine by its creator, no registry); its URL alone does not connect at all."""
    import sqlalchemy as sa

    source = server.sqlalchemy_source(throwaway.database, throwaway.login, "sqlalchemy ledger test")
    other = RehearsalServer.embedded(HostPolicy())  # a second server object: its ledger stays empty
    other.sqlalchemy_source(throwaway.database, throwaway.login, "another grant")
    before = len(server.ledger.entries)
    engines = [sa.create_engine(source.url, **source.engine_kwargs()),
               sa.create_engine(source.url, poolclass=sa.pool.NullPool, **source.engine_kwargs())]
    try:
        with engines[0].connect() as a, engines[1].connect() as b:
            assert a.execute(sa.text("select current_user")).scalar() == throwaway.login.role
            assert b.execute(sa.text("select current_setting('application_name')")).scalar() == \
                "fix7:sqlalchemy ledger test"
            # the guard's pinned session holds for these connections too
            assert a.execute(sa.text("select current_setting('search_path')")).scalar() == "pg_catalog,pg_temp"
        with engines[1].connect():  # NullPool: a new connection, a new entry
            pass
        with engines[0].connect():  # pooled: the same connection again, no new entry
            pass
    finally:
        for e in engines:
            e.dispose()
    got = [(e.database, e.role, e.purpose, e.client) for e in server.ledger.entries[before:]]
    assert got == [(throwaway.database, throwaway.login.role, "sqlalchemy ledger test", "sqlalchemy")] * 3
    assert other.ledger.entries == []
    assert str(server.host) not in source.url and "fix7_grant=" in source.url
    with pytest.raises(sa.exc.OperationalError) as e:  # the URL without its creator reaches no server
        sa.create_engine(source.url).connect()
    assert "fix7-creator-only.invalid" in str(e.value) or 'invalid connection option "fix7_grant"' in str(e.value)
    assert len(server.ledger.entries) == before + 3


# -- throwaway credentials: derived, so any step process has them and none stores them ------------------

def _external(key: str | None = None, password: str | None = None, port: int = 1) -> RehearsalServer:
    url = f"postgresql://ops@127.0.0.1:{port}/postgres"
    return RehearsalServer.from_url(url, HostPolicy(), password=password, throwaway_key=key)


def test_throwaway_passwords_are_derived_per_role_from_the_process_secret(monkeypatch):
    monkeypatch.delenv("FIX7_THROWAWAY_KEY", raising=False)
    monkeypatch.delenv("FIX7_REHEARSAL_SERVER_PASSWORD", raising=False)
    key = "k-" + secrets.token_hex(16)
    a, b = _external(key).throwaway_login("fix7_restorer_aa"), _external(key).throwaway_login("fix7_restorer_aa")
    assert a == b and a.password and key not in a.password  # two server objects, one password
    assert _external(key).throwaway_login("fix7_restorer_bb").password != a.password  # keyed by role name
    assert _external("other-key").throwaway_login("fix7_restorer_aa").password != a.password
    # the admin password is the secret when no key is set; a key takes precedence over it
    assert _external(password="admin-pw").throwaway_login("r").password == _external("admin-pw").throwaway_login("r").password
    assert _external(key, password="admin-pw").throwaway_login("r").password == _external(key).throwaway_login("r").password
    # another process holding the same key (a step process under the multiprocess executor) derives the same
    code = ("import sys; from fix7_pipeline.core.postgres.hosts import HostPolicy; from fix7_pipeline.core.postgres.server import "
            "RehearsalServer; print(RehearsalServer.from_url('postgresql://ops@127.0.0.1:1/postgres', HostPolicy())"
            ".throwaway_login('fix7_restorer_aa').password)")
    env = {k: v for k, v in os.environ.items() if k != "FIX7_REHEARSAL_SERVER_PASSWORD"}
    env["FIX7_THROWAWAY_KEY"] = key
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.strip() == a.password
    # the embedded server's roles log in over its unix socket, with no password at all
    assert RehearsalServer.embedded(HostPolicy()).throwaway_login("fix7_restorer_aa").password is None


def test_no_secret_to_derive_from_fails_closed_before_anything_is_created(monkeypatch):
    monkeypatch.delenv("FIX7_THROWAWAY_KEY", raising=False)
    monkeypatch.delenv("FIX7_REHEARSAL_SERVER_PASSWORD", raising=False)
    bare = _external()
    with pytest.raises(Fix7Error) as e:
        bare.throwaway_login("fix7_restorer_aa")
    assert e.value.rule == "throwaway_key"
    assert "FIX7_REHEARSAL_SERVER_PASSWORD" in e.value.message and "FIX7_THROWAWAY_KEY" in e.value.message
    with pytest.raises(Fix7Error) as e:  # refused before dialling: port 1 would be server_unreachable
        create_throwaway(bare)
    assert e.value.rule == "throwaway_key" and bare.ledger.entries == []


def _scram_matches(verifier: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier (pg_authid.rolpassword) was made from `password`."""
    import base64
    import hashlib
    import hmac

    method, rest = verifier.split("$", 1)
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return method == "SCRAM-SHA-256" and hashlib.sha256(client_key).digest() == stored_key and \
        hmac.new(salted, b"Server Key", hashlib.sha256).digest() == server_key


def test_an_external_throwaway_role_is_created_with_its_derived_password():
    """On a real server (the factory, as an external one): the role's password is the derived one."""
    import psycopg

    from fix7_pipeline.demo import builder

    info = builder.factory_conninfo()
    key = "k-" + secrets.token_hex(16)
    url = f"postgresql://{info['user']}@/postgres?host={info['host']}&port={info['port']}"
    external = RehearsalServer.from_url(url, HostPolicy(), throwaway_key=key)
    tw = create_throwaway(external)
    try:
        with psycopg.connect(**info, autocommit=True) as c:
            (verifier,) = c.execute("select rolpassword from pg_authid where rolname = %s",
                                    (tw.login.role,)).fetchone()
        assert tw.login == external.throwaway_login(tw.login.role)
        assert _scram_matches(verifier, tw.login.password)
        assert not _scram_matches(verifier, RehearsalServer.from_url(url, HostPolicy(), throwaway_key="other")
                                  .throwaway_login(tw.login.role).password)
    finally:
        drop_throwaway(external, tw)
