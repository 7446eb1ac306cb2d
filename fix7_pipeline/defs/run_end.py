"""The end of a rehearsal run, one home whoever follows the run: the CLI when its run returns,
fix7_verdict_sensor and fix7_judged_run_sensor for the runs the UI, the schedule or a sensor launched.

`end_run` makes the run's evidence and Dagster's record of it agree, whatever stopped it:
1. a packet no stage sealed is sealed now: REHEARSAL_INTERRUPTED when the CLI saw a signal between two stages
   (no stage could record it), else rendered from its journal ("the Dagster run ended early": its process
   died after a stage, or a step failed outside one). A crashed run (defs/crashes.py) keeps its journal as
   it is: nothing was judged, and `fix7 audit` lists it as crashed;
2. a sealed packet whose witness never reached the run's tags (an interrupted step) gets it from the chain;
3. the verdict and its one-line reason become the run's last event, where the run page opens;
4. the run's stage outputs are removed: nothing reads them once the run ended.
Each is done once per run, so whoever comes second changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
from dagster._core.events import EngineEventData

from fix7_pipeline.core.evidence import run_view
from fix7_pipeline.core.evidence.audit import WITNESS_PREFIX, witness
from fix7_pipeline.core.evidence.journal import exists as journal_exists
from fix7_pipeline.core.evidence.report import EvidencePacket, render
from fix7_pipeline.core.run import interrupts, rehearsal
from fix7_pipeline.defs.crashes import closed_as_crashed
from fix7_pipeline.defs.stages import PACKET_DIR_TAG, record_chain_witness, record_witness
from fix7_pipeline.defs.storage import discard_run_outputs

VERDICT_EVENT = "fix7 verdict"
ENDED_EARLY = "the Dagster run ended early"


@dataclass(frozen=True)
class RunEnd:
    """What the run left: its tags (with the seal's witness), its evidence folder and its packet."""

    tags: dict = field(default_factory=dict)
    evidence_dir: str | None = None
    packet: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str | None:
        """The verdict the run's tags carry (recorded when the packet was sealed)."""
        return self.tags.get(WITNESS_PREFIX + "verdict") or None


def end_run(instance: dg.DagsterInstance, run_id: str | None, *, evidence_dir: str | None = None,
            interrupted: rehearsal.RehearsalRequest | None = None, signum: int | None = None) -> RunEnd:
    """End the run `run_id` as the module's docstring says. `evidence_dir`: where its packet is when the run
    could not tag it; `interrupted`: the request of a run the CLI saw interrupted (by `signum`)."""
    run = instance.get_run_by_id(run_id) if run_id else None
    evidence_dir = (run.tags.get(PACKET_DIR_TAG) if run is not None else None) or evidence_dir
    if evidence_dir and journal_exists(evidence_dir):
        with interrupts.deferred(reraise=False):  # a second Ctrl-C cannot leave the packet half sealed
            crashed = run is not None and closed_as_crashed(instance, run.run_id)
            if not crashed and not EvidencePacket.load(evidence_dir).data.get("verdict"):
                if interrupted is not None:
                    rehearsal.abandon(interrupted, evidence_dir, signum)
                else:
                    seal_unfinished(instance, run_id, evidence_dir)
    if run is not None:
        record_chain_witness(instance, run.run_id)
        try:
            with interrupts.deferred(reraise=False):
                report_verdict(instance, run.run_id)
                discard_run_outputs(instance, run.run_id)
        except Exception:  # noqa: BLE001 - the tags and the packet still carry the verdict
            pass
        run = instance.get_run_by_id(run.run_id)
    packet = EvidencePacket.load(evidence_dir).data if evidence_dir else {}
    return RunEnd(tags=dict(run.tags) if run is not None else {}, evidence_dir=evidence_dir, packet=packet)


def seal_unfinished(instance: dg.DagsterInstance, run_id: str | None, evidence_dir: str,
                    reason: str = ENDED_EARLY) -> bool:
    """Render and seal the packet of a run that ended with no stage sealing it, and give the run the seal's
    witness. The journal is all such a run left; a sealed or claimed packet is never rendered again."""
    rendered = render(evidence_dir, incomplete_reason=reason)
    if rendered is None:
        return False
    if run_id:
        record_witness(instance, run_id, witness(rendered.sealed))
    return True


def report_verdict(instance: dg.DagsterInstance, run_id: str) -> bool:
    """The verdict and its one-line reason as the run's last event, so the run page (which opens at the end
    of its log, past Dagster's "Skipped" rows or a stack trace) reads the verdict first. Once per run."""
    run = instance.get_run_by_id(run_id)
    if run is None or not run.tags.get("fix7/verdict"):
        return False
    if any((e.message or "").startswith(VERDICT_EVENT)
           for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        return False
    verdict, reason = run.tags["fix7/verdict"], run.tags.get("fix7/reason", "")
    instance.report_engine_event(
        f"{VERDICT_EVENT} {verdict}: {reason}", run,
        EngineEventData(metadata={"verdict": verdict, "reason": dg.MetadataValue.text(reason),
                                  **packet_facts(run.tags.get("fix7/evidence")),
                                  "evidence": dg.MetadataValue.path(run.tags.get("fix7/evidence", ""))}))
    return True


def packet_facts(evidence_dir: str | None) -> dict[str, str]:
    """run_view.run_facts of the packet in `evidence_dir` (the verdict event's metadata); none when unreadable."""
    try:
        return run_view.run_facts(EvidencePacket.load(evidence_dir).data) if evidence_dir else {}
    except (OSError, ValueError, KeyError):
        return {}
