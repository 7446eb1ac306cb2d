"""The traffic probe and the production-size estimates of a stage, as Markdown (the report, Dagster)."""

from __future__ import annotations

from ..shared.escape import md
from .units import rows_text

MD_ROWS = 60


def chart_name(label: str) -> str:
    return f"traffic-{label}.svg"


def _ms(v) -> str:
    return "" if v is None else f"{v:.1f}"


def _at(d: dict | None) -> str:
    if not d:
        return ""
    return f"line {d['line']} ({md(d['kind'])})" if d.get("line") is not None else md(d.get("kind") or "")


def traffic_lines(label: str, impact: dict, *, heading: str = "####") -> list[str]:
    """The probe's tables, its chart where the packet has one (core/evidence/charts.py), and the estimates."""
    tr = impact.get("traffic")
    lines: list[str] = []
    if tr is not None:
        lines += ["", f"{heading} Traffic probe: {md(label)}", ""]
        s = tr.get("settings") or {}
        if not tr.get("ran"):
            lines.append(f"Not run: {md(tr.get('reason') or 'no reason given')}.")
        else:
            lines += [f"{s.get('sessions')} session(s) at {s.get('rate_per_session'):g} queries/s each, point reads "
                      f"and writes by primary key (writes lock the row and roll back); a long reader held ACCESS "
                      f"SHARE {tr.get('reader_held_s') or 0:.2f} s; {tr.get('queries')} probe queries; the "
                      f"application's lock_timeout taken as {s.get('lock_timeout_ms'):g} ms.", "",
                      "| table | traffic | queries | p50 ms | p95 ms | p99 ms | max ms | blocked | longest wait ms "
                      "| blocked by | longest queue | lock_timeout would fire | row locked |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for t in tr.get("tables") or []:
                if t.get("mode") == "not probed":
                    lines.append(f"| {md(t['table'])} | not probed: {md(t.get('note') or '')} |"
                                 " | | | | | | | | | | |")
                    continue
                w = t.get("worst") or {}
                by = w.get("by") or {}
                blocked_by = (f"{md(by.get('mode') or '')} from {_at(by)}" if by else "")
                lines.append(
                    f"| {md(t['table'])} | {md(t['mode'])} | {t['queries']} | {_ms(t['p50_ms'])} | {_ms(t['p95_ms'])}"
                    f" | {_ms(t['p99_ms'])} | {_ms(t['max_ms'])} | {t['blocked_queries']} | "
                    f"{_ms(t['max_blocked_ms'])} | {blocked_by} | {t['longest_queue']} | "
                    f"{t['lock_timeout_fired']} | {t['row_locked']} |")
            waits = tr.get("change_lock_waits") or []
            if waits:
                lines += ["", "The change itself waited for a lock (behind the long reader or the probe): " +
                          "; ".join(f"line {w['line']} {w['wait_s']:.2f} s" for w in waits) + "."]
            rows = [r for r in tr.get("statements") or [] if r["phase"] == "during"]
            if rows:
                lines += ["", "Per statement (probe queries started while it ran; waits its locks caused):", "",
                          "| statement | table | queries | p50 ms | p99 ms | max ms | blocked | longest wait ms "
                          "| waits it caused (ms) | modes |", "|---|---|---|---|---|---|---|---|---|---|"]
                for r in rows[:MD_ROWS]:
                    lines.append(
                        f"| {_at(r)} | {md(r['table'])} | {r['queries']} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} "
                        f"| {_ms(r['max_ms'])} | {r['blocked_queries']} | {_ms(r['max_blocked_ms'])} | "
                        f"{r['waits_caused']} ({r['waits_caused_ms']:.0f}) | {md(', '.join(r['modes']))} |")
            if tr.get("chart"):
                lines += ["", f"![probe latency over time, {md(label)}]({md(tr['chart'])})"]
        for p in tr.get("problems") or []:
            lines.append(f"- probe: {md(p)}")
    est = impact.get("estimates") or []
    if est:
        lines += ["", f"{heading} At production size: {md(label)}", "",
                  "| statement | table | grows by | measured s | clone rows | production rows | factor | method "
                  "| estimate s |", "|---|---|---|---|---|---|---|---|---|"]
        for e in est[:MD_ROWS]:
            wait = f" (less {e['lock_wait_s']:.3f} lock wait)" if e["lock_wait_s"] else ""
            factor = "" if e["factor"] is None else format(e["factor"], "g")
            figure = (f"{e['production_s']:.1f}" if e["production_s"] is not None else
                      f"not estimated: {md(e.get('note') or '')}")
            lines.append(f"| line {e['line']} ({md(e['kind'])}) | {md(e['table'])} | {md(e['grows_by'])} | "
                         f"{e['measured_s']:.3f}{wait} | {rows_text(e['clone_rows'])} | "
                         f"{rows_text(e['production_rows'])} | {factor} | {md(e['method'])} | {figure} |")
    return lines
