"""Failures of the rehearsal server or its login, told apart from what the clone or the change did.

A rehearsal judges the clone and the change. When the server itself stops it (out of locks, disk full, a
missing privilege of the admin login, a setting the server lacks, a lost connection), nothing was judged: the
run ends REHEARSAL_SERVER_FAULT (exit 4) with the server, the cause and the fix, never with advice to change
the dump. Errors are read by SQLSTATE where the server gives one (psycopg), else by the server's message text
(the client tools' stderr).
"""

from __future__ import annotations

import re

import psycopg

from ..shared.errors import Fix7Error, ServerFault

REHEARSAL_SERVER_FAULT = "REHEARSAL_SERVER_FAULT"
# Rules that name a fault of the server (ServerFault's own "server.*", and the older names kept for it).
_FAULT_RULES = {"server_unreachable", "embedded_server", "server_collation"}


def is_server_fault(rule: str | None) -> bool:
    return bool(rule) and (rule.startswith("server.") or rule in _FAULT_RULES)


def _locks(server: str, detail: str = "") -> ServerFault:
    return ServerFault(
        f"The rehearsal server ({server}) ran out of lock slots{detail}: a restore takes one lock per table, index "
        "and sequence it creates in one transaction, and the server's lock table holds max_locks_per_transaction x "
        "(max_connections + max_prepared_transactions) of them. Fix: raise max_locks_per_transaction on that "
        "server (ALTER SYSTEM SET max_locks_per_transaction = <about the number of tables, indexes and sequences "
        "in the dump divided by max_connections, at least 256>; it takes a restart), then rehearse again. Nothing "
        "is wrong with the clone.", rule="server.max_locks_per_transaction")


def _disk_full(server: str) -> ServerFault:
    return ServerFault(
        f"The rehearsal server ({server}) ran out of disk space: the clone, its anchor copy and the server's WAL "
        "need room of about three times the restored database. Fix: free space on that server (or point --server "
        "at one with more), then rehearse again; the throwaways were dropped. Nothing is wrong with the clone.",
        rule="server.disk_full")


def _unknown_setting(server: str, name: str) -> ServerFault:
    return ServerFault(
        f"The rehearsal server ({server}) does not know the setting {name!r} that the rehearsal sent: the server is "
        "older than the client tools expect. Fix: rehearse on PostgreSQL 15 or newer (the supported servers are "
        "15 to 18), or report this as a fix7 bug. Nothing is wrong with the clone.", rule="server.unknown_setting")


def _privilege(server: str, login: str, what: str) -> ServerFault:
    return ServerFault(
        f"The admin login {login} on the rehearsal server ({server}) lacks a privilege the rehearsal needs "
        f"({what}). It needs LOGIN, CREATEDB and CREATEROLE (a superuser is not needed): e.g. `CREATE ROLE "
        f"{login} LOGIN CREATEDB CREATEROLE PASSWORD '...'`, or on a managed service its default admin user. "
        "Nothing is wrong with the clone.", rule="server.privilege")


def _connection(server: str, what: str) -> ServerFault:
    return ServerFault(
        f"The rehearsal server ({server}) stopped serving the rehearsal ({what}). Fix: check the server is up and "
        "accepts connections (max_connections, a restart or a failover), then rehearse again. Nothing is wrong with "
        "the clone.", rule="server.connection")


_NEEDS_RESOURCES = {"53100": _disk_full}


def from_psycopg(e: psycopg.Error, server: str, login: str | None = None) -> ServerFault | None:
    """The server fault a psycopg error is, or None (the error belongs to the SQL that ran).

    `login` is the admin login when the session was the admin's: only there a missing privilege is the login's.
    """
    state = getattr(e, "sqlstate", None) or ""
    diag = getattr(e, "diag", None)
    primary = (diag.message_primary if diag else None) or (str(e).splitlines() or [""])[0]
    if state == "53100" or "No space left on device" in primary:
        return _disk_full(server)
    if state == "53200" and "shared memory" in primary:
        return _locks(server)
    if state.startswith("53"):
        return _connection(server, primary)
    if state.startswith("08") or state in ("57P01", "57P02", "57P03") or isinstance(e, psycopg.OperationalError) \
            and not state:
        return _connection(server, primary or type(e).__name__)
    if login and state == "42501":
        return _privilege(server, login, primary)
    if login and state == "42704" and primary.startswith("unrecognized configuration parameter"):
        return _unknown_setting(server, primary.split('"')[1] if '"' in primary else primary)
    return None


_TOOL_PATTERNS = [
    (re.compile(r"out of shared memory|max_locks_per_transaction", re.I), lambda s, m: _locks(s)),
    (re.compile(r"No space left on device|could not extend file", re.I), lambda s, m: _disk_full(s)),
    (re.compile(r'unrecognized configuration parameter "([^"]+)"'), lambda s, m: _unknown_setting(s, m.group(1))),
    (re.compile(r"terminating connection due to administrator command|the database system is (?:shutting down|"
                r"starting up|in recovery mode)|server closed the connection unexpectedly|connection to server .* "
                r"failed|too many (?:clients|connections)", re.I), lambda s, m: _connection(s, m.group(0))),
]


def from_tool_lines(lines: list[str], server: str) -> ServerFault | None:
    """The server fault a client tool's error lines show (pg_restore, psql), or None."""
    for ln in lines:
        for rx, make in _TOOL_PATTERNS:
            m = rx.search(ln)
            if m:
                return make(server, m)
    return None


def admin_error(e: psycopg.Error, server, what: str) -> Fix7Error:
    """An admin-session failure (create, drop, grant) as the fault it is: the server's or its login's."""
    fault = from_psycopg(e, server.describe(), server.admin.role)
    if fault is not None:
        return fault
    primary = getattr(getattr(e, "diag", None), "message_primary", None) or type(e).__name__
    return ServerFault(f"The rehearsal server ({server.describe()}) refused {what} for the admin login "
                       f"{server.admin.role}: {primary} (SQLSTATE {getattr(e, 'sqlstate', '') or '?'}). Nothing is "
                       "wrong with the clone.", rule="server.admin")
