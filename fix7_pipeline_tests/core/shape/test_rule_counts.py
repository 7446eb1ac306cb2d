"""The data rules counted in one pass per table: every rule still fails on its violating row, with the same
count the old per-rule GX expectation gave (NULLs and edge cases included), and no object of the dump is used."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.shape.data_rules import KNOWN_DATA_RULES, data_rule_counts, run_data_rules
from fix7_pipeline.core.shape.rule_counts import count_violations, statements
from fix7_pipeline_tests.core.shape.gx_reference import reference_counts
from fix7_pipeline_tests.core.test_shape import PROPOSAL, REGISTRY, USERS, make_birth_surface
from fix7_pipeline_tests.pg import as_owner

DUMP_TIME = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
TABLES = ("birth_registry", "os_proposal_approvals", "directus_revisions", "system_issues")
NULLABLE = {"birth_registry": ("status", "content_hash", "created_at", "updated_at", "row_version"),
            "os_proposal_approvals": ("proposal_id", "birth_registry_id", "approver_id", "decision", "approval_hash"),
            "directus_revisions": ("collection", "item"), "system_issues": ("severity", "opened_at")}
HEX = "0123456789abcdef" * 4
NOBODY = "99999999-0000-4000-8000-000000000000"


def _unconstrained(c) -> None:
    """The birth surface with no check, unique or foreign key left, and the rules' columns nullable: a dump
    whose data breaks every rule, and whose NULLs test how each rule treats them."""
    c.execute("""do $$ declare r record; begin
        for r in select conrelid::regclass as t, conname from pg_constraint
                 where conrelid in ('public.birth_registry'::regclass, 'public.os_proposal_approvals'::regclass,
                                    'public.directus_revisions'::regclass, 'public.system_issues'::regclass)
                   and contype in ('c', 'u', 'f') loop
            execute format('alter table %s drop constraint if exists %I cascade', r.t, r.conname);
        end loop; end $$""")
    for table, cols in NULLABLE.items():
        c.execute(f"alter table public.{table} " + ", ".join(f"alter column {x} drop not null" for x in cols))
    # text, not character(64): a value of hex digits only may then be shorter or longer than 64
    c.execute("alter table public.os_proposal_approvals alter column approval_hash type text")


def _violate(c) -> None:
    """At least one violating row per rule, and rows each rule must not count (NULLs it ignores)."""
    r0, r1, r2 = REGISTRY
    c.execute(f"""
        update public.birth_registry set content_hash = upper(content_hash), status = 'hatched', row_version = 0,
               previous_status = 'limbo' where id = '{r0}';
        update public.birth_registry set born_at = null, updated_at = created_at - interval '1 day' where id = '{r2}';
        update public.birth_registry set updated_at = '2031-01-01' where id = '{r1}';
        insert into public.birth_registry (id, object_id, object_type, status, proposal_id, content_hash,
            birth_certificate_hash, born_at, created_at, updated_at, row_version, previous_status) values
          -- NULLs the column rules ignore; a NULL status is still no 'born' with a certificate
          ('30000000-0000-4000-8000-000000000001', 'n1', 's', null, '{PROPOSAL}', null, null, null, null, null,
           null, null),
          -- a short hash (char(64) pads it), one with a newline, one with a non-ASCII letter
          ('30000000-0000-4000-8000-000000000002', 'n2', 's', 'proposed', '{PROPOSAL}', '{HEX[:63]}', null, null,
           '2025-01-01', '2025-01-01', 1, null),
          ('30000000-0000-4000-8000-000000000003', 'n3', 's', 'born', '{PROPOSAL}', '{HEX[:63]}' || chr(10),
           '{"é" + HEX[:63]}', '2025-02-01', '2025-01-01', '2025-02-01', 1, 'approved');
        insert into public.os_proposal_approvals (proposal_id, birth_registry_id, approver_id, decision, decided_at,
            approval_hash) values
          ('{PROPOSAL}', '{r1}', '{USERS[0]}', 'maybe', now(), 'nothex'),
          ('{PROPOSAL}', '{NOBODY}', '{USERS[1]}', 'approved', now(), '{"e" * 64}'),
          -- a key with a NULL part twice: GX's uniqueness never counts it; a NULL reference is missing
          ('{PROPOSAL}', '{r0}', null, null, now(), null),
          ('{PROPOSAL}', null, null, 'approved', now(), '{"f" * 64}'),
          (null, '{r0}', '{USERS[1]}', 'approved', now(), '{"f" * 64}'),
          (null, '{r0}', '{USERS[1]}', 'approved', now(), '{"f" * 64}'),
          -- hex digits only, one short and one long; and 64 of them with a trailing space
          ('{PROPOSAL}', '{r1}', '{USERS[1]}', 'abstained', now(), '{HEX[:63]}'),
          ('{PROPOSAL}', '{r2}', '{USERS[1]}', 'abstained', now(), '{HEX}0'),
          ('{PROPOSAL}', '{r2}', '{USERS[0]}', 'abstained', now(), '{HEX} ');
        insert into public.directus_activity (id, action, collection, item) values (50, 'update', 'x', 'y');
        insert into public.directus_revisions (activity, collection, item) values
          (50, 'birth_registry', '99999999-0000-4000-8000-00000000dead'),
          (50, 'birth_registry', '{{{r0}}}'),
          (50, 'birth_registry', null), (50, null, 'nothing'), (50, 'other', 'nothing');
        insert into public.system_issues (code, severity, opened_at, resolved_at) values
          ('x', 'catastrophic', '2025-01-02', '2025-01-01'), ('y', null, null, '2025-01-01'),
          ('z', 'info', '2025-01-02', null);""")


@pytest.fixture
def violated(server, throwaway):
    make_birth_surface(server, throwaway)
    with as_owner(server, throwaway) as c:
        _unconstrained(c)
        _violate(c)
    return throwaway


def _connect(server, tw, options: str | None = None):
    return lambda purpose: server.connect(tw.database, tw.login, purpose=purpose, options=options)


def _reference(server, tw) -> dict:
    return reference_counts(server.sqlalchemy_source(tw.database, tw.login, "gx reference"), list(KNOWN_DATA_RULES),
                            DUMP_TIME)


def test_each_table_is_read_by_one_scan_for_its_row_rules():
    """The eight rules of birth_registry are one statement; os_proposal_approvals' two row rules one scan, its
    uniqueness rule a grouped count and its two existence rules anti-joins."""
    sts = statements(data_rule_counts(load_contract(None), DUMP_TIME))
    by_table = {}
    for s in sts:
        by_table.setdefault(s.table, []).append(s.rules)
    assert by_table["birth_registry"] == [("content_hash_sha256", "birth_certificate_hash_sha256", "status_valid",
                                           "born_has_certificate", "updated_after_created", "no_future_timestamps",
                                           "row_version_positive", "previous_status_valid")]
    assert by_table["os_proposal_approvals"] == [("approval_hash_sha256", "decision_valid"),
                                                  ("one_approval_per_approver",), ("approval_registry_exists",),
                                                  ("approval_approver_exists",)]
    assert sorted(r for s in sts for r in s.rules) == sorted(KNOWN_DATA_RULES)


def test_every_rule_fails_on_its_row_with_the_count_gx_gave(server, violated):
    """The one-pass counts equal the old per-rule GX expectations' on rows built to break every rule, NULLs
    included; every rule has at least one violating row, and GX fails each of them."""
    summary = run_data_rules(_connect(server, violated), load_contract(None), DUMP_TIME, jobs=2)
    got = {e["rule"]: e for e in summary["expectations"]}
    assert set(got) == set(KNOWN_DATA_RULES) and not summary["success"]
    counts = {r: e.get("unexpected_count") for r, e in got.items()}
    assert counts == _reference(server, violated)
    assert all(not e["success"] and e["unexpected_count"] > 0 for e in got.values()), counts
    assert {e["expectation"] for e in got.values()} == {"ExpectColumnMaxToBeBetween"}
    # (proposal, user 0) three times, (proposal, user 1) four; the pairs with a NULL part, twice each too,
    # are no duplicates to GX
    assert counts["one_approval_per_approver"] == 7
    assert counts["approval_approver_exists"] == 2 and counts["approval_registry_exists"] == 2  # NULLs missing
    assert counts["approval_hash_sha256"] == 4  # "nothex", 63 and 65 digits, 64 and a space (the NULL ignored)
    assert counts["revision_registry_exists"] == 3  # unknown id, the id in braces (text compared), NULL
    text = json.dumps(summary)
    assert "hatched" not in text and "limbo" not in text and "catastrophic" not in text


def test_one_session_counts_what_two_do(server, violated):
    counts = data_rule_counts(load_contract(None), DUMP_TIME)
    assert count_violations(_connect(server, violated), counts, jobs=1) == \
        count_violations(_connect(server, violated), counts, jobs=2)


_SHADOWED = (("~", "character", "text", "true"), ("=", "text", "text", "true"), ("=", "uuid", "uuid", "true"),
             ("<", "timestamptz", "timestamptz", "false"), (">", "timestamptz", "timestamptz", "false"),
             (">=", "integer", "integer", "true"), (">", "bigint", "integer", "false"))
SHADOWS = "".join(
    f"create function public.fix7_op{i}(a {left}, b {right}) returns boolean language sql immutable as "
    f"'select {answer}';\n"
    f"create operator public.{op} (leftarg = {left}, rightarg = {right}, function = public.fix7_op{i});\n"
    for i, (op, left, right, answer) in enumerate(_SHADOWED)) + """
create function public.length(character) returns integer language sql immutable as 'select 64';
create function public.length(text) returns integer language sql immutable as 'select 64';
create function public.to_regclass(text) returns regclass language sql as 'select null::regclass';
"""


def test_operators_and_functions_the_dump_shadows_are_never_used(server, violated):
    """A dump that defines `~`, `=`, `<`, `>`, `>=`, length and count in public, in a session whose search_path
    the dump got to put first: every rule still counts what pg_catalog's operators count."""
    expected = _reference(server, violated)
    with as_owner(server, violated) as c:
        c.execute(SHADOWS)
    steered = _connect(server, violated, options="-c search_path=public,pg_catalog")
    counted, errors = count_violations(steered, data_rule_counts(load_contract(None), DUMP_TIME))
    assert errors == {} and counted == expected


def test_a_column_of_a_type_the_dump_defined_is_not_counted_and_fails(server, violated):
    """A rule column of the dump's own type (whose implicit cast to text runs the dump's function) is refused
    before any statement runs: the rule fails with the reason, never passes on what the dump's cast says."""
    with as_owner(server, violated) as c:
        c.execute("""
            create type public.hexish as (v text);
            create function public.hexish_text(public.hexish) returns text language sql immutable as
              'select repeat(''a'', 64)';
            create cast (public.hexish as text) with function public.hexish_text(public.hexish) as implicit;
            alter table public.birth_registry alter column content_hash type public.hexish
              using row(content_hash::text)::public.hexish;""")
    summary = run_data_rules(_connect(server, violated), load_contract(None), DUMP_TIME)
    got = {e["rule"]: e for e in summary["expectations"]}
    assert not got["content_hash_sha256"]["success"]
    assert "type the dump defined" in got["content_hash_sha256"]["error"]
    assert "unexpected_count" not in got["content_hash_sha256"]
    assert got["status_valid"]["unexpected_count"] == 1  # the table's other rules still counted


def test_a_missing_column_fails_its_rule_with_the_reason(server, violated):
    with as_owner(server, violated) as c:
        c.execute("alter table public.system_issues drop column resolved_at")
    summary = run_data_rules(_connect(server, violated), load_contract(None), DUMP_TIME)
    got = {e["rule"]: e for e in summary["expectations"]}
    assert not got["resolved_after_opened"]["success"]
    assert got["resolved_after_opened"]["error"] == "a column it reads is not in system_issues"
    assert got["severity_valid"]["unexpected_count"] == 1


def test_a_session_the_server_ends_is_a_server_fault_not_a_verdict(server, violated):
    """The first session is ended by the server as the second opens: the pass raises the server's fault,
    and no rule is reported passed or failed on the clone's account."""
    from fix7_pipeline.core.shared.errors import ServerFault

    opened = []

    def connect(purpose):
        conn = server.connect(violated.database, violated.login, purpose=purpose)
        if opened:
            with server.connect(purpose="test: end a session") as admin:
                admin.execute("select pg_terminate_backend(%s)", (opened[0].info.backend_pid,))
        opened.append(conn)
        return conn

    with pytest.raises(ServerFault) as raised:
        count_violations(connect, data_rule_counts(load_contract(None), DUMP_TIME), jobs=2,
                         server=server.describe())
    assert raised.value.rule.startswith("server.") and "Nothing is wrong with the clone" in str(raised.value)


def test_a_rule_pointed_at_a_view_is_not_counted(server, violated):
    """A contract may name a rule's table; a view of that name would run the dump's query and functions, so the
    rule fails with the reason instead of reading it."""
    with as_owner(server, violated) as c:
        c.execute("""
            create function public.fix7_fine(text) returns text language sql immutable as 'select ''info''';
            create view public.issues_seen as select id, public.fix7_fine(severity) as severity from system_issues""")
    contract = load_contract(None)
    contract.annotations["data_rules"] = {"severity_valid": {"table": "issues_seen"}}
    summary = run_data_rules(_connect(server, violated), contract, DUMP_TIME)
    [row] = summary["expectations"]
    assert not summary["success"] and row["table"] == "issues_seen" and "unexpected_count" not in row
    assert row["error"] == "issues_seen is not a table (a view would run the dump's query)"
