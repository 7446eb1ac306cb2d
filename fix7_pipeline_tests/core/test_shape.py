"""Schema shape gate on a real clone: the reference passes, each drift is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.shape.schema_shape import check_shape
from fix7_pipeline_tests.pg import as_owner, proof

_SHARED = Path("/work/shared/reference/birth_surface.sql")
REFERENCE_SQL = _SHARED if _SHARED.exists() else Path(__file__).parents[2] / "fix7_pipeline/demo/birth_surface.sql"

USERS = ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
REGISTRY = ("10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002",
            "10000000-0000-4000-8000-000000000003")
PROPOSAL = "20000000-0000-4000-8000-000000000001"
HEX = "0123456789abcdef" * 4

SEED_SQL = f"""
insert into public.directus_users (id, first_name, email, status) values
  ('{USERS[0]}', 'Ada', 'ada@example.test', 'active'), ('{USERS[1]}', 'Bo', 'bo@example.test', 'active');
insert into public.directus_settings (id, project_name, project_url) values (1, 'Birth', 'https://birth.example.test');
insert into public.directus_webhooks (id, name, url, actions, collections)
  values (1, 'notify', 'https://hooks.invalid/x', 'create', 'birth_registry');
insert into public.birth_registry (id, object_id, object_type, status, proposal_id, content_hash,
    birth_certificate_hash, born_at, created_at, updated_at, user_created, row_version, previous_status) values
  ('{REGISTRY[0]}', 'obj-1', 'service', 'proposed', '{PROPOSAL}', '{HEX}', null, null,
   '2025-01-01 10:00+00', '2025-01-01 10:00+00', '{USERS[0]}', 1, null),
  ('{REGISTRY[1]}', 'obj-2', 'service', 'approved', '{PROPOSAL}', '{HEX[::-1]}', null, null,
   '2025-01-02 10:00+00', '2025-01-03 10:00+00', '{USERS[0]}', 2, 'proposed'),
  ('{REGISTRY[2]}', 'obj-3', 'service', 'born', '{PROPOSAL}', '{"a" * 64}', '{"b" * 64}', '2025-01-05 10:00+00',
   '2025-01-02 10:00+00', '2025-01-05 10:00+00', '{USERS[1]}', 3, 'approved');
insert into public.os_proposal_approvals (proposal_id, birth_registry_id, approver_id, decision, decided_at,
    approval_hash, comment) values
  ('{PROPOSAL}', '{REGISTRY[1]}', '{USERS[0]}', 'approved', '2025-01-03 09:00+00', '{"c" * 64}', 'looks right'),
  ('{PROPOSAL}', '{REGISTRY[2]}', '{USERS[1]}', 'approved', '2025-01-04 09:00+00', '{"d" * 64}', null);
insert into public.directus_activity (action, "user", "timestamp", collection, item) values
  ('create', '{USERS[0]}', '2025-01-01 10:00+00', 'birth_registry', '{REGISTRY[0]}');
insert into public.directus_revisions (activity, collection, item, data, delta) values
  (1, 'birth_registry', '{REGISTRY[0]}', '{{"status": "proposed"}}', '{{"status": "proposed"}}');
insert into public.system_issues (code, severity, object_id, details, opened_at, resolved_at) values
  ('slow_birth', 'warning', 'obj-3', '{{"minutes": 12}}', '2025-01-04 10:00+00', '2025-01-05 10:00+00');
"""


def make_birth_surface(server, tw, seed: bool = True) -> None:
    """The reference shape (and a handful of valid rows) in a throwaway database, owned by its role."""
    with as_owner(server, tw) as c:
        c.execute(REFERENCE_SQL.read_text())
        if seed:
            c.execute(SEED_SQL)


@pytest.fixture
def clone(server, throwaway):
    make_birth_surface(server, throwaway)
    return throwaway


def test_reference_shape_passes(server, clone):
    with proof(server, clone) as c:
        findings = check_shape(c, load_contract(None))
    assert findings == []


def test_drifted_clone_names_each_drift(server, clone):
    drift = """
      alter table birth_registry drop constraint birth_registry_pkey cascade;
      alter table birth_registry alter column content_hash type varchar(40) using left(content_hash, 40);
      alter table system_issues drop column resolved_at;
      alter table os_proposal_approvals drop constraint os_proposal_approvals_approver_id_fkey;
      alter table directus_users rename constraint directus_users_email_unique to users_email_uq;
      alter table system_issues alter column code drop not null;
      alter table directus_settings alter column project_name set default 'Other';
      alter table birth_registry add column notes text;
      create table audit_extra (id int primary key);
    """
    with as_owner(server, clone) as c:
        c.execute(drift)
        findings = check_shape(c, load_contract(None))
    by_msg = {f.message: f for f in findings}
    errors = {f.message for f in findings if f.severity == "error"}
    assert "birth_registry: primary key birth_registry_pkey missing" in errors
    assert "birth_registry.content_hash: expected character(64), found character varying(40)" in errors
    assert "system_issues.resolved_at: column missing" in errors
    assert "os_proposal_approvals: foreign key os_proposal_approvals_approver_id_fkey missing" in errors
    # the cascade took the registry FK with the primary key: named too
    assert "os_proposal_approvals: foreign key os_proposal_approvals_birth_registry_id_fkey missing" in errors
    assert "system_issues.code: expected NOT NULL, found nullable" in errors
    assert any(m.startswith("directus_settings.project_name: expected default") for m in errors)
    renamed = by_msg["directus_users: unique constraint directus_users_email_unique is named users_email_uq"]
    assert renamed.severity == "note"
    assert by_msg["birth_registry.notes: column not in the contract (text)"].severity == "note"
    assert by_msg["audit_extra: table not in the contract"].severity == "note"
    assert by_msg["birth_registry.content_hash: expected character(64), found character varying(40)"].column == \
        "content_hash"


def test_missing_tables_required_and_optional(server, throwaway):
    contract = load_contract(None)
    contract.tables["directus_flows"].required = False
    with as_owner(server, throwaway) as c:
        c.execute(REFERENCE_SQL.read_text())
        c.execute("drop table directus_operations; drop table directus_flows; drop table system_issues")
        findings = check_shape(c, contract)
    sev = {f.message: f.severity for f in findings}
    assert sev["system_issues: table missing"] == "error"
    assert sev["directus_operations: table missing"] == "error"
    assert sev["directus_flows: optional table absent"] == "note"


def test_changed_check_and_fk_action_are_differences(server, clone):
    with as_owner(server, clone) as c:
        c.execute("""
          alter table system_issues drop constraint system_issues_severity_check;
          alter table system_issues add constraint system_issues_severity_check
            check (severity in ('info', 'warning', 'error'));
          alter table directus_sessions drop constraint directus_sessions_user_foreign;
          alter table directus_sessions add constraint directus_sessions_user_foreign
            foreign key ("user") references directus_users(id);
          drop index birth_registry_status_idx;
        """)
        findings = check_shape(c, load_contract(None))
    errors = [f for f in findings if f.severity == "error"]
    assert {f.rule for f in errors} == {"shape.check", "shape.foreign_key"}
    assert any("system_issues_severity_check differs" in f.message for f in errors)
    assert any("directus_sessions_user_foreign differs" in f.message and "on delete cascade" in f.message
               for f in errors)
    assert [f.message for f in findings if f.severity == "warning"] == [
        "birth_registry: index birth_registry_status_idx missing"]
