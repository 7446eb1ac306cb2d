"""clone_intake: the operator's request and the dump, before any database exists."""



import dagster as dg
from pydantic import Field, create_model

from fix7_pipeline.core.run import rehearsal
from fix7_pipeline.core.evidence import run_view
from fix7_pipeline.core.intake import request as request_schema
from fix7_pipeline.core.shared.escape import visible
from fix7_pipeline.defs.resources import RehearsalServerResource
from fix7_pipeline.instance_guard import storage_url
from fix7_pipeline.defs.stages import (GROUP, OWNERS, PACKET_DIR_TAG, REHEARSALS, gate, stage_events,
                                       witnessed_if_interrupted)


class _RequestConfig(dg.Config):
    def to_request(self) -> request_schema.RehearsalRequest:
        return request_schema.RehearsalRequest(**self.model_dump())


def config_class() -> type[dg.Config]:
    """The launchpad's `dg.Config`, derived field by field from the core's one request schema.

    Same names, types, descriptions and defaults, in pipeline order; list defaults are given as values
    (not factories) so Dagster records them and the launchpad opens with every list field filled in.
    """
    fields = {f.name: (f.annotation, Field(default=f.default, description=f.info.description))
              for f in request_schema.request_fields()}
    return create_model("RehearsalRequestConfig", __base__=_RequestConfig, __module__=__name__,
                        __doc__=request_schema.RehearsalRequest.__doc__, **fields)


RehearsalRequestConfig = config_class()


NO_PARTITION = ("This rehearsal was launched without a rehearsal partition, so nothing was run or judged. Every "
                "rehearsal is a partition of its own (fix7_rehearsals): in the launchpad pick or add one (the "
                "partition selector, e.g. 20261201-fix7-ticket), or let fix7 rehearse, the sensor or the schedule "
                "add one; then launch again.")


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"python", "postgres"}, output_required=False,
    description="The operator's dump as received: path, sha256, bytes, format, pg_dump version, screening of "
                "psql meta-commands and dangerous archive entries, and the operator's attestation.",
    check_specs=[gate("clone_intake", "intake_safe",
                      "The dump exists, is what it claims, is safe to restore and is attested as a sanitized "
                      "non-production copy.")],
)
def clone_intake(context: dg.AssetExecutionContext, config: RehearsalRequestConfig,
                 rehearsal_server: RehearsalServerResource):
    if not context.has_partition_key:  # fail closed: a run outside the rehearsal partitions is refused
        context.instance.add_run_tags(context.run_id, {"fix7": "NOT STARTED", "fix7/verdict": "NOT_STARTED",
                                                       "fix7/reason": NO_PARTITION})
        raise dg.Failure(description=NO_PARTITION, allow_retries=False)

    def tag_evidence(evidence_dir: str) -> None:  # the CLI (and an interrupted run) find the packet by it
        from fix7_pipeline.defs.crashes import host_tag

        from fix7_pipeline.run_queue import SERVER_TAG, server_key

        context.instance.add_run_tags(context.run_id, {PACKET_DIR_TAG: evidence_dir, **host_tag(),
                                                       SERVER_TAG: server_key(config.server_url)})

    with witnessed_if_interrupted(context):
        record, outcome = rehearsal.intake(config.to_request(), context.run.run_id,
                                          storage_url=storage_url(context.instance),
                                          servers=rehearsal_server.source(), on_packet=tag_evidence)
    clone = record.clone
    # Where the packet is, on the run from the start; the verdict joins it at the seal.
    context.instance.add_run_tags(context.run_id, run_view.intake_tags(record.evidence_dir))
    extra = {"attested_by": visible(config.attested_by or "(none)"), "clone_path": visible(config.clone_path),
             "clone_bytes": int(clone.get("bytes") or 0)}
    yield from stage_events("clone_intake", "intake_safe", outcome, record, extra)



