"""The GX suites a clone must pass: `data_rules` (BIRTH_SURFACE.md's rules table) and `sanitization`.

`data_rules` runs in PostgreSQL; `sanitization` validates the secret scan's findings in memory (the
clone's data is read once, by the scan).

Each expectation carries the operator's rule name (`meta={"rule": ...}`); the contract's
`annotations.data_rules` says which data rules apply, and an unknown rule name fails closed.
"""

from __future__ import annotations

import datetime as dt

from ..contract.model import Contract
from ..sanitization.rules import MUST_BE_EMPTY, MUST_BE_NULL, families, family_of
from ..shared.errors import EXIT_USAGE, Fix7Error
from ..shared.model import Finding
from .gx_gates import FRAME_TABLE, RuleExpectation, import_expectations, run_frame_suite, run_suite

SHA256_HEX = "^[0-9a-f]{64}$"
STATUSES = ["proposed", "approved", "born", "rejected", "retired"]
DECISIONS = ["approved", "rejected", "abstained"]
SEVERITIES = ["info", "warning", "error", "critical"]


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


KNOWN_DATA_RULES = tuple(_data_rule_builders(dt.datetime.now(dt.timezone.utc)))


def data_rules_expectations(contract: Contract, dump_time: dt.datetime) -> list[RuleExpectation]:
    """The `data_rules` suite for the rules the contract names; `dump_time` bounds every timestamp."""
    if dump_time.tzinfo is None:
        raise ValueError("dump_time must be timezone-aware")
    builders = _data_rule_builders(dump_time)
    unknown = sorted(set(contract.data_rules) - set(builders))
    if unknown:
        raise Fix7Error(f"The contract names data rules this version does not know: {', '.join(unknown)}. "
                        f"Known rules: {', '.join(builders)}.", EXIT_USAGE, rule="contract")
    out = []
    for rule, spec in contract.data_rules.items():
        table, build = builders[rule]
        out.append(RuleExpectation(rule, (spec or {}).get("table", table), build()))
    return out


FINDING_COLUMNS = ("gate", "rule", "family", "source", "table", "column", "place")


def gate_of(f: Finding) -> str:
    """The suite expectation a finding fails: its contract column or table, else its rule family."""
    if f.rule == MUST_BE_NULL:
        return f"must_be_null:{f.table}.{f.column}"
    if f.rule == MUST_BE_EMPTY:
        return f"must_be_empty:{f.table}"
    return "secret:" + (f.extra.get("family") or family_of(f.rule))


def findings_frame(findings: list[Finding]):
    """The scan's findings as the suite's batch: one row per finding, places and rules only, no value."""
    import pandas as pd

    rows = [{"gate": gate_of(f), "rule": f.rule, "family": f.extra.get("family") or family_of(f.rule),
             "source": f.extra.get("source") or "", "table": f.table or "", "column": f.column or "",
             "place": f.extra.get("place") or ""} for f in findings]
    return pd.DataFrame(rows, columns=list(FINDING_COLUMNS), dtype=object)


def sanitization_expectations(findings: list[Finding], contract: Contract,
                              present_tables: set[str]) -> list[RuleExpectation]:
    """The `sanitization` suite over the scan's findings: one expectation per rule family, one per
    contracted must-be-NULL column and must-be-empty table present in the clone, and one that every finding
    belongs to one of those (so no finding can pass ungated). No rule runs over the clone's data again."""
    gxe = import_expectations()

    def none_of(gate: str):
        return gxe.ExpectColumnValuesToNotBeInSet(column="gate", value_set=[gate])

    gates: list[str] = []
    for family in families():
        if family in (MUST_BE_NULL, MUST_BE_EMPTY):
            continue
        gates.append(f"secret:{family}")
    for table, cols in contract.must_be_null.items():
        if table in present_tables:
            gates += [f"must_be_null:{table}.{c}" for c in cols]
    for table in contract.must_be_empty:
        if table in present_tables:
            gates.append(f"must_be_empty:{table}")
    out = [RuleExpectation(g, FRAME_TABLE, none_of(g)) for g in gates]
    out.append(RuleExpectation("every_finding_gated", FRAME_TABLE,
                               gxe.ExpectColumnValuesToBeInSet(column="gate", value_set=gates)))
    return out


def run_data_rules(source, contract: Contract, dump_time: dt.datetime) -> dict:
    """The contract's data rules as a GX suite on `source` (server.SqlAlchemySource)."""
    return run_suite(source, "data_rules", data_rules_expectations(contract, dump_time))


def run_sanitization(findings: list[Finding], contract: Contract, present_tables: set[str]) -> dict:
    """The sanitization suite's summary (counts only) over `findings`."""
    return run_frame_suite("sanitization", findings_frame(findings),
                           sanitization_expectations(findings, contract, present_tables))


def data_rules_findings(summary: dict, *, declared: bool = True) -> list[Finding]:
    """One error finding per failed expectation of a suite summary (data_rules or sanitization).

    A suite that evaluated nothing fails (a gate that checks nothing) when rules were `declared`; a contract
    that declares no data rules gets one note instead, and its shape gate alone decides.
    """
    out = []
    suite = summary.get("suite", "data_rules")
    for e in summary.get("expectations", []):
        if e.get("success"):
            continue
        count = e.get("unexpected_count")
        detail = e.get("error") or (f"{count} unexpected row(s)" if count is not None else "failed")
        rule = e["rule"]
        column = None
        if rule.startswith("must_be_null:"):
            column = rule.rsplit(".", 1)[-1]
        # The sanitization suite validates the scan's findings, which name where each match is.
        table = None if rule.startswith(("secret:", "every_finding")) else e["table"]
        if rule.startswith(("must_be_null:", "must_be_empty:")):
            table = rule.split(":", 1)[1].rsplit(".", 1)[0] if rule.startswith("must_be_null:") else rule.split(":", 1)[1]
        out.append(Finding(f"{suite}.{rule}", f"{table or 'all tables'}: {rule} failed ({detail})", table=table,
                           column=column, extra={k: v for k, v in e.items()
                                                 if k in ("expectation", "unexpected_count", "error")}))
    if not summary.get("expectations"):
        if declared:
            out.append(Finding(f"{suite}.empty", f"suite {suite} evaluated nothing; a gate that checks nothing fails"))
        else:
            out.append(Finding(f"{suite}.none_declared", "no data rules declared: the contract names none, so "
                                                         "only the shape was checked", severity="note"))
    return out


__all__ = ["KNOWN_DATA_RULES", "data_rules_expectations", "sanitization_expectations", "findings_frame",
           "run_data_rules", "run_sanitization", "data_rules_findings"]
