"""The clone gates of a run that started from a verified clone template (clone_templates.py): not run again.

Each gate's stage is recorded as passed with the reason that says so, "reused verified clone <key>", citing the
sealed packet that gated the template (its sha256 and audit chain entry) and the anchor fingerprint carried from
it (the template's seal held) or proven equal on this run's copy; the packet's `clone_reuse` holds the same facts in full.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..shared.model import PASSED, StageOutcome
from ..shared.names import GATES
from .clone_templates import reused_reason
from .run_record import RunRecord
from .stage_run import ServerSource, StageContext, run_stage

GATE_STAGES = (("isolation", ("isolation_proven",)), ("sanitization", ("sanitized",)),
               ("schema_shape", ("production_shaped", "data_rules")))


def gates(record: RunRecord, servers: ServerSource | None, result) -> Iterator[tuple[RunRecord, object]]:
    """Each gate's result (`result`: core.run.clone_gates.GateResult) in order, each stage recorded as it passes."""
    facts = (record.restore or {})["reused_clone"]
    reason = reused_reason(facts)
    earlier = float((record.restore or {}).get("duration_s") or 0.0)
    for stage, names in GATE_STAGES:
        def body(ctx: StageContext, stage=stage):
            if stage == "isolation":
                ctx.journal.set(isolation_proven=True)  # proven on the template's gating run, for these very bytes
            return StageOutcome(status=PASSED, reason=reason,
                                details={"reused_clone": {k: facts.get(k) for k in (
                                    "key", "template", "gating_packet", "carried_anchor_id", "check")}})

        record, outcome = run_stage(record, stage, body, servers, earlier_s=earlier if stage == "isolation" else 0.0)
        if outcome.status != PASSED:  # the server failed while recording: the stage said why and sealed
            yield record, result(names[0], False, outcome.reason, findings=outcome.findings, outcome=outcome)
            yield from ((record, result(g, False, f"not evaluated: {names[0]} failed", evaluated=False))
                        for g in GATES[GATES.index(names[0]) + 1:])
            return
        for i, name in enumerate(names):
            yield record, result(name, True, reason, outcome=outcome if i == len(names) - 1 else None)
