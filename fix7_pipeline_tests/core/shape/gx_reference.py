"""The data rules as the GX expectations they were before the one-pass counts (issue 25 item 2), kept as
the reference the counts must agree with, NULLs and edge cases included: GX runs each as its own SQL."""

from __future__ import annotations

import datetime as dt

from fix7_pipeline.core.shape.data_rules import DECISIONS, SEVERITIES, STATUSES
from fix7_pipeline.core.shape.gx_gates import RuleExpectation, import_expectations, run_suite

SHA256_HEX = "^[0-9a-f]{64}$"


def _data_rule_builders(dump_time: dt.datetime) -> dict:
    """Rule name -> (table, expectation factory). GX aliases `{batch}` itself: queries must not alias it."""
    gxe = import_expectations()

    ts = dump_time.astimezone(dt.timezone.utc).isoformat()

    def rows(sql: str):
        return gxe.UnexpectedRowsExpectation(unexpected_rows_query=sql)

    br, ap, rev, iss = "birth_registry", "os_proposal_approvals", "directus_revisions", "system_issues"
    return {
        "content_hash_sha256": (br, lambda: gxe.ExpectColumnValuesToMatchRegex(column="content_hash",
                                                                                regex=SHA256_HEX)),
        "birth_certificate_hash_sha256": (br, lambda: gxe.ExpectColumnValuesToMatchRegex(
            column="birth_certificate_hash", regex=SHA256_HEX)),
        "approval_hash_sha256": (ap, lambda: gxe.ExpectColumnValuesToMatchRegex(column="approval_hash",
                                                                                 regex=SHA256_HEX)),
        "status_valid": (br, lambda: gxe.ExpectColumnValuesToBeInSet(column="status", value_set=STATUSES)),
        "born_has_certificate": (br, lambda: rows(
            "select id from {batch} where (status = 'born') is distinct from "
            "(born_at is not null and birth_certificate_hash is not null) "
            "or (status <> 'born' and (born_at is not null or birth_certificate_hash is not null))")),
        "updated_after_created": (br, lambda: rows("select id from {batch} where updated_at < created_at")),
        "no_future_timestamps": (br, lambda: rows(
            f"select id from {{batch}} where created_at > '{ts}'::timestamptz or updated_at > '{ts}'::timestamptz "
            f"or born_at > '{ts}'::timestamptz")),
        "row_version_positive": (br, lambda: gxe.ExpectColumnValuesToBeBetween(column="row_version", min_value=1)),
        "previous_status_valid": (br, lambda: gxe.ExpectColumnValuesToBeInSet(column="previous_status",
                                                                               value_set=STATUSES)),
        "decision_valid": (ap, lambda: gxe.ExpectColumnValuesToBeInSet(column="decision", value_set=DECISIONS)),
        "one_approval_per_approver": (ap, lambda: gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["proposal_id", "approver_id"])),
        "approval_registry_exists": (ap, lambda: rows(
            "select id from {batch} where not exists "
            "(select 1 from public.birth_registry r where r.id = birth_registry_id)")),
        "approval_approver_exists": (ap, lambda: rows(
            "select id from {batch} where not exists "
            "(select 1 from public.directus_users u where u.id = approver_id)")),
        "revision_registry_exists": (rev, lambda: rows(
            "select id from {batch} where collection = 'birth_registry' and not exists "
            "(select 1 from public.birth_registry r where r.id::text = item)")),
        "severity_valid": (iss, lambda: gxe.ExpectColumnValuesToBeInSet(column="severity", value_set=SEVERITIES)),
        "resolved_after_opened": (iss, lambda: rows("select id from {batch} where resolved_at < opened_at")),
    }


def reference_suite(source, rules: list[str], dump_time: dt.datetime) -> dict:
    """The named rules run as the old GX expectations on their default tables: GX's own value-free summary."""
    builders = _data_rule_builders(dump_time)
    return run_suite(source, "data_rules_reference",
                     [RuleExpectation(r, builders[r][0], builders[r][1]()) for r in rules])


def reference_counts(source, rules: list[str], dump_time: dt.datetime) -> dict[str, int | None]:
    return {e["rule"]: e.get("unexpected_count") for e in reference_suite(source, rules, dump_time)["expectations"]}
