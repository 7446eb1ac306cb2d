"""The plan of a table scan: which columns of which table are read, and how each is printed as text."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ..contract.model import Contract
from ..postgres.proof_sql import FIRST_NORMAL_OID

_NON_TEXT_CATEGORIES = set("BDNTGIVPX")   # bool, date/time, numeric, interval, geometry, inet, bit, pseudo
_NON_TEXT_TYPES = {"uuid", "pg_lsn", "oid", "regclass", "regtype", "regproc", "tid", "xid", "xid8", "cid",
                   "money", "txid_snapshot", "pg_snapshot"}


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
    lookalike_columns: list[str] = field(default_factory=list)  # contract: ids and public keys, not secrets

    @property
    def scan_columns(self) -> list[str]:
        return self.columns


def lookalike_columns(contract: Contract) -> dict[str, list[str]]:
    """The contract's `lookalike_columns` ({table: [column]}): columns that hold identifiers, public keys or
    client ids. A rule keyed on a word (`token=`, `Bearer`) is not a finding there; a provider's pattern is."""
    raw = contract.annotations.get("lookalike_columns") or {}
    return {str(t): [str(c) for c in cols or []] for t, cols in raw.items()} if isinstance(raw, dict) else {}


def contract_name(schema: str, name: str) -> str:
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
    lookalikes = lookalike_columns(contract)
    plans = []
    for oid, schema, name, relkind in tables:
        cname = contract_name(schema, name)
        p = TablePlan(oid, schema, name, cname, relkind, [], [], [], [], list(pks.get(oid) or []),
                      cname in empties)
        p.lookalike_columns = list(lookalikes.get(cname, []))
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
