"""The stages on the restored clone: the restore, then the clone gates' stages (isolation, sanitization, schema
shape), each a plain function over the run record (core/run/rehearsal.py is the public entry to every stage)."""

from __future__ import annotations

import datetime as dt
import json
import secrets as pysecrets
from collections import Counter

import psycopg

from ..clone import isolation, restore, restore_failures
from ..clone.clone_encoding import encoding_report
from ..clone.restore_jobs import default_jobs
from ..evidence.packet_files import FINDINGS
from ..postgres.server import SCRATCH
from ..postgres.throwaways import (Throwaway, assert_least_privilege, create_database, database_settings,
                                   planted_settings, role_attributes)
from ..sanitization.redact import RedactedNames
from ..sanitization import secrets
from ..sanitization.secrets import judge_names
from ..shape import data_rules
from ..shape import schema_shape as shape
from ..shape.data_rules import data_rules_findings, gate_of
from ..shared.model import PASSED, Finding, StageOutcome
from . import carried_anchor, clone_templates
from .run_record import RunRecord
from .stage_run import ServerSource, StageContext, run_stage


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
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        ctx.journal.set(isolation_proven=False)  # not proven until the isolation gate passes
        restore_failures.assert_server_takes(server, ctx.record.dump)
        tw = ctx.create_throwaway()
        attrs = role_attributes(server, tw.login.role)
        ctx.journal.set(restoring_role=attrs)
        assert_least_privilege(attrs)
        info = ctx.record.dump
        contract = ctx.contract()  # a bad contract stops the run before the restore
        used = {"source": contract.source, "tables": len(contract.tables),
                "derived_from_schema": ctx.record.contract_derived_from_schema}
        reuse = clone_templates.reuse(server, ctx.record, tw, ctx.journal, contract)  # a verified template of it
        carried = reuse.pop(clone_templates.CARRIED, None)
        ctx.journal.set(clone_reuse=reuse)
        if reuse.get("reused"):
            if carried is not None:  # the anchor copied now, while the clone is as the check proved it
                how = clone_templates.strategy(server, reuse["template_bytes"])  # the copy is the template's size
                ctx.put(carried_anchor=carried_anchor.take_anchor(ctx, carried, how))
            ctx.journal.put(["clone_reuse", "anchor_fingerprint"], carried_anchor.how_read(carried, ctx.record))
            return StageOutcome(status=PASSED, reason=clone_templates.reused_reason(reuse),
                                details={"reused_clone": reuse, "restoring_role": attrs, "contract": used})
        try:
            restored = restore.restore(server, tw, info, screen=False)  # intake screened these very bytes
        except restore_failures.RestoreFailed as e:
            names = ctx.redacted_names()
            partial = partial_dump_finding(e, info, contract, names)
            if partial is None:
                raise
            ctx.put(redacted_names=names.as_state())  # the stage's outcome is printed through it
            return StageOutcome.from_findings([partial], details={"restoring_role": attrs, "contract": used})
        ctx.name_database(scratch_name(tw.tag))
        return StageOutcome(status=PASSED, reason="restored by a least-privileged role",
                            details={"restore": restored, "restoring_role": attrs, "contract": used})

    record, outcome = run_stage(record, "isolation", body, servers, record_passed=False)
    return record.with_(restore={**outcome.as_dict(), "duration_s": outcome.duration_s}), outcome


def prove_isolation(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    """The isolation gate on the restored clone: nothing in it points at a live host. Records the `isolation`
    stage with the restore's details (restore_clone)."""
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        tw = ctx.throwaway()
        contract = ctx.contract()
        findings = isolation.settings_findings(planted_settings(server, [tw.database], tw.login.role))
        with server.connect(tw.database, tw.login, purpose="isolation proof") as conn:
            # a contract declaring no pointers (one derived from schema SQL) is checked for the birth surface's
            findings += isolation.prove_isolation(conn, ctx.request.policy(), contract.pointers or None)
        restored = {k: v for k, v in (ctx.record.restore or {}).items()
                    if k not in ("status", "reason", "findings", "notes", "duration_s")}
        outcome = StageOutcome.from_findings(findings, details=restored,
                                             ok_reason="restored by a least-privileged role; no outward pointer "
                                                       "to a live host")
        ctx.journal.set(isolation_proven=outcome.status == PASSED)
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
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        tw = ctx.throwaway()
        contract = ctx.contract()
        salt = pysecrets.token_hex(16)  # per run, never stored: fingerprints cannot be joined across runs
        settings = database_settings(server, [tw.database], tw.login.role)
        scan = secrets.scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"),
                                    tw.database, contract, salt, settings=settings, names=ctx.redacted_names())
        ctx.put(redacted_names=scan.redacted.as_state())
        encoding, encoding_findings = _clone_encoding(ctx, tw)  # names it prints were judged just now
        ctx.journal.put(["clone", "encoding"], encoding)
        found = _dedupe(list(scan))
        suite = data_rules.run_sanitization(found, contract, scan.present_tables)
        lines = [json.dumps({"rule": f.rule, "rules": f.extra.get("rules") or [f.rule], "table": f.table,
                             "column": f.column, "row_key": f.row_key, "place": f.extra.get("place"),
                             "fingerprint": f.fingerprint, "source": f.extra.get("source"),
                             "family": f.extra.get("family")},
                            sort_keys=True) for f in found]
        file_entry = ctx.journal.write_file(FINDINGS, "".join(line + "\n" for line in lines))
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
    per_gate = Counter(gate_of(f) for f in found)
    return [f for f in data_rules_findings(suite)
            if not (f.rule.startswith("sanitization.") and not f.extra.get("error")
                    and per_gate.get(f.rule[len("sanitization."):], 0) > 0
                    and f.extra.get("unexpected_count") == per_gate[f.rule[len("sanitization."):]])]


def _clone_encoding(ctx: StageContext, tw: Throwaway) -> tuple[dict, list[Finding]]:
    """The clone's encoding for the packet, and a warning when a SQL_ASCII dump brought bytes that are not UTF-8:
    never a silent pass (clone_encoding.py says why only SQL_ASCII can)."""
    server = ctx.server
    dumped = ((ctx.record.restore or {}).get("restore") or {}).get("client_encoding")
    with server.connect(tw.database, tw.login, purpose="clone encoding") as conn:
        report = encoding_report(dumped, conn)
    names = ctx.redacted_names()
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


def scratch_database(ctx: StageContext) -> psycopg.Connection:
    """An empty database of this run where PostgreSQL may deparse the contract: no object of the dump in it.
    Named by the restore (restore_clone), created at its first use."""
    server = ctx.server
    tw = ctx.throwaway()
    name = scratch_name(tw.tag)
    if name not in ctx.record.throwaway.extra_databases:
        ctx.name_database(name)
    create_database(server, name, tw.login)
    ctx.created(name)
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
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        tw = ctx.throwaway()
        contract = ctx.contract()
        with server.connect(tw.database, tw.login, purpose="schema shape") as conn:
            findings = shape.check_shape(conn, contract, scratch=lambda: scratch_database(ctx))
        details: dict = {}
        declared = bool(contract.data_rules)
        schema_only = bool(ctx.record.clone.get("schema_only"))
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
                suite = data_rules.run_data_rules(
                    lambda purpose: server.connect(tw.database, tw.login, purpose=purpose), contract,
                    _dump_time(ctx.record), jobs=min(2, default_jobs()), server=server.describe())
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


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.rule, f.table, f.column, f.row_key, f.fingerprint, f.message if not f.row_key else None)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
