"""Schema shape gate: does the clone's catalog match the contract's shape?

The catalog is read with one query per kind (tables, columns, constraints, indexes) for all user
tables at once, under an empty search_path so names and expressions print exactly as pg_dump
prints them. Constraints are matched by what they do (columns, references, definition), not only
by name: a renamed but equal constraint is a note, a missing or different one an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg

from ..contract.model import (FK_ACTIONS, GENERATED, IDENTITY, Check, Column, Contract, ForeignKey, Index, Key,
                              TableShape)
from ..shared.model import Finding

_USER_SCHEMAS = """n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
                   and n.nspname !~ '^pg_(toast_)?temp_' """

_PARENTS = """array(select case when pn.nspname = 'public' then p.relname else pn.nspname || '.' || p.relname end
             from pg_inherits i join pg_class p on p.oid = i.inhparent join pg_namespace pn on pn.oid = p.relnamespace
             where i.inhrelid = c.oid order by i.inhseqno)::text[]"""

# Every user table: plain, partitioned parents and their partitions, inherited and typed tables.
_TABLES_SQL = f"""
select c.oid, n.nspname, c.relname,
       case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end,
       c.relispartition, case when c.relispartition then pg_get_expr(c.relpartbound, c.oid) end,
       {_PARENTS},
       case when c.reloftype <> 0 then format_type(c.reloftype, null) end
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p') and {_USER_SCHEMAS}
  and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')
order by 2, 3"""

_COLUMNS_SQL = """
select a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), not a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text
from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where a.attrelid = any(%(oids)s) and a.attnum > 0 and not a.attisdropped
order by a.attrelid, a.attnum"""

_CONSTRAINTS_SQL = """
select c.conrelid, c.conname, c.contype,
       array(select a.attname from unnest(c.conkey) with ordinality k(n, o)
             join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n order by k.o)::text[],
       c.confrelid, rn.nspname, r.relname,
       array(select a.attname from unnest(c.confkey) with ordinality k(n, o)
             join pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.n order by k.o)::text[],
       c.confdeltype, c.confupdtype, pg_get_constraintdef(c.oid)
from pg_constraint c
left join pg_class r on r.oid = c.confrelid left join pg_namespace rn on rn.oid = r.relnamespace
where c.conrelid = any(%(oids)s) and c.contype in ('p', 'u', 'f', 'c')
order by c.conrelid, c.conname"""

_INDEXES_SQL = """
select i.indrelid, x.relname, i.indisunique, am.amname,
       array(select coalesce(a.attname, pg_get_indexdef(i.indexrelid, k.o::int, true))
             from unnest(i.indkey) with ordinality k(n, o)
             left join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.n
             where k.o <= i.indnkeyatts order by k.o)::text[]
from pg_index i join pg_class x on x.oid = i.indexrelid join pg_am am on am.oid = x.relam
where i.indrelid = any(%(oids)s)
  and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid and c.conrelid = i.indrelid
                  and c.contype in ('p', 'u', 'x'))
order by i.indrelid, x.relname"""


def _table_name(schema: str, name: str) -> str:
    return name if schema == "public" else f"{schema}.{name}"


def read_catalog_shape(conn: psycopg.Connection) -> dict[str, TableShape]:
    """Every user table of the connected database as the contract describes tables.

    Partitioned tables carry their partition key, partitions their parent and bound, inheriting tables
    their parents and typed tables their type; identity and generated columns say so (a generation
    expression is not a default). Tables made with LIKE are plain tables and read as such.
    """
    with conn.transaction():
        # names print qualified, and timestamp literals (partition bounds, defaults) the same on every server
        conn.execute("select set_config('search_path', '', true), set_config('TimeZone', 'UTC', true), "
                     "set_config('DateStyle', 'ISO, MDY', true), set_config('IntervalStyle', 'postgres', true)")
        tables = conn.execute(_TABLES_SQL).fetchall()
        oids = [r[0] for r in tables]
        by_oid: dict[int, TableShape] = {}
        for oid, s, n, partkey, is_partition, bound, parents, of_type in tables:
            t = TableShape(name=_table_name(s, n), partition_by=partkey, of_type=of_type)
            if is_partition:
                t.partition_of, t.partition_bound = (parents[0] if parents else None), bound
            else:
                t.inherits = list(parents or [])
            by_oid[oid] = t
        for relid, name, typ, nullable, default, identity, generated in conn.execute(_COLUMNS_SQL, {"oids": oids}):
            col = Column(name, typ, nullable, default, IDENTITY.get(identity or ""))
            if generated and generated in GENERATED:
                col.default, col.generated, col.generated_kind = None, default, GENERATED[generated]
            by_oid[relid].columns.append(col)
        for (relid, name, kind, cols, _refoid, rschema, rname, rcols, deltype, updtype,
             definition) in conn.execute(_CONSTRAINTS_SQL, {"oids": oids}):
            t = by_oid[relid]
            if kind == "p":
                t.primary_key = Key(name, list(cols))
            elif kind == "u":
                t.unique.append(Key(name, list(cols)))
            elif kind == "f":
                t.foreign_keys.append(ForeignKey(name, list(cols), _table_name(rschema, rname), list(rcols),
                                                 FK_ACTIONS.get(deltype), FK_ACTIONS.get(updtype)))
            else:
                t.checks.append(Check(name, definition))
        for relid, name, unique, method, cols in conn.execute(_INDEXES_SQL, {"oids": oids}):
            by_oid[relid].indexes.append(Index(name, list(cols), bool(unique), method))
    return {t.name: t for t in by_oid.values()}


def _loose(definition: str) -> str:
    """A definition with parentheses and spacing removed: equal modulo PostgreSQL's re-parenthesising."""
    return re.sub(r"[()\s]", "", definition).lower()


def _fk_key(fk: ForeignKey) -> tuple:
    return (tuple(fk.columns), fk.ref_table, tuple(fk.ref_columns), fk.on_delete, fk.on_update)


def _f(rule: str, message: str, severity: str, table: str, column: str | None = None, **extra) -> Finding:
    return Finding(rule=f"shape.{rule}", message=message, severity=severity, table=table, column=column,
                   extra=extra)


def compare_shapes(expected: Contract, actual: dict[str, TableShape]) -> list[Finding]:
    """Findings for every way `actual` differs from the contract's shape (text comparison only)."""
    out: list[Finding] = []
    for tname, exp in expected.tables.items():
        act = actual.get(tname)
        if act is None:
            if exp.required:
                out.append(_f("table_missing", f"{tname}: table missing", "error", tname))
            else:
                out.append(_f("table_missing", f"{tname}: optional table absent", "note", tname))
            continue
        out += _compare_kind(exp, act)
        out += _compare_columns(exp, act)
        out += _compare_keys(exp, act)
        out += _compare_foreign_keys(exp, act)
        out += _compare_checks(exp, act)
        out += _compare_indexes(exp, act)
    for tname in sorted(set(actual) - set(expected.tables)):
        out.append(_f("extra_table", f"{tname}: table not in the contract", "note", tname))
    return out


def _show(value) -> str:
    if value is None or value == []:
        return "none"
    return ", ".join(value) if isinstance(value, list) else str(value)


def _compare_kind(exp: TableShape, act: TableShape) -> list[Finding]:
    """Partitioning, partition bounds, inheritance and typed tables: a table of another kind is another shape."""
    out: list[Finding] = []
    t = exp.name
    for rule, label, key, loose in (("partitioning", "partition key", "partition_by", True),
                                    ("partitioning", "partition of", "partition_of", False),
                                    ("partitioning", "partition bound", "partition_bound", True),
                                    ("inheritance", "inherits from", "inherits", False),
                                    ("typed_table", "typed table of", "of_type", False)):
        want, got = getattr(exp, key), getattr(act, key)
        same = (_loose(want) == _loose(got)) if loose and want is not None and got is not None else want == got
        if not same:
            out.append(_f(rule, f"{t}: {label} expected {_show(want)}, found {_show(got)}", "error", t,
                          expected=_show(want), found=_show(got)))
    return out


def _show_generated(c: Column) -> str:
    return f"generated {c.generated_kind} as {c.generated}" if c.generated is not None else "not generated"


def _compare_columns(exp: TableShape, act: TableShape) -> list[Finding]:
    out: list[Finding] = []
    t = exp.name
    for col in exp.columns:
        found = act.column(col.name)
        where = f"{t}.{col.name}"
        if found is None:
            out.append(_f("column_missing", f"{where}: column missing", "error", t, col.name))
            continue
        if found.type != col.type:
            out.append(_f("column_type", f"{where}: expected {col.type}, found {found.type}", "error", t, col.name,
                          expected=col.type, found=found.type))
        if found.nullable != col.nullable:
            want = "nullable" if col.nullable else "NOT NULL"
            got = "nullable" if found.nullable else "NOT NULL"
            out.append(_f("nullability", f"{where}: expected {want}, found {got}", "error", t, col.name))
        if found.identity != col.identity:
            out.append(_f("identity", f"{where}: expected identity {col.identity or 'none'}, found "
                          f"{found.identity or 'none'}", "error", t, col.name))
        if (found.generated is None) != (col.generated is None) or (col.generated is not None and (
                found.generated_kind != col.generated_kind or _loose(found.generated) != _loose(col.generated))):
            out.append(_f("generated", f"{where}: expected {_show_generated(col)}, found {_show_generated(found)}",
                          "error", t, col.name))
        if col.default is not None and found.default != col.default:
            out.append(_f("column_default", f"{where}: expected default {col.default}, found "
                          f"{found.default if found.default is not None else 'no default'}", "error", t, col.name,
                          expected=col.default, found=found.default))
    for col in act.columns:
        if exp.column(col.name) is None:
            out.append(_f("extra_column", f"{t}.{col.name}: column not in the contract ({col.type})", "note",
                          t, col.name))
    return out


def _compare_keys(exp: TableShape, act: TableShape) -> list[Finding]:
    out: list[Finding] = []
    t = exp.name
    if exp.primary_key:
        pk, got = exp.primary_key, act.primary_key
        if got is None:
            out.append(_f("primary_key", f"{t}: primary key {pk.name} missing", "error", t))
        elif got.columns != pk.columns:
            out.append(_f("primary_key", f"{t}: primary key {pk.name} expected on ({', '.join(pk.columns)}), "
                          f"found {got.name} on ({', '.join(got.columns)})", "error", t))
        elif got.name != pk.name:
            out.append(_f("constraint_renamed", f"{t}: primary key {pk.name} is named {got.name}", "note", t))
    elif act.primary_key:
        out.append(_f("extra_constraint", f"{t}: primary key {act.primary_key.name} not in the contract", "note", t))
    out += _match_named(t, "unique constraint", "unique", exp.unique, act.unique,
                        lambda k: tuple(k.columns), lambda k: f"({', '.join(k.columns)})")
    return out


def _match_named(t: str, label: str, rule: str, expected: list, actual: list, key, show) -> list[Finding]:
    """Match constraints by definition first, then report renames, differences, absences and extras."""
    out: list[Finding] = []
    remaining = list(actual)
    for e in expected:
        same = next((a for a in remaining if key(a) == key(e)), None)
        if same is not None:
            remaining.remove(same)
            if same.name != e.name:
                out.append(_f("constraint_renamed", f"{t}: {label} {e.name} is named {same.name}", "note", t))
            continue
        by_name = next((a for a in remaining if a.name == e.name), None)
        if by_name is not None:
            remaining.remove(by_name)
            out.append(_f(rule, f"{t}: {label} {e.name} differs: expected {show(e)}, found {show(by_name)}",
                          "error", t))
        else:
            out.append(_f(rule, f"{t}: {label} {e.name} missing", "error", t, expected=show(e)))
    for a in remaining:
        out.append(_f("extra_constraint", f"{t}: {label} {a.name} not in the contract {show(a)}", "note", t))
    return out


def _show_fk(fk: ForeignKey) -> str:
    s = f"({', '.join(fk.columns)}) -> {fk.ref_table}({', '.join(fk.ref_columns)})"
    if fk.on_delete:
        s += f" on delete {fk.on_delete.lower()}"
    if fk.on_update:
        s += f" on update {fk.on_update.lower()}"
    return s


def _compare_foreign_keys(exp: TableShape, act: TableShape) -> list[Finding]:
    return _match_named(exp.name, "foreign key", "foreign_key", exp.foreign_keys, act.foreign_keys, _fk_key, _show_fk)


def _compare_checks(exp: TableShape, act: TableShape) -> list[Finding]:
    return _match_named(exp.name, "check", "check", exp.checks, act.checks,
                        lambda c: _loose(c.definition), lambda c: c.definition)


def _compare_indexes(exp: TableShape, act: TableShape) -> list[Finding]:
    """Indexes are not part of the failing shape: a missing one is a warning, an extra one a note."""
    out = _match_named(exp.name, "index", "index", exp.indexes, act.indexes,
                       lambda i: (tuple(i.columns), i.unique, i.method),
                       lambda i: f"{'unique ' if i.unique else ''}{i.method} ({', '.join(i.columns)})")
    for f in out:
        if f.severity == "error":
            f.severity = "warning"
        if f.rule == "shape.extra_constraint":
            f.rule = "shape.extra_index"
    return out


def check_shape(conn: psycopg.Connection, contract: Contract,
                scratch: Callable[[], psycopg.Connection] | None = None) -> list[Finding]:
    """Findings (error / warning / note) for the connected clone against the contract's shape.

    The clone is only read. Where checks or defaults differ in text, `scratch()` opens an empty
    database of ours in which PostgreSQL re-prints the contract's own text (no object of the dump is
    there to resolve a name to); without it the texts are compared as written.
    """
    actual = read_catalog_shape(conn)
    findings = compare_shapes(contract, actual)
    if scratch and any(f.rule in ("shape.check", "shape.column_default") for f in findings):
        with scratch() as scratch_conn:
            findings = compare_shapes(_canonical_contract(scratch_conn, contract, findings), actual)
    return findings


def _canonical_contract(conn: psycopg.Connection, contract: Contract, findings: list[Finding]) -> Contract:
    """The contract with differing checks and defaults re-printed by PostgreSQL itself.

    A hand-written contract says `CHECK (a > 0 and b > 0)` where the catalog prints
    `CHECK (((a > 0) AND (b > 0)))`. PostgreSQL deparses the contracted text on a temporary table
    with the contracted column types inside a transaction that is always rolled back; text it cannot
    deparse stays as written, so the difference stays an error.
    """
    import copy

    canon = copy.deepcopy(contract)
    tables = {f.table for f in findings if f.rule in ("shape.check", "shape.column_default")}
    for tname in sorted(tables):
        t = canon.tables[tname]
        cols = ", ".join(f"{_qi(c.name)} {c.type}" for c in t.columns)
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("select set_config('search_path', '', true)")
                conn.execute(f"create temporary table fix7_canon ({cols}) on commit drop")
                for col in t.columns:
                    if col.default is not None:
                        col.default = _deparse(conn, f"alter table pg_temp.fix7_canon alter column {_qi(col.name)} "
                                               f"set default {col.default}",
                                               "select pg_get_expr(d.adbin, d.adrelid) from pg_attrdef d "
                                               "join pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum "
                                               f"where d.adrelid = 'pg_temp.fix7_canon'::regclass "
                                               f"and a.attname = {_ql(col.name)}", col.default)
                for chk in t.checks:
                    chk.definition = _deparse(conn, f"alter table pg_temp.fix7_canon add constraint fix7_canon_check "
                                              f"{chk.definition}",
                                              "select pg_get_constraintdef(oid) from pg_constraint "
                                              "where conrelid = 'pg_temp.fix7_canon'::regclass "
                                              "and conname = 'fix7_canon_check'", chk.definition,
                                              "alter table pg_temp.fix7_canon drop constraint fix7_canon_check")
        except psycopg.Error:
            continue
    return canon


def _deparse(conn: psycopg.Connection, ddl: str, read: str, original: str, cleanup: str | None = None) -> str:
    try:
        with conn.transaction():
            conn.execute(ddl)
            row = conn.execute(read).fetchone()
            if cleanup:
                conn.execute(cleanup)
    except psycopg.Error:
        return original
    return row[0] if row and row[0] else original


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ql(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
