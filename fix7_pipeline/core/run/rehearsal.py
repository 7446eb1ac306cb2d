"""The rehearsal's stages as plain functions over the run record (core/run/run_record.py), in one place for the
Dagster layer and the CLI: intake (intake_stage.py), the stages on the clone (clone_stages.py), those that rehearse
the change (change_stages.py), and `finish`. How each one runs, fails, is interrupted and handles the run's
throwaways is core/run/stage_run.py.

Intake reads every input once into a frozen RunRecord; each later stage receives the record, never an
input again, and returns the next record with what it learnt (throwaway names, the anchor, a contract
derived from schema SQL). Each stage records its outcome, the connections it opened and its duration in
the run's journal (core/evidence/journal.py) before returning; nothing loads or rewrites the packet while the run
goes on. Whatever ends the run (a stage that stops it, the last one, an interruption) drops the throwaways
and renders the packet from the journal, once (core/evidence/report.render).

Whatever finalizes the packet leaves the seal's witness in the record it returns (`witness`,
core/evidence/audit.witness) for the Dagster layer to record on the run.
"""

from __future__ import annotations

from ..evidence.audit import witness
from ..evidence.journal import Journal
from ..evidence.packet_files import EvidenceNotWritten
from ..evidence.report import EvidencePacket, render
from ..intake.request import RehearsalRequest
from ..shared.names import STAGES
from .change_stages import restore_diff, run_change_stage, snapshot_anchor
from .clone_stages import prove_isolation, restore_clone, sanitization, schema_shape
from .intake_stage import ATTESTATION_TEXT, intake
from . import interrupts
from .run_record import RunRecord
from .stage_run import (ServerSource, StageContext, abandon, drop_throwaways, evidence_fault, interrupted, open_server,
                        run_stage)

__all__ = ["ATTESTATION_TEXT", "RehearsalRequest", "ServerSource", "StageContext", "abandon", "drop_throwaways",
           "finish", "intake", "interrupted", "open_server", "prove_isolation", "restore_clone", "restore_diff",
           "run_change_stage", "run_stage", "sanitization", "schema_shape", "snapshot_anchor"]


def finish(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, str]:
    """The evidence packet's last word: throwaways dropped, verdict fixed, the seal's witness in the record."""
    packet = Journal(record.evidence_dir, recorded=set(STAGES))
    position = interrupts.mark()
    server = None
    try:
        server = open_server(record.request, servers)
        with interrupts.deferred():
            drop_throwaways(record, packet, server)
            packet.add_connections(server.ledger.as_dicts())
            rendered = render(packet.dir)
            packet.sealed = rendered.sealed if rendered is not None else None
            # already sealed by whatever else ended the run: its verdict, as sealed
            verdict = (rendered or EvidencePacket.load(packet.dir)).data["verdict"]
            record = record.with_(witness=witness(packet.sealed))
    except BaseException as e:
        if isinstance(e, EvidenceNotWritten):
            record, outcome = evidence_fault(record, "evidence_packet", e, packet=packet, server=server,
                                             servers=servers)
            return record, EvidencePacket.load(packet.dir).data.get("verdict") or outcome.status
        if not interrupts.is_interrupt(e):
            raise
        interrupted(record, "evidence_packet", e, packet=packet, server=server, position=position,
                    servers=servers)
        raise
    return record, verdict
