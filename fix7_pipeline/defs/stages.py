"""How a core stage outcome becomes Dagster events: one output, its gate's check result, metadata."""

from __future__ import annotations

import dagster as dg

from fix7_pipeline.core.escape import visible
from fix7_pipeline.core.model import PASSED, StageOutcome

GROUP = "fix7_rehearsal"
OWNERS = ["team:data-platform"]


def stage_metadata(outcome: StageOutcome, state: dict) -> dict:
    """Text metadata passes through escape.visible: a name from the dump cannot split a line or hide."""
    md = {
        "status": outcome.status,
        "reason": dg.MetadataValue.text(visible(outcome.reason)),
        "findings": dg.MetadataValue.json([f.as_dict() for f in outcome.findings[:100]]),
        "finding_count": len(outcome.findings),
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
    return md


def stage_events(asset: str, check: str, outcome: StageOutcome, state: dict, extra: dict | None = None,
                 suite_check: str | None = None):
    """Yield the asset's output and its blocking gates: a failed gate stops every stage after it.

    `suite_check` names the gate that reports the stage's Great Expectations suite on its own,
    with per-expectation success and unexpected counts (never values).
    """
    md = {**stage_metadata(outcome, state), **(extra or {})}
    yield dg.Output(state, metadata=md)
    yield dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=outcome.status == PASSED,
        severity=dg.AssetCheckSeverity.ERROR,
        description=visible(outcome.reason)[:1000] if outcome.reason else None,
        metadata={"status": outcome.status, "finding_count": len(outcome.findings),
                  "rules": dg.MetadataValue.json(sorted({f.rule for f in outcome.findings}))},
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
