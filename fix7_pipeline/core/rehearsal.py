"""The rehearsal's stages as plain functions over the run record (core/run_record.py); how each one runs,
fails, is interrupted and handles the run's throwaways is core/stage_run.py.

Intake reads every input once into a frozen RunRecord; each later stage receives the record, never an
input again, and returns the next record with what it learnt (throwaway names, the anchor, a contract
derived from schema SQL). Each stage records its outcome, the connections it opened and its duration in
the run's journal (core/journal.py) before returning; nothing loads or rewrites the packet while the run
goes on. Whatever ends the run (a stage that stops it, the last one, an interruption) drops the throwaways
and renders the packet from the journal, once (core.report.render).

Whatever finalizes the packet leaves the seal's witness in the record it returns (`witness`,
core.audit.witness) for the Dagster layer to record on the run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets as pysecrets
import time
from dataclasses import asdict
from pathlib import Path

import psycopg

from . import change as change_mod
from . import interrupts
from .audit import witness
from .errors import Fix7Error
from .hosts import redact_url
from .model import BLOCKED, FAILED, PASSED, STAGES, Finding, StageOutcome
from .evidence.run_outputs import share_change_copy
from .evidence.store import evidence_root as env_evidence_root, is_remote
from .paths import project_dir
from .redact import RedactedNames
from .journal import Journal
from .report import EvidenceDirRefused, EvidencePacket, default_evidence_dir, evidence_dir_problem, render, utc_now
from .request import RehearsalRequest
from .run_record import Anchor, RunRecord
from .server import (SCRATCH, RehearsalServer, Throwaway, config_server_url, create_database, database_properties,
                     storage_connection, sweep_leftovers)
from .stage_run import (ServerSource, _create_throwaway, _created, _error_outcome, _name_database, _new_database,
                        _redacted, _render, _Run, _source, _throwaway, abandon, drop_throwaways, evidence_fault,
                        interrupted, open_server, run_stage)
from .packet_files import EvidenceNotWritten

__all__ = ["ATTESTATION_TEXT", "RehearsalRequest", "ServerSource", "abandon", "drop_throwaways", "finish", "intake",
           "interrupted", "open_server", "prove_isolation", "restore_clone", "restore_diff", "run_change_stage", "run_stage",
           "sanitization", "schema_shape", "snapshot_anchor", "stage_contract"]

ATTESTATION_TEXT = "The dump is a sanitized, non-production copy of the birth surface, handed over for rehearsal only."


def stage_contract(run: _Run, server: RehearsalServer):
    """The run's contract: parsed at intake, or (schema SQL, a dump) converted once by PostgreSQL on `server` at the
    first stage that has one, and carried forward in the record, so no later stage (or process) converts it again."""
    from .contract.load import load_contract

    if run.record.contract is None:
        run.put(contract=load_contract(run.request.contract, server=server), contract_derived_from_schema=True)
    return run.record.contract


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
                       servers=_source(servers), on_packet=on_packet)
    except BaseException as e:
        if not interrupts.is_interrupt(e) or not progress.get("evidence_dir"):
            raise
        packet = Journal(progress["evidence_dir"], recorded=progress.get("recorded"))
        interrupted(RunRecord(request=request, run_id=run_id, evidence_dir=progress["evidence_dir"]), "intake", e,
                    packet=packet, started=started, position=position, servers=servers)
        raise


def _intake(request: RehearsalRequest, run_id: str, *, evidence_root: Path | None, storage_url: str | None,
            progress: dict, servers: ServerSource, on_packet) -> tuple[RunRecord, StageOutcome]:
    from .dumps.identify import inspect_dump
    from .dumps.screening import screen_dump
    from .secrets import dump_names, judge_names, judge_printed_names

    started = time.monotonic()
    findings: list[Finding] = []
    info = None
    try:
        roots = [Path(r) for r in request.allowed_roots] or None
        info = inspect_dump(Path(request.clone_path), allowed_roots=roots)
    except Fix7Error as e:
        findings.append(Finding(rule=e.rule, message=e.message))
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
        from .evidence.s3_store import connection

        packet.add_connections([connection(directory)])
    packet.set(attestation=attestation)
    clone = {"path": request.clone_path, "present": info is not None}
    details: dict = {}
    # Names read from the dump (its table of contents, its tables) are judged by the scan's rules before
    # anything prints them; one a rule matches is its label in the packet, the events and the record.
    names = RedactedNames()
    if info is not None:
        judge_names(dump_names(info), names)
        clone.update(names.scrub_obj(info.as_dict()))
        findings.extend(screen_dump(info))
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
    from .impact import threshold_problems

    findings += [Finding(rule="impact_thresholds", message=f"impact threshold setting: {p}")
                 for p in threshold_problems(asdict(request))]
    if request.search_roots:
        from . import candidates

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
        server = servers.open(request)
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
        _render(packet)
        record = record.with_(witness=witness(packet.sealed))
    outcome.duration_s = time.monotonic() - started
    return record, outcome


def redact_dump(info, names: RedactedNames):
    """The dump's facts as the record carries them to later stages: a name a rule matched is its label."""
    if info is None or not names:
        return info
    from dataclasses import replace

    return replace(info, tables=[names.scrub(t) for t in info.tables],
                   tables_with_data=[names.scrub(t) for t in info.tables_with_data],
                   toc=[replace(e, name=names.scrub(e.name), schema=names.scrub(e.schema), owner=names.scrub(e.owner),
                                line=names.scrub(e.line)) for e in info.toc])


def _intake_contract(request: RehearsalRequest):
    """(the parsed contract, None), or (None, None) for schema SQL or a dump (converted at the first stage with a
    server: stage_contract), or (None, the finding that blocks intake) for a contract that cannot be read."""
    from .contract.load import is_schema_source, load_contract

    if request.contract and is_schema_source(request.contract):
        return None, None
    try:
        return load_contract(request.contract or None), None
    except Fix7Error as e:
        return None, Finding(rule=e.rule, message=e.message)


def restore_clone(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    """Restore into a throwaway database as a least-privileged role; the isolation gate (prove_isolation) follows.

    The dump is restored by the facts intake recorded (format, table of contents, screening) and read once
    more, by the restore itself: the guard that it is still the dump intake hashed and screened. An archive
    is hashed before pg_restore reads it; a plain dump is hashed as it streams, before its one transaction
    commits; either way a dump swapped after intake is refused (rule dump_changed) and nothing is kept.

    The restore is the first half of the packet's `isolation` stage: a restore that fails records that stage
    (blocked) and seals the packet; one that succeeds records nothing yet and hands its outcome to the gate in
    the record (`restore`). The scratch database the shape gate may need is named here, so whatever ends the
    run drops it even though the gates (asset checks) hand no record on.
    """
    from . import restore
    from .server import assert_least_privilege, role_attributes

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        packet.set(isolation_proven=False)  # not proven until the isolation gate passes
        restore.assert_server_takes(server, run.record.dump)
        tw = _create_throwaway(server, run, packet)
        attrs = role_attributes(server, tw.login.role)
        packet.set(restoring_role=attrs)
        assert_least_privilege(attrs)
        info = run.record.dump
        contract = stage_contract(run, server)  # a bad contract stops the run before the restore
        used = {"source": contract.source, "tables": len(contract.tables),
                "derived_from_schema": run.record.contract_derived_from_schema}
        try:
            restored = restore.restore(server, tw, info, screen=False)  # intake screened these very bytes
        except restore.RestoreFailed as e:
            names = _redacted(run.record)
            partial = partial_dump_finding(e, info, contract, names)
            if partial is None:
                raise
            run.put(redacted_names=names.as_state())  # the stage's outcome is printed through it
            return StageOutcome.from_findings([partial], details={"restoring_role": attrs, "contract": used})
        _name_database(run, packet, scratch_name(tw.tag))
        return StageOutcome(status=PASSED, reason="restored by a least-privileged role",
                            details={"restore": restored, "restoring_role": attrs, "contract": used})

    record, outcome = run_stage(record, "isolation", body, servers, record_passed=False)
    return record.with_(restore={**outcome.as_dict(), "duration_s": outcome.duration_s}), outcome


def prove_isolation(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    """The isolation gate on the restored clone: nothing in it points at a live host. Records the `isolation`
    stage with the restore's details (restore_clone)."""
    from . import isolation
    from .server import planted_settings

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        tw = _throwaway(run.record.throwaway, server)
        contract = stage_contract(run, server)
        findings = isolation.settings_findings(planted_settings(server, [tw.database], tw.login.role))
        with server.connect(tw.database, tw.login, purpose="isolation proof") as conn:
            # a contract declaring no pointers (one derived from schema SQL) is checked for the birth surface's
            findings += isolation.prove_isolation(conn, run.request.policy(), contract.pointers or None)
        restored = {k: v for k, v in (run.record.restore or {}).items()
                    if k not in ("status", "reason", "findings", "notes", "duration_s")}
        outcome = StageOutcome.from_findings(findings, details=restored,
                                             ok_reason="restored by a least-privileged role; no outward pointer "
                                                       "to a live host")
        packet.set(isolation_proven=outcome.status == PASSED)
        return outcome

    return run_stage(record, "isolation", body, servers,  # the stage's duration is the restore's and the proof's
                     earlier_s=float((record.restore or {}).get("duration_s") or 0.0))


STAGE_FINDINGS_LISTED = 100  # the stage's findings in rehearsal-report.json; the .jsonl carries every one


def partial_dump_finding(e, info, contract, names: RedactedNames | None = None) -> Finding | None:
    """A restore that stopped on an object the dump does not create (pg_dump -t/-n): name what is missing.

    The restore ran in one transaction, so only its first error is known; the contract's required tables
    that the dump's table of contents does not carry are named as well, all of them.
    """
    if not e.missing:
        return None
    from .secrets import judge_names

    names = judge_names(e.missing, names if names is not None else RedactedNames())  # named by the server's error
    carried = {t[len("public."):] if t.startswith("public.") else t for t in info.tables}  # as judged at intake
    missing_tables = sorted(n for n, t in contract.tables.items() if t.required and n not in carried
                            and names.scrub(n) not in carried)
    shown = ", ".join(missing_tables[:12]) + (f" (+{len(missing_tables) - 12} more)" if len(missing_tables) > 12
                                              else "")
    tables = (f" The contract requires {len(missing_tables)} table(s) the dump does not carry: {shown}."
              if missing_tables else "")
    msg = (f"The dump is partial: PostgreSQL stopped restoring it because it refers to {', '.join(e.missing)}, "
           f"which the dump does not create (nothing was kept).{tables} Hand over a dump of the whole database "
           "(pg_dump without -t, -n or --exclude-table), or one that also carries what is named here.")
    return Finding(rule="partial_dump", message=msg,
                   extra={"missing_dependencies": e.missing, "missing_tables": missing_tables,
                          "first_error": e.lines[:1]})


def sanitization(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    """The secret scan over every place the clone holds text, then the GX suite over its findings."""
    from . import data_rules, secrets
    from .packet_files import FINDINGS
    from .server import database_settings

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        tw = _throwaway(run.record.throwaway, server)
        contract = stage_contract(run, server)
        salt = pysecrets.token_hex(16)  # per run, never stored: fingerprints cannot be joined across runs
        settings = database_settings(server, [tw.database], tw.login.role)
        scan = secrets.scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"),
                                    tw.database, contract, salt, settings=settings, names=_redacted(run.record))
        run.put(redacted_names=scan.redacted.as_state())
        encoding, encoding_findings = _clone_encoding(server, tw, run)  # names it prints were judged just now
        packet.put(["clone", "encoding"], encoding)
        found = _dedupe(list(scan))
        suite = data_rules.run_sanitization(found, contract, scan.present_tables)
        lines = [json.dumps({"rule": f.rule, "rules": f.extra.get("rules") or [f.rule], "table": f.table,
                             "column": f.column, "row_key": f.row_key, "place": f.extra.get("place"),
                             "fingerprint": f.fingerprint, "source": f.extra.get("source"),
                             "family": f.extra.get("family")},
                            sort_keys=True) for f in found]
        file_entry = packet.write_file(FINDINGS, "".join(line + "\n" for line in lines))
        counts = secrets.ScanFindings(found).counts()
        suite_findings = suite_failures_beyond(found, suite)
        outcome = StageOutcome.from_findings(
            found + suite_findings + encoding_findings,
            details={"gx": suite, "finding_total": len(found) + len(suite_findings), "finding_counts": counts,
                     "encoding": encoding,
                     "findings_file": {**file_entry, "lines": len(found)}, "scan": scan.stats},
            ok_reason="no secret in any table, large object, catalog object or setting; must-be-NULL columns "
                      "are NULL and must-be-empty tables empty")
        if len(found) > STAGE_FINDINGS_LISTED:
            outcome.findings = found[:STAGE_FINDINGS_LISTED] + suite_findings
        return outcome

    return run_stage(record, "sanitization", body, servers)


def suite_failures_beyond(found: list[Finding], suite: dict) -> list[Finding]:
    """The sanitization suite's failed expectations that the scan's findings do not already say.

    Each secret gate fails with one unexpected row per finding of its family: that is the same occurrence
    again, not another finding. A failure it does not account for (a count that differs, an expectation that
    errored, a finding no gate covers) stays a finding of its own, so the gate still fails closed."""
    from collections import Counter

    from .data_rules import data_rules_findings, gate_of

    per_gate = Counter(gate_of(f) for f in found)
    return [f for f in data_rules_findings(suite)
            if not (f.rule.startswith("sanitization.") and not f.extra.get("error")
                    and per_gate.get(f.rule[len("sanitization."):], 0) > 0
                    and f.extra.get("unexpected_count") == per_gate[f.rule[len("sanitization."):]])]


def _clone_encoding(server: RehearsalServer, tw: Throwaway, run: _Run) -> tuple[dict, list[Finding]]:
    """The clone's encoding for the packet, and a warning when a SQL_ASCII dump brought bytes that are not UTF-8:
    never a silent pass (clone_encoding.py says why only SQL_ASCII can)."""
    from .clone_encoding import encoding_report

    dumped = ((run.record.restore or {}).get("restore") or {}).get("client_encoding")
    with server.connect(tw.database, tw.login, purpose="clone encoding") as conn:
        report = encoding_report(dumped, conn)
    names = _redacted(run.record)
    report = names.scrub_obj(report)
    if not report.get("invalid_utf8"):
        return report, []
    columns = report["invalid_utf8_columns"]
    shown = ", ".join(columns[:8]) + (f" (+{len(columns) - 8} more)" if len(columns) > 8 else "")
    return report, [Finding(rule="invalid_utf8", severity="warning", extra={"columns": columns},
                            message=f"The dump is in SQL_ASCII and {len(columns)} text column(s) of the clone hold "
                                    f"bytes that are not UTF-8: {shown}. PostgreSQL neither converted nor checked "
                                    "them; the rehearsal server is UTF8, so a change that reads, compares or "
                                    "converts this text may behave differently here than on production.")]


def scratch_name(tag: str) -> str:
    return f"fix7_scratch_{tag}"


def scratch_database(server: RehearsalServer, run: _Run, packet: Journal) -> psycopg.Connection:
    """An empty database of this run where PostgreSQL may deparse the contract: no object of the dump in it.
    Named by the restore (restore_clone), created at its first use."""
    tw = _throwaway(run.record.throwaway, server)
    name = scratch_name(tw.tag)
    if name not in run.record.throwaway.extra_databases:
        _name_database(run, packet, name)
    create_database(server, name, tw.login)
    _created(packet, name)
    return server.connect(name, tw.login, purpose="contract deparse (scratch)", session=SCRATCH)


def _dump_time(record: RunRecord) -> dt.datetime:
    """When the clone was dumped, if the dump says; else the intake time (no timestamp may be later)."""
    for key in ("dumped_at", "archive_created_at"):
        value = record.clone.get(key)
        if value:
            try:
                return dt.datetime.fromisoformat(str(value))
            except ValueError:
                pass
    return dt.datetime.now(dt.timezone.utc)


def schema_shape(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    from . import data_rules, shape

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        tw = _throwaway(run.record.throwaway, server)
        contract = stage_contract(run, server)
        with server.connect(tw.database, tw.login, purpose="schema shape") as conn:
            findings = shape.check_shape(conn, contract, scratch=lambda: scratch_database(server, run, packet))
        details: dict = {}
        declared = bool(contract.data_rules)
        schema_only = bool(run.record.clone.get("schema_only"))
        if schema_only:
            matches = not any(f.is_error for f in findings)
            findings.insert(0 if matches else len(findings), Finding(
                rule="schema_only_dump", message=(
                    "schema-only dump: the shape was checked and matches the contract; there is no data to "
                    "rehearse the change on — hand over a dump with data (pg_dump without --schema-only)"
                    if matches else "schema-only dump: there is no data to rehearse the change on either — hand "
                                    "over a dump with data (pg_dump without --schema-only)")))
            details["data_rules"] = "not run: a schema-only dump has no rows to check"
        elif not any(f.is_error for f in findings):
            if declared:
                source = server.sqlalchemy_source(tw.database, tw.login, "great expectations: data rules suite")
                suite = data_rules.run_data_rules(source, contract, _dump_time(run.record))
                details["gx"] = suite
                findings += data_rules.data_rules_findings(suite, declared=True)
            else:
                details["data_rules"] = "none declared"
                findings += data_rules.data_rules_findings({"suite": "data_rules", "expectations": []},
                                                           declared=False)
        ok = "tables, columns, types, keys and data rules match the contract" if declared else \
            "tables, columns, types and keys match the contract; no data rules declared"
        return StageOutcome.from_findings(findings, details=details, ok_reason=ok)

    return run_stage(record, "schema_shape", body, servers)


def snapshot_anchor(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    from . import fingerprint

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        tw = _throwaway(run.record.throwaway, server)
        anchor_db = f"fix7_anchor_{tw.tag}"
        properties = database_properties(server, tw.database)
        _new_database(server, run, packet, anchor_db, template=tw.database, read_only=True)
        with server.connect(anchor_db, tw.login, purpose="anchor fingerprint") as conn, \
                server.connect(anchor_db, tw.login, purpose="anchor fingerprint (second core)") as helper:
            fp = fingerprint.fingerprint(conn, [helper])
        anchor = fingerprint.anchor_id(fp)
        run.put(anchor=Anchor(database=anchor_db, anchor_id=anchor, fingerprint=fp, database_properties=properties))
        packet.set(anchor_id=anchor)
        return StageOutcome(status=PASSED, reason=f"anchor {anchor}: physical copy {anchor_db} + logical fingerprint",
                            details={"anchor_id": anchor, "physical_copy": anchor_db,
                                     "tables": len(fp.get("tables", {})), "schema_objects": len(fp.get("schema", {})),
                                     "rows": sum(t.get("rows", 0) for t in fp.get("tables", {}).values())})

    return run_stage(record, "snapshot_anchor", body, servers)


def run_change_stage(record: RunRecord, label: str, servers: ServerSource | None = None
                     ) -> tuple[RunRecord, StageOutcome]:
    """Run the change as intake read it (its text and sha256 are the record's): the file is not read again, so
    one edited after intake is not what runs."""
    from . import impact as impact_mod

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        ch = run.record.change(label).loaded()  # intake's private copy, checked against its sha256
        anchor = run.record.anchor
        settings = impact_mod.settings_for(run.request, stage_contract(run, server),
                                           (anchor.fingerprint if anchor else {}).get("tables"))
        outcome = change_mod.run_change(server, _throwaway(run.record.throwaway, server), ch,
                                        statement_timeout_s=run.request.statement_timeout_s,
                                        lock_timeout_s=run.request.lock_timeout_s, impact=settings)
        impact = outcome.details.pop("impact", None)
        packet.put(["impact", label], impact)
        outcome.published["impact"] = impact
        if impact is not None:
            outcome.details["impact_summary"] = summary = impact_mod.summary(impact)
            if summary["breaches"]:
                more = len(impact_mod.breaches(impact)) - 1
                outcome.reason += (f"; impact threshold breached: {summary['breaches'][0]}"
                                   f"{f' (+{more} more)' if more else ''}")
            elif summary["warnings"]:
                outcome.reason += f"; {summary['warnings']} impact warning(s)"
        return outcome

    return run_stage(record, label, body, servers)


def restore_diff(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    from . import diff as diff_mod
    from . import fingerprint, isolation, schema_text
    from .server import database_properties, planted_settings

    def body(server: RehearsalServer, packet: Journal, run: _Run) -> StageOutcome:
        tw = _throwaway(run.record.throwaway, server)
        anchor = run.record.anchor
        with server.connect(tw.database, tw.login, purpose="restore diff") as after, \
                server.connect(anchor.database, tw.login, purpose="restore diff (anchor)") as anchor_conn, \
                server.connect(tw.database, tw.login, purpose="restore diff (second core)") as helper:
            after_fp = fingerprint.fingerprint(after, [helper])
            result = diff_mod.restore_diff(anchor.fingerprint, after_fp, anchor_conn, after)
        findings = [Finding(rule="rows_differ", table=t["table"],
                            message=f"{t['table']}: {t['added']} added, {t['removed']} removed, {t['changed']} "
                                    "changed after rollback") for t in result["tables"]]
        findings += [Finding(rule="schema_differs", message=f"schema object {o['object']} {o['change']} after rollback"
                             + (f" ({', '.join(o['attributes'])})" if o.get("attributes") else ""),
                             extra={"attributes": o["attributes"]} if o.get("attributes") else {})
                     for o in result["schema"]]
        findings += [Finding(rule="sequence_moved", severity=s.get("severity", "warning"),
                             message=f"sequence {s['sequence']} moved from {s['anchor']} to {s['after']}")
                     for s in result["sequences"]]
        for name in sorted(k for k, v in database_properties(server, tw.database).items()
                           if v != anchor.database_properties.get(k)):
            result["schema"].append({"object": f"database {name}", "change": "changed"})
            findings.append(Finding(rule="schema_differs", message=f"the clone database's {name} changed after "
                                    "rollback"))
        blobs = result.get("large_objects") or {}
        findings += [Finding(rule="large_object_differs", message=f"large object {oid} {kind} after rollback")
                     for kind in ("added", "removed", "changed") for oid in blobs.get(kind, [])[:20]]
        text_differs = schema_text.differing(schema_text.schema_sections(server, anchor.database, tw.login),
                                             schema_text.schema_sections(server, tw.database, tw.login))
        result["schema_text_differs"] = text_differs
        if text_differs and not result["schema"]:
            findings += [Finding(rule="fingerprint_blind_spot", message=f"pg_dump --schema-only differs in {s} "
                                 "where the catalog fingerprint saw no difference; the rollback left something "
                                 "the fingerprint does not read") for s in text_differs]
        # isolation refused any such setting, so one now was placed by code that ran in apply or rollback
        for f in isolation.settings_findings(planted_settings(server, [tw.database], tw.login.role)):
            findings.append(Finding(rule="setting_planted", message="after apply and rollback: " + f.message,
                                    extra={"object": f.extra.get("object")}))
        details: dict = {"after_fingerprint_id": fingerprint.anchor_id(after_fp)}
        if any(f.is_error for f in findings):
            details["anchor_restore_path"] = _prove_anchor_restore(server, run, packet)
        diff = _redacted(run.record).scrub_obj(result)
        packet.set(restore_diff=diff)
        outcome = StageOutcome.from_findings(findings, details=details, fail_status=FAILED,
                                             ok_reason="every row and schema object is back as anchored")
        outcome.published["restore_diff"] = diff
        return outcome

    return run_stage(record, "restore_diff", body, servers)


RESTORE_PROOF_METHOD = ("the clone's dump, re-read and checked against the sha256 taken at intake, restored again "
                        "the isolation stage's way (screened, as the least-privileged restoring role) into a fresh "
                        "database; its fingerprint compared with the anchor's recorded fingerprint")


def _prove_anchor_restore(server: RehearsalServer, run: _Run, packet: Journal) -> dict:
    """When the rollback left a residue, show that the way back does not depend on the rollback nor on the anchor
    copy: the clone's dump, restored again, gives exactly the anchored state (schema, rows, sequence positions).

    Restoring again reads the dump a second time, unavoidably: it is restored by intake's facts (the record's
    DumpInfo, never inspected anew) and the restore checks the bytes against the sha256 taken at intake
    (rule dump_changed), so a dump swapped since intake proves nothing.

    The anchor is taken after the gates, which only read, so the re-restored dump must equal it exactly; any
    difference is listed (by name) and the restore path is not proven.
    """
    from . import diff as diff_mod
    from . import fingerprint, restore

    tw = _throwaway(run.record.throwaway, server)
    anchor = run.record.anchor
    result: dict = {"proven": False, "method": RESTORE_PROOF_METHOD, "differs": []}
    name = f"fix7_rerestore_{tw.tag}"
    try:
        _new_database(server, run, packet, name)
        restored = restore.restore(server, Throwaway(database=name, login=tw.login, tag=tw.tag), run.record.dump,
                                   screen=False)
        with server.connect(name, tw.login, purpose="anchor restore proof") as conn:
            fp = fingerprint.fingerprint(conn)
    except (Fix7Error, psycopg.Error) as e:
        result["error"] = _error_outcome("restore_diff", e).reason
        return result
    result["differs"] = diff_mod.fingerprint_differences(anchor.fingerprint, fp)
    # and the physical anchor is still what was recorded: a copy changed after it was taken restores nothing
    with server.connect(anchor.database, tw.login, purpose="anchor restore proof (the anchor as it is)") as conn:
        result["anchor_changed"] = diff_mod.fingerprint_differences(anchor.fingerprint,
                                                                    fingerprint.fingerprint(conn))
    result["restored_fingerprint_id"] = fingerprint.anchor_id(fp)
    result["restore"] = {k: restored.get(k) for k in ("tool", "database", "role", "sha256", "duration_s")}
    # the recorded fingerprint must also be the one the anchor id was made of
    result["proven"] = not result["differs"] and not result["anchor_changed"] \
        and result["restored_fingerprint_id"] == anchor.anchor_id == fingerprint.anchor_id(anchor.fingerprint)
    return result


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


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.rule, f.table, f.column, f.row_key, f.fingerprint, f.message if not f.row_key else None)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
