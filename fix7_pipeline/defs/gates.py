"""rehearsal_clone and its four gates: isolation_proven, sanitized, production_shaped, data_rules.

One step restores the dump and evaluates the gates in order (core/clone_gates.py): one writer of their
journal entries and of the packet a failed gate seals, whatever executor runs the job. The clone is handed on
(materialized) only when every gate passed. When one fails, the step yields its failed check and no output:
Dagster skips every stage after it, the gates after it stay "Skipped" (they never ran, so they did not fail),
and the run ends as a success carrying the verdict (NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE). A run fails
only when it reached no verdict (defs/stages.py end_unjudged), so the catalog keeps showing the last good
rehearsal and never paints a stage the run did not reach.
"""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.core.run import clone_gates, rehearsal
from fix7_pipeline.core.evidence import run_view
from fix7_pipeline.core.shared.escape import visible
from fix7_pipeline.core.shared.model import StageOutcome
from fix7_pipeline.core.run.run_record import RunRecord
from fix7_pipeline.defs.resources import RehearsalServerResource
from fix7_pipeline.defs.stages import (DURATION_KEY, GROUP, OWNERS, REHEARSALS, STAGE_KEY, end_unjudged,
                                       record_witness, sealed_metadata, stage_metadata, suite_metadata,
                                       verdict_first, witnessed_if_interrupted)

CLONE = "rehearsal_clone"
GATE_DESCRIPTIONS = {
    "isolation_proven": "Nothing in the restored clone points at a live host: no foreign servers, user mappings, "
                        "subscriptions, dblink, or webhook/flow/setting URL of a live host (catalog proof).",
    "sanitized": "The clone carries no secrets: the secret scan (Kingfisher's rule catalog plus fix7's rules) of every "
                 "table value, large object and catalog text, validated by the Great Expectations sanitization "
                 "suite (no finding of any rule family, must-be-NULL columns NULL, must-be-empty tables empty).",
    "production_shaped": "Tables, columns, types, keys and constraints match production's shape (the contract).",
    "data_rules": "The birth surface's data rules hold: the Great Expectations data-rules suite, run inside "
                  "PostgreSQL.",
}
GATE_SPECS = [dg.AssetCheckSpec(name, asset=CLONE, description=GATE_DESCRIPTIONS[name]) for name in clone_gates.GATES]


@dg.multi_asset(
    name=CLONE, partitions_def=REHEARSALS, check_specs=GATE_SPECS, can_subset=True,  # a gate never run: no result
    outs={CLONE: dg.AssetOut(
        is_required=False, group_name=GROUP, owners=OWNERS, kinds={"postgres"},
        description="The dump restored into a throwaway database by a role that owns only that database, with no "
                    "superuser or server-file privileges, handed on only when its four gates (isolation_proven, "
                    "sanitized, production_shaped, data_rules) passed, in that order.")},
)
def rehearsal_clone(context, clone_intake: RunRecord, rehearsal_server: RehearsalServerResource):
    server = rehearsal_server.source()
    witnessed, passed = False, True
    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.restore_clone(clone_intake, server)
        for record, result in clone_gates.evaluate(record, server):
            if not result.evaluated:
                continue  # Dagster shows it Skipped; the failed gate's description names it
            if record.witness and not witnessed:  # a gate stopped the run: its sealed packet is the run's first
                record_witness(context.instance, context.run_id, record.witness)
                witnessed = True
            passed = passed and result.passed
            yield gate_result(result, record)
    if passed:
        md = {k: v for k, v in stage_metadata(outcome, record).items() if k not in ("status", "reason")}
        yield dg.Output(record, output_name=CLONE, metadata={
            **md, "restored_database": record.throwaway.database if record.throwaway else ""})
    else:
        end_unjudged(record)


def gate_result(result: clone_gates.GateResult, record: RunRecord) -> dg.AssetCheckResult:
    """One gate's check result: its own findings and suite (one source per rule); the stage's line on the
    stage's last evaluated gate; the verdict first on the gate that sealed the packet."""
    outcome = result.outcome
    counts = outcome.details.get("finding_counts") if outcome is not None and result.name == "sanitized" else None
    listed = [f.as_dict() for f in result.findings if f.severity != "note"]
    notes = [f.as_dict() for f in result.findings if f.severity == "note"]  # notes, not findings
    per_rule = {**run_view.findings_per_rule(None, listed), **run_view.findings_per_rule(counts, [])}
    md: dict = {"gate_status": "passed" if result.passed else "failed",
                "finding_count": int(outcome.details.get("finding_total", len(listed))) if counts else len(listed),
                "rules": dg.MetadataValue.json(sorted(per_rule)),
                "findings": dg.MetadataValue.json([{k: v for k, v in f.items() if k != "row_key"}
                                                   for f in listed[:100]])}
    if notes:
        md["note_count"] = len(notes)
        md["notes"] = dg.MetadataValue.json([{k: v for k, v in f.items() if k != "row_key"} for f in notes[:100]])
    md.update({f"findings/{visible(rule)}": n for rule, n in per_rule.items()})
    if counts:  # the secret scan's findings per rule and per place, in full (the outcome lists 100)
        md["finding_counts"] = dg.MetadataValue.md(run_view.finding_counts_table(counts))
    if result.gx:
        md.update(suite_metadata(result.gx))
    elif result.name == "data_rules" and result.evaluated:
        md["evaluated"] = 0  # no data rules declared
    description = visible(result.reason)[:1000]
    if outcome is not None:
        md.update(_stage_line(result.stage, outcome, record))
        if not result.passed:
            description = verdict_first(StageOutcome(status=outcome.status, reason=result.reason), record)
            if record.witness:
                md = {"verdict": visible(record.witness.get("verdict")), **md,
                      **sealed_metadata(record.evidence_dir)}
    if not result.passed:  # the gates after it never ran: Dagster shows them Skipped, this says why
        after = list(clone_gates.GATES[clone_gates.GATES.index(result.name) + 1:])
        md["gates_not_evaluated"] = dg.MetadataValue.json(after)
        if after:
            description = f"{description}; not evaluated after it: {', '.join(after)}"[:1000]
    return dg.AssetCheckResult(asset_key=CLONE, check_name=result.name, passed=result.passed,
                               severity=dg.AssetCheckSeverity.ERROR, description=description, metadata=md)


def _stage_line(stage: str, outcome: StageOutcome, record: RunRecord) -> dict:
    """What the CLI prints for the stage (cli/rehearse.py RunFollower)."""
    return {STAGE_KEY: stage, "status": outcome.status, DURATION_KEY: float(outcome.duration_s or 0.0),
            "reason": dg.MetadataValue.text(visible(outcome.reason)),
            "evidence_dir": dg.MetadataValue.path(record.evidence_dir)}
