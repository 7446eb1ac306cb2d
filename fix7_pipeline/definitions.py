"""Everything Dagster loads: the rehearsal assets, their gates, the job and its triggers."""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.core.shared.names import JOB
from fix7_pipeline.defs.audit_chain import audit_chain, audit_chain_sensor, chain_verifies
from fix7_pipeline.defs.automation import (clone_drop_sensor, fix7_judged_run_sensor, fix7_verdict_sensor,
                                           nightly_rehearsal)
from fix7_pipeline.defs.crashes import fix7_crashed_run_sensor
from fix7_pipeline.defs.evidence import evidence_packet
from fix7_pipeline.defs.gates import rehearsal_clone
from fix7_pipeline.defs.intake import clone_intake
from fix7_pipeline.defs.rehearsal import apply_change, restore_diff, rollback_change, snapshot_anchor
from fix7_pipeline.defs.resources import RESOURCE_KEY, rehearsal_server_resource
from fix7_pipeline.defs.storage import RunScopedIOManager

REHEARSAL_ASSETS = [clone_intake, rehearsal_clone, snapshot_anchor, apply_change, rollback_change, restore_diff,
                    evidence_packet]

RESOURCES = {"io_manager": RunScopedIOManager(), RESOURCE_KEY: rehearsal_server_resource()}


def rehearsal_job(executor_def: dg.ExecutorDefinition = dg.in_process_executor) -> dg.UnresolvedAssetJobDefinition:
    """The job, on `executor_def`. Every fact a later stage needs travels in the asset outputs (defs/storage.py)
    or is derived from the process's environment (the server resource's EnvVars), so the job also runs with
    `dg.multiprocess_executor`, each stage in a process of its own (test_multiprocess_e2e.py): the step toward
    Dagster's k8s or celery executors against an external server.

    The code location's job stays in-process: `fix7 rehearse` runs it in its own process, where Ctrl-C reaches
    the running stage at once and the stage itself drops its throwaways and seals the packet, and a run is one
    process start instead of seven (one per stage; each imports Dagster, GX and Kingfisher again).
    """
    return dg.define_asset_job(
        JOB,
        selection=dg.AssetSelection.assets(*REHEARSAL_ASSETS),  # with their checks: the gates
        description="One rehearsal of the FIX7 change on an operator's production-shaped clone.",
        executor_def=executor_def,
    )


fix7_rehearsal = rehearsal_job()

defs = dg.Definitions(assets=[*REHEARSAL_ASSETS, audit_chain], asset_checks=[chain_verifies],
                      jobs=[fix7_rehearsal], schedules=[nightly_rehearsal],
                      sensors=[clone_drop_sensor, fix7_verdict_sensor, fix7_judged_run_sensor, fix7_crashed_run_sensor,
                               audit_chain_sensor],
                      resources=RESOURCES)
