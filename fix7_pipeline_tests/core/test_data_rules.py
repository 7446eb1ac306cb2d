"""GX data_rules and sanitization suites on a real clone: pass on valid data, fail with counts on violations."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from psycopg.types.json import Jsonb

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.shape.data_rules import (KNOWN_DATA_RULES, data_rules_expectations, data_rules_findings,
                                                 run_data_rules, run_sanitization)
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline_tests.core.test_shape import PROPOSAL, REGISTRY, USERS, make_birth_surface
from fix7_pipeline_tests.pg import as_owner

DUMP_TIME = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def clone(server, throwaway):
    make_birth_surface(server, throwaway)
    return throwaway


def _url(server, tw):
    """The sessions the data rules count on: the clone's own least-privileged login, read-only."""
    return lambda purpose: server.connect(tw.database, tw.login, purpose=purpose)


def test_default_contract_names_every_known_rule():
    assert set(load_contract(None).data_rules) == set(KNOWN_DATA_RULES)


def test_no_declared_rules_is_a_note_and_an_empty_declared_suite_fails():
    """Data rules are optional: none declared is one note; declared rules that evaluate nothing still fail."""
    empty = {"suite": "data_rules", "expectations": []}
    note = data_rules_findings(empty, declared=False)
    assert [(f.rule, f.severity) for f in note] == [("data_rules.none_declared", "note")]
    assert "no data rules declared" in note[0].message
    failed = data_rules_findings(empty)
    assert [(f.rule, f.severity) for f in failed] == [("data_rules.empty", "error")]
    assert "evaluated nothing" in failed[0].message


def test_data_rules_pass_on_valid_data(server, clone):
    summary = run_data_rules(_url(server, clone), load_contract(None), DUMP_TIME)
    assert summary["success"], [e for e in summary["expectations"] if not e["success"]]
    assert summary["evaluated"] == len(KNOWN_DATA_RULES)
    assert data_rules_findings(summary) == []


def test_data_rules_fail_with_counts(server, clone):
    with as_owner(server, clone) as c:
        c.execute("alter table birth_registry drop constraint birth_registry_status_check")
        c.execute("alter table os_proposal_approvals drop constraint os_proposal_approvals_decision_check, "
                  "drop constraint os_proposal_approvals_proposal_id_approver_id_key, "
                  "drop constraint os_proposal_approvals_birth_registry_id_fkey")
        c.execute("alter table system_issues drop constraint system_issues_severity_check")
        c.execute(f"update birth_registry set content_hash = upper(content_hash), status = 'hatched', "
                  f"row_version = 0, previous_status = 'limbo' where id = '{REGISTRY[0]}'")
        c.execute(f"update birth_registry set born_at = null, updated_at = created_at - interval '1 day' "
                  f"where id = '{REGISTRY[2]}'")
        c.execute(f"update birth_registry set updated_at = '2031-01-01' where id = '{REGISTRY[1]}'")
        c.execute(f"""insert into os_proposal_approvals (proposal_id, birth_registry_id, approver_id, decision,
                      decided_at, approval_hash) values
                      ('{PROPOSAL}', '{REGISTRY[1]}', '{USERS[0]}', 'maybe', now(), 'nothex'),
                      ('{PROPOSAL}', '99999999-0000-4000-8000-000000000000', '{USERS[1]}', 'approved', now(),
                       '{"e" * 64}')""")
        c.execute("insert into directus_activity (id, action, collection, item) values (50, 'update', 'x', 'y')")
        c.execute("insert into directus_revisions (activity, collection, item) values "
                  "(50, 'birth_registry', '99999999-0000-4000-8000-00000000dead')")
        c.execute("insert into system_issues (code, severity, opened_at, resolved_at) "
                  "values ('x', 'catastrophic', '2025-01-02', '2025-01-01')")
    summary = run_data_rules(_url(server, clone), load_contract(None), DUMP_TIME)
    got = {e["rule"]: e for e in summary["expectations"]}
    assert not summary["success"]
    failed = {r: e.get("unexpected_count") for r, e in got.items() if not e["success"]}
    assert failed == {
        "content_hash_sha256": 1, "status_valid": 1, "row_version_positive": 1, "previous_status_valid": 1,
        "born_has_certificate": 1, "updated_after_created": 1, "no_future_timestamps": 1,
        "approval_hash_sha256": 1, "decision_valid": 1, "one_approval_per_approver": 4,
        "approval_registry_exists": 1, "revision_registry_exists": 1, "severity_valid": 1,
        "resolved_after_opened": 1}
    assert got["approval_approver_exists"]["success"] and got["birth_certificate_hash_sha256"]["success"]
    findings = data_rules_findings(summary)
    assert {f.rule for f in findings} == {f"data_rules.{r}" for r in failed}
    f = next(f for f in findings if f.rule == "data_rules.one_approval_per_approver")
    assert f.extra["unexpected_count"] == 4 and f.table == "os_proposal_approvals"


def test_unknown_rule_fails_closed():
    contract = load_contract(None)
    contract.annotations["data_rules"]["teleport_ok"] = {"table": "birth_registry"}
    with pytest.raises(Fix7Error):
        data_rules_expectations(contract, DUMP_TIME)


PLANTED = "ghp_" + "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6"
PLANTED_HASH = "$2b$12$" + "R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"


def _scan(server, tw):
    from fix7_pipeline.core.sanitization.secrets import scan_secrets

    return scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"), tw.database,
                        load_contract(None), "salt-gx")


def test_sanitization_suite_gates_the_scan_findings_and_shows_no_values(server, clone):
    contract = load_contract(None)
    clean = _scan(server, clone)
    summary = run_sanitization(clean, contract, clean.present_tables)
    assert summary["success"] and summary["evaluated"] == len(summary["expectations"]) >= 10
    assert {e["rule"] for e in summary["expectations"]} >= {
        "secret:kingfisher", "secret:fix7.password-hash", "secret:fix7.secret-assignment",
        "secret:fix7.connection-string-password", "secret:fix7.secret-header", "secret:unreadable",
        "must_be_null:directus_users.password", "must_be_empty:directus_sessions", "every_finding_gated"}
    with as_owner(server, clone) as c:
        c.execute("update directus_users set password = %s where id = %s", (PLANTED_HASH, USERS[0]))
        c.execute("insert into directus_sessions (token, expires) values ('tok-zzzzzzzzzzzz', now())")
        c.execute("create table scratch (id int primary key, body jsonb)")
        c.execute("insert into scratch values (1, %s)", (Jsonb({"gh": PLANTED}),))
        c.execute("update system_issues set details = %s", (Jsonb({"note": f"key {PLANTED}"}),))
    findings = _scan(server, clone)
    summary = run_sanitization(findings, contract, findings.present_tables)
    failed = {e["rule"]: e.get("unexpected_count") for e in summary["expectations"] if not e["success"]}
    assert failed == {"must_be_null:directus_users.password": 1, "must_be_empty:directus_sessions": 1,
                      "secret:kingfisher": 2, "secret:fix7.password-hash": 1}
    text = json.dumps(summary) + str(data_rules_findings(summary))
    for value in (PLANTED, PLANTED_HASH, "tok-zzzzzzzzzzzz"):
        assert value not in text
        assert not [value[i:i + 8] for i in range(len(value) - 7) if value[i:i + 8] in text]


def test_a_finding_no_expectation_gates_fails_the_suite():
    """The suite's last expectation: every finding belongs to a gated family, so none can pass unnoticed."""
    from fix7_pipeline.core.shared.model import Finding

    stray = Finding("made.up", "x", extra={"family": "made.up", "source": "fix7"})
    summary = run_sanitization([stray], load_contract(None), set())
    failed = {e["rule"]: e.get("unexpected_count") for e in summary["expectations"] if not e["success"]}
    assert failed == {"every_finding_gated": 1}
    assert [f.rule for f in data_rules_findings(summary)] == ["sanitization.every_finding_gated"]
