"""Everything Dagster loads: the rehearsal assets, their gates, the job and its triggers."""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.defs.automation import clone_drop_sensor, nightly_rehearsal
from fix7_pipeline.defs.evidence import evidence_packet
from fix7_pipeline.defs.gates import rehearsal_clone, sanitization_check, schema_shape_validation
from fix7_pipeline.defs.intake import clone_intake
from fix7_pipeline.defs.rehearsal import apply_change, restore_diff, rollback_change, snapshot_anchor
from fix7_pipeline.defs.resources import RESOURCE_KEY, rehearsal_server_resource
from fix7_pipeline.defs.storage import RunScopedIOManager

REHEARSAL_ASSETS = [clone_intake, rehearsal_clone, sanitization_check, schema_shape_validation, snapshot_anchor,
                    apply_change, rollback_change, restore_diff, evidence_packet]

fix7_rehearsal = dg.define_asset_job(
    "fix7_rehearsal",
    selection=dg.AssetSelection.assets(*REHEARSAL_ASSETS),
    description="One rehearsal of the FIX7 change on an operator's production-shaped clone.",
    executor_def=dg.in_process_executor,
)

defs = dg.Definitions(assets=REHEARSAL_ASSETS, jobs=[fix7_rehearsal], schedules=[nightly_rehearsal],
                      sensors=[clone_drop_sensor],
                      resources={"io_manager": RunScopedIOManager(), RESOURCE_KEY: rehearsal_server_resource()})
