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
matched (a table named by a token) is recorded in the returned registry (`redact.RedactedNames`) and
printed as its label everywhere, in this scan's findings included.

This module runs the scan; each kind of work is a module of its own: `plan` (which columns), `copy_reader`
(COPY text and windows), `table_scan`, `binary_scan` (bytea, large objects), `catalog_sql` and
`catalog_scan`, `render` (findings as printed), `names` (names judged before they are printed).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import psycopg

from . import field_detectors, textscan
from .binary_scan import scan_large_objects
from .catalog_scan import scan_catalog_part, unreadable_catalog
from .catalog_sql import CATALOG_PARTS
from .findings import RawHit, ScanFindings
from .names import dump_names, judge_names, judge_printed_names
from .plan import TablePlan, scan_plan
from .redact import RedactedNames
from .render import identify, render
from .rules import UNREADABLE, engine
from .table_scan import scan_table_raw
from ..contract.model import Contract
from ..shared.model import Finding

ROWS_PER_FINDING_KIND = None   # no cap: the packet carries every finding (kept for callers that pass it)


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


# -- the entry point --------------------------------------------------------------------------------

def scan_table(conn: psycopg.Connection, p: TablePlan, salt: str) -> list[Finding]:
    """One table's findings, printed without the run's registry of redacted names (profiling, benchmarks)."""
    return render(scan_table_raw(conn, p, salt), {}, RedactedNames())


def scan_catalog(conn: psycopg.Connection, salt: str = "", *, large_objects: bool = True) -> list[Finding]:
    """The catalog's and large objects' findings on one connection (`scan_secrets` includes them)."""
    salt = salt or os.urandom(16).hex()
    hits = _catalog_raw(conn, salt, large_objects=large_objects)
    return render(hits, identify(conn, {h.ref for h in hits if h.ref}), RedactedNames())


def _catalog_raw(conn: psycopg.Connection, salt: str, *, large_objects: bool = True) -> list[RawHit]:
    hits: list[RawHit] = []
    for label, query in CATALOG_PARTS:
        hits += _guarded(conn, lambda q=query: scan_catalog_part(conn, label, q, salt), f"catalog: {label}")
    hits += _guarded(conn, lambda: unreadable_catalog(conn), "catalog: subscriptions and user mappings")
    if large_objects:
        hits += _guarded(conn, lambda: scan_large_objects(conn, salt), "large objects")
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
        return _guarded(c, lambda: scan_table_raw(c, p, salt), f"table {p.contract_name}")

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
            idents = identify(conn, {h.ref for h in hits if h.ref})
    finally:
        for c in opened:
            c.close()
        _return_freed_memory()
    names = names if names is not None else RedactedNames()
    findings = render(hits, idents, names)
    stats = {"tables": len(plans), "columns": sum(len(p.columns) + len(p.bytea) for p in plans),
             "catalog_parts": len(CATALOG_PARTS), "settings": len(settings or []),
             "seconds": round(time.monotonic() - started, 3), "engine": f"kingfisher {engine().version}",
             "loaded": f"detect-secrets {field_detectors.detect_secrets_rules()[1]}",
             "rules": len(engine().rules)}
    return ScanFindings(findings, redacted=names, stats=stats, present_tables={p.contract_name for p in plans})


__all__ = ["CATALOG_PARTS", "ScanFindings", "TablePlan", "dump_names", "judge_names", "judge_printed_names",
           "scan_catalog", "scan_plan", "scan_secrets", "scan_table"]
