"""The impact section of one stage, from what the meter measured: locks held to the end, rewrites, WAL, size."""

from __future__ import annotations

from .estimates import estimates
from .thresholds import evaluate
from .units import ACCESS_EXCLUSIVE, KINDS, scale_note, strength
from .statement_warnings import warnings

MAX_STATEMENTS_KEPT = 2000
TOP_LOCKS = 10


def analyse(meter, lexed=None) -> dict:
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
        entry = {"relation": span["name"], "relkind": KINDS.get(rel.kind, rel.kind) if rel else None,
                 "mode": span["mode"], "line": s["line"], "kind": s["kind"], "held_s": round(held, 4),
                 "to": "commit" if span["released"] is None and meter.committed else
                       "rollback" if span["released"] is None else f"line {st[span['released']]['line']}",
                 "new_relation": not existing, "from_s": s.get("start_s"),
                 "until_s": _until(meter, span)}
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
            t["relation"] == lk["_table"] and strength(t["mode"]) >= strength(lk["mode"])
            and t["held_s"] >= lk["held_s"] for t in gated if t is not lk and t["relkind"] != "index")
    for lk in locks:
        lk.pop("_table", None)
    top = sorted((lk for lk in gated if not lk["covered"]), key=lambda lk: (lk["held_s"], strength(lk["mode"])),
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
    out["estimates"] = estimates(meter, lexed, out)
    out["thresholds"] = evaluate(meter, out)
    # for the traffic probe (core/change/traffic.py), which takes them out: its clock and the change's session
    out["clock"] = {"origin_perf_s": meter.origin, "change_pid": meter.backend_pid,
                    "commit_s": list(meter.commit_at) if meter.commit_at else None}
    return out


def _until(meter, span: dict) -> float | None:
    """When a lock was given back, in the meter's seconds: the end of the statement after which it was gone,
    else the end of COMMIT, else (rolled back) the end of the last statement."""
    st = meter.statements
    if span["released"] is not None:
        return st[span["released"]].get("end_s")
    if meter.commit_at:
        return round(meter.commit_at[1], 4)
    return st[-1].get("end_s") if st else None
