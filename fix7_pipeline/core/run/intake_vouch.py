"""Where a rehearsal's dump data is read: by the restore, or by the restore of the run that gated its template.

Intake hashes a custom archive and lists its table of contents; it does not read the data blocks through. The
restore does: pg_restore reads each block it restores, and a truncated or damaged one stops the restore as the
dump's fault (rule dump_truncated, core/clone/restore_failures.py), with nothing kept. Reading every block at intake
as well was a second decompression of the whole archive before the restore made its own (2.2 s of a 1M-row first
rehearsal, 18 s at 10M). Directory and tar archives are still read through at intake (core/dumps/identify.py).

A rehearsal that reuses a verified clone template restores nothing: its data was read by the restore of the run
that gated the template, whose sealed packet, when it holds in the audit chain, vouches for these very bytes (the
same sha256). Intake names that packet, and then knows the run will not restore or gate (so the gates' library is
not loaded for it: core/run/preload.py). Whether the template is in the end reused is the restore stage's decision.
"""

from __future__ import annotations

from ..dumps.formats import CUSTOM
from . import clone_template_key, clone_templates

READ_THROUGH = "every data block read through at intake"
READ_BY_RESTORE = ("not read through at intake: pg_restore reads each data block as it restores it, and a "
                   "truncated or damaged block stops the restore as the dump's fault (dump_truncated), nothing kept")


class Voucher:
    """`check(bytes, sha256)` after intake hashed the dump; then `vouched_by` is what vouched (for `data_read`)."""

    def __init__(self, server, request):
        self.server, self.request = server, request
        self.vouched_by: dict | None = None

    def check(self, size: int, sha: str) -> bool:
        """Whether a sound template of these bytes, this fix7 and this rule set is on the server and the sealed
        packet that gated it holds."""
        if not clone_templates.enabled() or self.request.fresh_clone:
            return False
        try:
            found = clone_templates.list_templates(self.server)
        except Exception:  # noqa: BLE001 - the run restores; the server's fault is told where it is opened
            return False
        for t in found:
            parts = t.facts.get("parts") or {}
            if not (t.sound and t.facts.get("dump_bytes") == size and parts.get("dump_sha256") == sha
                    and parts.get("fix7_version") == clone_template_key.fix7_version()
                    and parts.get("rule_set") == clone_template_key.rule_set_version()):
                continue
            gating, _, _ = clone_templates.gating_evidence(t)
            if gating is not None:
                self.vouched_by = {"template": t.name, "run_id": gating["run_id"],
                                   "packet_sha256": gating["packet_sha256"], "chain_seq": gating["chain_seq"]}
                return True
        return False


def data_read(dump_format: str, vouched_by: dict | None) -> dict:
    """The packet's `clone.data`: which restore read the dump's data blocks (`vouched_by`: Voucher's, or None)."""
    if dump_format != CUSTOM:
        return {"read_through": True, "how": READ_THROUGH}
    if vouched_by is None:
        return {"read_through": False, "read_by": "restore", "how": READ_BY_RESTORE}
    return {"read_through": False, "read_by": "the gating run's restore", "vouched_by": vouched_by,
            "how": f"not read through: the same bytes (sha256) were restored and gated by run "
                   f"{vouched_by['run_id']}, whose sealed packet {vouched_by['packet_sha256'][:12]} "
                   f"(audit chain #{vouched_by['chain_seq']}) keeps the template {vouched_by['template']}"
                   "; if this run restores after all, its pg_restore reads every block it restores"}
