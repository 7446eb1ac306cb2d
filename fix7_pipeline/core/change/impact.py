"""What production will feel: the measured impact of each statement of a change, warnings and thresholds.

Measured per statement (per statement line: the pieces `change.statement_chunks` runs), from the change's
own session, between statements, inside its one transaction:

- duration (the statement alone: the measurement queries around it are not counted);
- the relation locks it acquired (the session's own rows of `pg_locks`, `pid = pg_backend_pid()`): a lock
  is held to the end of the transaction, so it is held from the statement that took it to COMMIT
  (`held_s`, the sum of the statement durations from there plus the COMMIT), unless a ROLLBACK TO
  SAVEPOINT gave it back earlier;
- the tables and indexes it rewrote (`pg_class.relfilenode` changed, or an index dropped and built again
  under its name) with their size before and after (`pg_relation_size`, main fork);
- the WAL it generated (`pg_current_wal_insert_lsn()` moved: server-wide, so it includes WAL other sessions
  on the rehearsal server wrote meanwhile; "not measurable" when the restoring role may not call it);
- the rows it affected (the server's command tag);

and for the whole file the database size change (`pg_database_size`). The measurement queries read only
`pg_catalog` (qualified names and `OPERATOR(pg_catalog.=)`, so no search_path the change sets can steer
them to a function of the dump); `pg_relation_size` gives its lock back at once, and the catalog locks
they keep are not reported, so they change nothing that is measured.

Warnings name the statement and line: an index built without CONCURRENTLY on a large table, a foreign key
or CHECK added without NOT VALID, a column type change that rewrote the table, an added column whose
default is volatile (it rewrites; a non-volatile one such as now() does not, on PostgreSQL 11 and later),
any other rewrite, and an ACCESS EXCLUSIVE lock on a table the contract marks hot.

Thresholds gate: `max_statement_s`, `max_lock_s` (any lock mode), `max_access_exclusive_s` (ACCESS EXCLUSIVE),
`max_total_s` (every statement and the COMMIT) and `no_rewrite_tables`. Locks and rewrites of relations
the change itself created are reported but gate nothing: no one else can be waiting on them.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

import psycopg

from ..escape import md
from ..sql_lexer import Tok, tokens

LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
              "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
DEFAULT_INDEX_WARN_MB = 10.0
DEFAULT_INDEX_WARN_ROWS = 100_000
MAX_STATEMENTS_KEPT = 2000
MD_STATEMENTS = 100
TOP_LOCKS = 10
THRESHOLD_NAMES = ("max_statement_s", "max_lock_s", "max_access_exclusive_s", "max_total_s", "no_rewrite_tables")
_KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view", "i": "index", "I": "partitioned index",
          "S": "sequence", "v": "view", "f": "foreign table"}
_STORAGE = ("r", "m", "i")
_ROW_TAGS = ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY")
_SERIAL = {"serial", "serial4", "serial2", "serial8", "smallserial", "bigserial"}


def mode_name(pg_mode: str) -> str:
    """'AccessExclusiveLock' -> 'ACCESS EXCLUSIVE', as LOCK TABLE and the documentation spell it."""
    return " ".join(re.findall(r"[A-Z][a-z]*", pg_mode.removesuffix("Lock"))).upper()


def _strength(mode: str) -> int:
    names = [mode_name(m) for m in LOCK_MODES]
    return names.index(mode) if mode in names else -1


def qualified(name: str) -> str:
    """A contract or threshold table name as schema.table (a bare name is in public)."""
    name = str(name).strip()
    return name if "." in name else f"public.{name}"


# -- settings -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    max_statement_s: float | None = None
    max_lock_s: float | None = None
    max_access_exclusive_s: float | None = None
    max_total_s: float | None = None
    no_rewrite_tables: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {n: (list(getattr(self, n)) if n == "no_rewrite_tables" else getattr(self, n))
                for n in THRESHOLD_NAMES}


@dataclass(frozen=True)
class ImpactSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    index_warn_bytes: int = int(DEFAULT_INDEX_WARN_MB * 1024 * 1024)
    index_warn_rows: int = DEFAULT_INDEX_WARN_ROWS
    hot_tables: frozenset = frozenset()         # schema.table
    production_rows: dict = field(default_factory=dict)   # schema.table -> rows, from the contract
    clone_rows: dict = field(default_factory=dict)        # schema.table -> rows, counted at the anchor


def threshold_problems(values: dict) -> list[str]:
    """Why threshold settings are unusable (negative, not a number, a table list that is not names)."""
    out = []
    for name in ("max_statement_s", "max_lock_s", "max_access_exclusive_s", "max_total_s", "index_warn_mb",
                 "index_warn_rows"):
        v = values.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            out.append(f"{name} must be a number of {'rows' if name.endswith('rows') else 'seconds' if name.endswith('_s') else 'MB'} "
                       f"at or above 0, not {v!r}")
    tables = values.get("no_rewrite_tables") or []
    if not isinstance(tables, (list, tuple)) or not all(isinstance(t, str) and t.strip() for t in tables):
        out.append("no_rewrite_tables must be a list of table names (schema.table, or table for public)")
    return out


def settings_for(request, contract, anchor_tables: dict | None) -> ImpactSettings:
    """The request's thresholds and warning sizes, the contract's hot tables and production row counts,
    and the clone's row counts as the anchor counted them."""
    th = Thresholds(
        max_statement_s=_opt(request.max_statement_s), max_lock_s=_opt(request.max_lock_s),
        max_access_exclusive_s=_opt(request.max_access_exclusive_s), max_total_s=_opt(request.max_total_s),
        no_rewrite_tables=tuple(qualified(t) for t in request.no_rewrite_tables or ()))
    return ImpactSettings(
        thresholds=th,
        index_warn_bytes=int(float(request.index_warn_mb) * 1024 * 1024),
        index_warn_rows=int(request.index_warn_rows),
        hot_tables=frozenset(qualified(t) for t in contract.hot_tables),
        production_rows={qualified(t): int(n) for t, n in contract.production_rows.items()},
        clone_rows={k: int(v.get("rows") or 0) for k, v in (anchor_tables or {}).items()})


def _opt(v) -> float | None:
    return None if v is None else float(v)


# -- the measurement queries ------------------------------------------------------------------

_RELATIONS_SQL = (
    "select c.oid::pg_catalog.int8, c.relfilenode::pg_catalog.int8, c.relkind::pg_catalog.text, "
    "n.nspname::pg_catalog.text, c.relname::pg_catalog.text, i.indrelid::pg_catalog.int8 "
    "from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid OPERATOR(pg_catalog.=) c.relnamespace "
    "left join pg_catalog.pg_index i on i.indexrelid OPERATOR(pg_catalog.=) c.oid "
    "where c.relkind OPERATOR(pg_catalog.=) any ('{r,p,m,i,I,S,v,f}'::pg_catalog.\"char\"[])")
_SIZES_SQL = ("select o::pg_catalog.int8, pg_catalog.pg_relation_size(o) "
              "from pg_catalog.unnest(%s::pg_catalog.oid[]) as o")
_LOCKS_SQL = ("select l.relation::pg_catalog.int8, l.mode::pg_catalog.text from pg_catalog.pg_locks l "
              "where l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() and l.granted "
              "and l.locktype OPERATOR(pg_catalog.=) 'relation'::pg_catalog.text "
              "and l.database OPERATOR(pg_catalog.=) (select d.oid from pg_catalog.pg_database d "
              "where d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())")
_LSN_SQL = "select pg_catalog.pg_current_wal_insert_lsn()::pg_catalog.text"
_DB_SIZE_SQL = "select pg_catalog.pg_database_size(pg_catalog.current_database())"
_SCHEMAS_SQL = "select pg_catalog.current_schemas(false)::pg_catalog.text[]"
_VOLATILE_SQL = ("select p.proname::pg_catalog.text from pg_catalog.pg_proc p "
                 "where p.proname OPERATOR(pg_catalog.=) any (%s::pg_catalog.name[]) "
                 "and p.provolatile OPERATOR(pg_catalog.=) 'v'::pg_catalog.\"char\"")


class MeasurementFailed(Exception):
    """A measurement query failed inside the change's transaction (which it has then aborted)."""

    def __init__(self, error: psycopg.Error, after_line: int | None):
        self.error, self.after_line = error, after_line


@dataclass
class Rel:
    oid: int
    filenode: int
    kind: str
    schema: str
    name: str
    table_oid: int | None

    @property
    def qname(self) -> str:
        return f"{self.schema}.{self.name}"


def _user(schema: str) -> bool:
    return schema not in ("pg_catalog", "information_schema") and not schema.startswith(("pg_toast", "pg_temp"))


def _lsn(text: str | None) -> int | None:
    if not text:
        return None
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class Meter:
    """Measures a change as it runs; `result()` turns the measurements into the impact section."""

    def __init__(self, label: str, settings: ImpactSettings | None = None):
        self.label = label
        self.settings = settings or ImpactSettings()
        self.wal_note: str | None = None
        self.db_size_before: int | None = None
        self.db_size_after: int | None = None
        self.server_version = 0
        self.schemas: list[str] = ["public"]
        self.volatile: set[str] = set()
        self.baseline: dict[int, Rel] = {}      # every user relation before the file
        self.current: dict[int, Rel] = {}       # as the last measurement saw them
        self.known: dict[int, Rel] = {}         # every user relation seen, dropped ones too (for names)
        self.sizes: dict[int, int] = {}         # last known main-fork size
        self.locks: set[tuple[int, str]] = set()
        self.lsn: int | None = None
        self.statements: list[dict] = []
        self.lock_spans: list[dict] = []        # {oid, mode, taken, released}
        self.commit_s: float | None = None
        self.commit_wal: int | None = None
        self.committed = False
        self.measure_s = 0.0

    # -- before the transaction ---------------------------------------------------------
    def prepare(self, conn: psycopg.Connection, function_names: set[str]) -> None:
        """What is read outside the change's transaction (and rolled back): anything here may fail
        without touching the change. The WAL function is tried here, so it never aborts the change."""
        self.server_version = conn.info.server_version
        for what, body in (("wal", self._probe_wal), ("size", self._db_size_before),
                           ("schemas", self._schemas), ("volatile", lambda c: self._volatile(c, function_names))):
            try:
                body(conn)
            except psycopg.Error as e:
                conn.rollback()
                if what == "wal":
                    self.wal_note = (f"not measurable: the restoring role may not call pg_current_wal_insert_lsn() "
                                     f"on this server (SQLSTATE {getattr(e, 'sqlstate', None) or '?'})")
        conn.rollback()

    def _probe_wal(self, conn) -> None:
        conn.execute(_LSN_SQL).fetchone()

    def _db_size_before(self, conn) -> None:
        self.db_size_before = int(conn.execute(_DB_SIZE_SQL).fetchone()[0])

    def _schemas(self, conn) -> None:
        self.schemas = list(conn.execute(_SCHEMAS_SQL).fetchone()[0] or []) or ["public"]

    def _volatile(self, conn, names: set[str]) -> None:
        if names:
            self.volatile = {r[0] for r in conn.execute(_VOLATILE_SQL, (sorted(names),))}

    # -- inside the transaction ---------------------------------------------------------
    def start(self, conn: psycopg.Connection) -> None:
        """Right after the transaction began: the relations, their sizes, the locks held so far, the WAL position."""
        started = time.perf_counter()
        try:
            rels = self._relations(conn)
            self.baseline = dict(rels)
            self.current = dict(rels)
            self.known = dict(rels)
            storage = [o for o, r in rels.items() if r.kind in _STORAGE]
            self.sizes = self._sizes(conn, storage)
            self.locks = self._locks(conn)
            self.lsn = self._wal(conn)
        except psycopg.Error as e:
            raise MeasurementFailed(e, None) from None
        self.measure_s += time.perf_counter() - started

    def _relations(self, conn) -> dict[int, Rel]:
        return {r[0]: Rel(r[0], r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(_RELATIONS_SQL) if _user(r[3])}

    def _sizes(self, conn, oids: list[int]) -> dict[int, int]:
        if not oids:
            return {}
        return {o: int(s) for o, s in conn.execute(_SIZES_SQL, (oids,)) if s is not None}

    def _locks(self, conn, rels: dict[int, Rel] | None = None) -> set[tuple[int, str]]:
        """The session's relation locks on user relations (catalog locks, ours included, are left out)."""
        rels = rels if rels is not None else self.current
        return {(r[0], mode_name(r[1])) for r in conn.execute(_LOCKS_SQL)
                if r[0] is not None and (r[0] in rels or r[0] in self.known)}

    def _wal(self, conn) -> int | None:
        if self.wal_note:
            return None
        return _lsn(conn.execute(_LSN_SQL).fetchone()[0])

    def statement(self, conn: psycopg.Connection, line: int, cursor, duration_s: float) -> None:
        """After one statement line ran (and the transaction was seen still open)."""
        tags, rows = [], None
        while True:
            tag = (cursor.statusmessage or "").strip()
            if tag:
                words = tag.split()
                name = " ".join(w for w in words if not w.isdigit())
                tags.append(name)
                into = words[0] == "SELECT" and cursor.description is None  # CREATE TABLE AS, SELECT INTO
                if into:
                    tags[-1] = "CREATE TABLE AS"
                counted = words[0] in _ROW_TAGS or into
                if counted and words[-1].isdigit():
                    rows = (rows or 0) + int(words[-1])
            if not cursor.nextset():
                break
        started = time.perf_counter()
        try:
            wal_after = self._wal(conn)
            rels = self._relations(conn)
            locks = self._locks(conn, rels)
            rewrites, created, dropped, size_oids = self._storage_changes(rels)
            sizes = self._sizes(conn, size_oids)
            wal_before_next = self._wal(conn)
        except psycopg.Error as e:
            raise MeasurementFailed(e, line) from None
        self.measure_s += time.perf_counter() - started
        index = len(self.statements)
        for key in sorted(locks - self.locks):
            self.lock_spans.append({"oid": key[0], "mode": key[1], "taken": index, "released": None,
                                    "name": self._name(key[0], rels)})
        for span in self.lock_spans:
            if span["released"] is None and (span["oid"], span["mode"]) in self.locks - locks:
                span["released"] = index
        self.locks = locks
        for item in rewrites:
            item["size_after_bytes"] = sizes.get(item.pop("oid"))
        for item in created:
            item["size_bytes"] = sizes.get(item.pop("oid"))
        self.sizes.update(sizes)
        wal = (wal_after - self.lsn) if (wal_after is not None and self.lsn is not None) else None
        self.lsn = wal_before_next
        self.known.update(rels)
        self.current = rels
        self.statements.append({"line": line, "kind": "; ".join(dict.fromkeys(tags)) or "?",
                                "duration_s": round(duration_s, 4), "rows": rows, "wal_bytes": wal,
                                "rewrites": rewrites, "created": created, "dropped": dropped})

    def failed(self, line: int, kind: str, duration_s: float) -> None:
        """The statement that failed: its duration; the transaction was rolled back."""
        self.statements.append({"line": line, "kind": kind, "duration_s": round(duration_s, 4), "rows": None,
                                "wal_bytes": None, "rewrites": [], "created": [], "dropped": [], "failed": True})

    def _name(self, oid: int, rels: dict[int, Rel]) -> str:
        r = rels.get(oid) or self.known.get(oid)
        return r.qname if r else f"relation {oid}"

    def _storage_changes(self, rels: dict[int, Rel]):
        rewrites, created, dropped, size_oids = [], [], [], []
        gone = {o: r for o, r in self.current.items() if o not in rels}
        gone_by_name = {r.qname: r for r in gone.values()}
        rebuilt: set[int] = set()
        for oid, r in rels.items():
            old = self.current.get(oid)
            if old is None:
                prev = gone_by_name.get(r.qname) if r.kind in _STORAGE else None
                if prev is not None and prev.oid in self.baseline and prev.kind == r.kind:
                    rebuilt.add(prev.oid)  # dropped and built again under its name (ALTER TYPE rebuilds indexes)
                    rewrites.append(self._rewrite(r, prev.oid, oid))
                    size_oids.append(oid)
                elif r.kind in _STORAGE or r.kind in ("p", "I", "S", "v", "f"):
                    created.append({"relation": r.qname, "relkind": _KINDS.get(r.kind, r.kind), "oid": oid})
                    if r.kind in _STORAGE:
                        size_oids.append(oid)
            elif r.kind in _STORAGE and old.filenode != r.filenode and oid in self.baseline:
                rewrites.append(self._rewrite(r, oid, oid))
                size_oids.append(oid)
        for oid, r in gone.items():
            if oid in self.baseline and oid not in rebuilt:
                dropped.append({"relation": r.qname, "relkind": _KINDS.get(r.kind, r.kind)})
        return rewrites, created, dropped, size_oids

    def _rewrite(self, r: Rel, old_oid: int, oid: int) -> dict:
        table = self.known.get(r.table_oid) if r.table_oid else None
        return {"relation": r.qname, "relkind": _KINDS.get(r.kind, r.kind), "oid": oid,
                "table": table.qname if table else (r.qname if r.kind != "i" else None),
                "size_before_bytes": self.sizes.get(old_oid)}

    def commit(self, conn: psycopg.Connection) -> None:
        started = time.perf_counter()
        conn.commit()
        self.commit_s = time.perf_counter() - started
        self.committed = True
        try:  # after COMMIT: the WAL of the COMMIT itself, and the database size with old files truncated
            wal = self._wal(conn)
            if wal is not None and self.lsn is not None:
                self.commit_wal = wal - self.lsn
            self.db_size_after = int(conn.execute(_DB_SIZE_SQL).fetchone()[0])
        except psycopg.Error:
            pass
        finally:
            conn.rollback()

    # -- the impact section -----------------------------------------------------------------
    def result(self, lexed=None) -> dict:
        return analyse(self, lexed)


# -- analysis -----------------------------------------------------------------------------

def _rows(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return f"{n:,}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n} B"


def scale_note(settings: ImpactSettings, table: str | None) -> str:
    """'1.0M rows in the clone; production has 40M', where the contract states production's rows."""
    if not table:
        return ""
    clone = settings.clone_rows.get(table)
    prod = settings.production_rows.get(table)
    if clone is None and prod is None:
        return ""
    text = f"{_rows(clone)} rows in the clone" if clone is not None else "rows in the clone unknown"
    if prod is not None:
        text += f"; production has {_rows(prod)}"
    return text


def analyse(meter: Meter, lexed=None) -> dict:
    """The impact section of one stage (apply or rollback)."""
    st = meter.statements
    settings = meter.settings
    durations = [s["duration_s"] for s in st]
    commit_s = meter.commit_s or 0.0
    end = len(st)
    tables_of = {r.oid: (meter.known.get(r.table_oid).qname if r.table_oid and r.table_oid in meter.known
                         else r.qname) for r in meter.known.values()}
    locks = []
    for span in meter.lock_spans:
        last = span["released"] if span["released"] is not None else end - 1
        held = sum(durations[span["taken"]:last + 1]) + (commit_s if span["released"] is None else 0.0)
        s = st[span["taken"]]
        existing = span["oid"] in meter.baseline
        rel = meter.baseline.get(span["oid"]) or meter.known.get(span["oid"])
        entry = {"relation": span["name"], "relkind": _KINDS.get(rel.kind, rel.kind) if rel else None,
                 "mode": span["mode"], "line": s["line"], "kind": s["kind"], "held_s": round(held, 4),
                 "to": "commit" if span["released"] is None and meter.committed else
                       "rollback" if span["released"] is None else f"line {st[span['released']]['line']}",
                 "new_relation": not existing}
        table = tables_of.get(span["oid"])
        note = scale_note(settings, table) if existing else ""
        if note:
            entry["scale"] = note
        locks.append(entry)
        s.setdefault("locks", []).append({k: entry[k] for k in ("relation", "relkind", "mode", "held_s",
                                                                "new_relation")})
    for s in st:
        s.setdefault("locks", [])
    for lk, span in zip(locks, meter.lock_spans):
        lk["_table"] = tables_of.get(span["oid"])
    gated = [lk for lk in locks if not lk["new_relation"]]
    for lk in gated:  # an index lock its table's own lock (as strong, held as long) already covers
        lk["covered"] = lk["relkind"] == "index" and any(
            t["relation"] == lk["_table"] and _strength(t["mode"]) >= _strength(lk["mode"])
            and t["held_s"] >= lk["held_s"] for t in gated if t is not lk and t["relkind"] != "index")
    for lk in locks:
        lk.pop("_table", None)
    top = sorted((lk for lk in gated if not lk["covered"]), key=lambda lk: (lk["held_s"], _strength(lk["mode"])),
                 reverse=True)[:TOP_LOCKS]
    total = round(sum(durations) + commit_s, 4)
    wal_values = [s["wal_bytes"] for s in st if s.get("wal_bytes") is not None]
    wal_total = None
    if not meter.wal_note and wal_values:
        wal_total = sum(wal_values) + (meter.commit_wal or 0)
    size_change = (meter.db_size_after - meter.db_size_before
                   if meter.db_size_after is not None and meter.db_size_before is not None else None)
    rewrites = [dict(r, line=s["line"], kind=s["kind"]) for s in st for r in s["rewrites"]]
    out = {
        "label": meter.label,
        "completed": meter.committed,
        "statement_count": len(st),
        "statements": st[:MAX_STATEMENTS_KEPT],
        "statements_not_kept": max(0, len(st) - MAX_STATEMENTS_KEPT),
        "total_s": total,
        "statements_s": round(sum(durations), 4),
        "commit_s": round(commit_s, 4) if meter.committed else None,
        "max_statement_s": max(durations, default=0.0),
        "max_lock_s": max((lk["held_s"] for lk in gated), default=0.0),
        "max_access_exclusive_s": max((lk["held_s"] for lk in gated if lk["mode"] == ACCESS_EXCLUSIVE),
                                      default=0.0),
        "measurement_overhead_s": round(meter.measure_s, 4),
        "locks": locks,
        "top_locks": top,
        "rewrites": rewrites,
        "wal_bytes": wal_total,
        "wal_note": meter.wal_note or ("server-wide WAL insert position: includes WAL other sessions on the "
                                       "rehearsal server wrote meanwhile"),
        "db_size_before_bytes": meter.db_size_before,
        "db_size_after_bytes": meter.db_size_after,
        "db_size_change_bytes": size_change,
        "server_version_num": meter.server_version,
    }
    out["warnings"] = warnings(meter, lexed, out)
    out["thresholds"] = evaluate(meter, out)
    return out


# -- the lexer's statements, read for warnings ---------------------------------------------------

def _is_name(t: Tok) -> bool:
    return t.kind in ("word", "ident")


def _name_at(toks: list[Tok], i: int) -> tuple[list[str], int]:
    """A possibly qualified name starting at i: its parts and the index after it."""
    parts = []
    while i < len(toks) and _is_name(toks[i]):
        parts.append(toks[i].value)
        if i + 2 < len(toks) and toks[i + 1].value == "." and toks[i + 1].kind == "punct":
            i += 2
            continue
        return parts, i + 1
    return parts, i


def _has_seq(words: list[str], seq: list[str]) -> bool:
    k = len(seq)
    return any(words[i:i + k] == seq for i in range(len(words) - k + 1))


def _split_actions(toks: list[Tok]) -> list[list[Tok]]:
    out, cur = [], []
    for t in toks:
        if t.kind == "punct" and t.value == "," and t.depth == 0:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


@dataclass
class Pattern:
    rule: str
    line: int
    table: list[str]
    detail: str = ""
    extra: dict = field(default_factory=dict)


def default_functions(toks: list[Tok]) -> list[str]:
    """Function names called in a column DEFAULT expression (up to the next column constraint)."""
    stop = {"not", "null", "constraint", "check", "references", "generated", "collate", "unique", "primary"}
    names, on = [], False
    for j, t in enumerate(toks):
        if t.kind == "word" and t.depth == 0:
            if t.value == "default":
                on = True
                continue
            if on and t.value in stop:
                on = False
        if on and _is_name(t) and j + 1 < len(toks) and toks[j + 1].value == "(" and toks[j + 1].kind == "punct":
            names.append(t.value)
    return names


def patterns(text: str, line: int) -> list[Pattern]:
    """The known dangerous patterns in one statement of the lexer."""
    toks = tokens(text)
    w = [t.value if t.kind == "word" else "" for t in toks]
    out: list[Pattern] = []
    if w[:1] == ["create"] and "index" in w[:3]:
        i = w.index("index")
        concurrently = w[i + 1:i + 2] == ["concurrently"]
        on = next((k for k in range(i + 1, len(toks)) if w[k] == "on" and toks[k].depth == 0), None)
        if on is not None and not concurrently:
            k = on + 1 + (w[on + 1:on + 2] == ["only"])
            name, _ = _name_at(toks, k)
            if name:
                out.append(Pattern("index_without_concurrently", line, name))
    elif w[:2] == ["alter", "table"]:
        i = 2
        if w[i:i + 2] == ["if", "exists"]:
            i += 2
        if w[i:i + 1] == ["only"]:
            i += 1
        name, i = _name_at(toks, i)
        if not name or w[2:3] == ["all"]:
            return out
        if i < len(toks) and toks[i].value == "*":
            i += 1
        for action in _split_actions(toks[i:]):
            aw = [t.value if t.kind == "word" and t.depth == 0 else "" for t in action]
            if aw[:1] == ["add"]:
                j = 1
                if aw[j:j + 1] == ["constraint"]:
                    j += 2
                kind = aw[j:j + 1]
                if kind in (["foreign"], ["check"]):
                    if not _has_seq(aw, ["not", "valid"]):
                        out.append(Pattern("constraint_without_not_valid", line, name,
                                           "FOREIGN KEY" if kind == ["foreign"] else "CHECK"))
                    continue
                if kind in (["primary"], ["unique"], ["exclude"]):
                    continue
                j += aw[j:j + 1] == ["column"]
                if aw[j:j + 3] == ["if", "not", "exists"]:
                    j += 3
                column = action[j].value if j < len(action) else "?"
                typ = action[j + 1].value if j + 1 < len(action) and action[j + 1].kind == "word" else ""
                funcs = default_functions(action[j + 1:])
                has_default = "default" in aw
                identity = _has_seq(aw, ["generated"]) and ("identity" in aw or "stored" in aw)
                out.append(Pattern("add_column", line, name, column,
                                   {"functions": funcs, "serial": typ in _SERIAL, "identity": identity,
                                    "has_default": has_default}))
            elif aw[:1] == ["alter"]:
                j = 1 + (aw[1:2] == ["column"])
                rest = aw[j + 1:]
                if rest[:1] == ["type"] or rest[:3] == ["set", "data", "type"]:
                    column = action[j].value if j < len(action) else "?"
                    k = j + 1 + (1 if rest[:1] == ["type"] else 3)
                    typ = []
                    for t in action[k:]:
                        if t.depth == 0 and t.kind == "word" and t.value in ("using", "collate"):
                            break
                        if t.depth == 0 and _is_name(t):
                            typ.append(t.value)
                    out.append(Pattern("column_type_change", line, name, column, {"type": " ".join(typ)}))
    return out


def function_names(lexed) -> set[str]:
    """Every function named in an added column's DEFAULT, to ask the catalog which are volatile."""
    names: set[str] = set()
    if lexed is None:
        return names
    for st in lexed.statements:
        for p in patterns(lexed.source(st), st.line):
            names.update(p.extra.get("functions", []))
    return names


def _resolve(meter: Meter, parts: list[str]) -> Rel | None:
    by_name = {(r.schema, r.name): r for r in meter.baseline.values()}
    if len(parts) >= 2:
        return by_name.get((parts[-2], parts[-1]))
    for schema in meter.schemas:
        r = by_name.get((schema, parts[0]))
        if r is not None:
            return r
    return None


def _chunk_of(statements: list[dict], line: int) -> dict | None:
    """The measured piece a statement at `line` ran in (the last piece starting at or before it)."""
    best = None
    for s in statements:
        if s["line"] <= line:
            best = s
    return best


def warnings(meter: Meter, lexed, impact: dict) -> list[dict]:
    settings = meter.settings
    st = meter.statements
    out: list[dict] = []
    explained: set[tuple[int, str]] = set()

    def add(rule: str, line: int, kind: str, relation: str | None, message: str, **extra):
        out.append({"rule": rule, "line": line, "kind": kind, "relation": relation, "message": message, **extra})

    lab = meter.label
    for stmt in (lexed.statements if lexed is not None else []):
        for p in patterns(lexed.source(stmt), stmt.line):
            rel = _resolve(meter, p.table)
            if rel is None:
                continue  # a table the change itself creates: no one is using it yet
            piece = _chunk_of(st, p.line)
            measured = piece is not None and not piece.get("failed")
            kind = piece["kind"] if piece else "?"
            scale = scale_note(settings, rel.qname)
            held = [lk for lk in impact["locks"] if piece and lk["line"] == piece["line"]
                    and lk["relation"] == rel.qname and not lk["new_relation"]]
            strongest = max(held, key=lambda lk: _strength(lk["mode"]), default=None)
            lock_text = (f"; measured: {strongest['mode']} on it for {strongest['held_s']:.2f} s to the end of the "
                         "transaction") if strongest else ""
            if p.rule == "index_without_concurrently":
                size = meter.sizes.get(rel.oid) if rel.oid in meter.baseline else None
                rows = max(settings.clone_rows.get(rel.qname) or 0, settings.production_rows.get(rel.qname) or 0)
                if (size or 0) >= settings.index_warn_bytes or rows >= settings.index_warn_rows:
                    add("index_without_concurrently", p.line, kind, rel.qname,
                        f"{lab} line {p.line}: CREATE INDEX without CONCURRENTLY on {rel.qname} "
                        f"({_bytes(size)} in the clone{'; ' + scale if scale else ''}) blocks every write to it "
                        f"while the index builds{lock_text}; in production build it with CREATE INDEX "
                        "CONCURRENTLY, outside this transaction (it cannot run inside one)")
            elif p.rule == "constraint_without_not_valid":
                add("constraint_without_not_valid", p.line, kind, rel.qname,
                    f"{lab} line {p.line}: {p.detail} added to {rel.qname} without NOT VALID checks every "
                    f"existing row while it holds its lock{lock_text}{' (' + scale + ')' if scale else ''}; add it "
                    "NOT VALID, then VALIDATE CONSTRAINT in a later transaction")
            elif p.rule == "column_type_change" and measured:
                rw = [r for r in piece["rewrites"] if r["relation"] == rel.qname]
                if rw:
                    explained.add((piece["line"], rel.qname))
                    add("column_type_change_rewrite", p.line, kind, rel.qname,
                        f"{lab} line {p.line}: ALTER COLUMN {p.detail} TYPE {p.extra.get('type') or '?'} rewrote "
                        f"{rel.qname} ({_bytes(rw[0]['size_before_bytes'])} -> {_bytes(rw[0]['size_after_bytes'])}) "
                        f"and rebuilt its indexes{lock_text}{' (' + scale + ')' if scale else ''}")
            elif p.rule == "column_type_change":
                add("column_type_change_rewrite", p.line, kind, rel.qname,
                    f"{lab} line {p.line}: ALTER COLUMN {p.detail} TYPE may rewrite {rel.qname}; not measured "
                    "(the change stopped before it)")
            elif p.rule == "add_column":
                volatile = [f for f in p.extra["functions"] if f in meter.volatile]
                old = meter.server_version and meter.server_version < 110000 and p.extra["has_default"]
                why = (f"a volatile DEFAULT ({', '.join(f + '()' for f in volatile)})" if volatile else
                       "a serial type" if p.extra["serial"] else
                       "an identity or stored generated value" if p.extra["identity"] else
                       "a DEFAULT (PostgreSQL before 11 rewrites for any default)" if old else None)
                if why is None:
                    continue
                rw = [r for r in piece["rewrites"] if r["relation"] == rel.qname] if measured else []
                if rw:
                    explained.add((piece["line"], rel.qname))
                what = (f"rewrote {rel.qname} ({_bytes(rw[0]['size_before_bytes'])} -> "
                        f"{_bytes(rw[0]['size_after_bytes'])})") if rw else f"rewrites {rel.qname}"
                add("volatile_default", p.line, kind, rel.qname,
                    f"{lab} line {p.line}: ADD COLUMN {p.detail} with {why} {what}: every row is written again "
                    f"under ACCESS EXCLUSIVE{lock_text}{' (' + scale + ')' if scale else ''}; add the column "
                    "without it, then fill it in batches")
    for s in st:
        for r in s["rewrites"]:
            if r["relkind"] == "index" or (s["line"], r["relation"]) in explained:
                continue
            scale = scale_note(settings, r.get("table"))
            add("table_rewrite", s["line"], s["kind"], r["relation"],
                f"{lab} line {s['line']} ({s['kind']}) gave {r['relation']} new storage "
                f"({_bytes(r['size_before_bytes'])} -> {_bytes(r['size_after_bytes'])}){' (' + scale + ')' if scale else ''}")
    for lk in impact["locks"]:
        if lk["mode"] == ACCESS_EXCLUSIVE and not lk["new_relation"] and lk["relation"] in settings.hot_tables:
            add("hot_table_access_exclusive", lk["line"], lk["kind"], lk["relation"],
                f"{lab} line {lk['line']} ({lk['kind']}) holds ACCESS EXCLUSIVE on {lk['relation']}, which the "
                f"contract marks hot, for {lk['held_s']:.2f} s (to the end of the transaction): every read and "
                f"write of it waits{' (' + lk['scale'] + ')' if lk.get('scale') else ''}", held_s=lk["held_s"])
    out.sort(key=lambda w: (w["line"], w["rule"]))
    return out


# -- thresholds ---------------------------------------------------------------------------

def evaluate(meter: Meter, impact: dict) -> dict:
    """Each threshold set: its limit, the measured value, whether it held, and every breach by name."""
    th = meter.settings.thresholds
    lab = meter.label
    results = []
    gated = [lk for lk in impact["locks"] if not lk["new_relation"] and not lk.get("covered")]

    def scale(lk):
        return f" ({lk['scale']})" if lk.get("scale") else ""

    if th.max_statement_s is not None:
        br = [{"line": s["line"], "kind": s["kind"], "value": s["duration_s"],
               "message": f"{lab} line {s['line']} ({s['kind']}) ran {s['duration_s']:.2f} s > max_statement_s "
                          f"{th.max_statement_s:g} s"} for s in meter.statements
              if s["duration_s"] > th.max_statement_s]
        results.append(("max_statement_s", th.max_statement_s, impact["max_statement_s"], br))
    for name, limit, only in (("max_lock_s", th.max_lock_s, None),
                              ("max_access_exclusive_s", th.max_access_exclusive_s, ACCESS_EXCLUSIVE)):
        if limit is None:
            continue
        br = [{"line": lk["line"], "kind": lk["kind"], "relation": lk["relation"], "mode": lk["mode"],
               "value": lk["held_s"],
               "message": f"{lab} line {lk['line']} ({lk['kind']}) held {lk['mode']} on {lk['relation']} for "
                          f"{lk['held_s']:.2f} s > {name} {limit:g} s{scale(lk)}"}
              for lk in sorted(gated, key=lambda x: (-x["held_s"], -_strength(x["mode"])))
              if (only is None or lk["mode"] == only) and lk["held_s"] > limit]
        results.append((name, limit, impact[name], br))
    if th.max_total_s is not None:
        br = [] if impact["total_s"] <= th.max_total_s else [{
            "value": impact["total_s"], "message": f"{lab} took {impact['total_s']:.2f} s in all (statements and "
                                                   f"COMMIT) > max_total_s {th.max_total_s:g} s"}]
        results.append(("max_total_s", th.max_total_s, impact["total_s"], br))
    if th.no_rewrite_tables:
        names = {r.qname for r in meter.baseline.values() if r.kind in ("r", "p", "m")}
        br = [{"relation": t, "message": f"no_rewrite_tables names {t}, which the clone does not have before "
                                         f"{lab}: the threshold cannot be checked"}
              for t in th.no_rewrite_tables if t not in names]
        rewritten = []
        for r in impact["rewrites"]:
            table = r["relation"] if r["relkind"] != "index" else None
            if table in th.no_rewrite_tables:
                rewritten.append(table)
                br.append({"line": r["line"], "kind": r["kind"], "relation": table,
                           "message": f"{lab} line {r['line']} ({r['kind']}) rewrote {table} "
                                      f"({_bytes(r['size_before_bytes'])} -> {_bytes(r['size_after_bytes'])}), "
                                      "which no_rewrite_tables forbids"})
        results.append(("no_rewrite_tables", list(th.no_rewrite_tables), sorted(set(rewritten)), br))
    if not impact["completed"]:
        for r in results:
            r[3].append({"message": f"{lab} did not complete, so the impact measured is not the whole file's"})
    rows = [{"name": n, "limit": lim, "measured": val, "passed": not br, "breaches": br[:50],
             "breach_count": len(br)} for n, lim, val, br in results]
    return {"set": bool(rows), "passed": all(r["passed"] for r in rows), "results": rows}


def breaches(impact: dict | None) -> list[str]:
    """Every breach message of a stage's impact, worst threshold first as evaluated."""
    if not impact:
        return []
    return [b["message"] for r in (impact.get("thresholds") or {}).get("results", []) for b in r["breaches"]]


def summary(impact: dict) -> dict:
    """What a stage's own entry and the CLI line carry; the whole section is in the packet's `impact`."""
    th = impact.get("thresholds") or {}
    return {"statements": impact.get("statement_count"), "total_s": impact.get("total_s"),
            "max_lock_s": impact.get("max_lock_s"), "wal_bytes": impact.get("wal_bytes"),
            "db_size_change_bytes": impact.get("db_size_change_bytes"),
            "rewrites": len(impact.get("rewrites") or []), "warnings": len(impact.get("warnings") or []),
            "thresholds_set": bool(th.get("set")), "thresholds_passed": bool(th.get("passed", True)),
            "breaches": breaches(impact)[:10]}


# -- Markdown: the report and the Dagster materializations ------------------------------------------

def _cell(v) -> str:
    return md("" if v is None else v)


def _locks_cell(locks: list[dict]) -> str:
    """Locks on tables, views and sequences by name; those on indexes counted (all are in the JSON)."""
    shown = [lk for lk in locks if lk.get("relkind") != "index"]
    text = "; ".join(f"{md(lk['mode'])} {md(lk['relation'])} ({lk['held_s']:.2f} s"
                     f"{', new' if lk.get('new_relation') else ''})" for lk in shown)
    indexes = len(locks) - len(shown)
    return text + (f"{'; ' if text else ''}+{indexes} on indexes" if indexes else "")


def markdown(label: str, impact: dict, *, heading: str = "###") -> list[str]:
    """The per-statement table, the top locks, the size and WAL totals, warnings and thresholds."""
    lines = [f"{heading} Impact: {md(label)}", ""]
    wal = _bytes(impact.get("wal_bytes")) if impact.get("wal_bytes") is not None else "not measurable"
    change = impact.get("db_size_change_bytes")
    lines.append(f"{impact.get('statement_count')} statement line(s), {impact.get('total_s', 0):.3f} s in all "
                 f"(statements {impact.get('statements_s', 0):.3f} s, COMMIT "
                 f"{(impact.get('commit_s') or 0):.3f} s; measurement {impact.get('measurement_overhead_s', 0):.3f} s "
                 f"not counted); WAL {md(wal)}; database size "
                 f"{md(_bytes(change) if change is not None else 'not measured')}"
                 f"{' (' + md(_bytes(impact.get('db_size_before_bytes'))) + ' -> ' + md(_bytes(impact.get('db_size_after_bytes'))) + ')' if change is not None else ''}"
                 f"{'' if impact.get('completed') else '; the change did not complete (rolled back)'}")
    lines.append("")
    th = impact.get("thresholds") or {}
    if th.get("results"):
        lines += ["| threshold | limit | measured | result |", "|---|---|---|---|"]
        for r in th["results"]:
            lines.append(f"| {md(r['name'])} | {_cell(r['limit'])} | {_cell(r['measured'])} | "
                         f"{'passed' if r['passed'] else '**FAILED**: ' + md('; '.join(b['message'] for b in r['breaches'][:5]))} |")
        lines.append("")
    else:
        lines += ["No thresholds set: the impact is reported and gates nothing.", ""]
    lines += ["| line | statement | duration s | rows | locks taken (held s) | rewrites | WAL |",
              "|---|---|---|---|---|---|---|"]
    sts = impact.get("statements") or []
    for s in sts[:MD_STATEMENTS]:
        rw = "; ".join(f"{md(r['relation'])} {md(_bytes(r['size_before_bytes']))} -> "
                         f"{md(_bytes(r['size_after_bytes']))}" for r in s.get("rewrites", []))
        lines.append(f"| {s['line']} | {md(s['kind'])}{' (failed)' if s.get('failed') else ''} | "
                     f"{s['duration_s']:.3f} | {_cell(s.get('rows'))} | {_locks_cell(s.get('locks', []))} | {rw} | "
                     f"{md(_bytes(s['wal_bytes'])) if s.get('wal_bytes') is not None else ''} |")
    if len(sts) > MD_STATEMENTS or impact.get("statements_not_kept"):
        lines.append(f"| … | {impact.get('statement_count', 0) - MD_STATEMENTS} more in rehearsal-report.json | | | | | |")
    top = impact.get("top_locks") or []
    if top:
        lines += ["", "Top locks (held from the statement that took them to the end of the transaction):", "",
                  "| relation | mode | held s | taken at | scale |", "|---|---|---|---|---|"]
        lines += [f"| {md(lk['relation'])} | {md(lk['mode'])} | {lk['held_s']:.3f} | line {lk['line']} "
                  f"({md(lk['kind'])}) | {md(lk.get('scale', ''))} |" for lk in top]
    ws = impact.get("warnings") or []
    if ws:
        lines += ["", "Warnings:", ""]
        lines += [f"- {md(w['rule'])}: {md(w['message'])}" for w in ws[:50]]
    return lines
