"""How one stage of a rehearsal runs: its server, its hold on the run record, its journal entries, its failure or
interruption, and the run's throwaway databases and role.

`run_stage` wraps every stage after intake (core/run/clone_stages.py, change_stages.py): a fresh connection ledger,
the outcome appended to the journal, and, when the stage stops the run, the throwaways dropped and the packet
rendered; the stage's body gets a StageContext. Interrupted
(Ctrl-C, SIGTERM, a run terminated in the Dagster UI), the running stage records `interrupted`, drops the
throwaways, renders REHEARSAL_INTERRUPTED and re-raises. Every throwaway database and role is named in the
journal on disk before it is created, so even kill -9 leaves it named; its mark lets the next run's sweep drop it.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..change import change_sql as change_mod
from ..evidence.audit import witness
from ..evidence.journal import Journal
from ..evidence.packet_files import EvidenceNotWritten
from ..evidence.report import EvidencePacket, render
from ..intake import contract_load
from ..intake.request import RehearsalRequest
from ..postgres.server import PASSWORD_ENV, THROWAWAY_KEY_ENV, ConnectionLedger, Login, RehearsalServer
from ..postgres.server_faults import from_psycopg
from ..postgres.server_urls import config_server_url
from ..postgres.throwaways import (Throwaway, create_database, create_throwaway, drop_throwaway, keep_throwaway,
                                   throwaway_names)
from ..sanitization.redact import STATE_KEY as REDACTED_NAMES, RedactedNames
from ..sanitization.secrets import judge_printed_names
from ..shared.errors import Fix7Error
from ..shared.model import BLOCKED, FAILED, INTERRUPTED, PASSED, SKIPPED, STAGES, Finding, StageOutcome
from ..shared.names import BLOCKING_STAGES
from . import clone_templates
from . import interrupts
from .run_record import RunRecord, ThrowawayNames


@dataclass(frozen=True)
class ServerSource:
    """Where every stage's RehearsalServer comes from: what the process holds, never what a run stores.

    `default_url` is used when the request names no server (else the embedded one); `password` is the
    admin login's when its URL has none; `throwaway_key` is what the throwaway roles' passwords are derived
    from (else the admin password; see RehearsalServer.throwaway_login). The Dagster layer builds it from
    its resource (defs/resources.py); plain callers take it from the environment.
    """

    default_url: str = ""
    password: str | None = None
    throwaway_key: str | None = None

    @classmethod
    def from_environment(cls) -> ServerSource:
        return cls(default_url=os.environ.get("FIX7_REHEARSAL_SERVER", ""),
                   password=os.environ.get(PASSWORD_ENV) or None,
                   throwaway_key=os.environ.get(THROWAWAY_KEY_ENV) or None)

    def url_for(self, request: RehearsalRequest) -> str:
        return request.server_url or self.default_url or "embedded"

    def open(self, request: RehearsalRequest) -> RehearsalServer:
        """The request's server; a run-config server URL holding a password (or unreadable) is refused (exit 2)."""
        _, refusal = config_server_url(request.server_url)
        if refusal is not None:
            raise refusal
        return RehearsalServer.from_url(self.url_for(request), request.policy(), ConnectionLedger(),
                                        password=self.password, throwaway_key=self.throwaway_key, environ=False)


def server_source(servers: ServerSource | None) -> ServerSource:
    return servers if servers is not None else ServerSource.from_environment()


def open_server(request: RehearsalRequest, servers: ServerSource | None = None) -> RehearsalServer:
    return server_source(servers).open(request)


class StageContext:
    """What a stage body works with: the run's server, the run's journal, and the stage's hold on the run record
    (the record it received, replaced, never edited, by each fact it learns).

    Local to one stage call; the stage returns `record`, which is what the next stage receives.
    """

    def __init__(self, record: RunRecord, journal: Journal, server: RehearsalServer | None = None):
        self.record = record
        self.journal = journal
        self.server = server

    @property
    def request(self) -> RehearsalRequest:
        return self.record.request

    def put(self, **facts) -> None:
        self.record = self.record.with_(**facts)

    def throwaway(self) -> Throwaway:
        """The run's throwaway (clone database and role), its login derived by the server."""
        return throwaway_of(self.record.throwaway, self.server)

    def redacted_names(self) -> RedactedNames:
        return redacted_names(self.record)

    def contract(self):
        """The run's contract: parsed at intake, or (schema SQL, a dump) converted once by PostgreSQL at the first
        stage that needs one, and carried forward in the record, so no later stage (or process) converts it again."""
        if self.record.contract is None:
            self.put(contract=contract_load.load_contract(self.request.contract, server=self.server),
                     contract_derived_from_schema=True)
        return self.record.contract

    def create_throwaway(self) -> Throwaway:
        """The clone database and its role: named in the record and on disk first, then created."""
        tag = pysecrets.token_hex(5)
        role, database = throwaway_names(tag)
        self.server.throwaway_login(role)  # no secret to derive its password from: refused before anything is named
        self.put(throwaway=ThrowawayNames(database=database, role=role, tag=tag))
        _plan(self.journal, ("role", role), ("database", database))
        tw = create_throwaway(self.server, tag)
        self.created(tw.database, tw.login.role)
        return tw

    def created(self, *names: str) -> None:
        """Throwaways the stage has just created, recorded on disk."""
        self.journal.throwaways("created", list(names), "extend")

    def name_database(self, database: str) -> None:
        """A further throwaway database named in the record and on disk now, created later if at all."""
        names = self.record.throwaway
        self.put(throwaway=ThrowawayNames(names.database, names.role, names.tag, (*names.extra_databases, database)))
        _plan(self.journal, ("database", database))

    def new_database(self, database: str, **how) -> None:
        """One more throwaway database of the run (anchor, re-restore): named on disk before it exists,
        created by `create_database(**how)`, and dropped with the rest."""
        self.name_database(database)
        create_database(self.server, database, self.throwaway().login, **how)
        self.created(database)


def throwaway_of(names: ThrowawayNames, server: RehearsalServer | None) -> Throwaway:
    """The run's throwaway as the record names it; its login is derived by `server`, never stored.

    Without a server, the login has no password: enough for the admin to drop or keep it by name.
    """
    login = server.throwaway_login(names.role) if server is not None else Login(names.role)
    return Throwaway(database=names.database, login=login, tag=names.tag, extra_databases=list(names.extra_databases))


BEFORE_THE_SCAN = ("isolation",)  # stages that print what they learnt of the clone before the secret scan ran


def redacted_names(record: RunRecord) -> RedactedNames:
    return RedactedNames.from_state({REDACTED_NAMES: record.redacted_names})


def error_outcome(stage: str, e: BaseException, server: RehearsalServer | None = None) -> StageOutcome:
    """`e`, which stopped `stage`, as the stage's outcome: the server's fault, a fix7 refusal, or where it failed."""
    status = BLOCKED if stage in BLOCKING_STAGES else FAILED
    if isinstance(e, psycopg.Error) and server is not None:
        e = from_psycopg(e, server.describe()) or e  # out of locks, disk full, a lost connection: the server's
    if isinstance(e, Fix7Error):
        msg, rule = e.message, e.rule
    elif isinstance(e, psycopg.Error):
        msg, rule = change_mod.server_error_message(e), "server_error"
    else:
        # Where it failed, never the exception's text: a message can quote data.
        where = [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in traceback.extract_tb(e.__traceback__)]
        msg, rule = f"internal error {type(e).__name__} in stage {stage} (at {where[-1] if where else '?'})", \
            "internal_error"
        return StageOutcome(status=status, findings=[Finding(rule=rule, message=msg)], reason=msg,
                            details={"internal_error": {"type": type(e).__name__, "where": where[-8:]}})
    return StageOutcome(status=status, findings=[Finding(rule=rule, message=msg)], reason=msg)


def run_stage(record: RunRecord, stage: str, body, servers: ServerSource | None = None, *,
              record_passed: bool = True, earlier_s: float = 0.0) -> tuple[RunRecord, StageOutcome]:
    """Run one stage's body with a fresh connection ledger, record it, and stop cleanly on failure.

    `body(ctx)` (a StageContext) returns the stage's outcome; what it learns goes into `ctx`, and the record it
    leaves there is returned with the outcome. An interruption (KeyboardInterrupt,
    DagsterExecutionInterruptedError: BaseExceptions) is recorded as `interrupted`, never as the stage's
    judgment; the throwaways are dropped, the packet is sealed REHEARSAL_INTERRUPTED and the interruption is
    re-raised, so Dagster ends the run. `record_passed=False` (the first half of a stage, restore_clone) records
    the stage only when it stops the run; the stage's second half counts the first's `earlier_s` in its duration.
    """
    packet = Journal(record.evidence_dir)
    run = StageContext(record, packet)
    started = time.monotonic() - earlier_s
    position = interrupts.mark()
    server = None
    try:
        try:
            server = run.server = open_server(record.request, servers)
            outcome = body(run)
        except EvidenceNotWritten:
            raise  # a full disk is no finding of the stage: below
        except Exception as e:  # every failure becomes a recorded, explained stage outcome
            outcome = error_outcome(stage, e, server)
        # A name that matched a secret rule is printed as its label by every stage from the scan on; before
        # the scan (the restore and isolation proof), every word the stage would print is judged first.
        names = redacted_names(run.record)
        if stage in BEFORE_THE_SCAN:
            judge_printed_names([outcome.reason, [f.as_dict() for f in outcome.findings], outcome.details], names)
            run.put(redacted_names=names.as_state())
        outcome = names.scrub_outcome(outcome)
        with interrupts.deferred():  # recording, dropping and sealing are never cut short
            if interrupts.signals_since(position):  # e.g. Ctrl-C killed pg_restore before Python saw it
                raise interrupts.Interrupted(interrupts.signal_of(None, position))
            if record_passed or outcome.status != PASSED:
                packet.record_stage(stage, outcome, time.monotonic() - started)
            if outcome.status != PASSED:
                drop_throwaways(run.record, packet, server)
            if server is not None:
                packet.add_connections(server.ledger.as_dicts())
            if outcome.status != PASSED:
                render_packet(packet)
                run.put(witness=witness(packet.sealed))  # the Dagster layer records it on the run
    except BaseException as e:
        if isinstance(e, EvidenceNotWritten):
            return evidence_fault(run.record, stage, e, packet=packet, server=server, servers=servers)
        if not interrupts.is_interrupt(e):
            raise
        interrupted(run.record, stage, e, packet=packet, server=server, started=started, position=position,
                    servers=servers)
        raise
    outcome.duration_s = time.monotonic() - started
    return run.record, outcome


class _FullDiskJournal(Journal):
    """The journal of a run whose evidence disk is full: what no longer fits is left out, nothing stops on it."""

    def put(self, path: list[str], value, op: str = "set") -> None:
        try:
            super().put(path, value, op)
        except EvidenceNotWritten:
            pass


def evidence_fault(record: RunRecord, stage: str, fault: EvidenceNotWritten, *, packet: Journal,
                   server: RehearsalServer | None = None,
                   servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    """The evidence disk filled during `stage`: the throwaways are dropped, the run is sealed
    REHEARSAL_NOT_JUDGED into the audit chain (naming the cause and the path; core/evidence/audit.seal), and the stage
    stops the run with that message. Whatever the stages found is not a verdict without its evidence."""
    with interrupts.deferred(reraise=False):
        if server is None and record.throwaway:
            try:
                server = open_server(record.request, servers)
            except Exception:  # noqa: BLE001 - the next run's sweep drops them
                server = None
        drop_throwaways(record, _FullDiskJournal(packet.dir, packet.recorded), server)
        rendered = render(packet.dir, fault=fault, fault_stage=stage)
        packet.sealed = rendered.sealed if rendered is not None else None
    outcome = StageOutcome(status=FAILED, reason=fault.message,
                           findings=[Finding(rule=fault.rule, message=fault.message)],
                           details={"evidence_not_written": fault.as_dict()})
    return record.with_(witness=witness(packet.sealed)), outcome


def interrupted(record: RunRecord, stage: str, error: BaseException | None, *, packet: Journal,
                server: RehearsalServer | None = None, started: float | None = None, position: int = 0,
                servers: ServerSource | None = None) -> None:
    """Record that `stage` was interrupted, drop the throwaways and seal REHEARSAL_INTERRUPTED.

    A packet already sealed (the interruption came after its verdict) is left as sealed; its
    throwaways are still dropped. Runs with further signals deferred: a second Ctrl-C cannot
    leave the throwaways behind.
    """
    with interrupts.deferred(reraise=False):
        duration = time.monotonic() - started if started is not None else None
        signame = interrupts.signal_name(interrupts.signal_of(error, position))
        by = f" by {signame}" if signame else " (the run was terminated)"
        when = f"during {stage} after {duration:.1f} s" if duration is not None else \
            f"before {stage} started (between two stages)"
        outcome = StageOutcome(status=INTERRUPTED, reason=f"interrupted{by} {when}; nothing was judged",
                               details={"signal": signame})
        sealed = packet.sealed is not None
        if not sealed and stage in STAGES and stage not in packet.recorded:
            packet.record_stage(stage, outcome, duration)
        if server is None and record.throwaway:
            try:
                server = open_server(record.request, servers)
            except Exception:  # noqa: BLE001 - recorded as a drop error below; the next sweep retries
                server = None
        if record.throwaway and server is None:
            packet.throwaways("drop_error", "the rehearsal server could not be reached")
        drop_throwaways(record, packet, server, stop_sessions=True)
        if not sealed:  # a sealed packet is never edited: that would break its hash in the audit chain
            if server is not None:
                packet.add_connections(server.ledger.as_dicts())
            render_packet(packet, interrupted={"stage": stage, "signal": signame, "before_start": duration is None})


def drop_throwaways(record: RunRecord, packet: Journal, server: RehearsalServer | None, *,
                    stop_sessions: bool = False) -> None:
    """Drop this run's throwaway databases and role, unless the operator asked to keep them.

    `stop_sessions` (an interruption): kept databases still get their sessions ended, so a statement
    the interruption left running on the server stops now.
    """
    if server is None or record.throwaway is None:
        return
    tw = throwaway_of(record.throwaway, None)  # dropped and kept by name, as the admin
    if record.request.keep_databases:
        try:
            if stop_sessions:
                _end_sessions(server, [*tw.extra_databases, tw.database])
            packet.throwaways("kept", keep_throwaway(server, tw))
        except Exception as e:  # noqa: BLE001 - recorded
            packet.throwaways("drop_error", type(e).__name__)
    else:
        try:
            kept, keep_role = clone_templates.adopt(server, record, packet)  # a gated anchor stays as the template
            tw.extra_databases = [d for d in tw.extra_databases if d != kept]
            gone = drop_throwaway(server, tw, keep_role=keep_role)  # WITH (FORCE): ends every session on them
            packet.throwaways("dropped", list(gone), "extend_new")
            packet.throwaways("drop_error", None, "pop")
        except Exception as e:  # noqa: BLE001 - recorded; the next run's sweep retries
            packet.throwaways("drop_error", type(e).__name__)


def _end_sessions(server: RehearsalServer, databases: list[str]) -> None:
    with server.connect(purpose="stop interrupted statements") as c:
        c.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                  "where datname = any(%s) and pid <> pg_backend_pid()", (databases,))


def _plan(packet: Journal, *names: tuple[str, str]) -> None:
    """Name throwaways ("database"|"role", name) in the journal on disk before they are created."""
    packet.throwaways("planned", [{"kind": kind, "name": name} for kind, name in names], "extend")


def _throwaway_from_packet(packet: EvidencePacket) -> ThrowawayNames | None:
    """The run's throwaway names rebuilt from the packet's planned names (what abandon drops)."""
    planned = packet.data["throwaways"].get("planned") or []
    roles = [p["name"] for p in planned if p.get("kind") == "role"]
    dbs = [p["name"] for p in planned if p.get("kind") == "database"]
    if not roles and not dbs:
        return None
    role = roles[0] if roles else ""
    clone = next((d for d in dbs if d.startswith("fix7_clone_")), dbs[0] if dbs else "")
    return ThrowawayNames(database=clone, role=role, tag=role.rsplit("_", 1)[-1],
                          extra_databases=tuple(d for d in dbs if d != clone))


def abandon(request: RehearsalRequest, evidence_dir: str | Path, signum: int | None,
            servers: ServerSource | None = None) -> dict:
    """The run was interrupted where no stage could record it (between two stages: Dagster stopped the
    plan). Drops the throwaways the packet names and seals REHEARSAL_INTERRUPTED, at the stage that was
    next; returns the packet. A packet already sealed is returned as it is.
    """
    packet = EvidencePacket.load(evidence_dir)  # sealed, or the journal's view of the run so far
    if packet.data.get("verdict"):
        return packet.data
    stage = next((s for s in STAGES if packet.stage_status(s) in (SKIPPED, INTERRUPTED)), "evidence_packet")
    record = RunRecord(request=request, run_id=packet.data.get("run_id") or "", evidence_dir=str(evidence_dir),
                       throwaway=_throwaway_from_packet(packet))
    error = interrupts.Interrupted(signum) if signum is not None else None
    journal = Journal(evidence_dir, recorded={s for s in STAGES if packet.stage_status(s) != SKIPPED})
    interrupted(record, stage, error, packet=journal, servers=servers)
    return EvidencePacket.load(evidence_dir).data


def render_packet(packet: Journal, **how) -> None:
    """The packet rendered from the journal by whatever ends the run; `packet.sealed` is the seal's chain entry."""
    rendered = render(packet.dir, **how)
    packet.sealed = rendered.sealed if rendered is not None else None
