"""What an operator and an auditor read of a run outside the packet: run tags and Markdown tables.

The Dagster layer shows these (run tags, `MetadataValue.md`); this module imports nothing from Dagster.
Everything here is built from the packet's data (or a stage's outcome), which the stages already passed
through `core.sanitization.redact` (a name that matched a secret rule is its label), and prints only names, counts,
statuses and fingerprints: never a value of a clone row (restore-diff row keys, sequence positions and
finding row keys stay in the packet). Text goes through `core/shared/escape.py`: a tag or a table cell stays on its
line, and a Markdown cell cannot add a cell or become markup.

Tags a run carries (`run_tags`), few and short: `fix7` (the headline: the verdict and the stage that
stopped the run), `fix7/verdict`, `fix7/reason` (the one line that decided it), `fix7/evidence`. The verdict
event carries the rest (`run_facts`): `stopped_at`, `clone_sha256`, `attested_by` (`attestation_tag`:
operator text, escaped, limited, and screened by the secret rules).
"""

from __future__ import annotations

from ..change.impact import breaches
from ..shared.escape import md, visible
from ..shared.model import BLOCKED, FAILED, INTERRUPTED, STAGES
from ..sanitization.textscan import scan_value

TAG_PREFIX = "fix7/"
VERDICT_FIRST_TAG = "fix7"  # tags are listed in key order: "fix7" comes before every "fix7/…"
REASON_LIMIT = 300  # characters of the one-line reason on the run (the packet has it whole)
ATTESTATION_LIMIT = 120
NO_CLONE = "none"  # clone_sha256 of a run whose dump was never hashed (missing, unreadable)
NO_ATTESTATION = "(none)"
STOPPED = (FAILED, BLOCKED, INTERRUPTED)


def one_line(text, limit: int = REASON_LIMIT) -> str:
    """`text` as one visible line of at most `limit` characters (an ellipsis marks the cut)."""
    line = visible(text)
    return line if len(line) <= limit else line[:limit - 1] + "…"


def attestation_tag(attested_by: str | None) -> str:
    """The operator's attestation as a tag value: escaped, at most ATTESTATION_LIMIT characters, and never a
    secret. The text is scanned by the same rules as the clone (Kingfisher's and fix7's); a match replaces
    the whole text with the rule's name, and a scan that cannot run shows nothing of it (fails closed)."""
    text = (attested_by or "").strip()
    if not text:
        return NO_ATTESTATION
    try:
        hits = scan_value(text.encode("utf-8", "surrogatepass"), salt="")
    except Exception:  # noqa: BLE001 - the rule engine could not run: show nothing of the text
        return "[attestation not shown: it could not be screened for secrets]"
    if hits:
        return f"[attestation not shown: it matched secret rule {visible(hits[0].rule)}]"
    return one_line(text, ATTESTATION_LIMIT)


def stopping_stage(data: dict) -> str | None:
    """The first stage that failed, blocked or was interrupted; None when none did."""
    stages = data.get("stages") or {}
    return next((s for s in STAGES if (stages.get(s) or {}).get("status") in STOPPED), None)


def verdict_reason(data: dict) -> str:
    """The one line that decided the verdict: the stopping stage and its reason, else the first impact
    breach, else (passed) the restore diff's reason."""
    stages = data.get("stages") or {}
    if data.get("evidence_fault"):  # the disk filled: nothing was judged, whatever the stages found
        return one_line(data["evidence_fault"].get("message") or "the evidence could not be written")
    stage = stopping_stage(data)
    if stage:
        return one_line(f"{stage}: {stages[stage].get('reason') or stages[stage].get('status')}")
    found = [b for label in ("apply", "rollback") for b in breaches((data.get("impact") or {}).get(label))]
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        return one_line(f"impact threshold breached: {found[0]}{more}")
    if data.get("verdict") is None:
        return "in progress"
    last = stages.get("restore_diff") or {}
    return one_line(f"restore_diff: {last.get('reason')}" if last.get("reason") else "every stage passed")


# The verdict in the fewest words, so the Runs list's narrow column shows it whole.
SHORT_VERDICT = {"REHEARSAL_PASSED": "PASSED", "REHEARSAL_FAILED": "FAILED",
                 "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE": "NO SAFE CLONE", "REHEARSAL_INTERRUPTED": "INTERRUPTED",
                 "REHEARSAL_NOT_JUDGED": "NOT JUDGED", "REHEARSAL_SERVER_FAULT": "SERVER FAULT",
                 "NOT_STARTED": "NOT STARTED"}


def headline(data: dict) -> str:
    """The verdict in short, then the stage that stopped the run: read first in the Runs list."""
    stage = stopping_stage(data)
    verdict = visible(data.get("verdict") or "IN_PROGRESS")
    short = SHORT_VERDICT.get(verdict, verdict)
    return f"{short} at {stage}" if stage else short


def run_tags(data: dict) -> dict[str, str]:
    """The run tags of a packet (sealed or not), few and short: `fix7` (the headline, which sorts first of a
    run's tags, as the Runs list shows them), `fix7/verdict`, `fix7/reason`, `fix7/evidence`. The rest is
    the verdict event's metadata (`run_facts`)."""
    return {
        VERDICT_FIRST_TAG: headline(data),
        f"{TAG_PREFIX}verdict": visible(data.get("verdict") or "IN_PROGRESS"),
        f"{TAG_PREFIX}reason": verdict_reason(data),
        f"{TAG_PREFIX}evidence": visible(data.get("evidence_dir") or ""),
    }


def run_facts(data: dict) -> dict[str, str]:
    """What the run page's verdict event carries besides the tags: where it stopped, the dump, the attestation."""
    clone = data.get("clone") or {}
    return {"stopped_at": stopping_stage(data) or "none",
            "clone_sha256": visible(clone.get("sha256") or NO_CLONE),
            "attested_by": attestation_tag((data.get("attestation") or {}).get("attested_by"))}


def intake_tags(evidence_dir: str) -> dict[str, str]:
    """The tag known once intake has run, before any verdict: where the packet is."""
    return {f"{TAG_PREFIX}evidence": visible(evidence_dir)}


# -- Markdown tables -------------------------------------------------------------------------

def _cell(value) -> str:
    return md(one_line(value, 500))


def stages_table(data: dict) -> str:
    """Every stage: status, duration, reason (the stage summary of the packet)."""
    stages = data.get("stages") or {}
    lines = [f"**{_cell(data.get('verdict') or 'IN PROGRESS')}**", "",
             "| stage | status | duration (s) | reason |", "|---|---|---:|---|"]
    for s in STAGES:
        st = stages.get(s) or {}
        duration = st.get("duration_s")
        lines.append(f"| {s} | {_cell(st.get('status'))} | "
                     f"{'' if duration is None else f'{float(duration):.2f}'} | {_cell(st.get('reason'))} |")
    return "\n".join(lines)


def restore_diff_counts(diff: dict | None) -> dict[str, int]:
    """Plottable numbers of a restore diff: rows added, removed and changed, and objects that differ."""
    diff = diff or {}
    tables = diff.get("tables") or []
    blobs = diff.get("large_objects") or {}
    return {
        "rows_added": sum(int(t.get("added") or 0) for t in tables),
        "rows_removed": sum(int(t.get("removed") or 0) for t in tables),
        "rows_changed": sum(int(t.get("changed") or 0) for t in tables),
        "tables_differing": len(tables),
        "schema_objects_differing": len(diff.get("schema") or []),
        "sequences_moved": len(diff.get("sequences") or []),
        "large_objects_differing": sum(len(blobs.get(k) or []) for k in ("added", "removed", "changed")),
    }


def restore_diff_table(diff: dict | None) -> str:
    """The restore diff as tables of names and counts: rows per table, schema objects (what changed, which
    attributes), sequences (name and severity; positions stay in the packet), large objects (counts)."""
    diff = diff or {}
    counts = restore_diff_counts(diff)
    head = "**empty: every row and schema object is back as anchored**" if diff.get("empty") else \
        "**not empty: the rollback did not put everything back**"
    if not diff:
        return "**not measured: the restore diff did not run**"
    lines = [head, "", f"{int(diff.get('tables_compared') or 0)} table(s) compared row by row, "
                       f"{int(diff.get('tables_unchanged') or 0)} unchanged by fingerprint.", "",
             "| table | added | removed | changed |", "|---|---:|---:|---:|"]
    tables = diff.get("tables") or []
    lines += [f"| {_cell(t.get('table'))} | {int(t.get('added') or 0)} | {int(t.get('removed') or 0)} | "
              f"{int(t.get('changed') or 0)} |" for t in tables]
    if not tables:
        lines.append("| (no table differs) | 0 | 0 | 0 |")
    if diff.get("schema"):
        lines += ["", "| schema object | change | attributes |", "|---|---|---|"]
        lines += [f"| {_cell(o.get('object'))} | {_cell(o.get('change'))} | "
                  f"{_cell(', '.join(o.get('attributes') or []))} |" for o in diff["schema"]]
    if diff.get("sequences"):
        lines += ["", "| sequence | moved | severity |", "|---|---|---|"]
        lines += [f"| {_cell(s.get('sequence'))} | {'forward' if s.get('severity') == 'warning' else 'other'} | "
                  f"{_cell(s.get('severity'))} |" for s in diff["sequences"]]
    if counts["large_objects_differing"]:
        blobs = diff.get("large_objects") or {}
        lines += ["", "| large objects | added | removed | changed |", "|---|---:|---:|---:|",
                  f"| count | {len(blobs.get('added') or [])} | {len(blobs.get('removed') or [])} | "
                  f"{len(blobs.get('changed') or [])} |"]
    return "\n".join(lines)


def gx_table(gx: dict | None) -> str:
    """A Great Expectations suite's results: one row per expectation, success and unexpected count."""
    if not gx:
        return "**not evaluated**"
    lines = [f"**suite {_cell(gx.get('suite'))}: {int(gx.get('evaluated') or 0)} expectation(s), "
             f"{int(gx.get('failed') or 0)} failed**", "",
             "| rule | table | expectation | result | unexpected |", "|---|---|---|---|---:|"]
    for e in gx.get("expectations") or []:
        result = "passed" if e.get("success") else ("error: " + one_line(e["error"], 120) if e.get("error")
                                                    else "failed")
        unexpected = e.get("unexpected_count")
        lines.append(f"| {_cell(e.get('rule'))} | {_cell(e.get('table'))} | {_cell(e.get('expectation'))} | "
                     f"{_cell(result)} | {'' if unexpected is None else int(unexpected)} |")
    return "\n".join(lines)


def finding_counts_table(counts: dict | None) -> str:
    """Findings per rule, then per table and column (names as printed, never a value)."""
    counts = counts or {}
    lines = [f"**{int(counts.get('total') or 0)} finding(s)**", "", "| rule | findings |", "|---|---:|"]
    by_rule = counts.get("by_rule") or {}
    lines += [f"| {_cell(k)} | {int(v)} |" for k, v in by_rule.items()] or ["| (none) | 0 |"]
    if counts.get("by_column"):
        lines += ["", "| table.column | findings |", "|---|---:|"]
        lines += [f"| {_cell(k)} | {int(v)} |" for k, v in counts["by_column"].items()]
    return "\n".join(lines)


def findings_per_rule(counts: dict | None, findings: list[dict] | None = None) -> dict[str, int]:
    """Findings per rule as integers (from the stage's counts, else from its listed findings)."""
    by_rule = (counts or {}).get("by_rule")
    if by_rule:
        return {str(k): int(v) for k, v in by_rule.items()}
    out: dict[str, int] = {}
    for f in findings or []:
        out[str(f.get("rule"))] = out.get(str(f.get("rule")), 0) + 1
    return out
