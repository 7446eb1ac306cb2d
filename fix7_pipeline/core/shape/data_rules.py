"""The GX suites a clone must pass: `data_rules` (BIRTH_SURFACE.md's rules table) and `sanitization`.

`data_rules` validates the rules' violating-row counts, counted inside PostgreSQL in one pass per table
(`rule_counts.py`); `sanitization` validates the secret scan's findings in memory (the clone's data is read
once, by the scan). Neither suite's batch holds a value of the clone.

Each expectation carries the operator's rule name (`meta={"rule": ...}`); the contract's
`annotations.data_rules` says which data rules apply, and an unknown rule name fails closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import psycopg
from psycopg import sql

from ..contract.model import Contract
from ..sanitization.rules import MUST_BE_EMPTY, MUST_BE_NULL, families, family_of
from ..shared.errors import EXIT_USAGE, Fix7Error
from ..shared.model import Finding
from .gx_gates import FRAME_TABLE, RuleExpectation, import_expectations, run_frame_suite
from .rule_counts import (RuleCount, at_least, cmp, col, count_violations, exists_in, hex_digest, in_set, lit,
                          rows_where, timestamptz, unique_together)

STATUSES = ["proposed", "approved", "born", "rejected", "retired"]
DECISIONS = ["approved", "rejected", "abstained"]
SEVERITIES = ["info", "warning", "error", "critical"]


def _data_rule_counts(dump_time: dt.datetime) -> dict[str, RuleCount]:
    """Rule name -> how its violating rows are counted (rule_counts.py), on the table it names by default."""
    ts = timestamptz(dump_time.astimezone(dt.timezone.utc).isoformat())
    status, born_at, cert = col("status"), col("born_at"), col("birth_certificate_hash")
    born = cmp(status, "=", lit("born"))
    br, ap, rev, iss = "birth_registry", "os_proposal_approvals", "directus_revisions", "system_issues"
    rules = [
        hex_digest("content_hash_sha256", br, "content_hash", 64),
        hex_digest("birth_certificate_hash_sha256", br, "birth_certificate_hash", 64),
        hex_digest("approval_hash_sha256", ap, "approval_hash", 64),
        in_set("status_valid", br, "status", STATUSES),
        rows_where("born_has_certificate", br, ("status", "born_at", "birth_certificate_hash"), lambda: sql.SQL(
            "({born} IS DISTINCT FROM ({b} IS NOT NULL AND {c} IS NOT NULL) OR ({not_born} AND ({b} IS NOT NULL OR "
            "{c} IS NOT NULL)))").format(born=born, b=born_at, c=cert, not_born=cmp(status, "<>", lit("born")))),
        rows_where("updated_after_created", br, ("updated_at", "created_at"),
                   lambda: cmp(col("updated_at"), "<", col("created_at"))),
        rows_where("no_future_timestamps", br, ("created_at", "updated_at", "born_at"), lambda: sql.SQL("({})").format(
            sql.SQL(" OR ").join(cmp(col(c), ">", ts) for c in ("created_at", "updated_at", "born_at")))),
        at_least("row_version_positive", br, "row_version", 1),
        in_set("previous_status_valid", br, "previous_status", STATUSES),
        in_set("decision_valid", ap, "decision", DECISIONS),
        unique_together("one_approval_per_approver", ap, ("proposal_id", "approver_id")),
        exists_in("approval_registry_exists", ap, "birth_registry_id", ("public", "birth_registry"), "id"),
        exists_in("approval_approver_exists", ap, "approver_id", ("public", "directus_users"), "id"),
        exists_in("revision_registry_exists", rev, "item", ("public", "birth_registry"), "id", ref_as_text=True,
                  where=lambda: cmp(col("collection"), "=", lit("birth_registry"))),
        in_set("severity_valid", iss, "severity", SEVERITIES),
        rows_where("resolved_after_opened", iss, ("resolved_at", "opened_at"),
                   lambda: cmp(col("resolved_at"), "<", col("opened_at"))),
    ]
    return {r.rule: r for r in rules}


KNOWN_DATA_RULES = tuple(_data_rule_counts(dt.datetime.now(dt.timezone.utc)))


def data_rule_counts(contract: Contract, dump_time: dt.datetime) -> list[RuleCount]:
    """The counts behind the rules the contract names, on the tables it names; `dump_time` bounds every
    timestamp. An unknown rule name fails closed."""
    if dump_time.tzinfo is None:
        raise ValueError("dump_time must be timezone-aware")
    known = _data_rule_counts(dump_time)
    unknown = sorted(set(contract.data_rules) - set(known))
    if unknown:
        raise Fix7Error(f"The contract names data rules this version does not know: {', '.join(unknown)}. "
                        f"Known rules: {', '.join(known)}.", EXIT_USAGE, rule="contract")
    return [known[rule].on((spec or {}).get("table", known[rule].table)) for rule, spec in contract.data_rules.items()]


def data_rules_expectations(contract: Contract, dump_time: dt.datetime) -> list[RuleExpectation]:
    """The `data_rules` suite: per rule, GX expects the most violating rows its count found to be 0."""
    gxe = import_expectations()
    return [RuleExpectation(c.rule, c.table, gxe.ExpectColumnMaxToBeBetween(column=c.rule, max_value=0))
            for c in data_rule_counts(contract, dump_time)]


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


def run_data_rules(connect: Callable[[str], psycopg.Connection], contract: Contract, dump_time: dt.datetime, *,
                   jobs: int = 2, server: str = "the rehearsal server") -> dict:
    """The contract's data rules: violating rows counted in one pass per table on `jobs` read-only sessions
    (`connect(purpose)`), then gated by a GX suite over the counts (one row, a column per rule), as the
    sanitization suite gates the scan's findings. A rule that could not be counted fails with the reason."""
    import pandas as pd

    expectations = data_rules_expectations(contract, dump_time)
    counted, not_counted = count_violations(connect, data_rule_counts(contract, dump_time), jobs=jobs, server=server)
    gated = [r for r in expectations if r.rule in counted]
    frame = pd.DataFrame([{r.rule: counted[r.rule] for r in gated}], columns=[r.rule for r in gated], dtype="int64")
    rows = {e["rule"]: e for e in run_frame_suite("data_rules", frame, gated)["expectations"]} if gated else {}
    for r in expectations:
        if r.rule not in rows:
            rows[r.rule] = {"rule": r.rule, "table": r.table, "expectation": type(r.expectation).__name__,
                            "success": False, "error": not_counted.get(r.rule, "not counted")}
    summary = [rows[r.rule] for r in expectations]
    failed = [e for e in summary if not e["success"]]
    return {"suite": "data_rules", "success": bool(summary) and not failed, "evaluated": len(summary),
            "failed": len(failed), "expectations": summary}


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
