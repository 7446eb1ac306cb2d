"""How a core stage outcome becomes Dagster events: one output, its gate's check result, metadata."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg

from fix7_pipeline.core.audit import witness_tags
from fix7_pipeline.core.escape import visible
from fix7_pipeline.core.model import PASSED, StageOutcome

GROUP = "fix7_rehearsal"
OWNERS = ["team:data-platform"]

# The packet's folder, tagged on the run as soon as intake creates the packet, so whoever follows the run
# (the CLI, an interrupted run's cleanup) finds it; fix7/evidence, of the seal's witness, comes at the end.
PACKET_DIR_TAG = "fix7/packet_dir"
# Each stage asset's output carries its stage's line: STAGE_KEY names the stage, DURATION_KEY how long it ran.
STAGE_KEY, DURATION_KEY, BREACHES_KEY = "stage", "duration_s", "impact_breach_lines"
STAGE_OF_ASSET = {"clone_intake": "intake", "rehearsal_clone": "isolation", "sanitization_check": "sanitization",
                  "schema_shape_validation": "schema_shape", "snapshot_anchor": "snapshot_anchor", "apply": "apply",
                  "rollback": "rollback", "restore_diff": "restore_diff"}


def stage_metadata(outcome: StageOutcome, state: dict) -> dict:
    """Text metadata passes through escape.visible: a name from the dump cannot split a line or hide."""
    md = {
        "status": outcome.status,
        DURATION_KEY: float(outcome.duration_s or 0.0),
        "reason": dg.MetadataValue.text(visible(outcome.reason)),
        "findings": dg.MetadataValue.json([f.as_dict() for f in outcome.findings[:100]]),
        "finding_count": int(outcome.details.get("finding_total", len(outcome.findings))),
        "evidence_dir": dg.MetadataValue.path(state.get("evidence_dir", "")),
    }
    clone = state.get("clone") or {}
    for key in ("sha256", "format", "pg_dump_version"):
        if clone.get(key):
            md[f"clone_{key}"] = visible(clone[key])
    if state.get("anchor"):
        md["anchor_id"] = state["anchor"]["anchor_id"]
    gx = outcome.details.get("gx")
    if gx:
        md["gx_summary"] = dg.MetadataValue.json(gx)
    counts = outcome.details.get("finding_counts")
    if counts:
        md["finding_counts"] = dg.MetadataValue.json(counts)
    return md


def record_witness(instance: dg.DagsterInstance, run_id: str, witness: dict | None) -> None:
    """Keep the sealed packet's witness (core.audit.witness) as the run's tags: fix7/packet_sha256,
    fix7/chain_entry_sha256, fix7/chain_seq, fix7/verdict, fix7/evidence. `fix7 audit --verify` compares every
    chain entry and packet file with them. A failure here fails the step, and verify reports the run."""
    if witness:
        instance.add_run_tags(run_id, witness_tags(witness))


def record_chain_witness(instance: dg.DagsterInstance, run_id: str | None) -> None:
    """The seal's witness read back from the audit chain, for a run whose sealing step could not return it
    (interrupted: terminated from the UI, Ctrl-C in the CLI). Never masks what interrupted the run."""
    from fix7_pipeline.core.audit import chain_by_run, witness

    try:
        run = instance.get_run_by_id(run_id) if run_id else None
        if run is not None and not run.tags.get("fix7/packet_sha256"):
            record_witness(instance, run_id, witness(chain_by_run().get(run_id)))
    except Exception:  # noqa: BLE001 - audit --verify then names the run as unrecorded, failing closed
        pass


@contextmanager
def witnessed_if_interrupted(context):
    """Around a stage: interrupted after it sealed the packet, the run still carries the seal's witness."""
    try:
        yield
    except BaseException:
        record_chain_witness(context.instance, context.run_id)
        raise


def stage_events(asset: str, check: str, outcome: StageOutcome, state: dict, extra: dict | None = None,
                 suite_check: str | None = None):
    """Yield the asset's output and its blocking gates: a failed gate stops every stage after it.

    `suite_check` names the gate that reports the stage's Great Expectations suite on its own,
    with per-expectation success and unexpected counts (never values). When the stage stopped the run,
    the packet it sealed is recorded on the run first (record_witness).
    """
    if state.get("witness"):
        context = dg.AssetExecutionContext.get()
        record_witness(context.instance, context.run_id, state["witness"])
    md = {STAGE_KEY: STAGE_OF_ASSET.get(asset, asset), **stage_metadata(outcome, state), **(extra or {})}
    breaches = (outcome.details.get("impact_summary") or {}).get("breaches") or []
    if breaches:  # each breached threshold in full: it fails the rehearsal
        md[BREACHES_KEY] = dg.MetadataValue.json([visible(b) for b in breaches[:5]])
    yield dg.Output(state, metadata=md)
    yield dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=outcome.status == PASSED,
        severity=dg.AssetCheckSeverity.ERROR,
        description=visible(outcome.reason)[:1000] if outcome.reason else None,
        metadata={"status": outcome.status,
                  "finding_count": int(outcome.details.get("finding_total", len(outcome.findings))),
                  "rules": dg.MetadataValue.json(sorted({f.rule for f in outcome.findings}
                                                        | set((outcome.details.get("finding_counts") or {})
                                                              .get("by_rule", {}))))},
    )
    if suite_check:
        yield suite_result(asset, suite_check, outcome.details.get("gx"),
                           none_declared=outcome.details.get("data_rules") == "none declared")


def suite_result(asset: str, check: str, gx: dict | None, *, none_declared: bool = False) -> dg.AssetCheckResult:
    if not gx and none_declared:
        return dg.AssetCheckResult(asset_key=asset, check_name=check, passed=True,
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   description="no data rules declared: the contract names none, so only the "
                                               "shape was checked", metadata={"evaluated": 0})
    if not gx:
        return dg.AssetCheckResult(asset_key=asset, check_name=check, passed=False,
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   description="not evaluated: an earlier check of this stage failed",
                                   metadata={"evaluated": 0})
    expectations = [{k: e.get(k) for k in ("rule", "table", "expectation", "success", "unexpected_count")}
                    for e in gx.get("expectations", [])]
    return dg.AssetCheckResult(
        asset_key=asset, check_name=check, passed=bool(gx.get("success")), severity=dg.AssetCheckSeverity.ERROR,
        description=f"Great Expectations suite {gx.get('suite')}: {gx.get('evaluated', 0)} expectations, "
                    f"{gx.get('failed', 0)} failed",
        metadata={"suite": visible(gx.get("suite")), "evaluated": int(gx.get("evaluated") or 0),
                  "failed": int(gx.get("failed") or 0), "expectations": dg.MetadataValue.json(expectations)},
    )


def gate(asset: str, name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description)


def impact_events(asset: str, check: str, impact: dict | None) -> tuple[dict, dg.AssetCheckResult]:
    """The change stage's impact as metadata (a Markdown table, plottable numbers) and its threshold check.

    The check fails when a threshold set in the request is breached, or when the impact could not be
    measured at all (the change did not run); with no thresholds set it passes and gates nothing.
    """
    from fix7_pipeline.core.impact import breaches, markdown

    if not impact:
        return {}, dg.AssetCheckResult(asset_key=asset, check_name=check, passed=False,
                                       severity=dg.AssetCheckSeverity.ERROR,
                                       description="not measured: the change did not run",
                                       metadata={"breaches": 0})
    th = impact.get("thresholds") or {}
    md = {
        "impact": dg.MetadataValue.md("\n".join(markdown(asset, impact))),
        "impact_statements": int(impact.get("statement_count") or 0),
        "impact_total_s": float(impact.get("total_s") or 0.0),
        "impact_max_statement_s": float(impact.get("max_statement_s") or 0.0),
        "impact_max_lock_s": float(impact.get("max_lock_s") or 0.0),
        "impact_max_access_exclusive_s": float(impact.get("max_access_exclusive_s") or 0.0),
        "impact_rewrites": len(impact.get("rewrites") or []),
        "impact_warnings": len(impact.get("warnings") or []),
        "impact_breaches": len(breaches(impact)),
    }
    if impact.get("wal_bytes") is not None:
        md["impact_wal_bytes"] = int(impact["wal_bytes"])
    if impact.get("db_size_change_bytes") is not None:
        md["impact_db_size_change_bytes"] = int(impact["db_size_change_bytes"])
    found = breaches(impact)
    result = dg.AssetCheckResult(
        asset_key=asset, check_name=check, passed=not found, severity=dg.AssetCheckSeverity.ERROR,
        description=(visible(found[0])[:1000] if found else "every impact threshold set held" if th.get("set")
                     else "no impact threshold set: the impact is reported and gates nothing"),
        metadata={"breaches": len(found), "thresholds": dg.MetadataValue.json(
            [{k: r[k] for k in ("name", "limit", "measured", "passed")} for r in th.get("results", [])])})
    return md, result
