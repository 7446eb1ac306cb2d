"""The traffic probe: what production traffic on the hot tables would feel while apply or rollback runs.

N sessions of the probe's own login (core/change/probe_role.py) send point reads and writes by primary key at a
steady rate, each on its share of the hot tables; a long reader holds ACCESS SHARE on every hot table from before the
change starts until `reader_hold_s` after, so a lock the change asks for queues behind it and the traffic queues
behind the change (the lock queue); a monitor session samples, every 20 ms, which sessions wait for which
relation lock in which mode.

A read is `SELECT 1 … WHERE key = value`. A write takes what an UPDATE of that row takes, ROW EXCLUSIVE on the
table and the row's lock, then rolls back: `LOCK TABLE … IN ROW EXCLUSIVE MODE; SELECT 1 … FOR NO KEY UPDATE
NOWAIT; ROLLBACK`. So no row changes and no trigger of the dump's fires; the row lock does not wait (NOWAIT: a
row the change holds is counted, with how long a real write would have waited for it), so the probe can never be
one side of a deadlock with the change. Every name is schema-qualified, comparisons are `OPERATOR(pg_catalog.=)`
against values cast to pg_catalog types, and the sessions' search_path is pinned to pg_catalog in the startup
packet, so nothing the dump defined is called.
"""

from __future__ import annotations

import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ..postgres.server import SCRATCH, RehearsalServer
from ..postgres.throwaways import Throwaway
from . import probe_role
from .thresholds import ProbeSettings

SAMPLE_EVERY_S = 0.02
WARMUP_S = 0.3
KEYS_PER_TABLE = 500
_WAITS_SQL = (
    "select l.pid, l.relation::pg_catalog.int8, l.mode::pg_catalog.text from pg_catalog.pg_locks l "
    "where not l.granted and l.locktype OPERATOR(pg_catalog.=) 'relation'::pg_catalog.text "
    "and l.database OPERATOR(pg_catalog.=) (select d.oid from pg_catalog.pg_database d "
    "where d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())")


@dataclass
class ProbeRun:
    """What the probe saw, on `time.perf_counter()`'s clock (the meter's too)."""

    ran: bool = False
    reason: str = ""
    role: str = ""
    tables: list = field(default_factory=list)          # probe_role.HotTable
    queries: list = field(default_factory=list)         # (session, table index, "read"|"write", t0, t1, outcome)
    samples: list = field(default_factory=list)         # (t, [(pid, relation oid, mode)]) with a waiter
    sample_count: int = 0
    session_pids: dict = field(default_factory=dict)    # pid -> session number
    reader_pid: int | None = None
    reader_held: tuple | None = None                    # (from, to)
    started_at: float = 0.0
    stopped_at: float = 0.0
    problems: list = field(default_factory=list)


class TrafficProbe:
    def __init__(self, server: RehearsalServer, tw: Throwaway, settings: ProbeSettings, hot_tables, label: str,
                 statement_timeout_s: int = 600, journal=None):
        self.server, self.tw, self.settings, self.label = server, tw, settings, label
        self.hot_tables = list(hot_tables)
        self.timeout_ms = int((statement_timeout_s + 60) * 1000)
        self.run = ProbeRun(role=probe_role.role_name(tw.tag, label))
        self._stop = threading.Event()
        self._release_reader = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._granted: list = []
        self._login = None
        self.journal = journal  # the run's journal: the role is named there before it exists, like every throwaway

    # -- set up and tear down --------------------------------------------------------------------
    def start(self) -> None:
        """Role, grants, keys, sessions, reader and monitor; returns once traffic has run WARMUP_S."""
        run = self.run
        run.tables = probe_role.find_tables(self.server, self.tw, self.hot_tables)
        if not any(t.oid is not None for t in run.tables):
            run.reason = ("the contract names no hot table the clone has" if run.tables else
                          "the contract names no hot tables (annotations.hot_tables)")
            return
        self._note("planned", [{"kind": "role", "name": run.role}], "extend")
        self._login, self._granted = probe_role.create(self.server, self.tw, run.role, run.tables,
                                                       self.settings.sessions)
        self._note("created", [run.role], "extend")
        targets = [i for i, t in enumerate(run.tables) if t.probed]
        if not targets:
            run.reason = "no hot table could be granted to the probe: " + "; ".join(t.why for t in run.tables)
            return
        keys = self._keys(targets)
        ready = threading.Barrier(self.settings.sessions + 3)
        self._spawn(self._monitor, ready)
        self._spawn(self._reader, ready, targets)
        for n in range(self.settings.sessions):
            self._spawn(self._session, ready, n, targets, keys)
        try:
            ready.wait(timeout=30)
        except threading.BrokenBarrierError:
            run.reason = "the probe's sessions did not all connect: " + "; ".join(run.problems[:3])
            self._halt()
            return
        run.ran, run.started_at = True, time.perf_counter()
        time.sleep(WARMUP_S)
        release = threading.Timer(self.settings.reader_hold_s, self._release_reader.set)
        release.daemon = True
        release.start()

    def stop(self) -> ProbeRun:
        self._halt()
        self.run.stopped_at = time.perf_counter()
        return self.run

    def remove(self) -> None:
        if self._login is not None:
            problems = probe_role.remove(self.server, self.tw, self.run.role, self._granted)
            self.run.problems += problems
            if not any("dropping" in p for p in problems):
                self._note("dropped", [self.run.role], "extend_new")

    def _note(self, key: str, value, op: str) -> None:
        if self.journal is not None:
            self.journal.throwaways(key, value, op)

    def _halt(self) -> None:
        self._stop.set()
        self._release_reader.set()
        deadline = time.monotonic() + 30
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for c in self._conns:  # one still blocked after 30 s: its query is cancelled, its session closed
            try:
                c.cancel_safe(timeout=5)
                c.close()
            except Exception:  # noqa: BLE001 - closing, nothing left to report
                pass

    def _spawn(self, body, *args) -> None:
        t = threading.Thread(target=self._guarded, args=(body, *args), daemon=True,
                             name=f"fix7-probe-{body.__name__}")
        self._threads.append(t)
        t.start()

    def _guarded(self, body, ready: threading.Barrier, *args) -> None:
        try:
            body(ready, *args)
        except Exception as e:  # noqa: BLE001 - a probe session's fault is reported, never the change's
            with self._lock:
                self.run.problems.append(f"{body.__name__.strip('_')}: {type(e).__name__}: {str(e).strip()[:300]}")
            ready.abort()

    def _connect(self, purpose: str) -> psycopg.Connection:
        c = self.server.connect(self.tw.database, self._login, purpose=f"traffic probe: {purpose}", session=SCRATCH,
                                options=f"-c statement_timeout={self.timeout_ms} -c lock_timeout=0 "
                                        f"-c idle_in_transaction_session_timeout={self.timeout_ms}")
        with self._lock:
            self._conns.append(c)
        return c

    def _keys(self, targets: list[int]) -> dict[int, list[tuple]]:
        """Up to KEYS_PER_TABLE primary keys of each row-traffic table, as text, read by the probe's login."""
        keys: dict[int, list[tuple]] = {}
        with self._connect("keys") as c:
            for i in targets:
                t = self.run.tables[i]
                if t.mode != "row":
                    continue
                cols = sql.SQL(", ").join(sql.SQL("{}::pg_catalog.text").format(sql.Identifier(k)) for k, _ in t.key)
                keys[i] = [tuple(r) for r in c.execute(sql.SQL("select {} from {} limit {}").format(
                    cols, t.ident(), sql.Literal(KEYS_PER_TABLE)))]
                if not keys[i]:
                    t.mode, t.why = "lock", "empty in the clone: lock-only traffic"
        with self._lock:
            self._conns.remove(c)
        return keys

    # -- the sessions ----------------------------------------------------------------------------
    def _session(self, ready: threading.Barrier, n: int, targets: list[int], keys: dict) -> None:
        rng = random.Random(n)
        sessions = self.settings.sessions
        # each session its own table(s), so a table that is blocked does not starve the others of traffic
        targets = ([t for j, t in enumerate(targets) if j % sessions == n] if sessions < len(targets)
                   else [targets[n % len(targets)]])
        c = self._connect(f"session {n + 1}")
        self.run.session_pids[c.info.backend_pid] = n
        statements = {i: self._statements(self.run.tables[i]) for i in targets}
        ready.wait(timeout=30)
        every = 1.0 / self.settings.rate if self.settings.rate > 0 else None
        at, k = time.perf_counter() + rng.random() * (every or 0), n
        while not self._stop.is_set():
            if every is None:
                self._stop.wait(0.1)
                continue
            now = time.perf_counter()
            if now < at:
                self._stop.wait(at - now)
                continue
            at = max(at + every, now)  # a query that waited is not made up for by a burst
            i = targets[k % len(targets)]
            kind = "read" if (k // len(targets)) % 2 == 0 else "write"
            k += 1
            key = rng.choice(keys[i]) if keys.get(i) else None
            t0 = time.perf_counter()
            outcome = self._one(c, statements[i], kind, key)
            t1 = time.perf_counter()
            with self._lock:
                self.run.queries.append((n, i, kind, t0, t1, outcome))
            if outcome == "closed":
                return

    def _statements(self, t) -> dict:
        rel = t.ident()
        lock = {m: sql.SQL("lock table {} in {} mode").format(rel, sql.SQL(m)) for m in ("access share", "row exclusive")}
        if t.mode != "row" or not t.key:
            return {"read": [lock["access share"]], "write": [lock["row exclusive"]], "row": False}
        where = sql.SQL(" and ").join(
            sql.SQL("{} OPERATOR(pg_catalog.=) %s::pg_catalog.{}").format(sql.Identifier(k), sql.Identifier(typ))
            for k, typ in t.key)
        return {"read": sql.SQL("select 1 from {} where {}").format(rel, where),
                "write": [lock["row exclusive"],
                          sql.SQL("select 1 from {} where {} for no key update nowait").format(rel, where)],
                "row": True}

    def _one(self, c: psycopg.Connection, st: dict, kind: str, key) -> str:
        try:
            if st["row"] and kind == "read":
                c.execute(st["read"], key).fetchall()
                return "ok"
            with c.transaction(force_rollback=True):
                for i, q in enumerate(st[kind]):
                    c.execute(q, key if i == 1 else None)
            return "ok"
        except psycopg.errors.LockNotAvailable:
            return "row_locked"
        except psycopg.OperationalError as e:
            if c.closed:
                return "closed"
            return f"error {e.sqlstate or '?'}"
        except psycopg.Error as e:
            return f"error {e.sqlstate or '?'}"

    def _reader(self, ready: threading.Barrier, targets: list[int]) -> None:
        """Begins a transaction holding ACCESS SHARE on every probed hot table, and ends it `reader_hold_s`
        after the change started."""
        c = self._connect("long reader")
        self.run.reader_pid = c.info.backend_pid
        if self.settings.reader_hold_s <= 0:
            ready.wait(timeout=30)
            return
        with c.transaction(force_rollback=True):
            for i in targets:
                t = self.run.tables[i]
                c.execute(sql.SQL("select 1 from {} limit 1").format(t.ident()) if t.mode == "row" else
                          sql.SQL("lock table {} in access share mode").format(t.ident()))
            held = time.perf_counter()
            ready.wait(timeout=30)
            self._release_reader.wait()
        self.run.reader_held = (held, time.perf_counter())

    def _monitor(self, ready: threading.Barrier) -> None:
        c = self._connect("lock monitor")
        c.execute("select 1")
        ready.wait(timeout=30)
        while not self._stop.is_set():
            t = time.perf_counter()
            rows = [(int(p), int(r), m) for p, r, m in c.execute(_WAITS_SQL) if r is not None]
            with self._lock:
                self.run.sample_count += 1
                if rows:
                    self.run.samples.append((t, rows))
            self._stop.wait(SAMPLE_EVERY_S)


@contextmanager
def probing(server: RehearsalServer, tw: Throwaway, settings, label: str, statement_timeout_s: int = 600,
            journal=None):
    """Traffic on the hot tables for as long as the block runs (the change); yields the ProbeRun, filled in
    when the block ends. A probe that cannot start says why and the change runs anyway: nothing it measures is
    then reported, and a max_blocked_ms set cannot be checked (core/change/traffic.py)."""
    probe_settings = settings.probe
    probe = TrafficProbe(server, tw, probe_settings, settings.hot_tables, label, statement_timeout_s, journal)
    if not probe_settings.enabled:
        probe.run.reason = "turned off (no_traffic_probe)"
        yield probe.run
        return
    try:
        try:
            probe.start()
        except psycopg.Error as e:
            probe.run.reason = f"the probe could not be set up: {probe_role.server_reason(e)}"
            probe._halt()
        except Exception as e:  # noqa: BLE001 - a server fault setting it up is the probe's, reported as such
            probe.run.reason = f"the probe could not be set up: {getattr(e, 'message', None) or e}"
            probe._halt()
        yield probe.run
    finally:
        probe.stop()
        probe.remove()
