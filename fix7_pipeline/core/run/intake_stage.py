"""Intake, the rehearsal's first stage: every input read once into a frozen RunRecord and the evidence packet
started (core/run/rehearsal.py is the public entry to every stage)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from ..sanitization import candidates
from ..change import change_sql as change_mod
from ..dumps import identify, screening
from ..evidence.audit import witness
from ..evidence.evidence_dir import EvidenceDirRefused, default_evidence_dir, evidence_dir_problem
from ..evidence.journal import Journal
from ..evidence.packet_files import EvidenceNotWritten
from ..evidence.report import EvidencePacket, utc_now
from ..change.impact import threshold_problems
from ..intake import contract_load
from ..intake.request import RehearsalRequest
from ..postgres.hosts import redact_url
from ..postgres.server_urls import config_server_url, storage_connection
from ..postgres.throwaways import sweep_leftovers
from ..sanitization.redact import RedactedNames
from ..sanitization.secrets import dump_names, judge_names, judge_printed_names
from ..shared.errors import Fix7Error
from ..shared.model import BLOCKED, PASSED, Finding, StageOutcome
from ..shared.paths import project_dir
from ..storage import s3_store
from ..storage.run_outputs import share_change_copy
from ..storage.store import evidence_root as env_evidence_root, is_remote
from . import clone_templates, interrupts
from .intake_vouch import Voucher, data_read
from .preload import start_preloading
from .run_record import RunRecord
from .stage_run import ServerSource, interrupted, render_packet, server_source


ATTESTATION_TEXT = "The dump is a sanitized, non-production copy of the birth surface, handed over for rehearsal only."


# -- stages ------------------------------------------------------------------------------

def _start_packet(directory: Path, fallback: Path, named: bool, run_id: str,
                  recorded: dict) -> tuple[Journal, Finding | None]:
    """The packet, started in the operator-named directory if that can take one, else in a fresh one.

    A named directory that already holds a packet (or is claimed by another run meanwhile: the packet file
    is created exclusively), is not a directory or is not writable is never written into; the packet goes
    to `fallback` and the refusal comes back as the intake finding that blocks the run.
    """
    problem = evidence_dir_problem(directory) if named else None
    if problem is None:
        try:
            return Journal(EvidencePacket.start(directory, run_id=run_id, request=recorded).dir), None
        except EvidenceDirRefused as e:
            if not named:
                raise
            problem = e.message
        except (OSError, EvidenceNotWritten) as e:  # EvidenceNotWritten: its disk is full
            if not named:
                raise
            why = f"{e.strerror} ({e.errno_name})" if isinstance(e, EvidenceNotWritten) else \
                (e.strerror or type(e).__name__)
            problem = f"The evidence directory {directory} cannot be written ({why})."
    return (Journal(EvidencePacket.start(fallback, run_id=run_id, request=recorded).dir),
            Finding(rule="evidence_dir", message=problem))


def intake(request: RehearsalRequest, run_id: str, *, evidence_root: Path | None = None,
           storage_url: str | None = None, servers: ServerSource | None = None,
           on_packet=None) -> tuple[RunRecord, StageOutcome]:
    """Clone intake: hash, format, version, screening, attestation; creates the evidence packet and the run record.

    The one reading of every input: the dump is hashed and screened, each change file read (text, sha256), the
    contract parsed (schema SQL and dumps excepted: PostgreSQL converts those at the first stage with a server).

    `storage_url` is the Dagster instance's storage (default FIX7_DAGSTER_PG_URL): the packet's connection
    ledger names it too. A server URL with a password never reaches the packet or the stage's output.
    Interrupted once the packet exists, it is sealed REHEARSAL_INTERRUPTED (no throwaway exists yet).
    `on_packet(evidence_dir)` is called as soon as the packet exists (the Dagster layer tags the run with it).
    """
    progress: dict = {}
    started = time.monotonic()
    position = interrupts.mark()
    try:
        return _intake(request, run_id, evidence_root=evidence_root, storage_url=storage_url, progress=progress,
                       servers=server_source(servers), on_packet=on_packet)
    except BaseException as e:
        if not interrupts.is_interrupt(e) or not progress.get("evidence_dir"):
            raise
        packet = Journal(progress["evidence_dir"], recorded=progress.get("recorded"))
        interrupted(RunRecord(request=request, run_id=run_id, evidence_dir=progress["evidence_dir"]), "intake", e,
                    packet=packet, started=started, position=position, servers=servers)
        raise


def _intake(request: RehearsalRequest, run_id: str, *, evidence_root: Path | None, storage_url: str | None,
            progress: dict, servers: ServerSource, on_packet) -> tuple[RunRecord, StageOutcome]:
    started = time.monotonic()
    findings: list[Finding] = []
    info = None
    server = _open_early(request, servers)
    voucher = Voucher(server, request) if server is not None else None
    try:
        roots = [Path(r) for r in request.allowed_roots] or None
        # a custom archive's data blocks are read by the restore (intake_vouch.py)
        info = identify.inspect_dump(Path(request.clone_path), allowed_roots=roots, restore_reads_custom_data=True)
    except Fix7Error as e:
        findings.append(Finding(rule=e.rule, message=e.message))
    if info is not None and not (voucher is not None and voucher.check(info.bytes, info.sha256)):
        start_preloading()  # a dump no verified clone vouched for is restored and gated: the gates need GX
    sha = getattr(info, "sha256", None)
    root = evidence_root or env_evidence_root(project_dir() / "evidence")
    fallback = default_evidence_dir(root, sha, run_id)
    directory = request.evidence_dir or fallback  # an unsupported URL is refused by _start_packet, like a used folder
    attestation = {"attested_by": request.attested_by.strip() or None,
                   "statement": ATTESTATION_TEXT if request.attested_by.strip() else None,
                   "attested_at": utc_now() if request.attested_by.strip() else None}
    server_url, _ = config_server_url(request.server_url)  # a refusal is raised by open_server below
    recorded = {**asdict(request), "server_url": redact_url(server_url) if server_url else "",
                "server": {"kind": "embedded" if servers.url_for(request) == "embedded" else "external"},
                "attestation": attestation}
    packet, refused = _start_packet(directory, fallback, bool(request.evidence_dir), run_id, recorded)
    directory = packet.dir
    progress["evidence_dir"] = str(directory)
    if on_packet is not None:
        on_packet(str(directory))
    if refused is not None:
        findings.append(refused)
    packet.add_connections([storage_connection(storage_url or os.environ.get("FIX7_DAGSTER_PG_URL"))])
    if is_remote(directory):  # the object store is a connection of the run like the databases
        packet.add_connections([s3_store.connection(directory)])
    packet.set(attestation=attestation)
    clone = {"path": request.clone_path, "present": info is not None}
    details: dict = {}
    # Names read from the dump (its table of contents, its tables) are judged by the scan's rules before
    # anything prints them; one a rule matches is its label in the packet, the events and the record.
    names = RedactedNames()
    if info is not None:
        judge_names(dump_names(info), names)
        clone.update(names.scrub_obj(info.as_dict()))
        if info.is_archive:
            clone["data"] = data_read(info.format, voucher.vouched_by if voucher is not None else None)
        findings.extend(screening.screen_dump(info))
    if not attestation["attested_by"]:
        findings.append(Finding(rule="attestation_missing",
                                message="no operator attestation: name who attests that the dump is a sanitized, "
                                        "non-production copy (--attested-by NAME)"))
    changes = []
    change_mod.sweep_stale_copies()
    for label, path in (("apply", request.apply_sql), ("rollback", request.rollback_sql)):
        try:
            changes.append(share_change_copy(run_id, change_mod.read_change(path, label,
                                                                             change_mod.copies_dir(run_id))))
            details[f"{label}_sql"] = changes[-1].summary()
        except Fix7Error as e:
            findings.append(Finding(rule="change_file", message=e.message))
    contract, contract_finding = _intake_contract(request)
    if contract_finding is not None:
        findings.append(contract_finding)
    findings += [Finding(rule="impact_thresholds", message=f"impact threshold setting: {p}")
                 for p in threshold_problems(asdict(request))]
    if request.search_roots:
        packet.set(table_A_candidates=candidates.find_candidates([Path(r) for r in request.search_roots]))
    # what screening and the other checks print of the dump (object names in refusals) is judged as well
    judge_printed_names([[f.as_dict() for f in findings], details], names)
    packet.set(clone=names.scrub_obj(clone))
    if any(f.extra.get("isolation") for f in findings if f.is_error):
        packet.set(isolation_proven=False)
    outcome = StageOutcome.from_findings(findings, details=details, ok_reason=(
        f"{clone.get('format')} dump, pg_dump {clone.get('pg_dump_version')}, sha256 {str(sha)[:12]}…, "
        f"attested by {attestation['attested_by']}"))
    record = RunRecord(request=RehearsalRequest(**{**asdict(request), "server_url": server_url}), run_id=run_id,
                       evidence_dir=str(directory), clone=names.scrub_obj(clone), dump=redact_dump(info, names),
                       changes=tuple(changes), contract=contract, redacted_names=names.as_state())
    # Sweeping leftovers of crashed runs is the first thing every rehearsal does on the server.
    try:
        server = server or servers.open(request)
        swept, left = sweep_leftovers(server) if outcome.status == PASSED else ([], [])
        packet.throwaways("swept", swept)
        if left:
            packet.throwaways("undroppable", left)
            outcome.findings += [Finding(rule="leftover_undroppable", severity="warning", message=(
                f"a leftover throwaway of an earlier run, {x['object']}, could not be dropped ({x['reason']}); "
                f"it does not stop this rehearsal. Drop it with: {x['drop_with']}")) for x in left]
            outcome.reason += f"; {len(left)} warning(s), e.g. {outcome.findings[-len(left)].message}"
        packet.add_connections(server.ledger.as_dicts())
    except Fix7Error as e:
        outcome.findings.append(Finding(rule=e.rule, message=e.message))
        outcome.status, outcome.reason = BLOCKED, e.message
    outcome = names.scrub_outcome(outcome)
    packet.record_stage("intake", outcome, time.monotonic() - started)
    progress["recorded"] = packet.recorded
    if outcome.status != PASSED:
        render_packet(packet)
        record = record.with_(witness=witness(packet.sealed))
    outcome.duration_s = time.monotonic() - started
    return record, outcome


def _open_early(request: RehearsalRequest, servers: ServerSource):
    """The run's server before the dump is read, to ask it for a template that vouches for the dump's data
    (intake_vouch.py); None when templates are not used or it cannot be opened (opened again after the dump is
    read, where a failure is told as ever)."""
    if not clone_templates.enabled() or request.fresh_clone:
        return None
    try:
        return servers.open(request)
    except Exception:  # noqa: BLE001 - see the docstring
        return None


def redact_dump(info, names: RedactedNames):
    """The dump's facts as the record carries them to later stages: a name a rule matched is its label."""
    if info is None or not names:
        return info
    return replace(info, tables=[names.scrub(t) for t in info.tables],
                   tables_with_data=[names.scrub(t) for t in info.tables_with_data],
                   toc=[replace(e, name=names.scrub(e.name), schema=names.scrub(e.schema), owner=names.scrub(e.owner),
                                line=names.scrub(e.line)) for e in info.toc])


def _intake_contract(request: RehearsalRequest):
    """(the parsed contract, None), or (None, None) for schema SQL or a dump (converted at the first stage with a
    server: StageContext.contract), or (None, the finding that blocks intake) for a contract that cannot be read."""
    if request.contract and contract_load.is_schema_source(request.contract):
        return None, None
    try:
        return contract_load.load_contract(request.contract or None), None
    except Fix7Error as e:
        return None, Finding(rule=e.rule, message=e.message)
