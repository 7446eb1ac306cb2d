"""The in-transaction meter: what each statement of a change did, measured from its own session between statements.

The measurement queries read only `pg_catalog` (qualified names and `OPERATOR(pg_catalog.=)`), so no
search_path the change sets can steer them to a function of the dump.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from .analysis import analyse
from .thresholds import ImpactSettings
from .units import KINDS, mode_name

_STORAGE = ("r", "m", "i")
_ROW_TAGS = ("INSERT", "UPDATE", "DELETE", "MERGE", "COPY")

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
        self.origin = time.perf_counter()     # the clock the statements' start_s/end_s count from
        self.backend_pid: int | None = None
        self.commit_at: tuple[float, float] | None = None

    # -- before the transaction ---------------------------------------------------------
    def prepare(self, conn: psycopg.Connection, function_names: set[str]) -> None:
        """What is read outside the change's transaction (and rolled back): anything here may fail
        without touching the change. The WAL function is tried here, so it never aborts the change."""
        self.server_version = conn.info.server_version
        self.backend_pid = conn.info.backend_pid
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
        ended = time.perf_counter()  # the checks since it ended ask the server nothing: microseconds
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
                                "rewrites": rewrites, "created": created, "dropped": dropped,
                                **self._span(ended, duration_s)})

    def failed(self, line: int, kind: str, duration_s: float) -> None:
        """The statement that failed: its duration; the transaction was rolled back."""
        ended = time.perf_counter()
        self.statements.append({"line": line, "kind": kind, "duration_s": round(duration_s, 4), "rows": None,
                                "wal_bytes": None, "rewrites": [], "created": [], "dropped": [], "failed": True,
                                **self._span(ended, duration_s)})

    def _span(self, ended: float, duration_s: float) -> dict:
        """When it ran, in seconds from the meter's origin: the traffic probe's waits are placed by it."""
        return {"start_s": round(ended - duration_s - self.origin, 4), "end_s": round(ended - self.origin, 4)}

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
                    created.append({"relation": r.qname, "relkind": KINDS.get(r.kind, r.kind), "oid": oid})
                    if r.kind in _STORAGE:
                        size_oids.append(oid)
            elif r.kind in _STORAGE and old.filenode != r.filenode and oid in self.baseline:
                rewrites.append(self._rewrite(r, oid, oid))
                size_oids.append(oid)
        for oid, r in gone.items():
            if oid in self.baseline and oid not in rebuilt:
                dropped.append({"relation": r.qname, "relkind": KINDS.get(r.kind, r.kind)})
        return rewrites, created, dropped, size_oids

    def _rewrite(self, r: Rel, old_oid: int, oid: int) -> dict:
        table = self.known.get(r.table_oid) if r.table_oid else None
        return {"relation": r.qname, "relkind": KINDS.get(r.kind, r.kind), "oid": oid,
                "table": table.qname if table else (r.qname if r.kind != "i" else None),
                "size_before_bytes": self.sizes.get(old_oid)}

    def commit(self, conn: psycopg.Connection) -> None:
        started = time.perf_counter()
        conn.commit()
        ended = time.perf_counter()
        self.commit_s = ended - started
        self.commit_at = (started - self.origin, ended - self.origin)
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
