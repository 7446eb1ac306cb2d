"""What the seed document (../shared/seed/) asks of a production-shaped clone, as clone-provenance.json states it."""

SEED_MUST_CONTAIN = [
    "birth_registry table shape matching production (columns, types, PK)",
    "registry-row expectations (object id, status fields)",
    "approval fields (e.g. os_proposal_approvals) as modeled in production",
    "Directus-related expected fields IF the birth surface writes Directus rows",
    "system_issues-related expected fields IF modeled",
    "required IDs / hashes / timestamps used by the birth surface",
    "rollback fields / snapshot anchor needed to prove restore",
]
SEED_MUST_NOT_CONTAIN = [
    "production secrets / credentials / connection strings to live hosts",
    "any pointer that resolves to a live production host",
]
LIVE_PRODUCTION_ROW = {
    "candidate_clone": "live production PG / Directus / VPS",
    "source": "production",
    "production_shaped": True,
    "isolated": False,
    "contains_secrets": True,
    "allowed": False,
    "present": "n/a",
    "note": "FORBIDDEN. Not contacted: every connection of this run went through the host guard to the "
            "rehearsal server only (see rehearsal-report.json `connections`).",
}
