"""Throwaway databases and roles: named, created least-privileged, checked, dropped or kept, and swept when a
crashed run left them behind."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import socket
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..shared.errors import Fix7Error
from .ledger import now_utc
from .server import Login, RehearsalServer
from .server_faults import admin_error

THROWAWAY_PREFIX = "fix7_"
THROWAWAY_MARK = "fix7-throwaway"
FORBIDDEN_MEMBERSHIPS = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
STALE_FOREIGN_HOST_HOURS = 12

_NAME_OK = re.compile(r"^[a-z0-9_]+$")


@dataclass
class Throwaway:
    """A throwaway clone database and the role that owns only it."""

    database: str
    login: Login
    tag: str
    extra_databases: list[str] = field(default_factory=list)


def throwaway_mark() -> str:
    return f"{THROWAWAY_MARK} pid={os.getpid()} host={socket.gethostname()} created={now_utc()}"


def throwaway_names(tag: str) -> tuple[str, str]:
    """(role, database) of the throwaway with this tag: known, and recorded, before either exists."""
    if not _NAME_OK.match(tag):
        raise ValueError("tag must be [a-z0-9_]")
    return f"fix7_restorer_{tag}", f"fix7_clone_{tag}"


def create_throwaway(server: RehearsalServer, tag: str | None = None) -> Throwaway:
    """A fresh database owned by a fresh least-privileged login role."""
    tag = tag or secrets.token_hex(5)
    role, database = throwaway_names(tag)
    login = server.throwaway_login(role)  # before anything exists: no key, nothing is created
    password = login.password
    with server.connect(purpose="create throwaway") as c:
        try:
            with c.transaction():  # the role never exists without its mark, so a killed run's role is swept
                _create_role(c, role, password)
                c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(role),
                                                                     sql.Literal(throwaway_mark())))
            _quiet_server_log(c, role)
            c.execute(sql.SQL("create database {} owner {} template template0 encoding 'UTF8'").format(
                sql.Identifier(database), sql.Identifier(role)))
            c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(database),
                                                                     sql.Literal(throwaway_mark())))
            c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(database)))
        except psycopg.Error as e:
            raise admin_error(e, server, f"creating the throwaway role {role} and database {database}") from None
    return Throwaway(database=database, login=login, tag=tag)


def _create_role(c: psycopg.Connection, role: str, password: str | None) -> None:
    """The restoring role: no attribute, a member of nothing; the admin may act as it (own, drop its databases).

    An admin that is not a superuser (a managed-cloud login: LOGIN CREATEDB CREATEROLE) must be able to SET ROLE to
    a role to make it a database's owner and must hold its privileges to drop that database: on PostgreSQL 16+ that
    membership is granted as the role is created (createrole_self_grant), on 15 by a GRANT afterwards. Either way the
    admin belongs to the restoring role, never the other way round (restore.py refuses any membership of the
    restoring role). On 15 a NOINHERIT owner cannot use its implicit pg_database_owner membership to create in the
    `public` schema, so the role inherits there: it belongs to no role whose privileges it could inherit.
    """
    version = c.info.server_version
    superuser = c.execute("select rolsuper from pg_catalog.pg_roles where rolname = current_user").fetchone()[0]
    if version >= 160000 and not superuser:
        c.execute("set local createrole_self_grant = 'set, inherit'")
    inherit = "noinherit" if version >= 160000 else "inherit"
    c.execute(sql.SQL(
        "create role {} login nosuperuser nocreatedb nocreaterole noreplication nobypassrls " + inherit +
        " connection limit 16 password {}").format(sql.Identifier(role), sql.Literal(password)))
    if version < 160000 and not superuser:
        c.execute(sql.SQL("grant {} to current_user").format(sql.Identifier(role)))


def create_database(server: RehearsalServer, name: str, login: Login, *, template: str | None = None,
                    read_only: bool = False, owned: bool = False, strategy: str | None = None) -> None:
    """A throwaway database of the admin's that only `login` may connect to.

    With `template` it is a physical copy (the anchor, a probe), the admin's unless `owned`; without, an
    empty scratch database from template0, owned by `login` so that it may create temporary tables there.
    """
    with server.connect(purpose=f"create {name}") as c:
        if template:
            c.execute(sql.SQL("select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity "
                              "where datname = {}").format(sql.Literal(template)))
            c.execute(sql.SQL("create database {} template {}{}{}").format(
                sql.Identifier(name), sql.Identifier(template),
                sql.SQL(" owner {}").format(sql.Identifier(login.role)) if owned else sql.SQL(""),
                sql.SQL(" strategy {}").format(sql.SQL({"wal_log": "wal_log", "file_copy": "file_copy"}[strategy]))
                if strategy else sql.SQL("")))
        else:
            c.execute(sql.SQL("create database {} owner {} template template0 encoding 'UTF8'").format(
                sql.Identifier(name), sql.Identifier(login.role)))
        c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(name), sql.Literal(throwaway_mark())))
        if read_only:
            c.execute(sql.SQL("alter database {} set default_transaction_read_only = on").format(
                sql.Identifier(name)))
        c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(name)))
        c.execute(sql.SQL("grant connect on database {} to {}").format(sql.Identifier(name),
                                                                       sql.Identifier(login.role)))


def _quiet_server_log(c: psycopg.Connection, role: str) -> None:
    """The restoring role's errors never reach the server log: PostgreSQL would quote the failing row there."""
    try:
        c.execute(sql.SQL("alter role {} set log_min_messages = 'fatal'").format(sql.Identifier(role)))
        c.execute(sql.SQL("alter role {} set log_min_error_statement = 'panic'").format(sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege:
        pass  # an external server whose admin is not superuser: its log is the operator's to keep


# Settings fix7 itself places on its throwaways; anything else in pg_db_role_setting came from the dump.
OWN_SETTINGS = {"log_min_messages=fatal", "log_min_error_statement=panic", "default_transaction_read_only=on"}


def database_settings(server: RehearsalServer, databases: list[str], role: str) -> list[dict]:
    """`ALTER DATABASE/ROLE … SET` entries for this run's databases or role that fix7 did not place, with values.

    Read from the shared catalog on the maintenance database, so nothing in the clone runs. The values are
    for the secret scan, in this process only: they are never printed nor stored.
    """
    with server.connect(purpose="database and role settings") as c:
        rows = c.execute("""
            select coalesce(d.datname, ''), coalesce(r.rolname, ''), s.setting
            from pg_catalog.pg_db_role_setting x
            left join pg_catalog.pg_database d on d.oid = x.setdatabase
            left join pg_catalog.pg_roles r on r.oid = x.setrole
            cross join lateral pg_catalog.unnest(x.setconfig) s(setting)
            where d.datname = any(%s) or r.rolname = %s
            order by 1, 2, 3""", (list(databases), role)).fetchall()
    out = []
    for db, rl, setting in rows:
        if setting in OWN_SETTINGS:
            continue
        name, _, value = setting.partition("=")
        out.append({"database": db, "role": rl, "name": name, "value": value})
    return out


def planted_settings(server: RehearsalServer, databases: list[str], role: str) -> list[dict]:
    """`ALTER DATABASE/ROLE … SET` entries for this run's databases or role that fix7 did not place.

    Read from the shared catalog on the maintenance database, so nothing in the clone runs. Only the
    setting's name leaves this function: a value can carry a host or a secret.
    """
    return [{"database": s["database"], "role": s["role"], "name": s["name"]}
            for s in database_settings(server, databases, role)]


def database_properties(server: RehearsalServer, database: str) -> dict[str, str]:
    """What the database itself carries that its owner (the dump's role) can change: comment, connection
    limit, privileges, template and connection flags. Hashed: a comment can hold anything."""
    with server.connect(purpose="database properties") as c:
        row = c.execute("""
            select pg_catalog.shobj_description(d.oid, 'pg_database'), d.datconnlimit::text, d.datallowconn::text,
                   d.datistemplate::text, d.datacl::text
            from pg_catalog.pg_database d where d.datname = %s""", (database,)).fetchone()
    names = ("comment", "connection limit", "allow connections", "is template", "privileges")
    return {n: hashlib.sha256(str(v).encode()).hexdigest()[:16] for n, v in zip(names, row or [None] * 5)}


def role_attributes(server: RehearsalServer, role: str) -> dict:
    """The restoring role's attributes and memberships, for the evidence and the privilege proof."""
    with server.connect(purpose="role attributes") as c:
        row = c.execute(
            "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit "
            "from pg_roles where rolname=%s", (role,)).fetchone()
        members = [r[0] for r in c.execute(
            "select g.rolname from pg_auth_members m join pg_roles g on g.oid=m.roleid "
            "join pg_roles u on u.oid=m.member where u.rolname=%s order by 1", (role,))]
        effective = [r[0] for r in c.execute(
            "select rolname from pg_roles where rolname = any(%s) and pg_has_role(%s, oid, 'MEMBER')",
            (list(FORBIDDEN_MEMBERSHIPS), role))]
    keys = ["superuser", "createrole", "createdb", "replication", "bypassrls", "inherit"]
    attrs = dict(zip(keys, row)) if row else {}
    return {"role": role, **attrs, "member_of": members, "server_file_privileges": effective}


FORBIDDEN_ATTRIBUTES = ("superuser", "createrole", "createdb", "replication", "bypassrls")
# Which guard refused a restoring role: its attributes or server-file roles here, any membership in restore.py.
RULE_ATTRIBUTES = "least_privilege.attributes"
RULE_SERVER_FILES = "least_privilege.server_files"
RULE_MEMBERSHIP = "least_privilege.membership"


def assert_least_privilege(attrs: dict) -> None:
    """Refuse a restoring role with a forbidden attribute, or one that reaches a server-file role."""
    bad = [k for k in FORBIDDEN_ATTRIBUTES if attrs.get(k)]
    if bad:
        raise Fix7Error(f"The restoring role {attrs.get('role')} is not least-privileged: it has the attribute(s) "
                        f"{', '.join(b.upper() for b in bad)}; refusing to restore.", rule=RULE_ATTRIBUTES)
    if attrs.get("server_file_privileges"):
        raise Fix7Error(f"The restoring role {attrs.get('role')} is not least-privileged: it has the server-file "
                        f"privileges of {', '.join(attrs['server_file_privileges'])}; refusing to restore.",
                        rule=RULE_SERVER_FILES)


def drop_throwaway(server: RehearsalServer, tw: Throwaway, *, keep_role: bool = False) -> list[str]:
    """Drop the throwaway's databases (ending their sessions) and role; returns the names that existed.
    `keep_role`: the role owns the objects of the clone template the run kept (core/run/clone_templates.py)."""
    dropped = []
    with server.connect(purpose="drop throwaway") as c:
        for db in [*tw.extra_databases, tw.database]:
            if c.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                dropped.append(db)
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))
        if keep_role:
            return dropped
        if c.execute("select 1 from pg_roles where rolname = %s", (tw.login.role,)).fetchone():
            dropped.append(tw.login.role)
        c.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(tw.login.role)))
    return dropped


def keep_throwaway(server: RehearsalServer, tw: Throwaway) -> list[str]:
    """Kept for inspection (--keep-databases): re-marked so no sweep drops them; the operator does.
    Returns the databases that existed (a named one may never have been needed, or an interrupted run made)."""
    note = f"fix7-kept for inspection since {now_utc()}; drop by hand"
    kept = []
    with server.connect(purpose="keep throwaway") as c:
        for db in [*tw.extra_databases, tw.database]:
            if c.execute("select 1 from pg_database where datname = %s", (db,)).fetchone():
                c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(db), sql.Literal(note)))
                kept.append(db)
        if c.execute("select 1 from pg_roles where rolname = %s", (tw.login.role,)).fetchone():
            c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(tw.login.role), sql.Literal(note)))
    return kept


def _mark_is_stale(comment: str | None) -> bool:
    if not comment or not comment.startswith(THROWAWAY_MARK):
        return False
    fields = dict(p.split("=", 1) for p in comment.split()[1:] if "=" in p)
    try:
        pid = int(fields.get("pid", "0"))
        created = dt.datetime.fromisoformat(fields.get("created", ""))
    except ValueError:
        return True
    if fields.get("host") == socket.gethostname():
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return dt.datetime.now(dt.timezone.utc) - created > dt.timedelta(hours=STALE_FOREIGN_HOST_HOURS)


def sweep(server: RehearsalServer) -> list[str]:
    """Drop throwaway databases and roles left by runs whose process is gone; returns what was dropped."""
    return sweep_leftovers(server)[0]


def sweep_leftovers(server: RehearsalServer) -> tuple[list[str], list[dict]]:
    """(what was dropped, what could not be): each leftover the server refuses to drop is named with the server's
    reason and the exact statement that drops it, and the sweep goes on; a leftover never stops a rehearsal."""
    dropped: list[str] = []
    left: list[dict] = []
    with server.connect(purpose="sweep leftovers") as c:
        # Two runs starting at once would race to drop the same leftovers (DROP ROLE IF EXISTS can still
        # fail with "tuple concurrently deleted"): sweeps take turns, the later one finds nothing left.
        c.execute("select pg_catalog.pg_advisory_lock(pg_catalog.hashtext('fix7 sweep leftovers'))")
        # A database killed between CREATE DATABASE and its COMMENT has no mark: its owner's mark decides.
        dbs = c.execute(
            "select d.datname, shobj_description(d.oid, 'pg_database'), shobj_description(r.oid, 'pg_authid') "
            "from pg_database d join pg_roles r on r.oid = d.datdba "
            "where d.datname like 'fix7\\_%%'").fetchall()
        for name, comment, owner_comment in dbs:
            if _mark_is_stale(comment) or (comment is None and _mark_is_stale(owner_comment)):
                statement = sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                if _try_drop(c, statement, f"database {name}", left):
                    dropped.append(f"database {name}")
        roles = c.execute(
            "select rolname, shobj_description(oid, 'pg_authid') from pg_roles "
            "where rolname like 'fix7\\_%%'").fetchall()
        for name, comment in roles:
            if _mark_is_stale(comment):
                owned = c.execute("select count(*) from pg_database d join pg_roles r on r.oid=d.datdba "
                                  "where r.rolname=%s", (name,)).fetchone()[0]
                if not owned:
                    statement = sql.SQL("drop role if exists {}").format(sql.Identifier(name))
                    if _try_drop(c, statement, f"role {name}", left):
                        dropped.append(f"role {name}")
    return dropped, left


def _try_drop(c: psycopg.Connection, statement: sql.Composed, what: str, left: list[dict]) -> bool:
    try:
        c.execute(statement)
        return True
    except psycopg.Error as e:
        reason = (e.diag.message_primary if e.diag else None) or type(e).__name__
        kind, name = what.split(" ", 1)
        text = f"DROP {kind.upper()} {sql.Identifier(name).as_string(c)}"
        text += " WITH (FORCE)" if kind == "database" else ""
        first = ""
        if kind == "database" and "subscription" in reason:
            sub = c.execute("select s.subname from pg_catalog.pg_subscription s join pg_catalog.pg_database d "
                            "on d.oid = s.subdbid where d.datname = %s order by 1", (name,)).fetchall()
            first = " ".join(f"ALTER SUBSCRIPTION {sql.Identifier(n).as_string(c)} DISABLE; ALTER SUBSCRIPTION "
                             f"{sql.Identifier(n).as_string(c)} SET (slot_name = NONE); DROP SUBSCRIPTION "
                             f"{sql.Identifier(n).as_string(c)};" for (n,) in sub)
            first = f"connected to that database as a superuser: {first} then " if first else ""
        elif e.sqlstate == "42501":
            first = "as a superuser or its owner: "
        left.append({"object": what, "reason": f"{reason} (SQLSTATE {e.sqlstate or '?'})",
                     "drop_with": f"{first}{text};"})
        return False


def leftovers(server: RehearsalServer) -> list[str]:
    """Throwaway databases and roles that still exist (any run's)."""
    with server.connect(purpose="list leftovers") as c:
        dbs = [f"database {r[0]}" for r in c.execute(
            "select datname from pg_database where datname like 'fix7\\_%%' order by 1")]
        roles = [f"role {r[0]}" for r in c.execute(
            "select rolname from pg_roles where rolname like 'fix7\\_%%' order by 1")]
    return dbs + roles
