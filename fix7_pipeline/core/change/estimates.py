"""Times at production size: each statement whose cost grows with a table's rows, its measured time scaled by the
contract's production row count over the rows the anchor counted in the clone.

What grows with rows: a table rewrite (measured: the table got new storage), an index build, a constraint or NOT
NULL checked against every row, and an UPDATE or DELETE that touched many rows. The method is stated with each
figure: linear in rows, or n log n for an index build (its sort). The time scaled is the statement line's own,
less any time the change's session spent waiting for a lock (the traffic probe sees those waits): a wait does
not grow with rows.
"""

from __future__ import annotations

import math

from .patterns import growth_patterns, patterns
from .statement_warnings import chunk_of, resolve_table
from .units import rows_text

# An UPDATE or DELETE "of many rows": at least this share of its table in the clone, or this many rows.
MANY_ROWS_SHARE = 0.10
MANY_ROWS = 10_000
_WHAT = {"rewrite": "table rewrite", "index_build": "index build", "full_scan": "every row checked",
         "update_rows": "UPDATE of many rows", "delete_rows": "DELETE of many rows"}
_RANK = ("rewrite", "index_build", "full_scan", "update_rows", "delete_rows")
_RULES = {"index_without_concurrently": "index_build", "constraint_without_not_valid": "full_scan",
          "validate_constraint": "full_scan", "set_not_null": "full_scan",
          "update_rows": "update_rows", "delete_rows": "delete_rows"}


def growing_statements(meter, lexed) -> dict[tuple[int, str], str]:
    """(statement line, schema.table) -> what grows with the table's rows there (the first in _RANK)."""
    found: dict[tuple[int, str], str] = {}

    def add(line: int, table: str, kind: str) -> None:
        old = found.get((line, table))
        if old is None or _RANK.index(kind) < _RANK.index(old):
            found[(line, table)] = kind

    for s in meter.statements:
        if s.get("failed"):
            continue
        for r in s["rewrites"]:
            if r.get("table") and r["relkind"] != "index":
                add(s["line"], r["table"], "rewrite")
    for stmt in (lexed.statements if lexed is not None else []):
        text = lexed.source(stmt)
        for p in [*patterns(text, stmt.line), *growth_patterns(text, stmt.line)]:
            kind = _RULES.get(p.rule)
            piece = chunk_of(meter.statements, p.line)
            rel = resolve_table(meter, p.table)
            if kind is None or piece is None or piece.get("failed") or rel is None:
                continue
            if kind in ("update_rows", "delete_rows"):
                clone = meter.settings.clone_rows.get(rel.qname) or 0
                rows = piece.get("rows") or 0
                if rows < MANY_ROWS and rows < MANY_ROWS_SHARE * clone or rows == 0:
                    continue
            add(piece["line"], rel.qname, kind)
    return found


def estimates(meter, lexed, impact: dict) -> list[dict]:
    """One estimate per statement line and table whose cost grows with rows."""
    settings = meter.settings
    by_line = {s["line"]: s for s in impact["statements"]}
    out = []
    for (line, table), kind in sorted(growing_statements(meter, lexed).items()):
        s = by_line.get(line)
        if s is None:
            continue
        clone, prod = settings.clone_rows.get(table), settings.production_rows.get(table)
        e = {"line": line, "kind": s["kind"], "table": table, "grows_by": _WHAT[kind],
             "method": "n log n in rows (an index build sorts)" if kind == "index_build" else "linear in rows",
             "measured_s": s["duration_s"], "lock_wait_s": 0.0, "clone_rows": clone, "production_rows": prod,
             "factor": None, "production_s": None}
        if prod is None:
            e["note"] = f"the contract states no production_rows for {table}"
        elif not clone:
            e["note"] = f"{table} has no rows in the clone: nothing to scale from"
        else:
            e["factor"] = round(_factor(kind, clone, prod), 3)
        out.append(_figure(e))
    return out


def _factor(kind: str, clone: int, prod: int) -> float:
    if kind == "index_build" and clone > 1 and prod > 1:
        return prod * math.log(prod) / (clone * math.log(clone))
    return prod / clone


def _figure(e: dict) -> dict:
    if e["factor"] is not None:
        e["production_s"] = round(max(e["measured_s"] - e["lock_wait_s"], 0.0) * e["factor"], 3)
    return e


def without_lock_waits(items: list[dict], waits: dict[int, float]) -> list[dict]:
    """The estimates again, each line's lock wait (seconds, by statement line) left out of the time scaled."""
    for e in items:
        e["lock_wait_s"] = round(min(waits.get(e["line"], 0.0), e["measured_s"]), 4)
        _figure(e)
    return items


def describe(label: str, e: dict) -> str:
    """'apply line 3 (UPDATE): public.t 0.120 s on 200 rows x 200000.0 (linear in rows) = 24000.0 s for 40M'."""
    head = f"{label} line {e['line']} ({e['kind']}), {e['grows_by']} of {e['table']}"
    if e["production_s"] is None:
        return f"{head}: not estimated ({e.get('note')})"
    wait = f" less {e['lock_wait_s']:.3f} s of lock wait" if e["lock_wait_s"] else ""
    return (f"{head}: {e['measured_s']:.3f} s measured{wait} on {rows_text(e['clone_rows'])} rows × "
            f"{e['factor']:g} ({e['method']}) = {e['production_s']:.1f} s at production's "
            f"{rows_text(e['production_rows'])} rows")


def threshold(label: str, items: list[dict], limit: float) -> tuple:
    """The max_production_estimate_s result: every estimate over the limit, and every one that could not be
    made (the contract lacks the table's production rows), since the limit cannot be checked there."""
    br = []
    for e in sorted(items, key=lambda x: -(x["production_s"] or 0.0)):
        if e["production_s"] is None:
            br.append({"line": e["line"], "kind": e["kind"], "relation": e["table"], "value": None,
                       "message": f"{describe(label, e)}: max_production_estimate_s {limit:g} s cannot be checked"})
        elif e["production_s"] > limit:
            br.append({"line": e["line"], "kind": e["kind"], "relation": e["table"], "value": e["production_s"],
                       "message": f"{describe(label, e)} > max_production_estimate_s {limit:g} s"})
    measured = max((e["production_s"] for e in items if e["production_s"] is not None), default=0.0)
    return ("max_production_estimate_s", limit, measured, br)
