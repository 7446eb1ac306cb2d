"""`fix7 audit`'s listing of every rehearsal (core/evidence/audit.py packet_row), as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json

from ..shared.errors import Fix7Error
from ..shared.escape import visible

COLUMNS = ("run_id", "started_at", "run_status", "state", "source", "clone_sha256", "attested_by", "verdict",
           "anchor_id", "evidence_dir", "packet_sha256", "chain")


def render(rows: list[dict], fmt: str) -> str:
    """The listing as an aligned table, JSON or CSV."""
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    if fmt != "table":
        raise Fix7Error(f"unknown audit format {fmt!r}: use table, json or csv", 2, rule="usage")
    if not rows:
        return "no rehearsals recorded in this Dagster instance\n"
    short = {"run_id": 8, "clone_sha256": 12, "packet_sha256": 12, "anchor_id": 16}
    cells = [[visible(r.get(c) or "")[:short[c]] if c in short else visible(r.get(c) or "") for c in COLUMNS]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"
