"""The GX suites a clone must pass: `data_rules` (BIRTH_SURFACE.md's rules table) and `sanitization`.

Each expectation carries the operator's rule name (`meta={"rule": ...}`); the contract's
`annotations.data_rules` says which data rules apply, and an unknown rule name fails closed.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from psycopg import sql as psql

from .contract import Contract
from .errors import EXIT_USAGE, Fix7Error
from .gx_gates import RuleExpectation, run_suite
from .model import Finding
from .proof_sql import as_text
from .secrets import RULE_FAMILIES, SECRET_HEADER_RULE, SECRET_RULES, scan_plan

SHA256_HEX = "^[0-9a-f]{64}$"
STATUSES = ["proposed", "approved", "born", "rejected", "retired"]
DECISIONS = ["approved", "rejected", "abstained"]
SEVERITIES = ["info", "warning", "error", "critical"]


def _data_rule_builders(dump_time: dt.datetime) -> dict:
    """Rule name -> (table, expectation factory). GX aliases `{batch}` itself: queries must not alias it."""
    import great_expectations.expectations as gxe

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


def _are_literal(pattern: str) -> str:
    """A regex as a dollar-quoted SQL literal with GX's query braces escaped."""
    tag = "$fix7re$"
    if tag in pattern:
        raise ValueError("pattern contains the quoting tag")
    return (tag + pattern + tag).replace("{", "{{").replace("}", "}}")


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sanitization_expectations(conn: psycopg.Connection, contract: Contract) -> list[RuleExpectation]:
    """The `sanitization` suite: must-be-null columns, must-be-empty tables, one query per secret family.

    `conn` reads the clone's catalog to find every text-like column of every table; each family's
    expectation is one UnexpectedRowsExpectation whose query tests them all and returns no values.
    """
    import great_expectations.expectations as gxe

    plans = scan_plan(conn, contract)
    present = {p.contract_name for p in plans} | {
        r[0] if r[1] == "public" else f"{r[1]}.{r[0]}" for r in conn.execute(
            "select c.relname, n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind = 'r'")}
    out: list[RuleExpectation] = []
    for table, cols in contract.must_be_null.items():
        if table in present:
            out += [RuleExpectation(f"must_be_null:{table}.{c}", table, gxe.ExpectColumnValuesToBeNull(column=c))
                    for c in cols]
    for table in contract.must_be_empty:
        if table in present:
            out.append(RuleExpectation(f"must_be_empty:{table}", table, gxe.ExpectTableRowCountToEqual(value=0)))
    scanned = [p for p in plans if p.scan_columns]
    if not scanned:
        return out
    anchor = scanned[0]
    for rule in (*SECRET_RULES, SECRET_HEADER_RULE):
        parts = []
        for p in scanned:
            cols = p.header_columns if rule is SECRET_HEADER_RULE else p.scan_columns
            if not cols:
                continue
            test = " or ".join(f"{as_text(psql.Identifier(c), p.types.get(c)).as_string(None)} {rule.operator} "
                               f"{_are_literal(rule.pattern)}" for c in cols)
            src = "{batch}" if p is anchor else f"only {_qi(p.schema)}.{_qi(p.name)}"
            parts.append(f"select 1 as hit from {src} where {test}")
        if not parts:
            continue
        if not any("{batch}" in q for q in parts):
            parts.append("select 1 as hit from {batch} where false")
        out.append(RuleExpectation(f"secret:{rule.name}", anchor.contract_name,
                                   gxe.UnexpectedRowsExpectation(unexpected_rows_query=" union all ".join(parts))))
    return out


def run_data_rules(url: str, contract: Contract, dump_time: dt.datetime) -> dict:
    return run_suite(url, "data_rules", data_rules_expectations(contract, dump_time))


def run_sanitization(url: str, conn: psycopg.Connection, contract: Contract) -> dict:
    return run_suite(url, "sanitization", sanitization_expectations(conn, contract))


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
        # A secret family's expectation spans every table; the secret scan's findings name where it matched.
        table = None if rule.startswith("secret:") else e["table"]
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


__all__ = ["KNOWN_DATA_RULES", "RULE_FAMILIES", "data_rules_expectations", "sanitization_expectations",
           "run_data_rules", "run_sanitization", "data_rules_findings"]
