"""The snapshot anchor's logical fingerprint, computed inside PostgreSQL.

Four parts: every schema object (`catalog.py`: keyed by name, hashed definition), every user table's
and populated materialized view's row count and order-independent content hash (a sum of 64-bit row
hashes, so no sort), every sequence's position, and every large object's size and content hash. The fingerprint is small JSON; its sha256 is the anchor id. Rows never
leave the server.
"""

from __future__ import annotations

import hashlib
import json
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from psycopg import pq, sql

from .catalog import SCHEMA_OBJECTS_SQL, USER_SCHEMAS

TABLES_SQL = f"""
with ns as ({USER_SCHEMAS})
select n.nspname, c.relname,
  (select array_agg(a.attname::text order by a.attname)
   from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
  (select array_agg(a.attname::text order by k.ord)
   from pg_constraint co cross join lateral unnest(co.conkey) with ordinality k(attnum, ord)
   join pg_attribute a on a.attrelid = co.conrelid and a.attnum = k.attnum
   where co.conrelid = c.oid and co.contype = 'p') as key,
  pg_catalog.pg_relation_size(c.oid) as size
from pg_class c join ns n on n.oid = c.relnamespace
where (c.relkind = 'r' or (c.relkind = 'm' and c.relispopulated))
  and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                  and d.deptype = 'e')
order by size desc, 1, 2
"""

SEQUENCES_SQL = f"""
with ns as ({USER_SCHEMAS})
select n.nspname, c.relname, s.seqincrement
from pg_class c join ns n on n.oid = c.relnamespace join pg_sequence s on s.seqrelid = c.oid
order by 1, 2
"""


def qualified(schema: str, name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def row_text(alias: str, columns: list[str]) -> sql.Composable:
    """A row's text over the named columns in name order: stable under column order and dropped columns."""
    cols = sorted(columns)
    if not cols:
        return sql.SQL("''")
    return sql.SQL("row({})::pg_catalog.text").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in cols))


def row_hash(text_expr: sql.Composable) -> sql.Composable:
    """A row's 64-bit hash: the first 64 bits of md5 of its text, as a signed bigint."""
    return sql.SQL("('x' || pg_catalog.substr(pg_catalog.md5({}), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8").format(
        text_expr)


TEXT_SETTINGS = {"search_path": "pg_catalog, pg_temp", "timezone": "UTC", "datestyle": "ISO, YMD", "intervalstyle": "postgres",
                 "extra_float_digits": "1", "bytea_output": "hex"}


@contextmanager
def snapshot(conn: psycopg.Connection, read_only: bool = True, *, imported: str | None = None):
    """One repeatable-read snapshot (when the connection is idle) with fixed text settings, so row text
    and hashes do not depend on the session; `imported` is another session's exported snapshot."""
    def settle():
        for name, value in TEXT_SETTINGS.items():
            conn.execute("select set_config(%s, %s, true)", (name, value))

    if conn.info.transaction_status == pq.TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute("set transaction isolation level repeatable read, "
                         + ("read only" if read_only else "read write"))
            if imported:
                conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(imported)))
            settle()
            yield
    else:
        settle()
        yield


def schema_objects(conn: psycopg.Connection) -> dict[str, dict[str, str]]:
    """{object key: {attribute: short hash}} of every schema object."""
    out: dict[str, dict[str, str]] = {}
    for key, attrs in conn.execute(SCHEMA_OBJECTS_SQL).fetchall():
        parsed = dict(a.split(":", 1) for a in attrs)
        out[key] = {k: v[:12] for k, v in sorted(parsed.items())}
    return dict(sorted(out.items()))


def table_content(conn: psycopg.Connection, schema: str, name: str, columns: list[str]) -> tuple[int, str]:
    """(row count, content hash) of one table over the given columns, computed in the server."""
    q = sql.SQL("select pg_catalog.count(*), pg_catalog.md5(pg_catalog.count(*) || ':' || "
                "coalesce(pg_catalog.sum({h}), 0)) from only {t} t").format(
        h=row_hash(row_text("t", columns)), t=qualified(schema, name))
    count, digest = conn.execute(q).fetchone()
    return int(count), digest


def table_fingerprints(conn: psycopg.Connection, helpers: Sequence[psycopg.Connection] = ()) -> dict[str, dict]:
    """Every table's (rows, hash), largest first, shared among `conn` and `helpers` (one core each), all
    reading `conn`'s snapshot (exported to the helpers), so the result is one consistent state."""
    tables = conn.execute(TABLES_SQL).fetchall()
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for t in tables:
        todo.put(t)
    out: dict[str, dict] = {}

    def work(c: psycopg.Connection) -> None:
        while True:
            try:
                schema, name, columns, key, _size = todo.get_nowait()
            except queue.Empty:
                return
            columns = list(columns or [])
            rows, digest = table_content(c, schema, name, columns)
            out[f"{schema}.{name}"] = {"schema": schema, "name": name, "rows": rows, "hash": digest,
                                       "key": list(key) if key else None, "columns": columns}

    if helpers:
        exported = conn.execute("select pg_catalog.pg_export_snapshot()").fetchone()[0]

        def helper(c: psycopg.Connection) -> None:
            with snapshot(c, imported=exported):
                work(c)

        with ThreadPoolExecutor(max_workers=len(helpers), thread_name_prefix="fix7-fingerprint") as pool:
            jobs = [pool.submit(helper, c) for c in helpers]
            work(conn)
            for j in jobs:
                j.result()
    else:
        work(conn)
    return dict(sorted(out.items()))


def sequence_positions(conn: psycopg.Connection) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for schema, name, increment in conn.execute(SEQUENCES_SQL).fetchall():
        last_value, is_called = conn.execute(
            sql.SQL("select last_value, is_called from {}").format(qualified(schema, name))).fetchone()
        out[f"{schema}.{name}"] = {"last_value": int(last_value), "is_called": bool(is_called),
                                   "increment": int(increment)}
    return out


LARGE_OBJECTS_SQL = """
select m.oid::pg_catalog.int8, pg_catalog.length(pg_catalog.lo_get(m.oid)),
       pg_catalog.md5(pg_catalog.lo_get(m.oid))
from pg_catalog.pg_largeobject_metadata m order by 1"""


def large_objects(conn: psycopg.Connection) -> dict[str, dict]:
    """Each large object's size and content hash (its owner, privileges and comment are schema objects)."""
    return {str(oid): {"bytes": int(n), "hash": h} for oid, n, h in conn.execute(LARGE_OBJECTS_SQL).fetchall()}


def fingerprint(conn: psycopg.Connection, helpers: Sequence[psycopg.Connection] = ()) -> dict:
    """Schema objects, table and materialized-view contents, sequence positions and large objects, from one
    snapshot (tables shared with `helpers`, idle sessions on the same database)."""
    with snapshot(conn):
        return {"schema": schema_objects(conn), "tables": table_fingerprints(conn, helpers),
                "sequences": sequence_positions(conn), "large_objects": large_objects(conn)}


def anchor_id(fp: dict) -> str:
    canonical = json.dumps(fp, sort_keys=True, separators=(",", ":"), default=str)
    return "anc-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
