"""Reading a table as COPY text: the SELECT that prints a row, whole rows in chunks, and a large value
in overlapping windows (so this process never holds a value larger than a window)."""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql as psql

from . import textscan
from ..postgres.proof_sql import as_text
from .plan import TablePlan

CHUNK_BYTES = 2 << 20          # COPY text gathered per scanner call (each worker holds about 4 copies)
LARGE_VALUE_BYTES = 2 << 20    # a text value longer than this is not in its row's COPY: it is read in windows ...
VALUE_WINDOW = 1 << 20         # ... of this many bytes ...
VALUE_OVERLAP = 64 << 10       # ... each with this many more, so no secret is cut in two at a window's edge
_STORED_SMALL = 16 << 10       # stored (maybe compressed) at most this: its text is at most a few MB, read whole
_LENGTH_IS_CHEAP = {25, 1043}  # text, varchar: octet_length reads the stored header, the value is not printed


def qualified_table(p: TablePlan) -> psql.Composable:
    return psql.SQL("only {}.{}").format(psql.Identifier(p.schema), psql.Identifier(p.name))


def column_text(p: TablePlan, col: str) -> psql.Composable:
    ref = psql.SQL("t.") + psql.Identifier(col)
    render = p.render.get(col)
    if render and render[0] == "array":
        return psql.SQL("pg_catalog.array_to_string({}, E'\\n')").format(ref)
    if render and render[0] == "composite" and render[1]:
        parts = [as_text(psql.SQL("({}).{}").format(ref, psql.Identifier(a)), t) for a, t in render[1]]
        return psql.SQL("case when {r} is null then null else pg_catalog.concat_ws(E'\\n', {p}) end").format(
            r=ref, p=psql.SQL(", ").join(parts))
    return as_text(ref, p.types.get(col))


def key_sql(p: TablePlan) -> psql.Composable:
    if not p.pk:
        return psql.SQL("'ctid:' || t.ctid::pg_catalog.text")
    if len(p.pk) == 1:
        return psql.SQL("coalesce({}, '')").format(column_text(p, p.pk[0]))
    return psql.SQL("row({})::pg_catalog.text").format(
        psql.SQL(", ").join(psql.SQL("t.") + psql.Identifier(c) for c in p.pk))


def is_large(p: TablePlan, col: str) -> psql.Composable:
    """Whether a value's text is longer than LARGE_VALUE_BYTES. For other types than text and varchar, only a
    value stored larger than _STORED_SMALL is printed to be measured (every value is printed once already)."""
    length = psql.SQL("pg_catalog.octet_length({}) > {}").format(column_text(p, col), psql.Literal(LARGE_VALUE_BYTES))
    if p.types.get(col) in _LENGTH_IS_CHEAP and col not in p.render:
        return psql.SQL("coalesce({}, false)").format(length)
    return psql.SQL("case when coalesce(pg_catalog.pg_column_size(t.{}) > {}, false) then coalesce({}, false) "
                    "else false end").format(psql.Identifier(col), psql.Literal(_STORED_SMALL), length)


def table_select(p: TablePlan) -> tuple[psql.Composable, int]:
    """key, every read column, (with must-be-NULL columns) the indexes of the ones set, the indexes of the
    large values (read in windows instead, `large_value_windows`) and the row's ctid: one COPY.

    A large value is left out of its row (an empty field), so a COPY row, and each chunk, stays small
    whatever the clone holds: libpq hands over a whole row at once."""
    fields = [key_sql(p)] + [psql.SQL("case when {} then '' else coalesce({}, '') end").format(
        is_large(p, c), column_text(p, c)) for c in p.columns]
    if p.must_be_null:
        # num_nonnulls tests the value itself: `IS NOT NULL` on a composite asks whether every field is set
        flags = [psql.SQL("case when pg_catalog.num_nonnulls(t.{}) = 1 then {} end").format(
                 psql.Identifier(c), psql.Literal(str(i))) for i, c in enumerate(p.columns, start=1)
                 if c in p.must_be_null]
        fields.append(psql.SQL("concat_ws(',', {})").format(psql.SQL(", ").join(flags)))
    large = [psql.SQL("case when {} then {} end").format(is_large(p, c), psql.Literal(str(i)))
             for i, c in enumerate(p.columns, start=1)]
    fields.append(psql.SQL("concat_ws(',', {})").format(psql.SQL(", ").join(large)))
    fields.append(psql.SQL("t.ctid::pg_catalog.text"))
    q = psql.SQL("copy (select {} from {} t) to stdout").format(psql.SQL(", ").join(fields), qualified_table(p))
    return q, len(fields)


def large_value_windows(conn: psycopg.Connection, p: TablePlan, col: str, ctid: bytes, *, bytea: bool = False):
    """(window, length of its own part, last?) of one large value's bytes (its text in UTF-8, or a bytea's bytes),
    in windows of VALUE_WINDOW bytes, each overlapping the next by VALUE_OVERLAP: one COPY row per window, so
    this process never holds the value. The server prints the value once (offset 0), then only slices it."""
    value = (psql.SQL("t.{}").format(psql.Identifier(col)) if bytea else
             psql.SQL("pg_catalog.convert_to({}, 'UTF8')").format(column_text(p, col)))
    query = psql.SQL(
        "copy (select pg_catalog.length(x.b), g.o, "
        "pg_catalog.encode(pg_catalog.substr(x.b, g.o::pg_catalog.int4, {wo}), 'hex') "
        "from (select {value} as b from {t} t where t.ctid operator(pg_catalog.=) {tid}::pg_catalog.tid offset 0) x "
        "cross join lateral pg_catalog.generate_series(1::pg_catalog.int8, "
        "greatest(pg_catalog.length(x.b), 1)::pg_catalog.int8, {w}::pg_catalog.int8) g(o)) to stdout"
    ).format(wo=psql.Literal(VALUE_WINDOW + VALUE_OVERLAP), value=value, t=qualified_table(p),
             tid=psql.Literal(ctid.decode()),
             w=psql.Literal(VALUE_WINDOW))
    with conn.cursor().copy(query) as copy:
        for row in copy_rows(copy):
            total, start, data = row.split(b"\t")
            window = bytes.fromhex(data.decode())
            end = int(start) - 1 + VALUE_WINDOW
            yield window, min(len(window), VALUE_WINDOW), end >= int(total)


def copy_rows(copy):
    """A COPY's rows one at a time (without the LF)."""
    buf = bytearray()
    for data in copy:
        buf += data
        while True:
            cut = buf.find(b"\n")
            if cut < 0:
                break
            yield bytes(buf[:cut])
            del buf[:cut + 1]
    if buf:
        yield bytes(buf)


def scan_large_value(conn: psycopg.Connection, p: TablePlan, col: str, ctid: bytes, salt: str, *,
                      headers: bool = False, bytea: bool = False) -> tuple[list[textscan.Hit], str]:
    """A large value's hits, each once (a hit starting in a window's overlap is the next window's), and the
    salted fingerprint of the whole value (what a must-be-NULL finding carries)."""
    digest = hashlib.sha256(salt.encode("utf-8"))
    hits: list[textscan.Hit] = []
    at = 0  # bytes of the value before this window
    for window, own, last in large_value_windows(conn, p, col, ctid, bytea=bytea):
        digest.update(window[:own])
        for h in textscan.scan_value(window, salt, headers=headers):
            if h.start < own or last:
                hits.append(textscan.Hit(h.rule, at + h.start, at + h.end, h.fingerprint, h.rules))
        at += own
    return hits, digest.hexdigest()[:16]


def copy_chunks(conn: psycopg.Connection, query: psql.Composable):
    """Whole COPY text rows, about CHUNK_BYTES (read when the scan runs) at a time."""
    limit = CHUNK_BYTES
    buf = bytearray()
    with conn.cursor().copy(query) as copy:
        for data in copy:
            buf += data
            if len(buf) >= limit:
                cut = buf.rfind(b"\n") + 1
                if cut:
                    yield bytes(buf[:cut])
                    del buf[:cut]
    if buf:
        yield bytes(buf)
