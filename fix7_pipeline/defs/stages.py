"""How a core stage outcome becomes Dagster events: one output, its gate's check result, metadata."""

from __future__ import annotations

from contextlib import contextmanager

import dagster as dg

from fix7_pipeline.core.evidence import run_view
from fix7_pipeline.core.evidence.audit import witness_tags
from fix7_pipeline.core.evidence.verdicts import NO_SAFE_CLONE, REHEARSAL_FAILED, REHEARSAL_PASSED
from fix7_pipeline.core.shared.escape import visible
from fix7_pipeline.core.shared.model import PASSED, StageOutcome
from fix7_pipeline.core.shared.names import ASSET_GROUP
from fix7_pipeline.core.run.run_record import RunRecord
from fix7_pipeline.defs.partitions import REHEARSALS  # noqa: F401 - every stage asset is keyed by rehearsal

GROUP = ASSET_GROUP
OWNERS = ["team:data-platform"]

# The packet's folder, tagged on the run as soon as intake creates the packet, so whoever follows the run
# (the CLI, an interrupted run's cleanup) finds it; fix7/evidence, of the seal's witness, comes at the end.
PACKET_DIR_TAG = "fix7/evidence"  # one tag fewer in the Runs list: the seal's witness names the same folder
# Each stage's line is carried by one event: its asset's materialization, or for the clone gates' stages
# (isolation, sanitization, schema_shape) the result of the stage's last evaluated gate (defs/gates.py).
# STAGE_KEY names the stage, DURATION_KEY how long it ran.
STAGE_KEY, DURATION_KEY, BREACHES_KEY = "stage", "duration_s", "impact_breach_lines"
JUDGED = frozenset({REHEARSAL_PASSED, REHEARSAL_FAILED, NO_SAFE_CLONE})  # every other sealed verdict judged nothing
STAGE_OF_ASSET = {"clone_intake": "intake", "snapshot_anchor": "snapshot_anchor", "apply": "apply",
                  "rollback": "rollback", "restore_diff": "restore_diff"}


def stage_metadata(outcome: StageOutcome, record: RunRecord) -> dict:
    """Text metadata passes through escape.visible: a name from the dump cannot split a line or hide."""
    md = {
        "status": outcome.status,
        DURATION_KEY: float(outcome.duration_s or 0.0),
        "reason": dg.MetadataValue.text(visible(outcome.reason)),
        "findings": dg.MetadataValue.json([_no_row_value(f.as_dict()) for f in outcome.findings
                                           if f.severity != "note"][:100]),
        "finding_count": outcome.finding_count,
        "evidence_dir": dg.MetadataValue.path(record.evidence_dir),
    }
    for key in ("sha256", "format", "pg_dump_version"):
        if record.clone.get(key):
            md[f"clone_{key}"] = visible(record.clone[key])
    if record.anchor:
        md["anchor_id"] = record.anchor.anchor_id
    gx = outcome.details.get("gx")
    if gx:
        md["gx_summary"] = dg.MetadataValue.md(run_view.gx_table(gx))
        md["gx_expectations_failed"] = int(gx.get("failed") or 0)
    counts = outcome.details.get("finding_counts")
    if counts:
        md["finding_counts"] = dg.MetadataValue.md(run_view.finding_counts_table(counts))
    for rule, n in run_view.findings_per_rule(counts, [f.as_dict() for f in outcome.findings
                                                       if f.severity != "note"]).items():
        md[f"findings/{visible(rule)}"] = n
    if outcome.notes:  # what the stage notes (an isolated host it saw) is not a finding
        md["note_count"] = len(outcome.notes)
        md["notes"] = dg.MetadataValue.json([_no_row_value(f.as_dict()) for f in outcome.notes[:100]])
    return md


def _no_row_value(finding: dict) -> dict:
    """A finding as metadata: its row key is a value of a clone row, kept in the packet only."""
    return {k: v for k, v in finding.items() if k != "row_key"}


def record_witness(instance: dg.DagsterInstance, run_id: str, witness: dict | None) -> None:
    """Keep the sealed packet's witness (core.audit.witness) as the run's tags: fix7/packet_sha256,
    fix7/chain_entry_sha256, fix7/chain_seq, fix7/verdict, fix7/evidence. `fix7 audit --verify` compares every
    chain entry and packet file with them. A failure here fails the step, and verify reports the run.

    With them go the tags the Runs list shows first (core.run_view.run_tags, read from the sealed packet):
    fix7 (the headline) and fix7/reason."""
    if witness:
        tags = {**packet_tags(witness.get("evidence")), **witness_tags(witness)}
        instance.add_run_tags(run_id, tags)


def packet_tags(evidence_dir: str | None) -> dict[str, str]:
    """run_view.run_tags of the packet in `evidence_dir`; none when it cannot be read (the witness still is)."""
    from fix7_pipeline.core.evidence.report import EvidencePacket

    try:
        return run_view.run_tags(EvidencePacket.load(evidence_dir).data) if evidence_dir else {}
    except (OSError, ValueError, KeyError):
        return {}


def record_chain_witness(instance: dg.DagsterInstance, run_id: str | None) -> None:
    """The seal's witness read back from the audit chain, for a run whose sealing step could not return it
    (interrupted: terminated from the UI, Ctrl-C in the CLI). Never masks what interrupted the run."""
    from fix7_pipeline.core.evidence.audit import chain_by_run, witness

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


def stage_events(asset: str, check: str, outcome: StageOutcome, record: RunRecord, extra: dict | None = None,
                 checks: tuple[dg.AssetCheckResult, ...] = ()):
    """The stage's gate, and its output only when the stage passed.

    A stage that ended the rehearsal hands nothing on: its asset is not materialized for this rehearsal, its
    failed gate carries the stage's line and the verdict, Dagster skips every stage after it, and the run
    succeeds with its verdict (end_unjudged fails it when that verdict judged nothing). `checks` are the
    stage's other check results, yielded with it.
    """
    passed = outcome.status == PASSED
    md = stage_line(asset, outcome, record, extra)
    result = dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict_first(outcome, record),
        metadata={"rules": dg.MetadataValue.json(sorted({f.rule for f in outcome.findings if f.severity != "note"}
                                                        | set((outcome.details.get("finding_counts") or {})
                                                              .get("by_rule", {})))),
                  **({"status": outcome.status, "finding_count": outcome.finding_count} if passed else md)},
    )
    if passed:
        yield dg.Output(record, metadata=md)
    yield result
    yield from checks
    if not passed:
        end_unjudged(record)


def end_unjudged(record: RunRecord) -> None:
    """Fail the step when the packet a stage sealed judged nothing (the server, the disk or an interruption
    stopped it): a Dagster failure means "no verdict", never a verdict on the clone or the change."""
    verdict = (record.witness or {}).get("verdict")
    if verdict in JUDGED:
        return
    raise dg.Failure(description=f"{visible(verdict or 'no verdict sealed')}: the rehearsal was not judged; "
                                 f"see the evidence packet in {visible(record.evidence_dir)}",
                     metadata={"verdict": visible(verdict or ""),
                               "evidence_dir": dg.MetadataValue.path(record.evidence_dir)})


def stage_line(asset: str, outcome: StageOutcome, record: RunRecord, extra: dict | None = None) -> dict:
    """The stage's metadata with its line (the CLI prints it) and, when this stage sealed the packet, its
    verdict and report, which are then recorded on the run."""
    md = {STAGE_KEY: STAGE_OF_ASSET.get(asset, asset), **stage_metadata(outcome, record), **(extra or {})}
    breaches = (outcome.details.get("impact_summary") or {}).get("breaches") or []
    if breaches:  # each breached threshold in full, for the CLI's lines: it fails the rehearsal
        md[BREACHES_KEY] = dg.MetadataValue.json([visible(b) for b in breaches[:5]])
    if record.witness:  # this stage sealed the packet: its verdict and report read first
        context = dg.AssetExecutionContext.get()
        record_witness(context.instance, context.run_id, record.witness)
        md = {"verdict": visible(record.witness.get("verdict")), **md, **sealed_metadata(record.evidence_dir)}
    return md


def verdict_first(outcome: StageOutcome, record: RunRecord) -> str | None:
    """A failed gate's description: the sealed verdict first, then the operator's one-line reason."""
    description = visible(outcome.reason)[:1000] if outcome.reason else None
    if record.witness and outcome.status != PASSED:
        description = f"{visible(record.witness.get('verdict'))}: {description or outcome.status}"[:1000]
    return description


def sealed_metadata(evidence_dir: str) -> dict:
    """What the asset whose stage sealed the packet carries of it: the stage summary table, the verdict's
    reason, and rehearsal-report.md itself (escaped when it was written; names redacted)."""
    from fix7_pipeline.core.evidence.report import READABLE, EvidencePacket

    from fix7_pipeline.core.storage.store import evidence_path

    directory = evidence_path(evidence_dir)
    data = EvidencePacket.load(directory).data
    md = {"reason_for_verdict": dg.MetadataValue.text(run_view.verdict_reason(data)),
          "stages": dg.MetadataValue.md(run_view.stages_table(data))}
    if (directory / READABLE).is_file():  # not when the disk filled before it was written (REHEARSAL_NOT_JUDGED)
        md["rehearsal_report"] = dg.MetadataValue.md((directory / READABLE).read_text(encoding="utf-8"))
    return md


def suite_metadata(gx: dict) -> dict:
    """A Great Expectations suite as a check's metadata: the expectations as a Markdown table, integer counts."""
    return {"suite": visible(gx.get("suite")), "evaluated": int(gx.get("evaluated") or 0),
            "failed": int(gx.get("failed") or 0), "expectations": dg.MetadataValue.md(run_view.gx_table(gx))}


def gate(asset: str, name: str, description: str) -> dg.AssetCheckSpec:
    """A stage's gate: it gates by the stage handing nothing on when it fails (stage_events), not by Dagster's
    blocking checks, which fail the run and mark every later stage failed."""
    return dg.AssetCheckSpec(name, asset=asset, description=description)


def impact_events(asset: str, check: str, impact: dict | None) -> tuple[dict, dg.AssetCheckResult]:
    """The change stage's impact as metadata (a Markdown table, plottable numbers) and its threshold check.

    The check fails when a threshold set in the request is breached, or when the impact could not be
    measured at all (the change did not run); with no thresholds set it passes and gates nothing.
    """
    from fix7_pipeline.core.change.impact import breaches, markdown

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
    traffic = impact.get("traffic") or {}
    if traffic.get("ran"):  # numbers Dagster plots across runs: the probe's waits and latency, per stage
        tables = [t for t in traffic.get("tables") or [] if t.get("mode") != "not probed"]
        md["probe_queries"] = int(traffic.get("queries") or 0)
        md["probe_max_blocked_ms"] = float(traffic.get("max_blocked_ms") or 0.0)
        md["probe_p99_ms"] = float(max((t.get("p99_ms") or 0.0 for t in tables), default=0.0))
        md["probe_blocked_queries"] = sum(int(t.get("blocked_queries") or 0) for t in tables)
        md["probe_lock_timeout_fired"] = sum(int(t.get("lock_timeout_fired") or 0) for t in tables)
        md["probe_longest_queue"] = max((int(t.get("longest_queue") or 0) for t in tables), default=0)
    figures = [e["production_s"] for e in impact.get("estimates") or [] if e.get("production_s") is not None]
    if figures:
        md["impact_max_production_estimate_s"] = float(max(figures))
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
