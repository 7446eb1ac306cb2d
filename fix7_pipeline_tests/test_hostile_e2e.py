"""Issue 3, 4 and 9 "Done when", end to end: hostile and flawed dumps made outside the repository, each through
the real job in a Dagster instance (the CLI as an operator runs it where what is printed matters).

Every case checks the verdict and exit code, the stage that stopped the run, `isolation_proven` where
isolation is the cause, that nothing the dump tried to do happened, that no credential reached anything
printed or written, and that none of the run's throwaway databases or roles is left on the server.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from fix7_pipeline.cli.rehearse import VERDICT_EXIT, run_rehearsal
from fix7_pipeline.core.shared.model import STAGES
from fix7_pipeline.core.sanitization.rules import registry
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.core import hostile
from fix7_pipeline_tests.e2e_support import (DagsterHome, ServerLogTail, config, dumped_variant, everything_written,
                                             find_leaks, findings, left_on_server, load_packet, planted, rehearse_args,
                                             rnd, assert_blocked_at_gate)
from fix7_pipeline_tests.pg import as_owner

NO_SAFE = "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
SOURCE = "fix7_t_e2e_hostile_src"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("hostile_dagster_home"), "hostile")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def instance(home):
    with home.instance() as inst:
        yield inst


@pytest.fixture(scope="module")
def source():
    builder.build_clone(SOURCE, registry_rows=100, seed=23)
    yield SOURCE
    builder.drop_clone(SOURCE)


@pytest.fixture(scope="module")
def change(tmp_path_factory):
    return builder.write_sample_change(tmp_path_factory.mktemp("hostile_change"))


def _tag() -> str:
    return secrets.token_hex(3)


def _assert_cli_stopped(r, ev: Path, stage: str, home=None, gate: str | None = None) -> dict:
    """The CLI's run stopped at `stage`; with `gate`, at that gate of rehearsal_clone (in `home`)."""
    out = r.stdout + r.stderr
    assert r.returncode == 3, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert NO_SAFE in r.stdout
    packet = load_packet(ev)
    assert packet["verdict"] == NO_SAFE
    assert packet["stages"][stage]["status"] == "blocked", json.dumps(packet["stages"][stage])[:2000]
    after = STAGES[STAGES.index(stage) + 1:]
    assert all(packet["stages"][s]["status"] == "skipped" for s in after)
    if gate is not None:
        with home.instance() as inst:
            assert_blocked_at_gate(inst, packet["run_id"], gate)
    return packet


# -- issue 3 ---------------------------------------------------------------------------------

def _early_unrestrict(plain: Path, out: Path, marker: Path) -> Path:
    """The restrict-mode escape inside the dump: pg_dump's own key, stolen from line 5, then a shell command."""
    key = next(ln.split(None, 1)[1] for ln in plain.read_text().splitlines() if ln.startswith("\\restrict "))
    return hostile.with_line_inserted(plain, out, "CREATE TABLE public.birth_registry",
                                      [f"\\unrestrict {key}", f"\\! touch {marker}"])


@pytest.mark.parametrize("where", ["after the closing unrestrict", "with the stolen key mid-dump"])
def test_plain_dump_escaping_restrict_mode_runs_no_shell_command(where, source, home, change, tmp_path, server):
    marker = hostile.marker_path()
    plain = builder.dump_clone(source, "plain", tmp_path / "clean.sql")
    if where == "after the closing unrestrict":
        dump = hostile.with_lines_after_unrestrict(plain, tmp_path / "escape.sql", [f"\\! touch {marker}"])
    else:
        dump = _early_unrestrict(plain, tmp_path / "escape.sql", marker)
    ev = tmp_path / "ev"
    with left_on_server(server) as left:
        r = home.cli(*rehearse_args(dump, change, ev))
    packet = _assert_cli_stopped(r, ev, "intake")
    refused = [f for f in findings(packet, "intake") if f["rule"] == "psql_meta_command"]
    assert refused, findings(packet, "intake")
    assert any("\\!" in f["message"] or "\\unrestrict" in f["message"] for f in refused)
    assert not marker.exists()
    assert str(marker) not in r.stdout + r.stderr
    assert packet["throwaways"]["created"] == [] and left == set()


def test_plain_check_constraint_that_writes_a_server_file_is_contained(instance, change, tmp_path, server):
    marker = hostile.marker_path()
    dump = hostile.check_constraint_file_writer(tmp_path, marker, "plain")
    assert not marker.exists()
    with left_on_server(server) as left:
        out = run_rehearsal(config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == NO_SAFE and VERDICT_EXIT[out["verdict"]] == 3
    assert packet["stages"]["intake"]["status"] == "passed"  # nothing in it is a meta-command or catalog refusal
    assert packet["stages"]["isolation"]["status"] == "blocked"
    assert packet["isolation_proven"] is False
    assert packet["restoring_role"]["superuser"] is False
    assert packet["restoring_role"]["server_file_privileges"] == []
    assert not marker.exists()
    assert packet["throwaways"]["created"] and left == set()


FDW_PASSWORD_IN_BUILDER = "prod-password-not-for-tests"


@pytest.mark.parametrize("fmt", ["custom", pytest.param("plain", marks=pytest.mark.slow)])  # plain: make test-slow
def test_foreign_server_and_user_mapping_to_production(fmt, home, change, tmp_path, server):
    password = planted("user mapping password", "Pw-", (rnd(24), True))
    name = f"fix7h_e2e_fdw_{_tag()}"
    hostile.factory_db(name, hostile.FDW_SQL.replace(FDW_PASSWORD_IN_BUILDER, password.value))
    try:
        dump = hostile.pg_dump(name, tmp_path / f"fdw.{fmt}", {"custom": "-Fc", "plain": "-Fp"}[fmt])
    finally:
        builder.drop_clone(name)
    assert password.value.encode() in Path(dump).read_bytes()  # the dump does carry it
    ev = tmp_path / "ev"
    log = ServerLogTail()
    with left_on_server(server) as left:
        r = home.cli(*rehearse_args(dump, change, ev))
    packet = _assert_cli_stopped(r, ev, "intake")
    assert packet["isolation_proven"] is False
    assert json.loads((ev / "clone-provenance.json").read_text())["isolation_proven"] is False
    found = {f["rule"]: f for f in findings(packet, "intake")}
    assert {"foreign_server", "user_mapping"} <= set(found), sorted(found)
    assert found["foreign_server"]["extra"]["isolation"] and found["user_mapping"]["extra"]["isolation"]
    assert "prod_db" in found["foreign_server"]["message"]
    if fmt == "plain":  # an archive's table of contents names the server, not its options
        assert "db.prod.corp.internal" in found["foreign_server"]["message"]
    assert left == set()
    assert find_leaks(everything_written(home, packet["run_id"], ev, r, log), [password]) == []


def test_active_webhook_to_production_host(source, home, change, tmp_path, server):
    user = planted("webhook user", "ops-", (rnd(10), True))
    password = planted("webhook password", (rnd(22), True))
    token = planted("webhook query token", (rnd(32), True))
    url = f"https://{user.value}:{password.value}@hooks.prod.corp.internal/hooks/birth?token={token.value}"
    dump = dumped_variant(source, f"fix7h_e2e_hook_{_tag()}", f"""
        update public.directus_webhooks set url = '{url}', status = 'active' where id = 1;
    """, tmp_path / "webhook.dump")
    ev = tmp_path / "ev"
    log = ServerLogTail()
    with left_on_server(server) as left:
        r = home.cli(*rehearse_args(dump, change, ev, "--production-host", "hooks.prod.corp.internal"))
    packet = _assert_cli_stopped(r, ev, "isolation", home, "isolation_proven")
    assert packet["stages"]["intake"]["status"] == "passed"
    assert packet["isolation_proven"] is False
    hook = [f for f in findings(packet, "isolation")
            if (f.get("table"), f.get("column")) == ("directus_webhooks", "url")]
    assert len(hook) == 1, findings(packet, "isolation")
    f = hook[0]
    assert f["rule"] == "outward_pointer" and f["row_key"] == "1"
    assert f["extra"]["host"] == "hooks.prod.corp.internal" and f["extra"]["status"] == ["active"]
    assert "directus_webhooks.url" in f["message"] and "hooks.prod.corp.internal" in f["message"]
    assert "<redacted>@hooks.prod.corp.internal" in f["message"]
    assert "directus_webhooks.url" in r.stdout and "hooks.prod.corp.internal" in r.stdout
    assert packet["throwaways"]["created"] and left == set()
    leaks = find_leaks(everything_written(home, packet["run_id"], ev, r, log), [user, password, token])
    assert leaks == []


# -- issue 4 ---------------------------------------------------------------------------------

def _four_table_secrets() -> tuple[list, str]:
    dsn = planted("DSN with password in system_issues.details", "postgresql://birth_", (rnd(8), True), ":",
                  (rnd(20), True), "@pg-primary.birth-vault.invalid:5432/birth")
    aws = planted("AWS key pair in os_proposal_approvals.comment", "aws_access_key_id=AKIA",
                  (rnd(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), True), " aws_secret_access_key=",
                  (rnd(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"), True))
    token = planted("Directus static token in directus_users.token", (rnd(32), True))
    body = "\n".join(rnd(64, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(3))
    pem = planted("PEM key in directus_revisions.data", "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
                  (body, True), "\n-----END RSA PRIVATE KEY-----")
    pem_sql = pem.value.replace("\n", "\\n")
    sql_text = f"""
        update public.system_issues set details = details || jsonb_build_object('dsn', '{dsn.value}') where id = 7;
        update public.os_proposal_approvals set comment = 'Rotated {aws.value} after the audit.' where id = 3;
        update public.directus_users set token = '{token.value}'
          where id = (select id from public.directus_users order by email limit 1);
        update public.directus_revisions
          set data = (data::jsonb || jsonb_build_object('signing_key', E'{pem_sql}'))::json
          where id = 5;
    """
    return [dsn, aws, token, pem], sql_text


@pytest.mark.parametrize("fmt", ["custom", pytest.param("plain", marks=pytest.mark.slow)])  # plain: make test-slow
def test_secrets_in_four_tables_block_sanitization_and_never_leak(fmt, source, home, change, tmp_path, server):
    values, sql_text = _four_table_secrets()
    dump = dumped_variant(source, f"fix7h_e2e_four_{_tag()}", sql_text, tmp_path / f"secrets.{fmt}", fmt)
    if fmt == "plain":  # the dump does carry them (a custom archive compresses its data)
        assert all(v.value.encode() in Path(dump).read_bytes() for v in values[:3])
    ev = tmp_path / "ev"
    log = ServerLogTail()
    with left_on_server(server) as left:
        r = home.cli(*rehearse_args(dump, change, ev))
    packet = _assert_cli_stopped(r, ev, "sanitization", home, "sanitized")
    assert packet["isolation_proven"] is True
    got = {(f.get("table"), f.get("column"), f["rule"]) for f in findings(packet, "sanitization")}
    expected = {("system_issues", "details", "betterleaks.generic-credential-uri"),
                ("os_proposal_approvals", "comment", "betterleaks.aws-access-token"),
                ("directus_users", "token", "must_be_null"),
                ("directus_revisions", "data", "betterleaks.private-key")}
    assert expected <= got, sorted(got, key=str)
    assert {t for t, _, _ in expected} <= {t for t, _, _ in got}
    by_rule = {f["rule"]: f for f in findings(packet, "sanitization")}
    assert by_rule["betterleaks.generic-credential-uri"]["row_key"] == "7"
    assert by_rule["betterleaks.aws-access-token"]["row_key"] == "3"
    assert len(by_rule["betterleaks.aws-access-token"]["fingerprint"]) == 16
    prov = json.loads((ev / "clone-provenance.json").read_text())
    assert prov["table_A_clone_provenance"][0]["contains_secrets"] is True
    assert packet["throwaways"]["created"] and left == set()
    assert find_leaks(everything_written(home, packet["run_id"], ev, r, log), values) == []


CLEAN_SHA256_EVERYWHERE = """
create table public.file_digests (
    id integer primary key, path text not null, sha256 character(64) not null, sha256_text text,
    meta jsonb not null, upstream_sha256 varchar(64));
insert into public.file_digests
select g, 'certificates/' || g || '.pdf',
       encode(sha256(convert_to('file:' || g, 'UTF8')), 'hex'),
       'sha256:' || encode(sha256(convert_to('text:' || g, 'UTF8')), 'hex'),
       jsonb_build_object('sha256', encode(sha256(convert_to('meta:' || g, 'UTF8')), 'hex'),
                          'checksum', upper(encode(sha256(convert_to('up:' || g, 'UTF8')), 'hex'))),
       encode(sha256(convert_to('upstream:' || g, 'UTF8')), 'hex')
from generate_series(1, 50) g;
update public.system_issues
   set details = details || jsonb_build_object('payload_sha256',
                                               encode(sha256(convert_to('issue:' || id, 'UTF8')), 'hex'))
 where id % 2 = 0;
update public.directus_activity
   set user_agent = user_agent || ' build/' || encode(sha256(convert_to(id::text, 'UTF8')), 'hex');
"""


def test_clean_production_shaped_clone_with_sha256_everywhere_passes(source, instance, change, tmp_path, server):
    dump = dumped_variant(source, f"fix7h_e2e_clean_{_tag()}", CLEAN_SHA256_EVERYWHERE, tmp_path / "clean.dump")
    with left_on_server(server) as left:
        out = run_rehearsal(config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    san = packet["stages"]["sanitization"]
    assert san["status"] == "passed", json.dumps(san)[:3000]
    rules = {r.name for r in registry()}
    assert [f for f in san["findings"] if f["rule"] in rules] == []
    assert out["verdict"] == "REHEARSAL_PASSED", json.dumps(packet["stages"], indent=1)[:3000]
    assert {s: packet["stages"][s]["status"] for s in STAGES} == {s: "passed" for s in STAGES}
    notes = findings(packet, "schema_shape", errors_only=False)
    assert any(f["rule"] == "shape.extra_table" and f["table"] == "file_digests" for f in notes)
    assert left == set()


DRIFT_SQL = """
alter table public.system_issues drop constraint system_issues_pkey;
alter table public.birth_registry alter column content_hash type character varying(40) using left(content_hash, 40);
alter table public.os_proposal_approvals drop column comment;
alter table public.directus_revisions drop constraint directus_revisions_activity_foreign;
"""

DRIFTS = [
    ("system_issues", None, "system_issues: primary key system_issues_pkey missing"),
    ("birth_registry", "content_hash",
     "birth_registry.content_hash: expected character(64), found character varying(40)"),
    ("os_proposal_approvals", "comment", "os_proposal_approvals.comment: column missing"),
    ("directus_revisions", None, "directus_revisions: foreign key directus_revisions_activity_foreign missing"),
]


def test_drifted_clone_blocks_schema_shape_naming_each_drift(source, instance, change, tmp_path, server):
    dump = dumped_variant(source, f"fix7h_e2e_drift_{_tag()}", DRIFT_SQL, tmp_path / "drift.dump")
    with left_on_server(server) as left:
        out = run_rehearsal(config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == NO_SAFE and VERDICT_EXIT[out["verdict"]] == 3
    assert packet["stages"]["sanitization"]["status"] == "passed"
    assert packet["stages"]["schema_shape"]["status"] == "blocked"
    assert all(packet["stages"][s]["status"] == "skipped" for s in STAGES[4:])
    errs = findings(packet, "schema_shape")
    for table, column, message in DRIFTS:
        assert any(f["table"] == table and f.get("column") == column and message in f["message"] for f in errs), \
            (message, [f["message"] for f in errs])
    assert len(errs) == len(DRIFTS), [f["message"] for f in errs]
    problems = packet["exact_operator_input_needed"]["problems"]
    assert all(any(m in p for p in problems) for _, _, m in DRIFTS)
    shaped = assert_blocked_at_gate(instance, out["run_id"], "production_shaped")
    assert shaped.metadata["finding_count"].value >= len(DRIFTS) and "suite" not in shaped.metadata
    assert left == set()


def test_a_broken_data_rule_fails_the_data_rules_gate_alone(source, instance, change, tmp_path, server):
    """One source per rule: a row breaking a data rule fails the data_rules gate (its GX suite) and no other;
    production_shaped passes, and the run stops before the anchor."""
    dump = dumped_variant(source, f"fix7h_e2e_rule_{_tag()}", """
        update public.birth_registry set row_version = 0
         where id = (select min(id::text)::uuid from public.birth_registry);
    """, tmp_path / "rule.dump")
    with left_on_server(server) as left:
        out = run_rehearsal(config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == NO_SAFE and packet["stages"]["schema_shape"]["status"] == "blocked"
    assert [f["rule"] for f in findings(packet, "schema_shape")] == ["data_rules.row_version_positive"]
    rules = assert_blocked_at_gate(instance, out["run_id"], "data_rules")
    assert rules.metadata["suite"].value == "data_rules" and rules.metadata["failed"].value == 1
    assert rules.metadata["findings/data_rules.row_version_positive"].value == 1
    assert "| row\\_version\\_positive | birth\\_registry | ExpectColumnMaxToBeBetween | failed | 1 |" in \
        rules.metadata["expectations"].value
    assert left == set()


# -- dumps made by an older production's pg_dump -------------------------------------------------

@pytest.fixture(scope="module")
def pg15_source():
    if builder.system_pg_dump(15) is None:
        pytest.skip("no system PostgreSQL 15 pg_dump installed")
    name = "fix7_t_e2e_pg15_src"
    try:
        builder.build_clone(name, registry_rows=100, seed=29, major=15)
    except RuntimeError as e:
        pytest.skip(f"no PostgreSQL 15 factory: {e}")
    yield name
    builder.drop_clone(name, major=15)


@pytest.mark.parametrize("fmt", ["custom", pytest.param("plain", marks=pytest.mark.slow)])  # plain: make test-slow
def test_pg_dump_15_dumps_rehearse_to_passed(fmt, pg15_source, instance, change, tmp_path, server):
    dump = builder.dump_clone(pg15_source, fmt, tmp_path / f"pg15.{fmt}", major=15)
    with left_on_server(server) as left:
        out = run_rehearsal(config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert str(packet["clone"]["pg_dump_version"]).startswith("15"), packet["clone"]
    assert out["verdict"] == "REHEARSAL_PASSED", json.dumps(packet["stages"], indent=1)[:3000]
    assert {s: packet["stages"][s]["status"] for s in STAGES} == {s: "passed" for s in STAGES}
    assert packet["isolation_proven"] is True
    assert left == set()


# -- issue 9: a change that would leave its one transaction -----------------------------------

@pytest.fixture(scope="module")
def clean_dump(source, tmp_path_factory):
    return builder.dump_clone(source, "custom", tmp_path_factory.mktemp("hostile_clean") / "clean.dump")


@pytest.mark.parametrize("label, escape, kind", [
    ("apply", "update public.system_issues set severity = severity; commit; select pg_sleep(10);", "COMMIT"),
    pytest.param("rollback", "commit and chain;", "COMMIT AND CHAIN", marks=pytest.mark.slow),  # the same guard
])
def test_change_leaving_its_transaction_fails_the_stage_naming_the_statement(label, escape, kind, clean_dump, home,
                                                                               change, tmp_path, server):
    apply_sql, rollback_sql = change
    escaping = tmp_path / f"{label}.sql"
    original = Path(apply_sql if label == "apply" else rollback_sql).read_text()
    escaping.write_text(f"alter table public.system_issues add column fix7_e2e_mark boolean;\n{escape}\n{original}")
    files = (escaping, rollback_sql) if label == "apply" else (apply_sql, escaping)
    ev = tmp_path / "ev"
    with left_on_server(server) as left:
        r = home.cli(*rehearse_args(clean_dump, files, ev))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert "REHEARSAL_FAILED" in r.stdout
    assert f"{label} SQL line 2 is {kind}" in r.stdout
    packet = load_packet(ev)
    assert packet["verdict"] == "REHEARSAL_FAILED"
    stage = packet["stages"][label]
    assert stage["status"] == "failed" and stage["ran"] is False, json.dumps(stage)[:2000]
    assert [f["extra"]["line"] for f in stage["findings"] if f["rule"] == "change_transaction_control"] == [2]
    if label == "rollback":
        assert packet["stages"]["apply"]["status"] == "passed"
        assert packet["stages"]["apply"]["one_transaction"] is True
    assert all(packet["stages"][s]["status"] == "skipped" for s in STAGES[STAGES.index(label) + 1:])
    assert left == set()


# -- leaks and misattributions these tests found, kept fixed ---------------------------------

def test_webhook_token_in_the_first_path_segment_is_not_shown(source, home, instance, change, tmp_path):
    token = planted("webhook path token", (rnd(32), True))
    dump = dumped_variant(source, f"fix7h_e2e_path_{_tag()}", f"""
        update public.directus_webhooks set url = 'https://hooks.prod.corp.internal/{token.value}', status = 'active'
         where id = 1;
    """, tmp_path / "webhook-path.dump")
    out = run_rehearsal(config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert packet["stages"]["isolation"]["status"] == "blocked" and packet["isolation_proven"] is False
    assert any(f.get("table") == "directus_webhooks" for f in findings(packet, "isolation"))
    assert find_leaks(everything_written(home, packet["run_id"], tmp_path / "ev"), [token]) == []


def test_gx_secret_family_findings_do_not_blame_a_clean_table(server, throwaway):
    from fix7_pipeline.core.intake.contract_load import load_contract
    from fix7_pipeline.core.shape import data_rules
    from fix7_pipeline.core.sanitization.secrets import scan_secrets

    token = "ghp_" + rnd(36)
    with as_owner(server, throwaway) as c:
        c.execute("create table public.aaa_notes (id int primary key, note text); "
                  "insert into public.aaa_notes values (1, 'nothing to see');"
                  "create table public.zzz_keys (id int primary key, note text);")
        c.execute("insert into public.zzz_keys values (1, %s)", (f"deploy with {token}",))
    contract = load_contract()
    found = scan_secrets(lambda db: server.connect(db, throwaway.login, purpose="secret scan"), throwaway.database,
                         contract, "salt-attribution")
    assert {(f.table, f.column, f.row_key) for f in found} == {("zzz_keys", "note", "1")}
    suite = data_rules.run_sanitization(found, contract, found.present_tables)
    failed = [f for f in data_rules.data_rules_findings(suite) if "secret:kingfisher" in f.rule]
    assert failed, suite
    assert all(f.table in (None, "zzz_keys") for f in failed), [(f.table, f.message) for f in failed]
