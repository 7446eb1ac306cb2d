"""snapshot anchor -> apply -> rollback -> restore diff, on the proven clone."""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.core.run import rehearsal
from fix7_pipeline.core.evidence import run_view
from fix7_pipeline.core.run.run_record import RunRecord
from fix7_pipeline.defs.resources import RehearsalServerResource
from fix7_pipeline.defs.stages import (GROUP, OWNERS, REHEARSALS, gate, impact_events, stage_events,
                                       witnessed_if_interrupted)


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"postgres"}, output_required=False,
    description="A physical copy of the proven clone (CREATE DATABASE … TEMPLATE) and its logical fingerprint "
                "(schema objects, per-table row counts and content hashes, sequence positions), hashed into an "
                "anchor id.",
    check_specs=[gate("snapshot_anchor", "anchor_taken", "The anchor exists before anything changes.")],
)
def snapshot_anchor(context, rehearsal_clone: RunRecord, rehearsal_server: RehearsalServerResource):
    # Runs only when every gate on rehearsal_clone passed: a failed gate hands no clone on (defs/gates.py).
    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.snapshot_anchor(rehearsal_clone, rehearsal_server.source())
    yield from stage_events("snapshot_anchor", "anchor_taken", outcome, record)


IMPACT_CHECK = "impact_within_thresholds"


def _impact_check(asset: str) -> dg.AssetCheckSpec:
    # Not blocking: a breach fails the rehearsal's verdict, but the rollback and restore diff still run,
    # so one run shows every breach and still proves the rollback.
    return dg.AssetCheckSpec(IMPACT_CHECK, asset=asset, blocking=False,
                             description=f"No impact threshold of the request (max_statement_s, max_lock_s, "
                                         f"max_access_exclusive_s, max_total_s, no_rewrite_tables) is breached by "
                                         f"{asset}; a breach fails the rehearsal.")


def change_asset(label: str, upstream: str, gate_name: str, gate_text: str, description: str):
    """apply and rollback: one stage each, the operator's SQL on the record the stage before handed on."""
    @dg.asset(
        name=label, group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"postgres", "sql"},
        output_required=False, description=description, ins={"previous": dg.AssetIn(upstream)},
        check_specs=[gate(label, gate_name, gate_text), _impact_check(label)],
    )
    def change_stage(context, previous: RunRecord, rehearsal_server: RehearsalServerResource):
        with witnessed_if_interrupted(context):
            record, outcome = rehearsal.run_change_stage(previous, label, rehearsal_server.source())
        extra, check = impact_events(label, IMPACT_CHECK, outcome.published.get("impact"))
        yield from stage_events(label, gate_name, outcome, record, extra, checks=(check,))

    return change_stage


apply_change = change_asset(
    "apply", "snapshot_anchor", "change_applied", "The FIX7 change commits in one transaction the server confirms.",
    "The operator's FIX7 change, in one transaction with statement and lock timeouts, as the clone's owner role; "
    "each statement's duration, locks, rewrites, WAL and rows measured.")
rollback_change = change_asset(
    "rollback", "apply", "rollback_applied", "The rollback commits in one transaction the server confirms.",
    "The operator's rollback of the FIX7 change, in one transaction; each statement's duration, locks, rewrites, "
    "WAL and rows measured.")


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"postgres"}, output_required=False,
    description="The clone after rollback against the anchor: rows by primary key (added, removed, changed), "
                "schema objects and sequences. Empty means the rollback put everything back.",
    check_specs=[gate("restore_diff", "restore_diff_empty", "The rollback put every row and schema object back.")],
)
def restore_diff(context, rollback: RunRecord, rehearsal_server: RehearsalServerResource):
    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.restore_diff(rollback, rehearsal_server.source())
    diff = outcome.published.get("restore_diff")
    extra = {"restore_diff": dg.MetadataValue.md(run_view.restore_diff_table(diff)),
             **run_view.restore_diff_counts(diff)}  # integers Dagster plots across rehearsals
    yield from stage_events("restore_diff", "restore_diff_empty", outcome, record, extra)
