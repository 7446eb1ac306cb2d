"""evidence_packet: the auditor's record, rendered from the journal when every stage has run."""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.core.run import rehearsal
from fix7_pipeline.core.evidence.packet_files import PROVENANCE, READABLE, REPORT, sha256_file
from fix7_pipeline.core.run.run_record import RunRecord
from fix7_pipeline.core.storage.store import evidence_path
from fix7_pipeline.defs.resources import RehearsalServerResource
from fix7_pipeline.defs.stages import (GROUP, OWNERS, REHEARSALS, record_witness, sealed_metadata,
                                       witnessed_if_interrupted)
from fix7_pipeline.defs.storage import discard_run_outputs


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"json"},
    description="clone-provenance.json, rehearsal-report.json and rehearsal-report.md (attached here as metadata), "
                "rendered once from the run's journal and sealed. "
                "Stages that stop a run render the packet themselves, so it exists whatever happened.",
)
def evidence_packet(context, restore_diff: RunRecord,
                    rehearsal_server: RehearsalServerResource) -> dg.MaterializeResult:
    with witnessed_if_interrupted(context):
        record, verdict = rehearsal.finish(restore_diff, rehearsal_server.source())
    record_witness(context.instance, context.run_id, record.witness)
    discard_run_outputs(context.instance, context.run_id)
    directory = evidence_path(record.evidence_dir)
    fault = rehearsal.EvidencePacket.load(directory).data.get("evidence_fault")
    if fault:  # sealed REHEARSAL_NOT_JUDGED: the run fails with the cause and the path, never as a success
        raise dg.Failure(description=fault["message"], metadata={"verdict": verdict, **sealed_metadata(str(directory))})
    return dg.MaterializeResult(metadata={
        "verdict": verdict,
        **sealed_metadata(str(directory)),
        "evidence_dir": dg.MetadataValue.path(str(directory)),
        **{f"sha256_{name}": sha256_file(directory / name) for name in (REPORT, PROVENANCE, READABLE)},
    })
