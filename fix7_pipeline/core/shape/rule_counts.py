"""The data rules' violating rows counted inside PostgreSQL, in one pass per table (issue 25 item 2).

Every rule that judges a row by itself (a pattern, a value set, a bound, a row predicate) becomes one
`count(*) filter (where <violated>)` of its table's single aggregate query, so a table is read once however
many such rules it has. A uniqueness rule is a grouped count over the key's columns; an existence rule an
anti-join against the table it refers to (PostgreSQL reads both through their indexes where it can). The
statements run on `jobs` sessions sharing one exported snapshot; GX then gates the counts (`data_rules.py`).

Each count keeps the semantics of the GX expectation it replaces, NULLs included: a column rule ignores a
NULL (GX's column expectations do); a row predicate counts a row only where it is true (a SQL WHERE); the
uniqueness rule counts every row of a key that occurs twice or more among rows with no NULL in the key
(GX's grouped subquery joins back with `=`, which no NULL satisfies); an existence rule counts a NULL
reference as missing (`NOT EXISTS` finds nothing equal to NULL).

The statements are built for a clone the dump controls: every table is schema-qualified, every operator and
function is `pg_catalog`'s, the sessions are the throwaway's read-only login with names resolved in pg_catalog
alone, and every column a rule reads must be of a type that comes with PostgreSQL (a type the dump made could
bring an implicit cast or an equality the dump wrote); a rule on any other type fails with that reason.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg import pq, sql

from ..postgres.proof_sql import is_builtin
from ..postgres.server_faults import from_psycopg

Predicate = Callable[[], sql.Composable]


def _op(name: str) -> sql.Composable:
    return sql.SQL(f"OPERATOR(pg_catalog.{name})")


def col(name: str) -> sql.Composable:
    """Column `name` of the row being judged (alias t)."""
    return sql.SQL("t.{}").format(sql.Identifier(name))


def cmp(left: sql.Composable, op: str, right: sql.Composable) -> sql.Composable:
    return sql.SQL("({} {} {})").format(left, _op(op), right)


def lit(value) -> sql.Composable:
    return sql.Literal(value)


def timestamptz(iso: str) -> sql.Composable:
    return sql.SQL("{}::pg_catalog.timestamptz").format(sql.Literal(iso))


@dataclass(frozen=True)
class RuleCount:
    """How one data rule counts its violating rows in `table`.

    `violated` is a predicate over the row (alias t), summed in the table's one scan; `query`, given the
    qualified table, is a statement of its own returning one count (uniqueness, existence). `columns` are
    the table's columns the rule reads: each must exist with a type that comes with PostgreSQL.
    """

    rule: str
    table: str
    columns: tuple[str, ...]
    violated: Predicate | None = None
    query: Callable[[sql.Composable], sql.Composable] | None = None
    refs: tuple[tuple[str, str], ...] = ()  # (table, column) of other tables it reads, checked alike
    settings: tuple[tuple[str, str], ...] = ()  # planner settings for its own statement alone

    def on(self, table: str) -> RuleCount:
        return RuleCount(self.rule, table, self.columns, self.violated, self.query, self.refs, self.settings)


def hex_digest(rule: str, table: str, column: str, length: int) -> RuleCount:
    """Non-NULL values that are not `length` lower-case hex digits (GX: ExpectColumnValuesToMatchRegex with
    `^[0-9a-f]{length}$`). Written as `~ '^[0-9a-f]*$'` and a length, which is the same test (a value that is
    only hex digits has no padding, so its length is the number of characters the pattern saw) and ten
    times cheaper in PostgreSQL's regex engine than the bounded repetition."""
    c = col(column)
    ok = sql.SQL("({} AND {})").format(cmp(c, "~", lit("^[0-9a-f]*$")),
                                       cmp(sql.SQL("pg_catalog.length({})").format(c), "=", lit(length)))
    return RuleCount(rule, table, (column,), lambda: sql.SQL("({} IS NOT NULL AND NOT {})").format(c, ok))


def in_set(rule: str, table: str, column: str, values: Sequence[str]) -> RuleCount:
    """Non-NULL values outside `values` (GX: ExpectColumnValuesToBeInSet, an IN list)."""
    c = col(column)
    ok = sql.SQL("({})").format(sql.SQL(" OR ").join(cmp(c, "=", lit(v)) for v in values))
    return RuleCount(rule, table, (column,), lambda: sql.SQL("({} IS NOT NULL AND NOT {})").format(c, ok))


def at_least(rule: str, table: str, column: str, minimum: int) -> RuleCount:
    """Non-NULL values below `minimum` (GX: ExpectColumnValuesToBeBetween, min only, not strict)."""
    c = col(column)
    return RuleCount(rule, table, (column,),
                     lambda: sql.SQL("({} IS NOT NULL AND NOT {})").format(c, cmp(c, ">=", lit(minimum))))


def rows_where(rule: str, table: str, columns: Sequence[str], predicate: Predicate) -> RuleCount:
    """Rows where `predicate` is true (GX: UnexpectedRowsExpectation with `select ... where <predicate>`)."""
    return RuleCount(rule, table, tuple(columns), predicate)


def unique_together(rule: str, table: str, columns: Sequence[str]) -> RuleCount:
    """Rows whose key (no part NULL) occurs twice or more (GX: ExpectCompoundColumnsToBeUnique).

    Grouped in key order from a sorted sequential scan: nearly every key is its own group, which a hash table
    holds only by spilling to disk (2.7 s at 1.1M rows); the key's index read in order fetches the heap for every
    row of a clone never vacuumed (1.3 s once the clone is analyzed, when the planner prefers it); a parallel
    sort took 0.6 s."""
    cols = [col(c) for c in columns]

    def query(qualified: sql.Composable) -> sql.Composable:
        return sql.SQL("select coalesce(pg_catalog.sum(g.n), 0)::pg_catalog.int8 from (select pg_catalog.count(*) "
                       "as n from {t} t where {not_null} group by {key} having pg_catalog.count(*) {gt} 1) g").format(
            t=qualified, not_null=sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in cols),
            key=sql.SQL(", ").join(cols), gt=_op(">"))
    return RuleCount(rule, table, tuple(columns), query=query, settings=(
        ("enable_hashagg", "off"), ("enable_indexscan", "off"), ("enable_indexonlyscan", "off"),
        ("enable_bitmapscan", "off")))


def exists_in(rule: str, table: str, column: str, ref_table: tuple[str, str], ref_column: str, *,
              ref_as_text: bool = False, where: Predicate | None = None) -> RuleCount:
    """Rows (where `where` holds) whose `column` matches no `ref_column` of `ref_table`, a NULL included
    (GX: UnexpectedRowsExpectation with `not exists (...)`). `ref_as_text` compares the referenced value's text
    (a builtin cast: the shape gate and the type check keep both types PostgreSQL's own)."""
    ref = sql.SQL("r.{}").format(sql.Identifier(ref_column))
    if ref_as_text:
        ref = sql.SQL("{}::pg_catalog.text").format(ref)

    def query(qualified: sql.Composable) -> sql.Composable:
        cond = sql.SQL("{} AND ").format(where()) if where else sql.SQL("")
        return sql.SQL("select pg_catalog.count(*) from {t} t where {cond}not exists (select 1 from {r} r where "
                       "{match})").format(t=qualified, cond=cond, r=sql.Identifier(*ref_table),
                                          match=cmp(ref, "=", col(column)))
    return RuleCount(rule, table, (column,), query=query, refs=((".".join(ref_table), ref_column),))


def split_table(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


def qualified(table: str) -> sql.Composable:
    return sql.Identifier(*split_table(table))


@dataclass(frozen=True)
class Statement:
    """One statement of the pass: the rules whose counts its one row returns, in order."""

    table: str
    rules: tuple[str, ...]
    text: sql.Composable
    reads: tuple[str, ...] = ()  # the tables it reads besides `table`
    settings: tuple[tuple[str, str], ...] = ()


def statements(counts: Sequence[RuleCount]) -> list[Statement]:
    """One aggregate scan per table for its row rules, one statement per uniqueness or existence rule."""
    by_table: dict[str, list[RuleCount]] = {}
    for c in counts:
        by_table.setdefault(c.table, []).append(c)
    out: list[Statement] = []
    for table, items in by_table.items():
        scanned = [c for c in items if c.violated is not None]
        if scanned:
            out.append(Statement(table, tuple(c.rule for c in scanned), sql.SQL("select {} from {} t").format(
                sql.SQL(", ").join(sql.SQL("pg_catalog.count(*) filter (where {})").format(c.violated())
                                   for c in scanned), qualified(table))))
        out += [Statement(table, (c.rule,), c.query(qualified(table)), tuple(t for t, _ in c.refs), c.settings)
                for c in items if c.query is not None]
    return out


# Only a table's stored rows are read: a view would run the dump's query (and any function it calls).
_COLUMN_TYPES_SQL = """
select c.relkind operator(pg_catalog.=) any ('{r,p,m}'::pg_catalog."char"[]), a.attname::pg_catalog.text,
       a.atttypid::pg_catalog.int8
from pg_catalog.pg_class c join pg_catalog.pg_attribute a on a.attrelid operator(pg_catalog.=) c.oid
where c.oid operator(pg_catalog.=) pg_catalog.to_regclass(%(table)s) and a.attnum operator(pg_catalog.>) 0
  and not a.attisdropped"""


_SIZE_SQL = "select pg_catalog.pg_relation_size(pg_catalog.to_regclass(%(table)s))"


def largest_first(conn: psycopg.Connection, sts: Sequence[Statement]) -> list[Statement]:
    """The statements by the bytes they read, most first, so the sessions finish together."""
    sizes: dict[str, int] = {}
    for t in {t for st in sts for t in (st.table, *st.reads)}:
        sizes[t] = int(conn.execute(_SIZE_SQL, {"table": _quoted(t)}).fetchone()[0] or 0)
    return sorted(sts, key=lambda st: -sum(sizes[t] for t in (st.table, *st.reads)))


def _quoted(table: str) -> str:
    return ".".join('"' + p.replace('"', '""') + '"' for p in split_table(table))


def unsafe_columns(conn: psycopg.Connection, counts: Sequence[RuleCount]) -> dict[str, str]:
    """{rule: why it cannot be counted safely}: its table or a column is missing, it is no table, or a column's
    type is the dump's."""
    out: dict[str, str] = {}
    types: dict[str, dict[str, int]] = {}
    stored: dict[str, bool] = {}

    def why(table: str, columns: Sequence[str]) -> str | None:
        if table not in types:
            rows = conn.execute(_COLUMN_TYPES_SQL, {"table": _quoted(table)}).fetchall()
            types[table] = {name: typ for _, name, typ in rows}
            stored[table] = bool(rows) and all(r[0] for r in rows)
        have = types[table]
        if not have:
            return f"table {table} is not in the clone"
        if not stored[table]:
            return f"{table} is not a table (a view would run the dump's query)"
        if any(n not in have for n in columns):
            return f"a column it reads is not in {table}"
        if any(not is_builtin(have[n]) for n in columns):
            return "a column it reads has a type the dump defined, which may carry the dump's own code"
        return None

    for c in counts:
        reason = why(c.table, c.columns) or next((w for t, n in c.refs if (w := why(t, (n,)))), None)
        if reason:
            out[c.rule] = reason
    return out


def _begin(conn: psycopg.Connection, imported: str | None) -> None:
    conn.execute("begin isolation level repeatable read read only")
    if imported:
        conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(imported)))


def count_violations(connect: Callable[[str], psycopg.Connection], counts: Sequence[RuleCount], *, jobs: int = 2,
                     server: str = "the rehearsal server") -> tuple[dict[str, int], dict[str, str]]:
    """({rule: violating rows}, {rule: why it was not counted}) for `counts`, on `jobs` sessions of one snapshot.

    `connect(purpose)` opens a read-only session of the clone's least-privileged login. A rule that cannot be
    counted safely, or whose statement the clone makes fail, is not counted (its SQLSTATE says why; no message,
    which may quote a value); a fault of the server or its connection is raised as the ServerFault it is.
    """
    counted: dict[str, int] = {}
    errors: dict[str, str] = {}
    conn = connect("data rules: one pass per table")
    helpers: list[psycopg.Connection] = []
    try:
        conn.autocommit = True
        _begin(conn, None)
        errors.update(unsafe_columns(conn, counts))
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for st in largest_first(conn, statements([c for c in counts if c.rule not in errors])):
            todo.put(st)
        n_helpers = max(0, min(jobs, todo.qsize()) - 1)
        exported = conn.execute("select pg_catalog.pg_export_snapshot()").fetchone()[0] if n_helpers else None
        for i in range(n_helpers):
            h = connect(f"data rules: one pass per table (session {i + 2})")
            try:
                h.autocommit = True
                _begin(h, exported)
            except psycopg.Error as e:
                h.close()
                if (fault := from_psycopg(e, server)) is not None:
                    raise fault from None
                break  # the snapshot could not be shared (its session ended): the sessions open go on alone
            helpers.append(h)

        def work(c: psycopg.Connection) -> None:
            while True:
                try:
                    st = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    c.execute("savepoint fix7_rule")  # rolled back after each: its settings end with it
                    for name, value in st.settings:
                        c.execute("select pg_catalog.set_config(%s, %s, true)", (name, value))
                    row = c.execute(st.text).fetchone()
                    c.execute("rollback to savepoint fix7_rule")
                except psycopg.Error as e:
                    fault = from_psycopg(e, server)
                    if fault is not None:
                        raise fault from None
                    c.execute("rollback to savepoint fix7_rule")
                    for rule in st.rules:
                        errors[rule] = f"the count failed in PostgreSQL (SQLSTATE {e.sqlstate or '?'})"
                    continue
                counted.update(zip(st.rules, (int(v) for v in row)))

        if helpers:
            with ThreadPoolExecutor(max_workers=len(helpers), thread_name_prefix="fix7-data-rules") as pool:
                running = [pool.submit(work, h) for h in helpers]
                try:
                    work(conn)
                finally:
                    for r in running:
                        r.result()
        else:
            work(conn)
    except psycopg.Error as e:
        if (fault := from_psycopg(e, server)) is not None:
            raise fault from None
        raise
    finally:
        for c in (conn, *helpers):
            try:
                if c.info.transaction_status != pq.TransactionStatus.IDLE:
                    c.execute("rollback")
            except psycopg.Error:
                pass
            c.close()
    return counted, errors
