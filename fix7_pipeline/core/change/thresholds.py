"""The impact settings of a request and contract, and the thresholds that gate: evaluated, breached, summed up."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .estimates import threshold as estimate_threshold
from .units import ACCESS_EXCLUSIVE, bytes_text, qualified, strength

DEFAULT_INDEX_WARN_MB = 10.0
DEFAULT_INDEX_WARN_ROWS = 100_000
THRESHOLD_NAMES = ("max_statement_s", "max_lock_s", "max_access_exclusive_s", "max_total_s", "no_rewrite_tables",
                   "max_blocked_ms", "max_production_estimate_s")
MAX_PROBE_SESSIONS = 12  # the probe's role may open this many, plus its reader and its lock monitor


@dataclass(frozen=True)
class Thresholds:
    max_statement_s: float | None = None
    max_lock_s: float | None = None
    max_access_exclusive_s: float | None = None
    max_total_s: float | None = None
    no_rewrite_tables: tuple[str, ...] = ()
    max_blocked_ms: float | None = None            # the longest wait of any traffic probe query
    max_production_estimate_s: float | None = None  # the longest statement estimated at production size

    def as_dict(self) -> dict:
        return {n: (list(getattr(self, n)) if n == "no_rewrite_tables" else getattr(self, n))
                for n in THRESHOLD_NAMES}


@dataclass(frozen=True)
class ProbeSettings:
    """The synthetic traffic on the contract's hot tables while apply and rollback run (core/change/probe.py)."""

    enabled: bool = True
    sessions: int = 4
    rate: float = 20.0                  # queries a second, each session (half point reads, half point writes)
    reader_hold_s: float = 0.5          # the long reader holds ACCESS SHARE this long after the change starts
    lock_timeout_ms: float = 1000.0     # the application's lock_timeout: would it have fired?


@dataclass(frozen=True)
class ImpactSettings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    index_warn_bytes: int = int(DEFAULT_INDEX_WARN_MB * 1024 * 1024)
    index_warn_rows: int = DEFAULT_INDEX_WARN_ROWS
    hot_tables: frozenset = frozenset()         # schema.table
    production_rows: dict = field(default_factory=dict)   # schema.table -> rows, from the contract
    clone_rows: dict = field(default_factory=dict)        # schema.table -> rows, counted at the anchor
    probe: ProbeSettings = field(default_factory=ProbeSettings)


def threshold_problems(values: dict) -> list[str]:
    """Why threshold settings are unusable (negative, not a number, a table list that is not names)."""
    out = []
    units = {"rows": "rows", "_s": "seconds", "_ms": "milliseconds", "_mb": "MB", "sessions": "sessions",
             "rate": "queries a second"}
    for name in ("max_statement_s", "max_lock_s", "max_access_exclusive_s", "max_total_s", "index_warn_mb",
                 "index_warn_rows", "max_blocked_ms", "max_production_estimate_s", "probe_sessions", "probe_rate",
                 "probe_reader_hold_s", "probe_lock_timeout_ms"):
        v = values.get(name)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            unit = next(u for k, u in units.items() if name.endswith(k))
            out.append(f"{name} must be a number of {unit} at or above 0, not {v!r}")
    sessions = values.get("probe_sessions")
    if isinstance(sessions, int) and not isinstance(sessions, bool) and not 1 <= sessions <= MAX_PROBE_SESSIONS:
        out.append(f"probe_sessions must be 1 to {MAX_PROBE_SESSIONS}, not {sessions}")
    if values.get("no_traffic_probe") and values.get("max_blocked_ms") is not None:
        out.append("max_blocked_ms is measured by the traffic probe, which no_traffic_probe turns off: drop one")
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
        no_rewrite_tables=tuple(qualified(t) for t in request.no_rewrite_tables or ()),
        max_blocked_ms=_opt(request.max_blocked_ms),
        max_production_estimate_s=_opt(request.max_production_estimate_s))
    probe = ProbeSettings(enabled=not request.no_traffic_probe, sessions=int(request.probe_sessions),
                          rate=float(request.probe_rate), reader_hold_s=float(request.probe_reader_hold_s),
                          lock_timeout_ms=float(request.probe_lock_timeout_ms))
    return ImpactSettings(
        thresholds=th,
        index_warn_bytes=int(float(request.index_warn_mb) * 1024 * 1024),
        index_warn_rows=int(request.index_warn_rows),
        hot_tables=frozenset(qualified(t) for t in contract.hot_tables),
        production_rows={qualified(t): int(n) for t, n in contract.production_rows.items()},
        clone_rows={k: int(v.get("rows") or 0) for k, v in (anchor_tables or {}).items()},
        probe=probe)


def _opt(v) -> float | None:
    return None if v is None else float(v)



def evaluate(meter, impact: dict) -> dict:
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
              for lk in sorted(gated, key=lambda x: (-x["held_s"], -strength(x["mode"])))
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
                                      f"({bytes_text(r['size_before_bytes'])} -> {bytes_text(r['size_after_bytes'])}), "
                                      "which no_rewrite_tables forbids"})
        results.append(("no_rewrite_tables", list(th.no_rewrite_tables), sorted(set(rewritten)), br))
    if th.max_production_estimate_s is not None:
        results.append(estimate_threshold(lab, impact.get("estimates") or [], th.max_production_estimate_s))
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
