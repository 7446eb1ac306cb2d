"""The stages that rehearse the change on the clone: the snapshot anchor, apply and rollback, and the restore
diff against the anchor (core/run/rehearsal.py is the public entry to every stage)."""

from __future__ import annotations

import psycopg

from ..anchor import diff as diff_mod
from ..anchor import fingerprint, schema_text
from ..change import change_sql as change_mod
from ..clone import isolation, restore
from ..change import impact as impact_mod
from ..change import traffic
from ..change.probe import probing
from ..postgres.throwaways import Throwaway, database_properties, planted_settings
from ..shared.errors import Fix7Error
from ..shared.model import FAILED, PASSED, Finding, StageOutcome
from . import carried_anchor, clone_templates, template_fault
from .run_record import Anchor, RunRecord
from .stage_run import ServerSource, StageContext, error_outcome, run_stage


def _anchored(anchor: Anchor, how: str = "") -> StageOutcome:
    fp = anchor.fingerprint
    details = {"anchor_id": anchor.anchor_id, "physical_copy": anchor.database,
               "tables": len(fp.get("tables", {})), "schema_objects": len(fp.get("schema", {})),
               "rows": sum(t.get("rows", 0) for t in fp.get("tables", {}).values())}
    if how:
        details["fingerprint"] = how
    return StageOutcome(status=PASSED, reason=f"anchor {anchor.anchor_id}: physical copy {anchor.database} + logical "
                        "fingerprint" + (", proven with the clone template check" if how else ""), details=details)


def snapshot_anchor(record: RunRecord, servers: ServerSource | None = None) -> tuple[RunRecord, StageOutcome]:
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        tw = ctx.throwaway()
        carried = ctx.record.carried_anchor
        if carried is not None and carried.database and carried.database in ctx.record.throwaway.extra_databases:
            ctx.put(anchor=carried)
            ctx.journal.set(anchor_id=carried.anchor_id)
            return _anchored(carried, "carried from the template check (the clone sealed between them; schema read "
                                      "again after REASSIGN OWNED)")
        anchor_db = carried_anchor.anchor_name(tw.tag)
        properties = database_properties(server, tw.database)
        ctx.new_database(anchor_db, template=tw.database, read_only=True,
                         strategy=clone_templates.copy_strategy(server, tw.database))
        fp = fingerprint.of_database(server, anchor_db, tw.login, "anchor fingerprint")
        anchor = Anchor(database=anchor_db, anchor_id=fingerprint.anchor_id(fp), fingerprint=fp,
                        database_properties=properties)
        sealed = carried_anchor.expected(ctx.record)  # a reused clone whose seal did not hold to the anchor copy
        if sealed is not None and anchor.anchor_id != sealed.anchor_id:
            raise carried_anchor.not_as_sealed(anchor.anchor_id, sealed.anchor_id)
        ctx.put(anchor=anchor)
        ctx.journal.set(anchor_id=anchor.anchor_id)
        return _anchored(anchor)

    return run_stage(record, "snapshot_anchor", body, servers)


def run_change_stage(record: RunRecord, label: str, servers: ServerSource | None = None
                     ) -> tuple[RunRecord, StageOutcome]:
    """Run the change as intake read it (its text and sha256 are the record's): the file is not read again, so
    one edited after intake is not what runs."""
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        ch = ctx.record.change(label).loaded()  # intake's private copy, checked against its sha256
        anchor = ctx.record.anchor
        settings = impact_mod.settings_for(ctx.request, ctx.contract(),
                                           (anchor.fingerprint if anchor else {}).get("tables"))
        tw = ctx.throwaway()
        with probing(server, tw, settings, label, ctx.request.statement_timeout_s, ctx.journal) as probe_run:
            outcome = change_mod.run_change(server, tw, ch, statement_timeout_s=ctx.request.statement_timeout_s,
                                            lock_timeout_s=ctx.request.lock_timeout_s, impact=settings)
        impact = traffic.attach(outcome.details.pop("impact", None), probe_run, settings)
        ctx.journal.put(["impact", label], impact)
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
    def body(ctx: StageContext) -> StageOutcome:
        server = ctx.server
        tw = ctx.throwaway()
        anchor = ctx.record.anchor
        with server.connect(tw.database, tw.login, purpose="restore diff") as after, \
                server.connect(anchor.database, tw.login, purpose="restore diff (anchor)") as anchor_conn, \
                server.connect(tw.database, tw.login, purpose="restore diff (second core)") as helper:
            after_fp = fingerprint.fingerprint(after, [helper])
            result = diff_mod.restore_diff(anchor.fingerprint, after_fp, anchor_conn, after)
        findings = [Finding(rule="rows_differ", table=t["table"],
                            message=f"{t['table']}: {t['added']} added, {t['removed']} removed, {t['changed']} "
                                    "changed after rollback") for t in result["tables"]]
        # the row diff reads the anchor copy: rows equal to it but not to its fingerprint mean the copy is not the state
        # the fingerprint recorded (written after it was taken, or a clone template altered where its seal is blind)
        findings += [Finding(rule="anchor_not_its_fingerprint", table=t,
                             message=f"{t}: after rollback its rows are the anchor copy's, yet not the anchor "
                                     "fingerprint's: the anchor copy is not the state its fingerprint recorded")
                     for t in _unexplained(anchor.fingerprint, after_fp, result)]
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
            fault, note = template_fault.check(ctx)  # a clone copied from a template: the rollback, or the template?
            if fault is not None:
                ctx.journal.set(restore_diff=ctx.redacted_names().scrub_obj(result))
                return StageOutcome(status=FAILED, reason=fault.message, findings=[fault], details=details)
            if note is not None:
                details["template_check"] = note
            details["anchor_restore_path"] = _prove_anchor_restore(ctx)
        diff = ctx.redacted_names().scrub_obj(result)
        ctx.journal.set(restore_diff=diff)
        outcome = StageOutcome.from_findings(findings, details=details, fail_status=FAILED,
                                             ok_reason="every row and schema object is back as anchored")
        outcome.published["restore_diff"] = diff
        return outcome

    return run_stage(record, "restore_diff", body, servers)


RESTORE_PROOF_METHOD = ("the clone's dump, re-read and checked against the sha256 taken at intake, restored again "
                        "the isolation stage's way (screened, as the least-privileged restoring role) into a fresh "
                        "database; its fingerprint compared with the anchor's recorded fingerprint")


def _unexplained(anchor_fp: dict, after_fp: dict, result: dict) -> list[str]:
    """Tables whose fingerprint differs from the anchor's where the row diff against the anchor copy found none."""
    a, b = anchor_fp["tables"], after_fp["tables"]
    listed = {t["table"] for t in result["tables"]}
    return [n for n in sorted(set(a) & set(b)) if n not in listed and
            (a[n]["rows"], a[n]["hash"], a[n]["columns"]) != (b[n]["rows"], b[n]["hash"], b[n]["columns"])]


def _prove_anchor_restore(ctx: StageContext) -> dict:
    """When the rollback left a residue, show that the way back does not depend on the rollback nor on the anchor
    copy: the clone's dump, restored again, gives exactly the anchored state (schema, rows, sequence positions).

    Restoring again reads the dump a second time, unavoidably: it is restored by intake's facts (the record's
    DumpInfo, never inspected anew) and the restore checks the bytes against the sha256 taken at intake
    (rule dump_changed), so a dump swapped since intake proves nothing.

    The anchor is taken after the gates, which only read, so the re-restored dump must equal it exactly; any
    difference is listed (by name) and the restore path is not proven.
    """
    server = ctx.server
    tw = ctx.throwaway()
    anchor = ctx.record.anchor
    result: dict = {"proven": False, "method": RESTORE_PROOF_METHOD, "differs": []}
    name = f"fix7_rerestore_{tw.tag}"
    try:
        ctx.new_database(name)
        restored = restore.restore(server, Throwaway(database=name, login=tw.login, tag=tw.tag), ctx.record.dump,
                                   screen=False)
        with server.connect(name, tw.login, purpose="anchor restore proof") as conn:
            fp = fingerprint.fingerprint(conn)
    except (Fix7Error, psycopg.Error) as e:
        result["error"] = error_outcome("restore_diff", e).reason
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
