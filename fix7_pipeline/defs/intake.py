"""clone_intake: the operator's request and the dump, before any database exists."""



import dagster as dg
from pydantic import Field

from fix7_pipeline.core import rehearsal, run_view
from fix7_pipeline.core.escape import visible
from fix7_pipeline.core.server import PASSWORD_ENV
from fix7_pipeline.defs.resources import RehearsalServerResource
from fix7_pipeline.defs.stages import (GROUP, OWNERS, PACKET_DIR_TAG, REHEARSALS, gate, stage_events,
                                       witnessed_if_interrupted)


class RehearsalRequestConfig(dg.Config):
    """The rehearsal request an operator fills in the launchpad (or the CLI passes)."""

    clone_path: str = Field(default=".fix7/demo/birth_surface_clone.dump",
                            description="Path of the operator's pg_dump (plain, plain.gz, custom, directory or tar).")
    apply_sql: str = Field(default=".fix7/demo/fix7_apply.sql", description="The FIX7 change, plain SQL.")
    rollback_sql: str = Field(default=".fix7/demo/fix7_rollback.sql", description="Its rollback, plain SQL.")
    attested_by: str = Field(default="", description="Who attests the dump is a sanitized, non-production copy. "
                                                     "Empty = no attestation = blocked.")
    contract: str = Field(default="", description="Contract YAML or schema-only SQL; empty = the birth surface.")
    evidence_dir: str = Field(default="", description="Where the evidence packet goes; empty = "
                                                      "evidence/<utc-timestamp>-<sha8>-<run8>/.")
    production_hosts: list[str] = Field(default_factory=list, description="Glob patterns of production hosts.")
    allow_hosts: list[str] = Field(default_factory=list, description="Glob patterns of hosts known to be isolated.")
    server_url: str = Field(default="", description="External rehearsal server URL, postgresql://USER@HOST:PORT/DB "
                                                    "WITHOUT a password (run config is stored; a password here is "
                                                    f"refused): set {PASSWORD_ENV} for the webserver and daemon. "
                                                    "Empty = FIX7_REHEARSAL_SERVER or the embedded server.")
    search_roots: list[str] = Field(default_factory=list, description="Folders to list in Table A as candidates.")
    allowed_roots: list[str] = Field(default_factory=list, description="If set, the dump must lie under one of these.")
    statement_timeout_s: int = Field(default=600, description="Statement timeout for apply and rollback.")
    lock_timeout_s: int = Field(default=15, description="Lock timeout for apply and rollback.")
    keep_databases: bool = Field(default=False, description="Keep the throwaway databases for inspection.")
    max_statement_s: float | None = Field(default=None, description="Impact threshold: the longest one statement "
                                          "of apply or rollback may run, in seconds. Empty = not gated.")
    max_lock_s: float | None = Field(default=None, description="Impact threshold: the longest any lock (any mode) "
                                     "on an existing table or index may be held, in seconds. Empty = not gated.")
    max_access_exclusive_s: float | None = Field(default=None, description="Impact threshold: the longest an "
                                                 "ACCESS EXCLUSIVE lock on an existing table or index may be "
                                                 "held, in seconds. Empty = not gated.")
    max_total_s: float | None = Field(default=None, description="Impact threshold: the longest the whole apply "
                                      "or rollback file (statements and COMMIT) may take. Empty = not gated.")
    no_rewrite_tables: list[str] = Field(default_factory=list, description="Impact threshold: tables "
                                         "(schema.table, or table for public) apply and rollback must not rewrite.")
    index_warn_mb: float = Field(default=10.0, description="Warn on CREATE INDEX without CONCURRENTLY on a table "
                                                           "at least this large (MB) in the clone.")
    index_warn_rows: int = Field(default=100_000, description="... or with at least this many rows in the clone "
                                                              "or (contract production_rows) in production.")

    def to_request(self) -> rehearsal.RehearsalRequest:
        return rehearsal.RehearsalRequest(**self.model_dump())


NO_PARTITION = ("This rehearsal was launched without a rehearsal partition, so nothing was run or judged. Every "
                "rehearsal is a partition of its own (fix7_rehearsals): in the launchpad pick or add one (the "
                "partition selector, e.g. 20261201-fix7-ticket), or let fix7 rehearse, the sensor or the schedule "
                "add one; then launch again.")


@dg.asset(
    group_name=GROUP, owners=OWNERS, partitions_def=REHEARSALS, kinds={"python", "postgres"},
    description="The operator's dump as received: path, sha256, bytes, format, pg_dump version, screening of "
                "psql meta-commands and dangerous archive entries, and the operator's attestation.",
    check_specs=[gate("clone_intake", "intake_safe",
                      "The dump exists, is what it claims, is safe to restore and is attested as a sanitized "
                      "non-production copy.")],
)
def clone_intake(context: dg.AssetExecutionContext, config: RehearsalRequestConfig,
                 rehearsal_server: RehearsalServerResource):
    if not context.has_partition_key:  # fail closed: a run outside the rehearsal partitions is refused
        context.instance.add_run_tags(context.run_id, {"fix7/verdict": "NOT_STARTED", "fix7/reason": NO_PARTITION,
                                                       "fix7/stopped_at": "intake"})
        raise dg.Failure(description=NO_PARTITION, allow_retries=False)

    def tag_evidence(evidence_dir: str) -> None:  # the CLI (and an interrupted run) find the packet by it
        context.instance.add_run_tags(context.run_id, {PACKET_DIR_TAG: evidence_dir})

    with witnessed_if_interrupted(context):
        state, outcome = rehearsal.intake(config.to_request(), context.run.run_id,
                                          storage_url=getattr(context.instance.run_storage, "postgres_url", None),
                                          servers=rehearsal_server.source(), on_packet=tag_evidence)
    clone = state.get("clone", {})
    # Who and what, on the run from the start (the Runs list); the verdict joins them at the seal.
    context.instance.add_run_tags(context.run_id, run_view.intake_tags(clone.get("sha256"), config.attested_by,
                                                                       state["evidence_dir"]))
    extra = {"attested_by": visible(config.attested_by or "(none)"), "clone_path": visible(config.clone_path),
             "clone_bytes": int(clone.get("bytes") or 0)}
    yield from stage_events("clone_intake", "intake_safe", outcome, state, extra)



