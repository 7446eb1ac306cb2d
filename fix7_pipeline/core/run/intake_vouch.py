"""Intake's read-through of a dump's data, vouched for by a verified clone template of the same bytes (issue 25).

Intake reads every data block of an archive through, so a truncated or damaged one is refused before anything
is restored. A verified clone template of the same dump was gated by a run that restored those very bytes (its
restore checked them against the sha256 it hashed; pg_restore read every block) and sealed its packet. When such a
template is on the server, with fix7's code and rule set unchanged, and its gating packet holds in the audit chain,
intake hashes the dump (the sha256 is the key, and always computed), lists its table of contents, and skips the
read-through, naming the packet that vouched for it. No template, templates off or --fresh-clone: the read-through
runs beside the hash, as ever. The restore, if one runs, hashes the archive again before pg_restore reads it.
"""

from __future__ import annotations

from collections.abc import Callable

from . import clone_template_key, clone_templates

READ_THROUGH = "every data block read through at intake"


class Voucher:
    """`for_size(bytes)` for core.dumps.identify.inspect_dump; `vouched_by` what vouched, once it did."""

    def __init__(self, server, request):
        self.server, self.request = server, request
        self.vouched_by: dict | None = None

    def for_size(self, size: int) -> Callable[[str], bool] | None:
        """A check of the dump's sha256, or None (the read-through then runs beside the hash, not after it) when
        no sound template of a dump of this size, this fix7 and this rule set is on the server."""
        if not clone_templates.enabled() or self.request.fresh_clone:
            return None
        try:
            found = clone_templates.list_templates(self.server)
        except Exception:  # noqa: BLE001 - the read-through runs; the server's fault is told where it is opened
            return None
        candidates = [t for t in found if t.sound and t.facts.get("dump_bytes") == size
                      and (t.facts.get("parts") or {}).get("fix7_version") == clone_template_key.fix7_version()
                      and (t.facts.get("parts") or {}).get("rule_set") == clone_template_key.rule_set_version()]
        return (lambda sha: self._vouch(candidates, sha)) if candidates else None

    def _vouch(self, candidates, sha: str) -> bool:
        for t in candidates:
            if (t.facts.get("parts") or {}).get("dump_sha256") != sha:
                continue
            gating, _, _ = clone_templates.gating_evidence(t)
            if gating is not None:
                self.vouched_by = {"template": t.name, "run_id": gating["run_id"],
                                   "packet_sha256": gating["packet_sha256"], "chain_seq": gating["chain_seq"]}
                return True
        return False

    def as_packet(self) -> dict:
        if self.vouched_by is None:
            return {"read_through": True, "how": READ_THROUGH}
        return {"read_through": False, "vouched_by": self.vouched_by,
                "how": f"not read through again: the same bytes (sha256) were restored and gated by run "
                       f"{self.vouched_by['run_id']}, whose sealed packet {self.vouched_by['packet_sha256'][:12]} "
                       f"(audit chain #{self.vouched_by['chain_seq']}) keeps the template {self.vouched_by['template']}"}
