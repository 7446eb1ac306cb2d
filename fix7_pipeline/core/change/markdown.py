"""The impact section as Markdown, for the report and the Dagster materializations."""

from __future__ import annotations

from ..shared.escape import md
from .traffic_markdown import traffic_lines
from .units import bytes_text

MD_STATEMENTS = 100


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
    wal = bytes_text(impact.get("wal_bytes")) if impact.get("wal_bytes") is not None else "not measurable"
    change = impact.get("db_size_change_bytes")
    lines.append(f"{impact.get('statement_count')} statement line(s), {impact.get('total_s', 0):.3f} s in all "
                 f"(statements {impact.get('statements_s', 0):.3f} s, COMMIT "
                 f"{(impact.get('commit_s') or 0):.3f} s; measurement {impact.get('measurement_overhead_s', 0):.3f} s "
                 f"not counted); WAL {md(wal)}; database size "
                 f"{md(bytes_text(change) if change is not None else 'not measured')}"
                 f"{' (' + md(bytes_text(impact.get('db_size_before_bytes'))) + ' -> ' + md(bytes_text(impact.get('db_size_after_bytes'))) + ')' if change is not None else ''}"
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
        rw = "; ".join(f"{md(r['relation'])} {md(bytes_text(r['size_before_bytes']))} -> "
                         f"{md(bytes_text(r['size_after_bytes']))}" for r in s.get("rewrites", []))
        lines.append(f"| {s['line']} | {md(s['kind'])}{' (failed)' if s.get('failed') else ''} | "
                     f"{s['duration_s']:.3f} | {_cell(s.get('rows'))} | {_locks_cell(s.get('locks', []))} | {rw} | "
                     f"{md(bytes_text(s['wal_bytes'])) if s.get('wal_bytes') is not None else ''} |")
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
    return lines + traffic_lines(label, impact, heading=heading + "#")
