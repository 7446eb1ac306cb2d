"""Secret detection over every place a restored dump can hold text: what a sanitized clone must not carry.

`scan_secrets` is the entry point. It reads, as the clone's own least-privileged restoring role in a
read-only proof session, and only as COPY streams (`copy (select ...) to stdout`):

- every text-like value of every table and populated materialized view: text, varchar, char, json and
  jsonb, xml, arrays, domains, composites, ranges and extension types such as hstore, each printed by its
  type's output function (`proof_sql.as_text`), and bytea as its bytes;
- every large object, in overlapping windows;
- the catalog: names of schemas, relations (tables, views, sequences, indexes, ...), columns,
  constraints, types and enum labels, functions, triggers, policies, rules, roles of the database,
  publications, subscriptions, foreign-data wrappers and servers; comments on every object; function and
  procedure bodies (SQL-standard BEGIN ATOMIC ones too), arguments and SET options; view and materialized-view
  definitions; column defaults and generated expressions; constraint, index, trigger, policy, rule and
  extended-statistics definitions; foreign-server,
  foreign-table, user-mapping and relation options; security labels;
- database and role settings, read from the shared catalog by the admin on the maintenance database
  (`server.database_settings`) and handed in as `settings`.

The streams are scanned in this process by Kingfisher's catalog plus fix7's own rules (`core.rules`), many
values per scanner call (`core.textscan`), tables spread over worker connections (threads: the scanner
releases the GIL). What the role cannot read (a subscription's conninfo, another role's user-mapping
options, a large object or a table it may not select) is a finding of its own: fail closed.

A finding names the rule, the place (table, column and row key; or the catalog object's kind, identity
and field) and a salted fingerprint of the match (per-run salt). It never carries a value. A name that
matched (a table named by a token) is recorded in the returned registry (`core.redact.RedactedNames`) and
printed as its label everywhere, in this scan's findings included.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import psycopg
from psycopg import sql as psql

from . import textscan
from .contract.model import Contract
from .shared.model import Finding
from .postgres.proof_sql import FIRST_NORMAL_OID, as_text
from .redact import RedactedNames
from .rules import MUST_BE_EMPTY, MUST_BE_NULL, UNREADABLE, engine

CHUNK_BYTES = 2 << 20          # COPY text gathered per scanner call (each worker holds about 4 copies)
LARGE_VALUE_BYTES = 2 << 20    # a text value longer than this is not in its row's COPY: it is read in windows ...
VALUE_WINDOW = 1 << 20         # ... of this many bytes ...
VALUE_OVERLAP = 64 << 10       # ... each with this many more, so no secret is cut in two at a window's edge
_STORED_SMALL = 16 << 10       # stored (maybe compressed) at most this: its text is at most a few MB, read whole
_LENGTH_IS_CHEAP = {25, 1043}  # text, varchar: octet_length reads the stored header, the value is not printed
LO_WINDOW = 1 << 20            # large objects are read in windows of this size ...
LO_OVERLAP = 16 << 10          # ... overlapping by this much, so no secret is cut in two
ROWS_PER_FINDING_KIND = None   # no cap: the packet carries every finding (kept for callers that pass it)
_SECRETISH_KEY = ("token", "secret", "password", "key", "hash")
_NON_TEXT_CATEGORIES = set("BDNTGIVPX")   # bool, date/time, numeric, interval, geometry, inet, bit, pseudo
_NON_TEXT_TYPES = {"uuid", "pg_lsn", "oid", "regclass", "regtype", "regproc", "tid", "xid", "xid8", "cid",
                   "money", "txid_snapshot", "pg_snapshot"}


# -- findings ---------------------------------------------------------------------------------

@dataclass
class RawHit:
    """A confirmed hit before names are redacted: only ever in this process."""

    rule: str
    fingerprint: str
    kind: str                       # "table" | "catalog" | "large object" | "setting" | "unreadable"
    table: str | None = None        # contract name of the table (schema.table, bare for public)
    column: str | None = None
    row_key: str | None = None      # already printable (or fingerprinted)
    ref: tuple | None = None        # catalog (classid, objid, subid)
    part: str | None = None         # catalog field: name, body, comment, ...
    name: str | None = None         # the identifier itself, when field == "name"
    place: str | None = None        # for settings, large objects and unreadable places: printable
    extra: dict = field(default_factory=dict)
    rules: tuple[str, ...] = ()     # every rule that matched this one occurrence (textscan.Hit.rules)


class ScanFindings(list):
    """The findings (a list of Finding), with the names to redact and the counts the report keeps."""

    def __init__(self, items=(), *, redacted: RedactedNames | None = None, stats: dict | None = None,
                 present_tables: set[str] | None = None):
        super().__init__(items)
        self.redacted = redacted if redacted is not None else RedactedNames()
        self.stats = stats or {}
        self.present_tables = present_tables or set()  # contract names of the clone's tables (never printed)

    def counts(self) -> dict:
        """Finding counts per rule, per table and per table.column (names as printed)."""
        by_rule, by_table, by_column = Counter(), Counter(), Counter()
        for f in self:
            by_rule[f.rule] += 1
            if f.table:
                by_table[f.table] += 1
                if f.column:
                    by_column[f"{f.table}.{f.column}"] += 1
        return {"total": len(self), "by_rule": dict(sorted(by_rule.items())),
                "by_table": dict(sorted(by_table.items())), "by_column": dict(sorted(by_column.items()))}


# -- the plan: which columns of which table ----------------------------------------------------

_TABLES_SQL = """
select c.oid, n.nspname, c.relname, c.relkind::text
from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'm') and (c.relkind <> 'm' or c.relispopulated)
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
order by 2, 3"""

_COLUMNS_SQL = """
select a.attrelid, a.attname, a.atttypid::pg_catalog.int8
from pg_catalog.pg_attribute a
where a.attrelid = any(%(oids)s) and a.attnum > 0 and not a.attisdropped
order by a.attrelid, a.attnum"""

_TYPES_SQL = """
select t.oid::pg_catalog.int8, t.typname::text, t.typtype::text, t.typcategory::text, t.typelem::pg_catalog.int8,
       t.typbasetype::pg_catalog.int8, coalesce(r.rngsubtype, 0)::pg_catalog.int8
from pg_catalog.pg_type t left join pg_catalog.pg_range r on r.rngtypid = t.oid or r.rngmultitypid = t.oid"""

_PK_SQL = """
select c.conrelid, array(select a.attname from pg_catalog.unnest(c.conkey) with ordinality k(n, o)
                          join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n
                          order by k.o)::text[]
from pg_catalog.pg_constraint c where c.contype = 'p' and c.conrelid = any(%(oids)s)"""


@dataclass
class TablePlan:
    oid: int
    schema: str
    name: str
    contract_name: str
    relkind: str
    columns: list[str]                      # text-like columns read for the scan (contract hash columns left out)
    bytea: list[str]
    must_be_null: list[str]
    header_columns: list[str]
    pk: list[str]
    must_be_empty: bool
    types: dict[str, int] = field(default_factory=dict)
    render: dict[str, tuple] = field(default_factory=dict)  # column -> ("array",) | ("composite", [(attr, type)])

    @property
    def scan_columns(self) -> list[str]:
        return self.columns


def _contract_name(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


def _classify(types: dict[int, tuple], oid: int, depth: int = 0) -> str | None:
    """'text', 'bytea' or None (a type that cannot carry text): domains, arrays and ranges look inside."""
    t = types.get(oid)
    if t is None or depth > 8:
        return "text"  # unknown: read it (fail closed)
    name, typtype, category, elem, base, rngsub = t
    if typtype == "d" and base:
        return _classify(types, base, depth + 1)
    if category == "A" and elem:
        inner = _classify(types, elem, depth + 1)
        return "text" if inner else None
    if typtype in ("r", "m") and rngsub:
        return "text" if _classify(types, rngsub, depth + 1) else None
    if name == "bytea" and oid < FIRST_NORMAL_OID:
        return "bytea"
    if typtype == "e":
        return None  # an enum value is one of its labels, which the catalog scan reads
    if oid < FIRST_NORMAL_OID and (category in _NON_TEXT_CATEGORIES or name in _NON_TEXT_TYPES):
        return None
    return "text"


_COMPOSITE_SQL = """
select t.oid::pg_catalog.int8, a.attname::text, a.atttypid::pg_catalog.int8
from pg_catalog.pg_type t join pg_catalog.pg_attribute a on a.attrelid = t.typrelid
where t.oid = any(%(types)s) and a.attnum > 0 and not a.attisdropped order by t.oid, a.attnum"""


def _render_of(types: dict[int, tuple], oid: int) -> tuple | None:
    """How a value is printed for the scanner: an array one element a line, a composite one attribute a
    line (PostgreSQL's `{a,b}` and `(a,b)` would glue a token to a brace that no rule accepts as its end)."""
    t = types.get(oid)
    for _ in range(8):
        if t is None or t[1] != "d" or not t[4]:
            break
        oid, t = t[4], types.get(t[4])
    if t is None:
        return None
    if t[2] == "A" and t[3]:
        return ("array",)
    if t[1] == "c":
        return ("composite", oid)
    return None


def scan_plan(conn: psycopg.Connection, contract: Contract) -> list[TablePlan]:
    """Per user table (and populated materialized view): what the scan reads."""
    tables = conn.execute(_TABLES_SQL).fetchall()
    oids = [t[0] for t in tables]
    types = {r[0]: r[1:] for r in conn.execute(_TYPES_SQL).fetchall()}
    cols: dict[int, list[tuple[str, int]]] = {}
    for relid, name, type_oid in conn.execute(_COLUMNS_SQL, {"oids": oids}).fetchall():
        cols.setdefault(relid, []).append((name, int(type_oid)))
    pks = dict(conn.execute(_PK_SQL, {"oids": oids}).fetchall())
    hashes, nulls, headers = contract.hash_columns, contract.must_be_null, contract.secret_headers
    empties = set(contract.must_be_empty)
    plans = []
    for oid, schema, name, relkind in tables:
        cname = _contract_name(schema, name)
        p = TablePlan(oid, schema, name, cname, relkind, [], [], [], [], list(pks.get(oid) or []),
                      cname in empties)
        for col, type_oid in cols.get(oid, []):
            p.types[col] = type_oid
            kind = _classify(types, type_oid)
            if col in nulls.get(cname, []):
                p.must_be_null.append(col)
            if kind == "bytea":
                p.bytea.append(col)
            elif kind == "text" and col in headers.get(cname, []):
                p.header_columns.append(col)
            if (kind == "text" and col not in hashes.get(cname, [])) or (col in p.must_be_null and kind != "bytea"):
                p.columns.append(col)
                render = _render_of(types, type_oid)
                if render:
                    p.render[col] = render
        plans.append(p)
    composites = sorted({r[1] for p in plans for r in p.render.values() if r[0] == "composite"})
    if composites:
        attrs: dict[int, list[tuple[str, int]]] = {}
        for toid, attname, atttyp in conn.execute(_COMPOSITE_SQL, {"types": composites}).fetchall():
            attrs.setdefault(toid, []).append((attname, int(atttyp)))
        for p in plans:
            for col, r in list(p.render.items()):
                if r[0] == "composite":
                    p.render[col] = ("composite", attrs.get(r[1], []))
    return plans


# -- reading a table -----------------------------------------------------------------------------

def _qt(p: TablePlan) -> psql.Composable:
    return psql.SQL("only {}.{}").format(psql.Identifier(p.schema), psql.Identifier(p.name))


def _col_text(p: TablePlan, col: str) -> psql.Composable:
    ref = psql.SQL("t.") + psql.Identifier(col)
    render = p.render.get(col)
    if render and render[0] == "array":
        return psql.SQL("pg_catalog.array_to_string({}, E'\\n')").format(ref)
    if render and render[0] == "composite" and render[1]:
        parts = [as_text(psql.SQL("({}).{}").format(ref, psql.Identifier(a)), t) for a, t in render[1]]
        return psql.SQL("case when {r} is null then null else pg_catalog.concat_ws(E'\\n', {p}) end").format(
            r=ref, p=psql.SQL(", ").join(parts))
    return as_text(ref, p.types.get(col))


def _key_sql(p: TablePlan) -> psql.Composable:
    if not p.pk:
        return psql.SQL("'ctid:' || t.ctid::pg_catalog.text")
    if len(p.pk) == 1:
        return psql.SQL("coalesce({}, '')").format(_col_text(p, p.pk[0]))
    return psql.SQL("row({})::pg_catalog.text").format(
        psql.SQL(", ").join(psql.SQL("t.") + psql.Identifier(c) for c in p.pk))


def _keys_are_secretish(p: TablePlan) -> bool:
    """Keys that may themselves be secrets (a session token as primary key) are shown only as fingerprints."""
    return p.must_be_empty or any(c in p.must_be_null or any(s in c.lower() for s in _SECRETISH_KEY)
                                  for c in p.pk)


def _is_large(p: TablePlan, col: str) -> psql.Composable:
    """Whether a value's text is longer than LARGE_VALUE_BYTES. For other types than text and varchar, only a
    value stored larger than _STORED_SMALL is printed to be measured (every value is printed once already)."""
    length = psql.SQL("pg_catalog.octet_length({}) > {}").format(_col_text(p, col), psql.Literal(LARGE_VALUE_BYTES))
    if p.types.get(col) in _LENGTH_IS_CHEAP and col not in p.render:
        return psql.SQL("coalesce({}, false)").format(length)
    return psql.SQL("case when coalesce(pg_catalog.pg_column_size(t.{}) > {}, false) then coalesce({}, false) "
                    "else false end").format(psql.Identifier(col), psql.Literal(_STORED_SMALL), length)


def _table_select(p: TablePlan) -> tuple[psql.Composable, int]:
    """key, every read column, (with must-be-NULL columns) the indexes of the ones set, the indexes of the
    large values (read in windows instead, `_large_value_windows`) and the row's ctid: one COPY.

    A large value is left out of its row (an empty field), so a COPY row, and each chunk, stays small
    whatever the clone holds: libpq hands over a whole row at once."""
    fields = [_key_sql(p)] + [psql.SQL("case when {} then '' else coalesce({}, '') end").format(
        _is_large(p, c), _col_text(p, c)) for c in p.columns]
    if p.must_be_null:
        # num_nonnulls tests the value itself: `IS NOT NULL` on a composite asks whether every field is set
        flags = [psql.SQL("case when pg_catalog.num_nonnulls(t.{}) = 1 then {} end").format(
                 psql.Identifier(c), psql.Literal(str(i))) for i, c in enumerate(p.columns, start=1)
                 if c in p.must_be_null]
        fields.append(psql.SQL("concat_ws(',', {})").format(psql.SQL(", ").join(flags)))
    large = [psql.SQL("case when {} then {} end").format(_is_large(p, c), psql.Literal(str(i)))
             for i, c in enumerate(p.columns, start=1)]
    fields.append(psql.SQL("concat_ws(',', {})").format(psql.SQL(", ").join(large)))
    fields.append(psql.SQL("t.ctid::pg_catalog.text"))
    q = psql.SQL("copy (select {} from {} t) to stdout").format(psql.SQL(", ").join(fields), _qt(p))
    return q, len(fields)


def _large_value_windows(conn: psycopg.Connection, p: TablePlan, col: str, ctid: bytes, *, bytea: bool = False):
    """(window, length of its own part, last?) of one large value's bytes (its text in UTF-8, or a bytea's bytes),
    in windows of VALUE_WINDOW bytes, each overlapping the next by VALUE_OVERLAP: one COPY row per window, so
    this process never holds the value. The server prints the value once (offset 0), then only slices it."""
    value = (psql.SQL("t.{}").format(psql.Identifier(col)) if bytea else
             psql.SQL("pg_catalog.convert_to({}, 'UTF8')").format(_col_text(p, col)))
    query = psql.SQL(
        "copy (select pg_catalog.length(x.b), g.o, "
        "pg_catalog.encode(pg_catalog.substr(x.b, g.o::pg_catalog.int4, {wo}), 'hex') "
        "from (select {value} as b from {t} t where t.ctid operator(pg_catalog.=) {tid}::pg_catalog.tid offset 0) x "
        "cross join lateral pg_catalog.generate_series(1::pg_catalog.int8, "
        "greatest(pg_catalog.length(x.b), 1)::pg_catalog.int8, {w}::pg_catalog.int8) g(o)) to stdout"
    ).format(wo=psql.Literal(VALUE_WINDOW + VALUE_OVERLAP), value=value, t=_qt(p), tid=psql.Literal(ctid.decode()),
             w=psql.Literal(VALUE_WINDOW))
    with conn.cursor().copy(query) as copy:
        for row in _copy_rows(copy):
            total, start, data = row.split(b"\t")
            window = bytes.fromhex(data.decode())
            end = int(start) - 1 + VALUE_WINDOW
            yield window, min(len(window), VALUE_WINDOW), end >= int(total)


def _copy_rows(copy):
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


def _scan_large_value(conn: psycopg.Connection, p: TablePlan, col: str, ctid: bytes, salt: str, *,
                      headers: bool = False, bytea: bool = False) -> tuple[list[textscan.Hit], str]:
    """A large value's hits, each once (a hit starting in a window's overlap is the next window's), and the
    salted fingerprint of the whole value (what a must-be-NULL finding carries)."""
    digest = hashlib.sha256(salt.encode("utf-8"))
    hits: list[textscan.Hit] = []
    at = 0  # bytes of the value before this window
    for window, own, last in _large_value_windows(conn, p, col, ctid, bytea=bytea):
        digest.update(window[:own])
        for h in textscan.scan_value(window, salt, headers=headers):
            if h.start < own or last:
                hits.append(textscan.Hit(h.rule, at + h.start, at + h.end, h.fingerprint, h.rules))
        at += own
    return hits, digest.hexdigest()[:16]


def _copy_chunks(conn: psycopg.Connection, query: psql.Composable):
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


def _scan_table_raw(conn: psycopg.Connection, p: TablePlan, salt: str) -> list[RawHit]:
    out: list[RawHit] = []
    eng = engine()
    secretish = _keys_are_secretish(p)
    header_idx = {i for i, c in enumerate(p.columns, start=1) if c in p.header_columns}
    rows = 0

    def key_of(fields: list[bytes], key_hit: bool, col: str | None) -> str:
        key = fields[0].decode("utf-8", "replace")
        if not p.pk:
            return key
        if secretish or key_hit or (col is not None and col in p.pk):
            return "fingerprint:" + textscan.fingerprint(salt, fields[0])
        return key

    large: list[tuple[list[bytes], bytes, list[int], set[int]]] = []  # (fields, ctid, large columns, set must-be-NULL)
    if p.columns:
        query, per_row = _table_select(p)
        values_end = 1 + len(p.columns)  # after the key and the values: flags and the ctid, never scanned
        for raw in _copy_chunks(conn, query):
            rows += raw.count(b"\n")
            decoded = textscan.decode_copy_text(raw)
            found: dict[int, list] = {}   # row index -> [fields, key_hit, [(col, hit)]]
            for scanner, headers in ((eng.scanner, False), *(((eng.header_scanner, True),) if header_idx else ())):
                for cand in textscan.candidates(decoded, scanner):
                    row, col = divmod(cand.index, per_row)
                    if col == 0 or col >= values_end:
                        if col == 0:
                            entry = found.setdefault(row, [None, False, []])
                            entry[1] = True
                            if entry[0] is None:
                                entry[0] = textscan.row_fields(decoded, cand, per_row)
                        continue
                    if headers and col not in header_idx:
                        continue
                    hits = textscan.scan_value(decoded[cand.start:cand.end], salt, headers=headers)
                    if not hits:
                        continue
                    entry = found.setdefault(row, [None, False, []])
                    if entry[0] is None:
                        entry[0] = textscan.row_fields(decoded, cand, per_row)
                    entry[2].extend((p.columns[col - 1], h) for h in hits)
            for row in sorted(found):
                fields, key_hit, hits = found[row]
                by_column: dict[str, list] = {}
                for col, h in hits:  # the header scanner and the main one can match one value's secret
                    by_column.setdefault(col, []).append(h)
                for col, col_hits in by_column.items():
                    for h in textscan.merge(col_hits):
                        out.append(RawHit(h.rule, h.fingerprint, "table", p.contract_name, col,
                                          key_of(fields, key_hit, col), rules=h.rules))
            out.extend(_flagged_rows(p, raw, salt, key_of, large))
    for fields, ctid, cols, unset in large:  # after the table's COPY: the connection is free again
        key_hit = bool(textscan.scan_value(fields[0], salt))
        for i in cols:
            col = p.columns[i - 1]
            col_hits = []
            for headers in (False, True) if i in header_idx else (False,):
                hits, whole = _scan_large_value(conn, p, col, ctid, salt, headers=headers)
                col_hits += hits
            out.extend(RawHit(h.rule, h.fingerprint, "table", p.contract_name, col, key_of(fields, key_hit, col),
                              rules=h.rules) for h in textscan.merge(col_hits))
            if i in unset:
                out.append(RawHit(MUST_BE_NULL, whole, "table", p.contract_name, col, key_of(fields, key_hit, col)))
    if p.bytea:
        out.extend(_scan_bytea(conn, p, salt, key_of))
    if p.must_be_empty:
        if not p.columns:
            rows = conn.execute(psql.SQL("select count(*) from {} t").format(_qt(p))).fetchone()[0]
        if rows:
            out.append(RawHit(MUST_BE_EMPTY, "", "table", p.contract_name, extra={"rows": rows}))
    return out


def _flagged_rows(p: TablePlan, raw: bytes, salt: str, key_of, large: list) -> list[RawHit]:
    """Rows with a set must-be-NULL column (a finding each) or a large value (queued in `large`, read later in
    windows): their last fields, the indexes of those columns, say which (raw TAB and LF are separators only)."""
    out = []
    pattern = _FLAGS_NULL if p.must_be_null else _FLAGS
    for m in pattern.finditer(raw):
        if not m.group(1) and not m.group(m.lastindex - 1):
            continue
        start = raw.rfind(b"\n", 0, m.start()) + 1
        fields = textscan.parse_copy_row(raw[start:m.end() - 1])
        unset = {int(f) for f in m.group(1).split(b",") if f} if p.must_be_null else set()
        big = [int(f) for f in m.group(m.lastindex - 1).split(b",") if f]
        if big:
            large.append((fields[:1], m.group(m.lastindex), big, unset & set(big)))
        if unset - set(big):
            key_hit = bool(textscan.scan_value(fields[0], salt))
            for i in sorted(unset - set(big)):
                col, value = p.columns[i - 1], fields[i]
                out.append(RawHit(MUST_BE_NULL, textscan.fingerprint(salt, value), "table", p.contract_name, col,
                                  key_of(fields, key_hit, col)))
    return out


_FLAGS = re.compile(rb"\t([0-9,]+)\t(\([0-9]+,[0-9]+\))\n")
_FLAGS_NULL = re.compile(rb"\t([0-9,]*)\t([0-9,]*)\t(\([0-9]+,[0-9]+\))\n")


def _scan_bytea(conn: psycopg.Connection, p: TablePlan, salt: str, key_of) -> list[RawHit]:
    """bytea columns: their bytes, decoded from hex here (PostgreSQL never prints them as text); one larger
    than LARGE_VALUE_BYTES is read in windows after the COPY, like a large text value."""
    limit = psql.Literal(LARGE_VALUE_BYTES)
    fields = [_key_sql(p)] + [psql.SQL("case when pg_catalog.octet_length(t.{c}) > {n} then '' else "
                                       "pg_catalog.encode(t.{c}, 'hex') end").format(c=psql.Identifier(c), n=limit)
                              for c in p.bytea]
    fields.append(psql.SQL("concat_ws(',', {})").format(psql.SQL(", ").join(
        psql.SQL("case when pg_catalog.octet_length(t.{}) > {} then {} end").format(
            psql.Identifier(c), limit, psql.Literal(str(i))) for i, c in enumerate(p.bytea, start=1))))
    fields.append(psql.SQL("t.ctid::pg_catalog.text"))
    where = psql.SQL(" or ").join(psql.SQL("t.{} is not null").format(psql.Identifier(c)) for c in p.bytea)
    query = psql.SQL("copy (select {} from {} t where {}) to stdout").format(psql.SQL(", ").join(fields), _qt(p),
                                                                               where)
    out: list[RawHit] = []
    large: list[tuple[list[bytes], bytes, list[str]]] = []
    for raw in _copy_chunks(conn, query):
        batch = textscan.ValueBatch(salt)
        keys: dict[int, bytes] = {}
        for n, line in enumerate(raw.split(b"\n")):
            if not line:
                continue
            row = textscan.parse_copy_row(line)
            keys[n] = row[0]
            big = {int(f) for f in row[-2].split(b",") if f}
            if big:
                large.append(([row[0]], row[-1], [p.bytea[i - 1] for i in sorted(big)]))
            for i, col in enumerate(p.bytea, start=1):
                if row[i] == b"\\N" or i in big:
                    continue
                value = bytes.fromhex(row[i].decode())
                batch.add((n, col), value)
                if col in p.must_be_null:
                    out.append(RawHit(MUST_BE_NULL, textscan.fingerprint(salt, value), "table", p.contract_name,
                                      col, key_of(row, bool(textscan.scan_value(row[0], salt)), col)))
        batch.flush()
        key_hits = {r for (r, _c), _h in batch.hits if textscan.scan_value(keys[r], salt)}
        out += [RawHit(h.rule, h.fingerprint, "table", p.contract_name, col, key_of([keys[r]], r in key_hits, col),
                       rules=h.rules) for (r, col), h in batch.hits]
    for fields, ctid, cols in large:
        key_hit = bool(textscan.scan_value(fields[0], salt))
        for col in cols:
            hits, whole = _scan_large_value(conn, p, col, ctid, salt, bytea=True)
            out.extend(RawHit(h.rule, h.fingerprint, "table", p.contract_name, col, key_of(fields, key_hit, col),
                              rules=h.rules) for h in hits)
            if col in p.must_be_null:
                out.append(RawHit(MUST_BE_NULL, whole, "table", p.contract_name, col, key_of(fields, key_hit, col)))
    return out


# -- the catalog ---------------------------------------------------------------------------------

_CATALOG_BODIES: dict[str, str] = {}
_LARGE_MARK = "<fix7: a value over LARGE_VALUE_BYTES, read in windows>"  # data spelling it only costs a query


def _part(label: str, body: str) -> tuple[str, str]:
    """One catalog place's COPY; a value longer than LARGE_VALUE_BYTES is printed as _LARGE_MARK in it and read
    afterwards in windows (`_scan_large_catalog_values`)."""
    _CATALOG_BODIES[label] = body
    return label, f"copy (select classid, objid, subid, field, case when pg_catalog.octet_length(value) > " \
                  f"{LARGE_VALUE_BYTES} then '{_LARGE_MARK}' else value end from ({body}) x(classid, objid, subid, " \
                  f"field, value) where value is not null and value <> '') to stdout"


_N = FIRST_NORMAL_OID
_THIS_DB = "(select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())"
_REAL_TYPE = ("t.oid >= {n} and (t.typrelid = 0 or (select c.relkind from pg_catalog.pg_class c where c.oid = t.typrelid)"
              " = 'c') and not exists (select 1 from pg_catalog.pg_type e where e.typarray = t.oid)").format(n=_N)

CATALOG_PARTS: tuple[tuple[str, str], ...] = tuple(_part(label, body) for label, body in (
    ("schemas", f"""
        select 'pg_namespace'::regclass::oid, n.oid, 0, 'name', n.nspname::text from pg_catalog.pg_namespace n
        where n.oid >= {_N}"""),
    ("relations", f"""
        select 'pg_class'::regclass::oid, c.oid, 0, 'name', c.relname::text from pg_catalog.pg_class c
        where c.oid >= {_N} and c.relnamespace <> 'pg_toast'::regnamespace
        union all
        select 'pg_class'::regclass::oid, c.oid, 0, 'options', pg_catalog.array_to_string(c.reloptions, E'\\n')
        from pg_catalog.pg_class c where c.oid >= {_N} and c.reloptions is not null"""),
    ("columns", f"""
        select 'pg_class'::regclass::oid, a.attrelid, a.attnum, 'name', a.attname::text from pg_catalog.pg_attribute a
        join pg_catalog.pg_class c on c.oid = a.attrelid
        where a.attrelid >= {_N} and a.attnum > 0 and not a.attisdropped and c.relnamespace <> 'pg_toast'::regnamespace
        union all
        select 'pg_class'::regclass::oid, a.attrelid, a.attnum, 'options',
               pg_catalog.array_to_string(a.attoptions || a.attfdwoptions, E'\\n')
        from pg_catalog.pg_attribute a
        where a.attrelid >= {_N} and a.attnum > 0 and (a.attoptions is not null or a.attfdwoptions is not null)
        union all
        select 'pg_class'::regclass::oid, d.adrelid, d.adnum,
               case when a.attgenerated <> '' then 'generated expression' else 'default' end,
               pg_catalog.pg_get_expr(d.adbin, d.adrelid)
        from pg_catalog.pg_attrdef d join pg_catalog.pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
        where d.adrelid >= {_N}"""),
    ("constraints", f"""
        select 'pg_constraint'::regclass::oid, co.oid, 0, 'name', co.conname::text from pg_catalog.pg_constraint co
        where co.oid >= {_N}
        union all
        select 'pg_constraint'::regclass::oid, co.oid, 0, 'definition', pg_catalog.pg_get_constraintdef(co.oid)
        from pg_catalog.pg_constraint co where co.oid >= {_N}"""),
    ("indexes", f"""
        select 'pg_class'::regclass::oid, i.indexrelid, 0, 'definition', pg_catalog.pg_get_indexdef(i.indexrelid)
        from pg_catalog.pg_index i where i.indexrelid >= {_N}"""),
    ("types", f"""
        select 'pg_type'::regclass::oid, t.oid, 0, 'name', t.typname::text from pg_catalog.pg_type t
        where {_REAL_TYPE}
        union all
        select 'pg_type'::regclass::oid, t.oid, 0, 'default', t.typdefault from pg_catalog.pg_type t
        where t.oid >= {_N} and t.typdefault is not null
        union all
        select 'pg_type'::regclass::oid, e.enumtypid, 0, 'enum label', e.enumlabel::text from pg_catalog.pg_enum e
        where e.enumtypid >= {_N}"""),
    ("functions", f"""
        select 'pg_proc'::regclass::oid, p.oid, 0, 'name', p.proname::text from pg_catalog.pg_proc p where p.oid >= {_N}
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'body', p.prosrc from pg_catalog.pg_proc p where p.oid >= {_N}
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'body', pg_catalog.pg_get_function_sqlbody(p.oid)
        from pg_catalog.pg_proc p where p.oid >= {_N} and p.prosqlbody is not null
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'library', p.probin from pg_catalog.pg_proc p
        where p.oid >= {_N} and p.probin is not null
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'settings', pg_catalog.array_to_string(p.proconfig, E'\\n')
        from pg_catalog.pg_proc p where p.oid >= {_N} and p.proconfig is not null
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'arguments', pg_catalog.pg_get_function_arguments(p.oid)
        from pg_catalog.pg_proc p where p.oid >= {_N}
        union all
        select 'pg_proc'::regclass::oid, g.aggfnoid, 0, 'initial value', concat_ws(E'\\n', g.agginitval, g.aggminitval)
        from pg_catalog.pg_aggregate g where g.aggfnoid >= {_N}"""),
    ("views", f"""
        select 'pg_class'::regclass::oid, c.oid, 0, 'definition', pg_catalog.pg_get_viewdef(c.oid)
        from pg_catalog.pg_class c where c.oid >= {_N} and c.relkind in ('v', 'm')"""),
    ("triggers", f"""
        select 'pg_trigger'::regclass::oid, tg.oid, 0, 'name', tg.tgname::text from pg_catalog.pg_trigger tg
        where tg.oid >= {_N} and not tg.tgisinternal
        union all
        select 'pg_trigger'::regclass::oid, tg.oid, 0, 'definition', pg_catalog.pg_get_triggerdef(tg.oid)
        from pg_catalog.pg_trigger tg where tg.oid >= {_N} and not tg.tgisinternal
        union all
        select 'pg_event_trigger'::regclass::oid, e.oid, 0, 'name', e.evtname::text from pg_catalog.pg_event_trigger e
        union all
        select 'pg_event_trigger'::regclass::oid, e.oid, 0, 'tags', pg_catalog.array_to_string(e.evttags, E'\\n')
        from pg_catalog.pg_event_trigger e"""),
    ("policies and rules", f"""
        select 'pg_policy'::regclass::oid, po.oid, 0, 'name', po.polname::text from pg_catalog.pg_policy po
        union all
        select 'pg_policy'::regclass::oid, po.oid, 0, 'using', pg_catalog.pg_get_expr(po.polqual, po.polrelid)
        from pg_catalog.pg_policy po
        union all
        select 'pg_policy'::regclass::oid, po.oid, 0, 'with check', pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid)
        from pg_catalog.pg_policy po
        union all
        select 'pg_rewrite'::regclass::oid, rw.oid, 0, 'name', rw.rulename::text from pg_catalog.pg_rewrite rw
        where rw.oid >= {_N} and rw.rulename <> '_RETURN'
        union all
        select 'pg_rewrite'::regclass::oid, rw.oid, 0, 'definition', pg_catalog.pg_get_ruledef(rw.oid)
        from pg_catalog.pg_rewrite rw where rw.oid >= {_N} and rw.rulename <> '_RETURN'"""),
    ("comments", f"""
        select d.classoid, d.objoid, d.objsubid, 'comment', d.description from pg_catalog.pg_description d
        where d.objoid >= {_N}
        union all
        select d.classoid, d.objoid, 0, 'comment', d.description from pg_catalog.pg_shdescription d
        where (d.classoid = 'pg_database'::regclass and d.objoid = {_THIS_DB})
           or (d.classoid = 'pg_authid'::regclass and d.objoid in (
                 select s.refobjid from pg_catalog.pg_shdepend s where s.dbid = {_THIS_DB}
                 and s.refclassid = 'pg_authid'::regclass))
        union all
        select s.classoid, s.objoid, s.objsubid, 'security label', s.label from pg_catalog.pg_seclabel s
        where s.objoid >= {_N}"""),
    ("roles", f"""
        select 'pg_authid'::regclass::oid, r.oid, 0, 'name', r.rolname::text from pg_catalog.pg_roles r
        where r.rolname = current_user or r.oid in (
          select s.refobjid from pg_catalog.pg_shdepend s where s.dbid = {_THIS_DB}
          and s.refclassid = 'pg_authid'::regclass)"""),
    ("replication and foreign data", f"""
        select 'pg_publication'::regclass::oid, p.oid, 0, 'name', p.pubname::text from pg_catalog.pg_publication p
        union all
        select 'pg_subscription'::regclass::oid, s.oid, 0, 'name', s.subname::text from pg_catalog.pg_subscription s
        where s.subdbid = {_THIS_DB}
        union all
        select 'pg_foreign_data_wrapper'::regclass::oid, w.oid, 0, 'name', w.fdwname::text
        from pg_catalog.pg_foreign_data_wrapper w where w.oid >= {_N}
        union all
        select 'pg_foreign_data_wrapper'::regclass::oid, w.oid, 0, 'options',
               pg_catalog.array_to_string(w.fdwoptions, E'\\n') from pg_catalog.pg_foreign_data_wrapper w
        union all
        select 'pg_foreign_server'::regclass::oid, s.oid, 0, 'name', s.srvname::text from pg_catalog.pg_foreign_server s
        union all
        select 'pg_foreign_server'::regclass::oid, s.oid, 0, 'options',
               concat_ws(E'\\n', s.srvtype, s.srvversion, pg_catalog.array_to_string(s.srvoptions, E'\\n'))
        from pg_catalog.pg_foreign_server s
        union all
        select 'pg_class'::regclass::oid, f.ftrelid, 0, 'options', pg_catalog.array_to_string(f.ftoptions, E'\\n')
        from pg_catalog.pg_foreign_table f
        union all
        select 'pg_user_mapping'::regclass::oid, u.umid, 0, 'options', pg_catalog.array_to_string(u.umoptions, E'\\n')
        from pg_catalog.pg_user_mappings u"""),
    ("other objects", f"""
        select 'pg_extension'::regclass::oid, x.oid, 0, 'name', x.extname::text from pg_catalog.pg_extension x
        where x.oid >= {_N}
        union all
        select 'pg_extension'::regclass::oid, x.oid, 0, 'configuration', pg_catalog.array_to_string(x.extcondition, E'\\n')
        from pg_catalog.pg_extension x where x.oid >= {_N}
        union all
        select 'pg_statistic_ext'::regclass::oid, s.oid, 0, 'name', s.stxname::text from pg_catalog.pg_statistic_ext s
        union all
        select 'pg_statistic_ext'::regclass::oid, s.oid, 0, 'definition', pg_catalog.pg_get_statisticsobjdef(s.oid)
        from pg_catalog.pg_statistic_ext s where s.oid >= {_N}
        union all
        select 'pg_collation'::regclass::oid, c.oid, 0, 'name', c.collname::text from pg_catalog.pg_collation c
        where c.oid >= {_N}
        union all
        select 'pg_conversion'::regclass::oid, c.oid, 0, 'name', c.conname::text from pg_catalog.pg_conversion c
        where c.oid >= {_N}
        union all
        select 'pg_operator'::regclass::oid, o.oid, 0, 'name', o.oprname::text from pg_catalog.pg_operator o
        where o.oid >= {_N}
        union all
        select 'pg_opclass'::regclass::oid, o.oid, 0, 'name', o.opcname::text from pg_catalog.pg_opclass o
        where o.oid >= {_N}
        union all
        select 'pg_opfamily'::regclass::oid, o.oid, 0, 'name', o.opfname::text from pg_catalog.pg_opfamily o
        where o.oid >= {_N}
        union all
        select 'pg_ts_config'::regclass::oid, c.oid, 0, 'name', c.cfgname::text from pg_catalog.pg_ts_config c
        where c.oid >= {_N}
        union all
        select 'pg_ts_dict'::regclass::oid, d.oid, 0, 'name', d.dictname::text from pg_catalog.pg_ts_dict d
        where d.oid >= {_N}
        union all
        select 'pg_ts_dict'::regclass::oid, d.oid, 0, 'options', d.dictinitoption from pg_catalog.pg_ts_dict d
        where d.oid >= {_N}
        union all
        select 'pg_ts_parser'::regclass::oid, p.oid, 0, 'name', p.prsname::text from pg_catalog.pg_ts_parser p
        where p.oid >= {_N}
        union all
        select 'pg_ts_template'::regclass::oid, t.oid, 0, 'name', t.tmplname::text from pg_catalog.pg_ts_template t
        where t.oid >= {_N}
        union all
        select 'pg_language'::regclass::oid, l.oid, 0, 'name', l.lanname::text from pg_catalog.pg_language l
        where l.oid >= {_N}
        union all
        select 'pg_am'::regclass::oid, a.oid, 0, 'name', a.amname::text from pg_catalog.pg_am a where a.oid >= {_N}"""),
))
_CATALOG_FIELDS = 5


def _scan_catalog_part(conn: psycopg.Connection, label: str, query: str, salt: str) -> list[RawHit]:
    out = []
    large = False
    for raw in _copy_chunks(conn, query):
        large = large or _LARGE_MARK.encode() in raw
        decoded = textscan.decode_copy_text(raw)
        for cand in textscan.candidates(decoded, engine().scanner):
            if cand.index % _CATALOG_FIELDS != _CATALOG_FIELDS - 1:
                continue
            hits = textscan.scan_value(decoded[cand.start:cand.end], salt)
            if not hits:
                continue
            classid, objid, subid, fld, value = textscan.row_fields(decoded, cand, _CATALOG_FIELDS)
            ref = (int(classid), int(objid), int(subid))
            fname = fld.decode()
            for h in hits:
                out.append(RawHit(h.rule, h.fingerprint, "catalog", ref=ref, part=fname,
                                  name=value.decode("utf-8", "replace") if fname == "name" else None,
                                  rules=h.rules))
    if large:
        out += _scan_large_catalog_values(conn, label, salt)
    return out


def _scan_large_catalog_values(conn: psycopg.Connection, label: str, salt: str) -> list[RawHit]:
    """The values of one catalog place longer than LARGE_VALUE_BYTES (a function body, a comment), in windows of
    VALUE_WINDOW bytes overlapping by VALUE_OVERLAP, as table values are read: the value is printed once."""
    query = (f"copy (select x.classid, x.objid, x.subid, x.field, pg_catalog.length(d.b), o, "
             f"pg_catalog.encode(pg_catalog.substr(d.b, o::pg_catalog.int4, {VALUE_WINDOW + VALUE_OVERLAP}), 'hex') "
             f"from (select * from ({_CATALOG_BODIES[label]}) x(classid, objid, subid, field, value) "
             f"where pg_catalog.octet_length(x.value) > {LARGE_VALUE_BYTES} offset 0) x "
             f"cross join lateral (select pg_catalog.convert_to(x.value, 'UTF8') as b offset 0) d "
             f"cross join lateral pg_catalog.generate_series(1::pg_catalog.int8, pg_catalog.length(d.b)::pg_catalog.int8,"
             f" {VALUE_WINDOW}::pg_catalog.int8) o) to stdout")
    out = []
    with conn.cursor().copy(query) as copy:
        for row in _copy_rows(copy):
            classid, objid, subid, fld, total, start, data = row.split(b"\t")
            window = bytes.fromhex(data.decode())
            own, last = min(len(window), VALUE_WINDOW), int(start) - 1 + VALUE_WINDOW >= int(total)
            for h in textscan.scan_value(window, salt):
                if h.start < own or last:
                    out.append(RawHit(h.rule, h.fingerprint, "catalog", ref=(int(classid), int(objid), int(subid)),
                                      part=fld.decode(), rules=h.rules))
    return out


def _unreadable_catalog(conn: psycopg.Connection) -> list[RawHit]:
    """What the restoring role cannot read but the dump may have filled: fail closed."""
    out = []
    subs = conn.execute(f"select s.oid from pg_catalog.pg_subscription s where s.subdbid = {_THIS_DB}").fetchall()
    if subs:
        try:
            conn.execute("select s.subconninfo from pg_catalog.pg_subscription s limit 1").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            for (oid,) in subs:
                out.append(RawHit(UNREADABLE, "", "unreadable", ref=(_regclass(conn, "pg_subscription"), int(oid), 0),
                                  part="connection string"))
    for umid, readable in conn.execute("""
            select u.umid, u.umoptions is not null or pg_catalog.pg_has_role(s.srvowner, 'USAGE')
                   or (u.umuser = (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user)
                       and pg_catalog.has_server_privilege(s.oid, 'USAGE'))
            from pg_catalog.pg_user_mappings u join pg_catalog.pg_foreign_server s on s.oid = u.srvid""").fetchall():
        if not readable:
            out.append(RawHit(UNREADABLE, "", "unreadable", ref=(_regclass(conn, "pg_user_mapping"), int(umid), 0),
                              part="options"))
    return out


def _regclass(conn: psycopg.Connection, name: str) -> int:
    return int(conn.execute("select %s::regclass::oid", (f"pg_catalog.{name}",)).fetchone()[0])


def _lo_readable(conn: psycopg.Connection) -> str:
    """Whether the session may read large object m: the server's own test from PostgreSQL 17 on; before it, the
    same rule over the catalog (the owner's privileges, a SELECT grant to the session's roles or to PUBLIC, or
    lo_compat_privileges, which turns the checks off)."""
    if conn.info.server_version >= 170000:
        return "pg_catalog.has_largeobject_privilege(m.oid, 'SELECT')"
    return ("(pg_catalog.current_setting('lo_compat_privileges')::pg_catalog.bool "
            "or pg_catalog.pg_has_role(m.lomowner, 'USAGE') "
            "or exists (select from pg_catalog.aclexplode(m.lomacl) a where a.privilege_type = 'SELECT' "
            "and (a.grantee = 0 or pg_catalog.pg_has_role(a.grantee, 'USAGE'))))")


def _scan_large_objects(conn: psycopg.Connection, salt: str) -> list[RawHit]:
    out = []
    rows = conn.execute(f"select m.oid::pg_catalog.int8, {_lo_readable(conn)} "
                        "from pg_catalog.pg_largeobject_metadata m order by 1").fetchall()
    readable = [oid for oid, ok in rows if ok]
    out += [RawHit(UNREADABLE, "", "unreadable", place=f"large object {oid}", part="data")
            for oid, ok in rows if not ok]
    if not readable:
        return out
    sizes = dict(conn.execute("select m.oid::pg_catalog.int8, pg_catalog.lo_lseek64(pg_catalog.lo_open(m.oid, 262144), "
                              "0, 2) from pg_catalog.pg_largeobject_metadata m where m.oid = any(%s)",
                              (readable,)).fetchall())
    windows = [(oid, off) for oid in readable for off in range(0, max(int(sizes.get(oid) or 0), 1), LO_WINDOW)]
    seen: set[tuple] = set()
    for i in range(0, len(windows), 64):
        part = windows[i:i + 64]
        values = psql.SQL(", ").join(psql.SQL("({}::pg_catalog.oid, {}::pg_catalog.int8)").format(
            psql.Literal(o), psql.Literal(off)) for o, off in part)
        query = psql.SQL("copy (select w.o, w.off, pg_catalog.encode(pg_catalog.lo_get(w.o, w.off, {}), 'hex') "
                         "from (values {}) w(o, off)) to stdout").format(psql.Literal(LO_WINDOW + LO_OVERLAP), values)
        for raw in _copy_chunks(conn, query):
            for line in raw.split(b"\n"):
                if not line:
                    continue
                oid, off, data = textscan.parse_copy_row(line)
                chunk = bytes.fromhex(data.decode())
                for h in textscan.scan_value(chunk, salt):
                    at = (int(oid), int(off) + h.start, h.rule)
                    if at in seen:
                        continue
                    seen.add(at)
                    out.append(RawHit(h.rule, h.fingerprint, "large object", place=f"large object {int(oid)}",
                                      extra={"offset": int(off) + h.start}, rules=h.rules))
    return out


def _scan_settings(settings: list[dict], salt: str) -> list[RawHit]:
    batch = textscan.ValueBatch(salt)
    for i, s in enumerate(settings):
        batch.add((i, "name"), (s.get("name") or "").encode())
        batch.add((i, "value"), (s.get("value") or "").encode())
    batch.flush()
    out = []
    for (i, part), h in batch.hits:
        s = settings[i]
        scope = f"database {s['database']}" if s.get("database") else f"role {s.get('role')}"
        out.append(RawHit(h.rule, h.fingerprint, "setting", part=part, place=scope,
                          name=s.get("name") if part == "name" else None, extra={"setting": s.get("name")},
                          rules=h.rules))
    return out


# -- findings as printed --------------------------------------------------------------------------

def _identify(conn: psycopg.Connection, refs: set[tuple]) -> dict[tuple, tuple[str, str]]:
    if not refs:
        return {}
    rows = conn.execute("""
        select r.c, r.o, r.s, i.type, i.identity
        from rows from (pg_catalog.unnest(%s::pg_catalog.oid[]), pg_catalog.unnest(%s::pg_catalog.oid[]),
                       pg_catalog.unnest(%s::int[])) r(c, o, s)
        cross join lateral pg_catalog.pg_identify_object(r.c, r.o, r.s) i""",
                        ([r[0] for r in refs], [r[1] for r in refs], [r[2] for r in refs])).fetchall()
    return {(int(c), int(o), int(s)): (t, ident) for c, o, s, t, ident in rows}


def _render(hits: list[RawHit], idents: dict[tuple, tuple[str, str]], names: RedactedNames) -> list[Finding]:
    eng = engine()
    # every identifier that matched is registered before anything is printed
    for h in hits:
        if h.name:
            names.add(h.name)
    out = []
    for h in hits:
        info = eng.info(h.rule)
        extra = {"source": info.source if info else "fix7", "family": info.family if info else h.rule, **h.extra}
        if h.rules:  # one occurrence, every rule that matched it (rule names only, never the value)
            extra["rules"] = list(h.rules)
        if h.kind == "table":
            table, column = names.name(h.table), names.name(h.column)
            if h.rule == MUST_BE_EMPTY:
                msg = f"{table}: {h.extra.get('rows')} row(s); a sanitized clone carries none"
                extra["place"] = f"table {table}"
                out.append(Finding(h.rule, msg, table=table, extra=extra))
                continue
            row_key = names.scrub(h.row_key)
            extra["place"] = f"{table}.{column}"
            what = "a value (it must be NULL)" if h.rule == MUST_BE_NULL else h.rule
            out.append(Finding(h.rule, f"{table}.{column}: {what} in row {row_key}", table=table, column=column,
                               row_key=row_key, fingerprint=h.fingerprint or None, extra=extra))
            continue
        if h.ref is not None:
            kind, ident = idents.get(h.ref, ("catalog object", f"{h.ref[0]}:{h.ref[1]}:{h.ref[2]}"))
            if h.part == "name":
                place = f"{kind} name {names.label(h.name or '')}"
            else:
                place = f"{kind} {names.scrub(ident)} ({h.part})"
        else:
            kind = h.kind
            if h.kind == "setting":
                setting = names.name(h.extra.get("setting"))
                extra["setting"] = setting
                place = (f"setting name {names.label(h.name or '')} on {h.place}" if h.part == "name"
                         else f"setting {setting} on {h.place} (value)")
            else:
                place = h.place or kind
        place = names.scrub(place)
        extra["place"] = place
        extra["kind"] = kind
        if h.rule == UNREADABLE:
            msg = f"{place}: cannot be read by the restoring role, so it cannot be proven free of secrets"
        else:
            msg = f"{place}: {h.rule}"
        out.append(Finding(h.rule, msg, fingerprint=h.fingerprint or None, extra=extra))
    return out


def judge_names(names, registry: RedactedNames) -> RedactedNames:
    """Scan each name alone, as the catalog scan scans an identifier, and register every one a rule matches:
    how names read from a dump before it is restored (its table of contents) are judged before anything
    prints them. Returns `registry`."""
    batch = textscan.ValueBatch("")
    for name in sorted({n for n in names if n}):
        batch.add(name, name.encode("utf-8", "surrogatepass"))
    batch.flush()
    for name, _hit in batch.hits:
        registry.add(name)
    return registry


_WORD_BREAK = re.compile(r"[\s,;:()\[\]{}\"'`=]+")


def judge_printed_names(obj, registry: RedactedNames) -> RedactedNames:
    """Judge every word of every string in a JSON-like value (an outcome's reason, findings and details) as a
    name: what a stage before the scan prints about the clone (a column the isolation proof names, an object a
    server error names) is judged before it is written. A dotted word is judged whole and part by part."""
    words: set[str] = set()

    def walk(o) -> None:
        if isinstance(o, str):
            for w in _WORD_BREAK.split(o):
                words.add(w)
                words.update(w.split("."))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(k)
                walk(v)
        elif isinstance(o, (list, tuple, set)):
            for v in o:
                walk(v)

    walk(obj)
    return judge_names(words, registry)


def dump_names(info) -> list[str]:
    """Every name a dump's inspection carries (table of contents entries, their schemas and owners, tables)."""
    out: list[str] = []
    for e in getattr(info, "toc", None) or ():
        out += [e.name, e.schema or "", e.owner or "", e.label, *e.name.split(" ")]
    for t in [*(getattr(info, "tables", None) or ()), *(getattr(info, "tables_with_data", None) or ())]:
        out += [t, *t.split(".", 1)]
    return out


# -- the entry point ---------------------------------------------------------------------------------

def _scan_table(conn: psycopg.Connection, p: TablePlan, salt: str, limit=None) -> list[Finding]:
    """One table's findings, printed without the run's registry of redacted names (profiling, tests)."""
    return _render(_scan_table_raw(conn, p, salt), {}, RedactedNames())


scan_table = _scan_table  # public: one table's findings (benchmarks/scan.py profiles the scan per table)


def scan_catalog(conn: psycopg.Connection, salt: str = "", *, large_objects: bool = True) -> list[Finding]:
    """The catalog's and large objects' findings on one connection (`scan_secrets` includes them)."""
    salt = salt or os.urandom(16).hex()
    hits = _catalog_raw(conn, salt, large_objects=large_objects)
    return _render(hits, _identify(conn, {h.ref for h in hits if h.ref}), RedactedNames())


def _catalog_raw(conn: psycopg.Connection, salt: str, *, large_objects: bool = True) -> list[RawHit]:
    hits: list[RawHit] = []
    for label, query in CATALOG_PARTS:
        hits += _guarded(conn, lambda q=query: _scan_catalog_part(conn, label, q, salt), f"catalog: {label}")
    hits += _guarded(conn, lambda: _unreadable_catalog(conn), "catalog: subscriptions and user mappings")
    if large_objects:
        hits += _guarded(conn, lambda: _scan_large_objects(conn, salt), "large objects")
    return hits


def _guarded(conn: psycopg.Connection, fn: Callable[[], list[RawHit]], place: str) -> list[RawHit]:
    """A place that cannot be read (no privilege, a forced row-level-security policy) is a finding."""
    try:
        return fn()
    except psycopg.errors.InsufficientPrivilege:
        why = "no privilege"
    except psycopg.errors.ObjectNotInPrerequisiteState:
        why = "not readable in this state"
    except psycopg.Error as e:
        why = type(e).__name__
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()
    return [RawHit(UNREADABLE, "", "unreadable", place=place, extra={"why": why})]


def _return_freed_memory() -> None:
    """Give the workers' freed chunk buffers back to the OS (glibc keeps them per thread arena), so the
    stages after the scan, and the client tools they start, do not sit on top of the scan's peak."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def scan_secrets(server_conn_factory: Callable[[str], psycopg.Connection], database: str, contract: Contract,
                 salt: str, *, workers: int | None = None, settings: list[dict] | None = None,
                 rows_per_kind=None, names: RedactedNames | None = None) -> ScanFindings:
    """Every finding in `database`: its tables, large objects and catalog, and the `settings` handed in.

    `server_conn_factory(database)` opens a read-only proof session of the restoring role (through the
    host guard); each worker thread uses one. `salt` is per run: fingerprints let findings of one run be
    compared, never reversed or joined across runs. `settings` are `server.database_settings` entries
    (name and value of each `ALTER DATABASE/ROLE ... SET` of this run's databases and role); their values
    are scanned and never printed. Returns a list of Finding with `.redacted` (the names that matched: `names`,
    the run's registry so far, with this scan's added) and `.stats`.
    """
    if not salt:
        raise ValueError("a per-run salt is required")
    started = time.monotonic()
    engine()  # compile or load the rules before the workers start
    with server_conn_factory(database) as conn:
        plans = scan_plan(conn, contract)
    hits: list[RawHit] = []
    local = threading.local()
    opened: list[psycopg.Connection] = []
    lock = threading.Lock()

    def conn_of() -> psycopg.Connection:
        c = getattr(local, "conn", None)
        if c is None:
            c = local.conn = server_conn_factory(database)
            with lock:
                opened.append(c)
        return c

    def table_task(p: TablePlan) -> list[RawHit]:
        c = conn_of()
        return _guarded(c, lambda: _scan_table_raw(c, p, salt), f"table {p.contract_name}")

    def catalog_task() -> list[RawHit]:
        return _catalog_raw(conn_of(), salt)

    # biggest first, so the long tables do not end up last on one worker
    order = sorted(plans, key=lambda p: -len(p.columns))
    n_workers = max(1, min(workers or (os.cpu_count() or 2), len(order) + 1))
    try:
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="fix7-secrets") as pool:
            futures = [pool.submit(catalog_task)] + [pool.submit(table_task, p) for p in order]
            for fut in futures:
                hits.extend(fut.result())
        if settings:
            hits += _scan_settings(settings, salt)
        with server_conn_factory(database) as conn:
            idents = _identify(conn, {h.ref for h in hits if h.ref})
    finally:
        for c in opened:
            c.close()
        _return_freed_memory()
    names = names if names is not None else RedactedNames()
    findings = _render(hits, idents, names)
    stats = {"tables": len(plans), "columns": sum(len(p.columns) + len(p.bytea) for p in plans),
             "catalog_parts": len(CATALOG_PARTS), "settings": len(settings or []),
             "seconds": round(time.monotonic() - started, 3), "engine": f"kingfisher {engine().version}",
             "rules": len(engine().rules)}
    return ScanFindings(findings, redacted=names, stats=stats, present_tables={p.contract_name for p in plans})


__all__ = ["ScanFindings", "TablePlan", "scan_plan", "scan_secrets", "scan_catalog", "CATALOG_PARTS"]
