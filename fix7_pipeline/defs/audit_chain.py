"""The audit chain's state in the UI: the check `chain_verifies` on the external asset `audit_chain`.

Its result is what `fix7 audit --verify` says (cli/audit.py `verify`, called as is): green with the count of
packets re-hashed, or red "AUDIT CHAIN BROKEN" with each problem. `audit_chain_sensor` (on by default)
reports it whenever that answer changes — after a run ends, and after a packet or chain line was edited or
deleted with no run at all — and `fix7_verdict_sensor` after each failed run it closes. The check is not
launched from the UI: the instance stores only rehearsals (instance_guard.py).
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from fix7_pipeline.core.shared.escape import visible
from fix7_pipeline.core.shared.names import ASSET_GROUP

AUDIT_CHAIN = "audit_chain"
CHAIN_CHECK = "chain_verifies"
SHOWN = 20  # problems and warnings listed on the check; `fix7 audit --verify` lists every one

audit_chain = dg.AssetSpec(
    AUDIT_CHAIN, group_name=ASSET_GROUP, owners=["team:data-platform"], kinds={"json"},
    description="The append-only audit chain of every sealed evidence packet (FIX7_AUDIT_CHAIN), with each "
                "packet on disk and Dagster's record of it. Its check says whether `fix7 audit --verify` "
                "passes now.",
)


def chain_evaluation(instance: dg.DagsterInstance) -> dg.AssetCheckEvaluation:
    """`fix7 audit --verify` as a check evaluation; a verification that cannot run fails the check, saying why."""
    from fix7_pipeline.cli.audit import verify
    from fix7_pipeline.core.evidence import audit

    try:
        report, warnings = verify(instance)
    except Exception as e:  # noqa: BLE001 - fail closed: an unverifiable chain is not a verified one
        report, warnings = audit.ChainReport(problems=[f"the audit could not run: {type(e).__name__}: {e}"]), []
    problems = [visible(p)[:500] for p in report.problems]
    description = (f"verified: {report.verified} packet(s) re-hashed, {report.entries} link(s) checked, "
                   f"{report.dagster_checked} matched with Dagster's record" if report.ok
                   else f"AUDIT CHAIN BROKEN: {len(problems)} problem(s); the evidence history cannot be trusted "
                        "until each is explained")
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(AUDIT_CHAIN), check_name=CHAIN_CHECK, passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR, description=description,
        metadata={"problem_count": len(problems), "entries": report.entries, "verified": report.verified,
                  "dagster_checked": report.dagster_checked, "warning_count": len(warnings),
                  "problems": dg.MetadataValue.json(problems[:SHOWN]),
                  "warnings": dg.MetadataValue.json([visible(w)[:500] for w in warnings[:SHOWN]]),
                  "chain": dg.MetadataValue.path(str(audit.chain_path()))})


def report_chain_state(instance: dg.DagsterInstance, last: str | None = None) -> tuple[str, dg.AssetCheckEvaluation]:
    """Evaluate the chain and report it as the check's latest result unless it reads as `last` did; returns
    the reading's fingerprint (a sensor's cursor) and the evaluation."""
    evaluation = chain_evaluation(instance)
    md = evaluation.metadata
    reading = json.dumps([evaluation.passed, md["problems"].value, md["entries"].value, md["verified"].value],
                         sort_keys=True)
    fingerprint = hashlib.sha256(reading.encode()).hexdigest()
    if fingerprint != last:
        instance.report_runless_asset_event(evaluation)
    return fingerprint, evaluation


@dg.asset_check(asset=AUDIT_CHAIN, name=CHAIN_CHECK, blocking=False,
                description="`fix7 audit --verify` passes: every chain link, every packet's sha256 and Dagster's "
                            "record of each agree. Reported by audit_chain_sensor.")
def chain_verifies(context) -> dg.AssetCheckResult:
    e = chain_evaluation(context.instance)
    return dg.AssetCheckResult(passed=e.passed, description=e.description, metadata=e.metadata)


@dg.sensor(name="audit_chain_sensor", default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
           description="Runs `fix7 audit --verify` and reports the answer as audit_chain's check chain_verifies "
                       "whenever it changes (a run ended, a packet or a chain line was edited or deleted).")
def audit_chain_sensor(context: dg.SensorEvaluationContext):
    fingerprint, evaluation = report_chain_state(context.instance, context.cursor)
    return dg.SensorResult(skip_reason=evaluation.description, cursor=fingerprint)
