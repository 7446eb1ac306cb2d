"""What the traffic probe saw, placed on the change's own timeline: per hot table and per statement, the probe's
queries, their latency, the time they were blocked, by which statement's lock in which mode, the longest lock
queue, and where the application's lock_timeout would have fired; and the max_blocked_ms threshold.

A probe query was blocked when the monitor saw its session waiting for a relation lock while it ran; its wait is
its latency (a point read or write does nothing else for long). It is blocked by the change's lock on that table
whose mode conflicts with the one it asked for and that was held while it waited: the statement that took it is
named, and the statement running at that moment. A query that queued behind the change's own request, still
waiting itself (behind the long reader), is blocked by that request. A write whose row the change had locked is
counted, with the wait it would have had: until the change's end.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

from . import estimates as estimates_mod
from .units import mode_name

# Which lock modes conflict (PostgreSQL's table-level lock conflict table).
_CONFLICTS = {
    "ACCESS SHARE": {"ACCESS EXCLUSIVE"},
    "ROW SHARE": {"EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "ROW EXCLUSIVE": {"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "SHARE UPDATE EXCLUSIVE": {"SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
                               "ACCESS EXCLUSIVE"},
    "SHARE": {"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "SHARE ROW EXCLUSIVE": {"ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE",
                            "ACCESS EXCLUSIVE"},
    "EXCLUSIVE": {"ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE",
                  "EXCLUSIVE", "ACCESS EXCLUSIVE"},
    "ACCESS EXCLUSIVE": {"ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE",
                         "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"},
}
TIMELINE_POINTS = 3000   # probe queries kept for the chart (every blocked one, an even share of the rest)
SAMPLE_S = 0.02


def conflicts(a: str, b: str) -> bool:
    return b in _CONFLICTS.get(a, ())


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    v = sorted(values)
    rank = int(-(-len(v) * p // 100))  # ceil(n p / 100)
    return v[max(0, min(len(v) - 1, rank - 1))]


def _stats(ms: list[float]) -> dict:
    return {"p50_ms": _r(percentile(ms, 50)), "p95_ms": _r(percentile(ms, 95)), "p99_ms": _r(percentile(ms, 99)),
            "max_ms": _r(max(ms) if ms else None)}


def _r(v):
    return None if v is None else round(v, 2)


class _Timeline:
    """The change's statements and locks, in perf_counter seconds."""

    def __init__(self, impact: dict):
        clock = impact.get("clock") or {}
        self.origin = clock.get("origin_perf_s") or 0.0
        self.pid = clock.get("change_pid")
        self.statements = [s for s in impact.get("statements") or [] if s.get("start_s") is not None]
        commit = clock.get("commit_s")
        self.commit = (commit[0], commit[1]) if commit else None
        self.end = (self.commit[1] if self.commit else
                    max((s["end_s"] for s in self.statements), default=0.0))
        self.start = min((s["start_s"] for s in self.statements), default=0.0)
        self.locks = [lk for lk in impact.get("locks") or [] if lk.get("from_s") is not None]

    def rel(self, t: float) -> float:
        return t - self.origin

    def running(self, t: float) -> dict | None:
        """{line, kind} of what the change ran at `t` (perf seconds): a statement, COMMIT, or None."""
        r = self.rel(t)
        for s in self.statements:
            if s["start_s"] <= r <= s["end_s"]:
                return {"line": s["line"], "kind": s["kind"]}
        if self.commit and self.commit[0] <= r <= self.commit[1]:
            return {"line": None, "kind": "COMMIT"}
        return None

    def phase(self, t: float) -> str:
        r = self.rel(t)
        return "before" if r < self.start else "after" if r > self.end else "during"

    def holder(self, table: str, wanted: str, t0: float, t1: float) -> dict | None:
        """The change's strongest lock on `table`, conflicting with `wanted`, held while [t0, t1] ran."""
        a, b = self.rel(t0), self.rel(t1)
        found = [lk for lk in self.locks if lk["relation"] == table and conflicts(wanted, lk["mode"])
                 and lk["from_s"] <= b and (lk.get("until_s") is None or lk["until_s"] >= a)]
        return min(found, key=lambda lk: lk["from_s"]) if found else None


def analyse_probe(run, impact: dict, settings) -> dict:
    """The `traffic` section of a stage's impact."""
    probe = settings.probe
    base = {"ran": bool(run.ran), "reason": run.reason or None, "role": run.role,
            "settings": {"sessions": probe.sessions, "rate_per_session": probe.rate,
                         "reader_hold_s": probe.reader_hold_s, "lock_timeout_ms": probe.lock_timeout_ms},
            "tables": [{"table": t.name, "mode": t.mode if t.probed else "not probed", "note": t.why or None}
                       for t in run.tables],
            "problems": list(run.problems)}
    if not run.ran:
        return base
    tl = _Timeline(impact)
    names = [t.name for t in run.tables]
    by_oid = {}
    for i, t in enumerate(run.tables):
        for o in [t.oid, *t.indexes]:
            if o is not None:
                by_oid[o] = i
    pid_of = {n: p for p, n in run.session_pids.items()}
    waits: dict[int, list] = defaultdict(list)           # pid -> [(t, table index, mode)]
    queue: dict[int, tuple[int, float]] = {}             # table index -> (longest queue, when)
    change_waits: list[tuple[float, int | None]] = []
    for t, rows in run.samples:
        per_table: dict[int, int] = defaultdict(int)
        for pid, rel, mode in rows:
            i = by_oid.get(rel)
            if pid == tl.pid:
                change_waits.append((t, i))
            if i is None:
                continue
            waits[pid].append((t, i, mode_name(mode)))
            per_table[i] += 1
        for i, n in per_table.items():
            if n > queue.get(i, (0, 0.0))[0]:
                queue[i] = (n, t)
    times = {pid: [w[0] for w in ws] for pid, ws in waits.items()}
    change_pid_waits = waits.get(tl.pid, [])

    queries = []
    for n, i, kind, t0, t1, outcome in run.queries:
        q = {"table": i, "kind": kind, "t0": t0, "t1": t1, "ms": (t1 - t0) * 1000, "outcome": outcome,
             "blocked_ms": 0.0, "by": None, "mode": None, "running": tl.running(t0), "phase": tl.phase(t0)}
        ws = waits.get(pid_of.get(n), [])
        ts = times.get(pid_of.get(n), [])
        k = bisect.bisect_left(ts, t0)
        if k < len(ts) and ts[k] <= t1:
            _, _, wanted = ws[k]
            q["blocked_ms"], q["mode"] = q["ms"], wanted
            q["running"] = tl.running(ts[k]) or q["running"]
            lk = tl.holder(names[i], wanted, t0, t1)
            if lk is not None:
                q["by"] = {"line": lk["line"], "kind": lk["kind"], "mode": lk["mode"]}
            else:
                pending = [w for w in change_pid_waits if t0 <= w[0] <= t1 and w[1] == i and conflicts(wanted, w[2])]
                if pending:
                    run_at = tl.running(pending[0][0]) or {}
                    q["by"] = {"line": run_at.get("line"), "kind": run_at.get("kind"), "mode": pending[0][2],
                               "queued": True}
        elif outcome == "row_locked":
            q["blocked_ms"] = max(0.0, (tl.end - tl.rel(t0)) * 1000) if tl.phase(t0) == "during" else 0.0
            q["mode"], q["row_estimate"] = "row lock (FOR NO KEY UPDATE)", True
            q["by"] = {"line": (q["running"] or {}).get("line"), "kind": (q["running"] or {}).get("kind"),
                       "mode": "row lock"}
        queries.append(q)

    limit = probe.lock_timeout_ms
    out_tables = []
    for i, t in enumerate(run.tables):
        mine = [q for q in queries if q["table"] == i]
        if not t.probed:
            continue
        blocked = [q for q in mine if q["blocked_ms"] > 0]
        worst = max(blocked, key=lambda q: q["blocked_ms"], default=None)
        out_tables.append({
            "table": t.name, "mode": t.mode, "note": t.why or None,
            "queries": len(mine), "reads": sum(q["kind"] == "read" for q in mine),
            "writes": sum(q["kind"] == "write" for q in mine),
            **_stats([q["ms"] for q in mine if not q["outcome"].startswith("error")]),
            "blocked_queries": len(blocked), "blocked_ms_total": round(sum(q["blocked_ms"] for q in blocked), 1),
            "max_blocked_ms": _r(worst["blocked_ms"]) if worst else 0.0,
            "worst": _who(worst, impact.get("label", "")) if worst else None,
            "longest_queue": queue.get(i, (0, 0.0))[0],
            "longest_queue_during": tl.running(queue[i][1]) if i in queue else None,
            "lock_timeout_fired": sum(q["blocked_ms"] > limit for q in blocked),
            "row_locked": sum(q["outcome"] == "row_locked" for q in mine),
            "errors": sum(q["outcome"].startswith("error") for q in mine)})
    base.update(
        queries=len(queries), samples=run.sample_count,
        duration_s=round(run.stopped_at - run.started_at, 3) if run.stopped_at else None,
        reader_held_s=round(run.reader_held[1] - run.reader_held[0], 3) if run.reader_held else None,
        tables=out_tables + [x for x in base["tables"] if x["mode"] == "not probed"],
        statements=_per_statement(queries, names, tl, limit),
        change_lock_waits=_change_waits(change_waits, tl),
        max_blocked_ms=_r(max((q["blocked_ms"] for q in queries), default=0.0)),
        timeline=_timeline(queries, tl))
    return base


def _who(q: dict, label: str) -> dict:
    by = q.get("by") or {}
    return {"kind": q["kind"], "blocked_ms": _r(q["blocked_ms"]), "mode_wanted": q["mode"], "by": by or None,
            "running": q.get("running"), "estimated": bool(q.get("row_estimate"))}


def _per_statement(queries: list[dict], names: list[str], tl: _Timeline, limit: float) -> list[dict]:
    """Per statement of the change (and before, COMMIT, after) and table: the queries that started then, and
    the waits its locks caused (by the statement that took the lock)."""
    groups: dict[tuple, list] = defaultdict(list)
    order = {None: -1}
    for s in tl.statements:
        order.setdefault(s["line"], len(order))
    for q in queries:
        r = q["running"]
        kind = r["kind"] if r else "between statements" if q["phase"] == "during" else q["phase"]
        key = (q["phase"] if r is None else "during", r["line"] if r else None, kind, q["table"])
        groups[key].append(q)
    blocking: dict[tuple, list] = defaultdict(list)
    for q in queries:
        if q["by"]:
            blocking[(q["by"].get("line"), q["table"])].append(q)
    out = []
    for (phase, line, kind, i), qs in sorted(groups.items(), key=lambda kv: (
            {"before": 0, "during": 1, "after": 2}[kv[0][0]], order.get(kv[0][1], 10**6), kv[0][3])):
        caused = blocking.get((line, i), []) if line is not None else []
        out.append({"phase": phase, "line": line, "kind": kind, "table": names[i], "queries": len(qs),
                    **_stats([q["ms"] for q in qs]),
                    "blocked_queries": sum(q["blocked_ms"] > 0 for q in qs),
                    "max_blocked_ms": _r(max((q["blocked_ms"] for q in qs), default=0.0)),
                    "lock_timeout_fired": sum(q["blocked_ms"] > limit for q in qs),
                    "waits_caused": len(caused),
                    "waits_caused_ms": round(sum(q["blocked_ms"] for q in caused), 1),
                    "modes": sorted({q["by"]["mode"] for q in caused})})
    return out


def _change_waits(samples: list[tuple[float, int | None]], tl: _Timeline) -> list[dict]:
    """How long the change's own session waited for a lock, per statement line (seen every SAMPLE_S)."""
    per: dict[int, list[float]] = defaultdict(list)
    for t, _ in samples:
        r = tl.running(t)
        if r and r["line"] is not None:
            per[r["line"]].append(t)
    return [{"line": line, "wait_s": round(max(ts) - min(ts) + SAMPLE_S, 3)} for line, ts in sorted(per.items())]


def _timeline(queries: list[dict], tl: _Timeline) -> dict:
    keep = [q for q in queries if q["blocked_ms"] > 0]
    rest = [q for q in queries if q["blocked_ms"] <= 0]
    room = max(0, TIMELINE_POINTS - len(keep))
    step = max(1, -(-len(rest) // room)) if room else len(rest) + 1
    points = sorted(keep + rest[::step], key=lambda q: q["t0"])[:TIMELINE_POINTS]
    return {"t_s": [round(tl.rel(q["t0"]), 3) for q in points], "ms": [round(q["ms"], 2) for q in points],
            "table": [q["table"] for q in points], "kind": [q["kind"] for q in points],
            "blocked": [q["blocked_ms"] > 0 for q in points],
            "statements": [[s["line"], s["kind"], s["start_s"], s["end_s"]] for s in tl.statements],
            "commit": list(tl.commit) if tl.commit else None}


def blocked_threshold(label: str, traffic: dict, limit: float) -> tuple:
    """max_blocked_ms: the longest wait of any probe query. Each table's worst wait over the limit is a breach
    naming the statement whose lock it waited for; a probe that did not run cannot be checked, which breaches."""
    if not traffic.get("ran"):
        return ("max_blocked_ms", limit, None, [{"message": (
            f"{label}: max_blocked_ms {limit:g} ms cannot be checked: the traffic probe did not run "
            f"({traffic.get('reason') or 'no reason given'})")}])
    br = []
    for t in traffic["tables"]:
        w = t.get("worst")
        if not w or (t.get("max_blocked_ms") or 0) <= limit:
            continue
        by = w.get("by") or {}
        at = (f"{label} line {by['line']} ({by['kind']})" if by.get("line") is not None else
              f"{label} {by['kind']}" if by.get("kind") else f"{label} (statement unknown)")
        how = ("queued behind its request for" if by.get("queued") else "behind")
        run = w.get("running") or {}
        while_ = (f", while line {run['line']} ({run['kind']}) ran" if run.get("line") is not None
                  and run.get("line") != by.get("line") else "")
        est = " (estimated: its row was locked until the change ended)" if w.get("estimated") else ""
        br.append({"line": by.get("line"), "kind": by.get("kind"), "relation": t["table"], "mode": by.get("mode"),
                   "value": t["max_blocked_ms"],
                   "message": f"{at}: a probe {w['kind']} of {t['table']} waited {t['max_blocked_ms']:.0f} ms "
                              f"{how} {by.get('mode') or 'a lock'}{while_}{est} > max_blocked_ms {limit:g} ms"})
    return ("max_blocked_ms", limit, traffic.get("max_blocked_ms"), br)


def attach(impact: dict | None, run, settings) -> dict | None:
    """The probe's section added to a stage's impact, the estimates taken again without the change's lock
    waits, and the thresholds that depend on them evaluated; the change's clock and session are taken out."""
    if impact is None:
        return None
    traffic = analyse_probe(run, impact, settings)
    impact.pop("clock", None)
    impact["traffic"] = traffic
    label = impact.get("label", "")
    waits = {w["line"]: w["wait_s"] for w in traffic.get("change_lock_waits") or []}
    estimates_mod.without_lock_waits(impact.get("estimates") or [], waits)
    th = settings.thresholds
    results = [r for r in (impact.get("thresholds") or {}).get("results", [])
               if r["name"] not in ("max_production_estimate_s", "max_blocked_ms")]
    extra = []
    if th.max_production_estimate_s is not None:
        extra.append(estimates_mod.threshold(label, impact.get("estimates") or [], th.max_production_estimate_s))
    if th.max_blocked_ms is not None:
        extra.append(blocked_threshold(label, traffic, th.max_blocked_ms))
    for name, lim, val, br in extra:
        if not impact.get("completed"):
            br.append({"message": f"{label} did not complete, so the impact measured is not the whole file's"})
        results.append({"name": name, "limit": lim, "measured": val, "passed": not br, "breaches": br[:50],
                        "breach_count": len(br)})
    impact["thresholds"] = {"set": bool(results), "passed": all(r["passed"] for r in results), "results": results}
    return impact
