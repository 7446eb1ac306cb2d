"""The clone's encoding, and whether its text holds bytes that are not UTF-8.

Every throwaway database is UTF8. A dump in any other encoding is converted by PostgreSQL as it is restored,
and a UTF8 dump is checked, so neither can bring in an invalid byte; a dump in SQL_ASCII is neither converted
nor checked ("no encoding" to PostgreSQL), so whatever bytes production held land in the clone as they were,
and a change that reads, compares or converts such text can behave differently on production. So for a
SQL_ASCII dump every text column is read once, in the pinned read-only session: `convert(..., 'UTF8', 'UTF8')`
checks its bytes and stops at the first invalid one (the bytes themselves are never printed).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

UNCHECKED = "SQL_ASCII"
# text, varchar, bpchar, json: the types whose input PostgreSQL does not check under SQL_ASCII; jsonb, xml and
# the rest parse their input. A domain counts by its base type.
TEXT_TYPES = ("pg_catalog.text", "pg_catalog.varchar", "pg_catalog.bpchar", "pg_catalog.json")


def _text_columns(conn: psycopg.Connection) -> dict[tuple[str, str], list[str]]:
    rows = conn.execute(f"""
        select n.nspname, c.relname, a.attname
        from pg_catalog.pg_attribute a
        join pg_catalog.pg_class c on c.oid = a.attrelid
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        join pg_catalog.pg_type t on t.oid = a.atttypid
        where c.relkind in ('r', 'm') and c.oid >= 16384 and a.attnum > 0 and not a.attisdropped
          and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_toast'
          and (case when t.typtype = 'd' then t.typbasetype else t.oid end)
              in ({", ".join(f"'{x}'::pg_catalog.regtype" for x in TEXT_TYPES)})
        order by 1, 2, a.attnum""").fetchall()
    out: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in rows:
        out.setdefault((schema, table), []).append(column)
    return out


def _checked(column: str) -> sql.Composable:
    return sql.SQL("pg_catalog.convert(pg_catalog.textsend({}::pg_catalog.text), 'UTF8', 'UTF8') is null").format(
        sql.Identifier(column))


def _holds_invalid(conn: psycopg.Connection, schema: str, table: str, columns: list[str]) -> bool:
    query = sql.SQL("select 1 from {} where {} limit 1").format(
        sql.Identifier(schema, table), sql.SQL(" or ").join(_checked(c) for c in columns))
    try:
        conn.execute(query).fetchall()
    except psycopg.errors.CharacterNotInRepertoire:
        return True
    return False


def invalid_utf8_columns(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(schema, table, column) of each text column holding a value that is not UTF-8; a table at a time, then
    its columns one by one only where the table holds one. `conn` is a pinned, autocommit proof session."""
    out = []
    for (schema, table), columns in _text_columns(conn).items():
        if _holds_invalid(conn, schema, table, columns):
            out += [(schema, table, c) for c in columns if _holds_invalid(conn, schema, table, [c])]
    return out


def encoding_report(client_encoding: str | None, conn: psycopg.Connection) -> dict:
    """What the packet states about the clone's encoding (`clone.encoding`); columns named as in the database."""
    database = conn.execute("select pg_catalog.current_setting('server_encoding')").fetchone()[0]
    dumped = (client_encoding or "").upper() or None
    if dumped == UNCHECKED:
        columns = invalid_utf8_columns(conn)
        return {"dump": dumped, "clone_database": database, "invalid_utf8": bool(columns),
                "invalid_utf8_columns": [f"{s}.{t}.{c}" for s, t, c in columns],
                "how": "every text, varchar, char and json column read once and its bytes checked as UTF-8"}
    return {"dump": dumped, "clone_database": database, "invalid_utf8": False if dumped else None,
            "how": ("PostgreSQL converted or checked every value as it restored the dump" if dumped else
                    "the dump names no encoding; not checked")}
