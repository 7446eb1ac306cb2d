"""Why the restore diff of a clone copied from a verified template failed: the rollback, or the template.

A reused clone's anchor carries the fingerprint its template's gating packet sealed; the copy itself was not read
(core/run/clone_templates.py: the template is checked by its seal, its pg_database row). A template altered where
that row does not see it (its files edited, single-user mode) therefore fails the restore diff, which reads the
rolled-back clone in full against the sealed fingerprint. On that failure, and only then, the anchor copy (this
run's clone as copied, before apply) is read in full once: if it is not the sealed state, the template was
altered and is discarded, and the run says so as a fault of the server, never as a verdict on the change.
"""

from __future__ import annotations

from ..anchor import fingerprint
from ..shared.model import Finding
from . import clone_templates

RULE = "server.clone_template_altered"  # a server fault: the verdict is REHEARSAL_SERVER_FAULT
ROLLBACK = "the anchor copy, read in full, is the sealed fingerprint: the rollback did not restore"


def check(ctx) -> tuple[Finding | None, str | None]:
    """(the fault finding, None) if the reused clone was not the sealed state; (None, a note for the packet) if it
    was; (None, None) when the anchor was not carried from a template (nothing to tell apart)."""
    record = ctx.record
    reuse = (record.restore or {}).get("reused_clone") or {}
    anchor, carried = record.anchor, record.carried_anchor
    if not reuse.get("reused") or anchor is None or carried is None or anchor.database != carried.database:
        return None, None
    server, tw = ctx.server, ctx.throwaway()
    found = fingerprint.anchor_id(fingerprint.of_database(server, anchor.database, tw.login,
                                                          "restore diff: the anchor copy read in full"))
    if found == anchor.anchor_id:
        return None, ROLLBACK
    dropped = clone_templates.drop_template(server, reuse["template"],
                                            only_if_run=(reuse.get("gating_packet") or {}).get("run_id"))
    return Finding(rule=RULE, message=(
        f"Template altered outside PostgreSQL; {'discarded' if dropped else 'already gone'}: the clone copied from "
        f"the verified template {reuse['template']} is not the state its gating packet sealed (its anchor copy, "
        f"read in full, fingerprints to {found}; the sealed fingerprint, with this run's owners, is "
        f"{anchor.anchor_id}), though the template's pg_database row was as sealed. Its files were edited, or it "
        "was changed with the server in single-user mode, or its copy was written before fix7 sealed it. Nothing "
        "is judged about the change: rehearse again, and the dump is restored and gated afresh."),
        extra={"template": reuse["template"], "found_anchor_id": found, "carried_anchor_id": anchor.anchor_id,
               "discarded": dropped}), None
