"""The traffic probe's login: a role made for one stage of one run, that may read and write the hot tables and
nothing else, and the hot tables as the probe may touch them.

The role is created by the admin from the maintenance database, marked like every throwaway role (a run killed
midway leaves one the sweep drops), given CONNECT on the clone only; inside the clone the clone's owner grants
USAGE on the tables' schemas where it lacks it, SELECT on the primary-key columns and UPDATE on each hot table
(UPDATE is what LOCK TABLE … IN ROW EXCLUSIVE MODE asks for). Every grant is revoked after the stage, so the
catalog is as it was (an ACL item with no privileges left is removed from its array) and the restore diff sees
nothing; then the role is dropped.

Which tables take row-level traffic: an ordinary or partitioned table with a primary key whose columns all have
built-in base types (their comparison and text forms are PostgreSQL's own), and without row-level security (its
policies are the dump's expressions). Any other hot table gets lock-only traffic: LOCK TABLE in the modes a
read and a write take, which calls nothing of the dump's either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..postgres.server import PROOF, SCRATCH, RehearsalServer
from ..postgres.throwaways import Throwaway, throwaway_mark
from .units import qualified

_TABLE_SQL = (
    "select c.oid::pg_catalog.int8, c.relkind::pg_catalog.text, c.relrowsecurity "
    "from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid OPERATOR(pg_catalog.=) c.relnamespace "
    "where n.nspname OPERATOR(pg_catalog.=) %s and c.relname OPERATOR(pg_catalog.=) %s")
_KEY_SQL = (
    "select a.attname::pg_catalog.text, t.typname::pg_catalog.text, "
    "(tn.nspname OPERATOR(pg_catalog.=) 'pg_catalog' and t.typtype OPERATOR(pg_catalog.=) 'b') "
    "from pg_catalog.pg_index i "
    "join pg_catalog.pg_attribute a on a.attrelid OPERATOR(pg_catalog.=) i.indrelid "
    "and a.attnum OPERATOR(pg_catalog.=) any (i.indkey::pg_catalog.int2[]) "
    "join pg_catalog.pg_type t on t.oid OPERATOR(pg_catalog.=) a.atttypid "
    "join pg_catalog.pg_namespace tn on tn.oid OPERATOR(pg_catalog.=) t.typnamespace "
    "where i.indrelid OPERATOR(pg_catalog.=) %s and i.indisprimary "
    "order by pg_catalog.array_position(i.indkey::pg_catalog.int2[], a.attnum)")
_INDEXES_SQL = ("select i.indexrelid::pg_catalog.int8 from pg_catalog.pg_index i "
                "where i.indrelid OPERATOR(pg_catalog.=) %s")
_NAME_SQL = (
    "select n.nspname::pg_catalog.text, c.relname::pg_catalog.text from pg_catalog.pg_class c "
    "join pg_catalog.pg_namespace n on n.oid OPERATOR(pg_catalog.=) c.relnamespace "
    "where c.oid OPERATOR(pg_catalog.=) %s::pg_catalog.oid")
_USAGE_SQL = "select pg_catalog.has_schema_privilege(%s, %s, 'USAGE')"


@dataclass
class HotTable:
    name: str                       # schema.table as the contract names it
    schema: str = ""
    table: str = ""
    oid: int | None = None
    key: list[tuple[str, str]] = field(default_factory=list)   # (column, pg_catalog type) of the primary key
    indexes: list[int] = field(default_factory=list)
    mode: str = "row"               # "row": point reads and writes by primary key; "lock": LOCK TABLE only
    why: str = ""                   # why lock-only, or why not probed at all
    granted: bool = False

    @property
    def probed(self) -> bool:
        return self.oid is not None and self.granted

    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.table))


def role_name(tag: str, label: str) -> str:
    return f"fix7_probe_{tag}_{label}"


def find_tables(server: RehearsalServer, tw: Throwaway, names) -> list[HotTable]:
    """The contract's hot tables as the clone has them, read by the clone's owner in a read-only session."""
    out = []
    with server.connect(tw.database, tw.login, purpose="traffic probe: hot tables", session=PROOF) as c:
        for name in sorted({qualified(n) for n in names}):
            schema, _, table = name.partition(".")
            t = HotTable(name, schema, table)
            out.append(t)
            row = c.execute(_TABLE_SQL, (schema, table)).fetchone()
            if row is None or row[1] not in ("r", "p"):
                t.why = "not a table of the clone" if row is None else "not a table (a view or another kind)"
                continue
            t.oid = int(row[0])
            t.indexes = [int(r[0]) for r in c.execute(_INDEXES_SQL, (t.oid,))]
            key = c.execute(_KEY_SQL, (t.oid,)).fetchall()
            if row[2]:
                t.mode, t.why = "lock", "row-level security on: its policies are the dump's, so lock-only traffic"
            elif not key:
                t.mode, t.why = "lock", "no primary key: lock-only traffic"
            elif not all(builtin for _, _, builtin in key):
                t.mode, t.why = "lock", "a primary-key column of a type the dump defined: lock-only traffic"
            else:
                t.key = [(col, typ) for col, typ, _ in key]
    return out


def create(server: RehearsalServer, tw: Throwaway, role: str, tables: list[HotTable], sessions: int):
    """The role, its CONNECT on the clone, and its grants in the clone; returns its login and what was granted
    (for `remove`). A table the owner cannot grant on is left unprobed, with the server's reason."""
    login = server.throwaway_login(role)
    with server.connect(purpose="traffic probe: create role") as c:
        with c.transaction():  # never without its mark: a killed run's probe role is swept
            c.execute(sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole noreplication nobypassrls "
                              "noinherit connection limit {} password {}").format(
                sql.Identifier(role), sql.Literal(sessions + 4), sql.Literal(login.password)))
            c.execute(sql.SQL("comment on role {} is {}").format(sql.Identifier(role),
                                                                 sql.Literal(throwaway_mark())))
        c.execute(sql.SQL("grant connect on database {} to {}").format(sql.Identifier(tw.database),
                                                                       sql.Identifier(role)))
    granted: list[tuple[str, int]] = []   # ("schema", namespace name) is kept by name; tables by oid
    with server.connect(tw.database, tw.login, purpose="traffic probe: grants", session=SCRATCH) as c:
        for schema in sorted({t.schema for t in tables if t.oid is not None}):
            if not c.execute(_USAGE_SQL, (role, schema)).fetchone()[0]:
                try:
                    c.execute(sql.SQL("grant usage on schema {} to {}").format(sql.Identifier(schema),
                                                                               sql.Identifier(role)))
                    granted.append(("schema", schema))
                except psycopg.Error as e:
                    for t in tables:
                        if t.schema == schema and t.oid is not None:
                            t.why = f"USAGE on its schema could not be granted ({server_reason(e)}): not probed"
        for t in tables:
            if t.oid is None or t.why.endswith("not probed"):
                continue
            cols = (sql.SQL("select ({})").format(sql.SQL(", ").join(sql.Identifier(k) for k, _ in t.key))
                    if t.mode == "row" else sql.SQL("select"))
            try:
                c.execute(sql.SQL("grant {}, update on table {} to {}").format(cols, t.ident(), sql.Identifier(role)))
                granted.append(("table", t.oid))
                t.granted = True
            except psycopg.Error as e:
                t.why = f"the clone's owner could not grant on it ({server_reason(e)}): not probed"
    return login, granted


def remove(server: RehearsalServer, tw: Throwaway, role: str, granted: list) -> list[str]:
    """Revoke what `create` granted (tables by oid: the change may have renamed one) and drop the role. Returns
    what could not be undone, each with the server's reason (the sweep drops a role left behind)."""
    problems = []
    try:
        with server.connect(tw.database, tw.login, purpose="traffic probe: revoke", session=SCRATCH) as c:
            for kind, what in granted:
                try:
                    if kind == "schema":
                        c.execute(sql.SQL("revoke all on schema {} from {}").format(sql.Identifier(what),
                                                                                    sql.Identifier(role)))
                        continue
                    row = c.execute(_NAME_SQL, (what,)).fetchone()
                    if row is None:
                        continue  # dropped by the change: its privileges went with it
                    target = sql.SQL("{}.{}").format(sql.Identifier(row[0]), sql.Identifier(row[1]))
                    # column privileges go with the table's (REVOKE on a table revokes them on each column)
                    c.execute(sql.SQL("revoke all on table {} from {}").format(target, sql.Identifier(role)))
                except psycopg.Error as e:
                    problems.append(f"revoking the probe's {kind} privileges: {server_reason(e)}")
    except Exception as e:  # noqa: BLE001 - reported, and the role is still dropped if it can be
        problems.append(f"revoking the probe's privileges: {e}")
    try:
        with server.connect(purpose="traffic probe: drop role") as c:
            c.execute(sql.SQL("revoke connect on database {} from {}").format(sql.Identifier(tw.database),
                                                                              sql.Identifier(role)))
            c.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))
    except Exception as e:  # noqa: BLE001
        problems.append(f"dropping the probe role {role} (left for the sweep): {e}")
    return problems


def server_reason(e: psycopg.Error) -> str:
    return ((e.diag.message_primary if e.diag else None) or type(e).__name__) + (
        f", SQLSTATE {e.sqlstate}" if getattr(e, "sqlstate", None) else "")
