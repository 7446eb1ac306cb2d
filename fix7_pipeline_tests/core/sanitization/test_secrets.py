"""The secret scan on real clones: every rule and every place a dump holds text, found where planted, nothing
on a clean clone, no value (nor any 8-character piece of one) in what it returns.

Plants are random per run and of formats Kingfisher itself reports (a GitHub PAT, a Slack bot token, a Stripe
live key, an AWS key id beside its secret, ...); catalog places are planted by the restoring role itself
(`pg.as_owner`), what only a superuser can plant (a subscription, a foreign server) outside the guard.
"""

from __future__ import annotations

import json
import os
import string

import pytest
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from fix7_pipeline.core.sanitization import binary_scan, copy_reader
from fix7_pipeline.core.sanitization import textscan
from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.sanitization.redact import RedactedNames
from fix7_pipeline.core.sanitization.secrets import scan_secrets
from fix7_pipeline.core.postgres.throwaways import database_settings
from fix7_pipeline_tests.core.test_shape import USERS, make_birth_surface
from fix7_pipeline_tests.e2e_support import find_leaks, planted, rnd
from fix7_pipeline_tests.pg import as_owner, superuser

SALT = "run-salt-7f3a"
DIGITS = string.digits
B64 = string.ascii_letters + string.digits + "+/"
CRYPT = "./" + string.ascii_letters + string.digits


def github():
    return planted("GitHub PAT", "ghp_", (rnd(36), True))


def slack():
    return planted("Slack bot token", "xoxb-", (rnd(12, DIGITS), True), "-", (rnd(13, DIGITS), True), "-",
                   (rnd(24), True))


def stripe():
    return planted("Stripe live key", "sk_live_", (rnd(24), True))


def aws_pair():
    return planted("AWS key id and secret", "aws_access_key_id = AKIA", (rnd(16, string.ascii_uppercase + "234567"), True),
                   "\naws_secret_access_key = ", (rnd(40, B64), True))


def pem():
    return planted("PEM private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
                   ("\n".join(rnd(64, B64) for _ in range(3)), True), "\n-----END RSA PRIVATE KEY-----")


def libpq():
    return planted("libpq conninfo", "host=pg-primary.birth-vault.invalid user=app_", (rnd(6), True), " password=",
                   (rnd(18), True), " dbname=birth")


def bcrypt():
    return planted("bcrypt hash", "$2b$12$", (rnd(53, CRYPT), True))


def assignment():
    return planted("api_key assignment", "api_key=", (rnd(14) + "7q" + rnd(12), True))


def aws_key_id():
    return planted("AWS key id alone", "deploy key ASIA", (rnd(16, string.ascii_uppercase + "234567"), True))


def bearer():
    return planted("Bearer in a log line", "POST /flows/trigger Authorization: Bearer ", (rnd(30), True))


# rule -> maker: one plant per rule, each in every column kind
PLANTS = {
    "betterleaks.github-pat": github,
    "betterleaks.slack-bot-token": slack,
    "betterleaks.stripe-access-token": stripe,
    "betterleaks.aws-access-token": aws_pair,
    "betterleaks.private-key": pem,
    "fix7.connection-string-password.libpq": libpq,
    "fix7.password-hash": bcrypt,
    "fix7.secret-assignment": assignment,
    "fix7.aws-access-key-id": aws_key_id,
    "fix7.authorization-header": bearer,
}


def _factory(server, tw):
    return lambda db: server.connect(db, tw.login, purpose="secret scan")


def scan(server, tw, salt=SALT, **kw):
    return scan_secrets(_factory(server, tw), tw.database, load_contract(None), salt, **kw)


def _text(findings) -> bytes:
    return (str(list(findings)) + json.dumps([f.as_dict() for f in findings])).encode()


def test_each_plant_is_found_by_its_rule_alone():
    """What the scan is built on: Kingfisher (and fix7's rules) match each plant by the expected rule (one
    finding per occurrence names every rule that matched it; a provider's pattern reports it)."""
    for rule, make in PLANTS.items():
        hits = textscan.scan_value(make().value.encode(), SALT)
        assert rule in {r for h in hits for r in h.rules}, (rule, hits)


def test_a_word_keyed_rule_skips_names_and_addresses_not_random_runs():
    """After "token=" or "Bearer": a URL or a phrase of words is not a secret; a long random run is, even
    when it is joined to a word ("hf_" and 34 letters)."""
    not_secrets = ('{"secret_name": "birth-cdn-credentials-84"}', "TOKEN_URL=https://auth.example.test/realms/t/token",
                   "Authorization: Bearer YOUR_ACCESS_TOKEN_HERE")
    for text in not_secrets:
        assert textscan.scan_value(text.encode(), SALT) == [], text
    run = planted("word-joined token", "https://x.test/login?token=hf_", (rnd(34, string.ascii_letters), True), "&lang=en")
    assert textscan.scan_value(run.value.encode(), SALT) != []


@pytest.fixture
def planted_clone(server, throwaway):
    """One plant per rule in text, varchar, json, jsonb, text[], a domain, a composite and bytea columns of an
    uncontracted table, and in contracted free text; plus the contract's own secrets."""
    make_birth_surface(server, throwaway)
    values = {}
    with as_owner(server, throwaway) as c:
        c.execute("create domain public.note_text as text")
        c.execute("create type public.pair as (label text, body text)")
        c.execute("create table extra_notes (id int primary key, t text, v varchar(2000), j json, jb jsonb, "
                  "arr text[], d public.note_text, comp public.pair, b bytea)")
        for i, (rule, make) in enumerate(PLANTS.items()):
            p = make()
            values[rule] = p
            secret = p.value
            c.execute("insert into extra_notes values (%s, %s, %s, %s, %s, %s, %s, row('x', %s)::public.pair, %s)",
                      (100 + i, f"note: {secret} end", secret, Json({"k": secret}), Jsonb({"deep": [secret]}),
                       ["a", secret], secret, secret, secret.encode()))
            c.execute("insert into system_issues (id, code, severity, details, opened_at) "
                      "values (%s, %s, 'info', %s, now())", (100 + i, f"leak {i}", Jsonb({"ctx": secret})))
        c.execute("update directus_users set password = %s, auth_data = %s where id = %s",
                  (values["fix7.password-hash"].value, Json({"sso": "x"}), USERS[0]))
        c.execute("insert into directus_sessions (token, \"user\", expires) values (%s, %s, now())",
                  ("SessTok" + rnd(40), USERS[0]))
        c.execute("update directus_webhooks set headers = %s where id = 1",
                  (Json([{"header": "Authorization", "value": "Bearer " + rnd(30)}]),))
    throwaway.values = values
    return throwaway


COLUMNS = ("t", "v", "j", "jb", "arr", "d", "comp", "b")


def test_every_rule_found_in_every_column_kind(server, planted_clone):
    findings = scan(server, planted_clone, workers=3)
    # one finding per occurrence: matched by every rule it names, reported by the preferred one
    got = {(r, f.table, f.column, f.row_key) for f in findings for r in f.extra.get("rules") or [f.rule]}
    for i, rule in enumerate(PLANTS):
        rid = str(100 + i)
        for column in COLUMNS:
            assert (rule, "extra_notes", column, rid) in got, (rule, column)
        assert (rule, "system_issues", "details", rid) in got, rule
    assert ("must_be_null", "directus_users", "password", USERS[0]) in got
    assert ("must_be_null", "directus_users", "auth_data", USERS[0]) in got
    assert ("fix7.secret-header", "directus_webhooks", "headers", "1") in got
    empty = [f for f in findings if f.rule == "must_be_empty"]
    assert [(f.table, f.extra["rows"]) for f in empty] == [("directus_sessions", 1)]
    # the session token is the sessions' primary key: never shown as a row key
    assert all(not (f.row_key or "").startswith("SessTok") for f in findings)
    # same secret, same run salt: same fingerprint wherever it sits
    fps = {f.fingerprint for f in findings if f.rule == "betterleaks.github-pat"}
    assert len(fps) == 1 and len(fps.pop()) == 16
    for f in findings:
        assert f.extra["source"] in ("kingfisher", "detect-secrets", "fix7") and f.extra["place"]
    assert {f.extra["source"] for f in findings if f.rule.startswith("betterleaks.")} == {"kingfisher"}


def test_findings_never_carry_a_value(server, planted_clone):
    findings = scan(server, planted_clone, workers=2)
    assert find_leaks({"findings": _text(findings)}, list(planted_clone.values.values())) == []


def test_clean_clone_has_no_findings(server, throwaway):
    """sha256 columns, placeholders and ordinary prose are data, not secrets."""
    make_birth_surface(server, throwaway)
    with as_owner(server, throwaway) as c:
        c.execute("create table notes (id int primary key, body text, meta jsonb, raw bytea)")
        c.execute("""insert into notes values
          (1, 'password=changeme is what the old docs said', '{"token_type": "bearer"}', '\\x00ff10'),
          (2, 'see postgres://db.example.test:5432/app for the schema', '{"sha": "%s"}', null),
          (3, 'risk-assessment-for-the-new-service, task-1234567890abcdefghijk', '{"api_key": "${FROM_ENV}"}', null),
          (4, 'secret_name = "birth-cdn-credentials-84"', '{"token_url": "https://auth.example.test/realms/b/token"}', null),
          (5, 'https://directus.example.test/login?password=<your-queue-password-81>&lang=en',
              '{"h": "Authorization: Bearer YOUR_ACCESS_TOKEN_HERE"}', null),
          (6, 'masked: AKIA************WXYZ', '{"secret_name": "birth_export_credentials_v2"}', null)
        """ % ("ab" * 32))
        c.execute("update birth_registry set content_hash = %s", ("9f" * 32,))
        c.execute("comment on table notes is 'Free text notes; see the runbook for the rotation schedule.'")
        c.execute("create function public.add_one(x int) returns int language sql as 'select x + 1'")
    assert list(scan(server, throwaway)) == []


def test_fingerprints_change_with_the_salt(server, planted_clone):
    def fp(salt):
        return {f.fingerprint for f in scan(server, planted_clone, salt) if f.rule == "betterleaks.stripe-access-token"}
    assert fp("a") != fp("b")
    with pytest.raises(ValueError):
        scan(server, planted_clone, "")


# -- every catalog place -------------------------------------------------------------------------

def _catalog_plants(tok: str) -> dict[str, str]:
    """kind of place (as the finding names it) -> SQL the restoring role runs to put `tok` there."""
    q = tok.replace("'", "''")
    return {
        "schema name": f'create schema "{tok}"',
        "table name": f'create table public."{tok}" (id int)',
        "table column name": f'create table public.t_col (id int, "{tok}" text)',
        "sequence name": f'create sequence public."{tok}"',
        "index name": f'create table public.t_idx (id int); create index "{tok}" on public.t_idx (id)',
        "table constraint name": f'create table public.t_con (id int constraint "{tok}" check (id > 0))',
        "type name": f'create type public."{tok}" as enum (\'a\')',
        "function name": f'create function public."{tok}"() returns int language sql as \'select 1\'',
        "table (comment)": f"create table public.t_cmt (id int); comment on table public.t_cmt is 'key {q}'",
        "table column (comment)": f"create table public.t_ccm (id int); comment on column public.t_ccm.id is '{q}'",
        "function (body)": f"create function public.f_body() returns text language sql as $b$ select '{q}' $b$",
        "procedure (body)": f"create procedure public.p_body() language plpgsql as $b$ begin perform '{q}'; end $b$",
        "view (definition)": f"create view public.v_def as select '{q}'::text as c",
        "materialized view (definition)": f"create materialized view public.mv_def as select '{q}'::text as c",
        "table column (default)": f"create table public.t_def (id int, c text default '{q}')",
        "table column (generated expression)":
            f"create table public.t_gen (id int, c text generated always as ('{q}' || id::text) stored)",
        "trigger (definition)":
            "create table public.t_trg (id int); create function public.trg_fn() returns trigger language plpgsql "
            "as $b$ begin return new; end $b$; "
            f"create trigger trg before insert on public.t_trg for each row execute function public.trg_fn('{q}')",
        "policy (using)": f"create table public.t_pol (id int, c text); "
                          f"create policy pol on public.t_pol using (c <> '{q}')",
        "rule (definition)": f"create table public.t_rule (id int, c text); "
                             f"create rule r_ins as on insert to public.t_rule where new.c = '{q}' do instead nothing",
        "type (enum label)": f"create type public.e_lab as enum ('{q}')",
        "function (settings)": f"create function public.f_set() returns int language sql set application_name = '{q}' "
                               "as 'select 1'",
        "function (arguments)": f"create function public.f_arg(x text default '{q}') returns text language sql "
                                "as 'select x'",
        "publication name": f'create table public.t_pub (id int primary key); '
                            f'create publication "{tok}" for table public.t_pub',
    }


CATALOG_KINDS = list(_catalog_plants("x"))


def test_a_secret_in_each_catalog_place_is_found_there(server, throwaway):
    """One token per place, all in one clone: each is found at its own place (told apart by fingerprint)."""
    tokens = {kind: github() for kind in CATALOG_KINDS}
    with as_owner(server, throwaway) as c:
        for kind, token in tokens.items():
            c.execute(_catalog_plants(token.value)[kind])
    findings = scan(server, throwaway)
    for kind, token in tokens.items():
        fp = textscan.fingerprint(SALT, token.value.encode())
        places = [f.extra["place"] for f in findings if f.rule == "betterleaks.github-pat" and f.fingerprint == fp]
        head, _, field = kind.partition(" (")
        if kind.endswith(" name"):
            assert any(p.startswith(kind + " [redacted name ") for p in places), (kind, places)
        else:
            assert any(p.startswith(head + " ") and p.endswith("(" + field) for p in places), (kind, places)
    assert {f.extra.get("kind") for f in findings} >= {"schema", "table", "table column", "sequence", "index",
                                                    "table constraint", "type", "function", "procedure", "view",
                                                    "materialized view", "trigger", "policy", "rule", "publication"}
    assert find_leaks({"findings": _text(findings)}, list(tokens.values())) == []


def test_a_secret_in_a_large_object_is_found(server, throwaway):
    token = slack()
    with as_owner(server, throwaway) as c:
        oid = c.execute("select lo_from_bytea(0, %s)", (b"\x00\x01binary head " + token.value.encode() + b" tail",)
                        ).fetchone()[0]
        big = c.execute("select lo_from_bytea(0, %s)", (b"z" * (binary_scan.LO_WINDOW - 10) + token.value.encode(),)
                        ).fetchone()[0]  # across a window boundary
    findings = [f for f in scan(server, throwaway) if f.rule == "betterleaks.slack-bot-token"]
    assert {f.extra["place"] for f in findings} == {f"large object {oid}", f"large object {big}"}
    assert len(findings) == 2
    assert find_leaks({"findings": _text(findings)}, [token]) == []


def test_a_large_object_the_role_cannot_read_is_unreadable(server, throwaway):
    with superuser(server, throwaway.database) as c:
        oid = c.execute("select lo_from_bytea(0, 'whatever')").fetchone()[0]  # owned by the superuser
    findings = [f for f in scan(server, throwaway) if f.rule == "unreadable"]
    assert [f.extra["place"] for f in findings] == [f"large object {oid}"]


def test_database_and_role_settings_values_are_scanned_never_printed(server, throwaway):
    db_token, role_token = stripe(), github()
    with superuser(server, server.admin_db) as c:
        c.execute(sql.SQL("alter database {} set app.stripe = {}").format(sql.Identifier(throwaway.database),
                                                                          sql.Literal(db_token.value)))
        c.execute(sql.SQL("alter role {} set app.gh = {}").format(sql.Identifier(throwaway.login.role),
                                                                   sql.Literal(role_token.value)))
    settings = database_settings(server, [throwaway.database], throwaway.login.role)
    assert {s["name"] for s in settings} == {"app.stripe", "app.gh"}
    findings = scan(server, throwaway, settings=settings)
    places = {(f.rule, f.extra["place"]) for f in findings}
    assert ("betterleaks.stripe-access-token", f"setting app.stripe on database {throwaway.database} (value)") in places
    assert ("betterleaks.github-pat", f"setting app.gh on role {throwaway.login.role} (value)") in places
    assert find_leaks({"findings": _text(findings)}, [db_token, role_token]) == []


def test_subscription_conninfo_is_unreadable_and_fails_closed(server, throwaway):
    with superuser(server, throwaway.database) as c:
        c.execute("create subscription s_one connection 'host=db.prod.invalid dbname=x password=Hunter2Hunter2x' "
                  "publication p with (connect = false, enabled = false, create_slot = false, slot_name = none)")
    try:
        findings = [f for f in scan(server, throwaway) if f.rule == "unreadable"]
        assert [f.extra["place"] for f in findings] == ["subscription s_one (connection string)"]
        assert "Hunter2" not in str(findings)
    finally:
        with superuser(server, throwaway.database) as c:
            c.execute("drop subscription s_one")


def test_foreign_server_and_user_mapping_options(server, throwaway):
    token, mapped = stripe(), github()
    with superuser(server, throwaway.database) as c:
        c.execute("create extension if not exists postgres_fdw")
        c.execute(f"create server prod_srv foreign data wrapper postgres_fdw options (host 'db.prod.invalid', "
                  f"application_name '{token.value}')")
        c.execute(f"create user mapping for public server prod_srv options (user 'app', password '{mapped.value}')")
        c.execute("create server other_srv foreign data wrapper postgres_fdw options (host 'db2.prod.invalid')")
        c.execute("create user mapping for public server other_srv options (user 'app', password 'Hunter2Hunter2x')")
        # as if the dump's role had been given the wrapper: then it owns the server and reads the mapping
        c.execute(sql.SQL("alter server prod_srv owner to {}").format(sql.Identifier(throwaway.login.role)))
    findings = scan(server, throwaway)
    places = {(f.rule, f.extra["place"]) for f in findings}
    assert ("betterleaks.stripe-access-token", "server prod_srv (options)") in places
    assert ("betterleaks.github-pat", "user mapping public on server prod_srv (options)") in places
    assert ("unreadable", "user mapping public on server other_srv (options)") in places
    assert find_leaks({"findings": _text(findings)}, [token, mapped]) == [] and "Hunter2" not in str(findings)


def test_a_table_the_role_cannot_read_is_unreadable(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table public.guarded (id int primary key, note text)")
        c.execute("insert into public.guarded values (1, 'x')")
        c.execute("alter table public.guarded enable row level security")
        c.execute("alter table public.guarded force row level security")
    findings = [f for f in scan(server, throwaway) if f.rule == "unreadable"]
    assert [f.extra["place"] for f in findings] == ["table guarded"]


# -- names, keys, batches -----------------------------------------------------------------------------

def test_a_table_named_by_a_secret_is_redacted_in_every_finding(server, throwaway):
    token, inside = github(), stripe()
    with as_owner(server, throwaway) as c:
        c.execute(f'create schema "{token.value}"')
        c.execute(f'create table "{token.value}".notes (id int primary key, body text)')
        c.execute(f'insert into "{token.value}".notes values (1, %s)', (f"charged {inside.value}",))
    findings = scan(server, throwaway)
    data = [f for f in findings if f.rule == "betterleaks.stripe-access-token"]
    assert len(data) == 1 and data[0].table.startswith("[redacted name ") and data[0].table.endswith(".notes")
    assert data[0].column == "body" and data[0].row_key == "1"
    assert token.value in findings.redacted and findings.redacted
    assert find_leaks({"findings": _text(findings)}, [token, inside]) == []
    # the registry travels in the run's state and redacts the name wherever a later stage prints it
    names = RedactedNames.from_state({"redacted_names": findings.redacted.as_state()})
    line = names.scrub(f"schema_shape: {token.value}.notes: extra table")
    assert token.value not in line and line.endswith(".notes: extra table")
    assert json.dumps(findings.redacted.as_state()).find(token.value[4:12]) < 0


def test_a_secret_primary_key_is_never_printed_as_row_key(server, throwaway):
    token = github()
    with as_owner(server, throwaway) as c:
        c.execute("create table public.issued (id text primary key, label text)")
        c.execute("insert into public.issued values (%s, 'ci bot'), ('plain-key', %s)", (token.value, stripe().value))
    findings = scan(server, throwaway)
    gh = [f for f in findings if f.rule == "betterleaks.github-pat"]
    assert len(gh) == 1 and gh[0].row_key.startswith("fingerprint:") and gh[0].column == "id"
    st = [f for f in findings if f.rule == "betterleaks.stripe-access-token"]
    assert len(st) == 1 and st[0].row_key == "plain-key"
    assert find_leaks({"findings": _text(findings)}, [token]) == []


def test_a_match_never_spans_two_values(server, throwaway):
    """Halves of a secret in neighbouring values, or a key id and its secret in two rows, make no finding;
    the same text in one value does."""
    key_id = "AKIA" + rnd(16, string.ascii_uppercase + "234567")
    secret = rnd(40, B64)
    body = "\n".join(rnd(64, B64) for _ in range(3))
    with as_owner(server, throwaway) as c:
        c.execute("create table public.halves (id int primary key, a text, b text)")
        c.execute("insert into public.halves values (1, %s, %s), (2, %s, null), (3, %s, null)",
                  (f"aws_access_key_id = {key_id}", f"aws_secret_access_key = {secret}",
                   "-----BEGIN RSA PRIVATE KEY-----\n" + body, "-----END RSA PRIVATE KEY-----"))
        c.execute("insert into public.halves values (4, %s, null)",
                  (f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}",))
    findings = [f for f in scan(server, throwaway) if f.table == "halves"]
    assert {(f.rule, f.row_key) for f in findings if f.rule.startswith("betterleaks.")} == \
        {("betterleaks.aws-access-token", "4")}


def test_an_inline_ignore_comment_hides_nothing(server, throwaway):
    token = github()
    with as_owner(server, throwaway) as c:
        c.execute("create table public.hushed (id int primary key, a text)")
        c.execute("insert into public.hushed values (1, %s), (2, %s)",
                  (f"{token.value}  # kingfisher:ignore", f"<!-- kingfisher:ignore --> {token.value}"))
    found = {f.row_key for f in scan(server, throwaway) if f.rule == "betterleaks.github-pat"}
    assert found == {"1", "2"}


def test_many_chunks_every_row_mapped_back(server, throwaway, monkeypatch):
    """Small COPY chunks force many scanner calls: every plant keeps its own row key and column."""
    monkeypatch.setattr(copy_reader, "CHUNK_BYTES", 4096)
    tokens = {i: github() for i in (1, 777, 1500, 2999, 3000)}
    with as_owner(server, throwaway) as c:
        c.execute("create table public.many (id int primary key, a text, b jsonb)")
        c.execute("insert into public.many select g, 'row ' || g || E' with\\ttabs\\nand lines \\\\ ' || g, "
                  "jsonb_build_object('n', g) from generate_series(1, 3000) g")
        for i, t in tokens.items():
            c.execute("update public.many set b = jsonb_build_object('t', %s::text) where id = %s", (t.value, i))
    calls = []
    real = textscan.candidates
    monkeypatch.setattr(textscan, "candidates", lambda decoded, scanner: calls.append(len(decoded)) or real(decoded, scanner))
    findings = [f for f in scan(server, throwaway) if f.rule == "betterleaks.github-pat"]
    assert len(calls) > 20 and max(calls) < 3 * 4096  # the chunks really were small
    assert sorted((int(f.row_key), f.column) for f in findings) == [(i, "b") for i in sorted(tokens)]
    assert {f.fingerprint for f in findings} == {textscan.fingerprint(SALT, t.value.encode()) for t in tokens.values()}


def test_no_provider_is_ever_contacted():
    """Kingfisher can validate and revoke credentials over the network; fix7 never calls either."""
    from pathlib import Path

    from fix7_pipeline.core import sanitization

    modules = sorted(Path(sanitization.__file__).parent.glob("*.py"))
    assert len(modules) > 10
    for path in modules:
        source = path.read_text()
        for word in ("Validator", "Revoker", ".validate(", ".revoke(", "validation.", "revocation."):
            assert word not in source, (path.name, word)


def test_fix7_rules_lists_the_one_registry():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", "rules", "--format", "json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    by_name = {x["name"]: x for x in data["rules"]}
    assert data["engine"] == "kingfisher-secret-scanner 1.5.0" and data["cache"].endswith("kingfisher-rules")
    assert data["loaded"] == {"detect-secrets": "1.5.0"}
    assert by_name["betterleaks.github-pat"]["source"] == "kingfisher"
    for name in ("fix7.password-hash", "fix7.secret-assignment", "fix7.connection-string-password.libpq",
                 "fix7.secret-header", "must_be_null", "must_be_empty", "unreadable"):
        assert by_name[name]["source"] == "fix7", name
    assert {x["source"] for x in data["rules"]} == {"kingfisher", "detect-secrets", "fix7"} and len(data["rules"]) > 400
    loaded = [x for x in data["rules"] if x["source"] == "detect-secrets"]
    assert {x["name"].split(".")[1] for x in loaded} >= {"AWSKeyDetector", "IbmCloudIamDetector", "SoftlayerDetector",
                                                         "GitLabTokenDetector", "StripeDetector"}
    assert not [x for x in loaded if "IPPublic" in x["name"]]  # an address is not a credential
    table = subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", "rules", "--source", "fix7"],
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and "fix7.password-hash" in table.stdout and "betterleaks." not in table.stdout


def test_a_large_value_is_read_in_windows_and_a_secret_across_an_edge_is_found(server, throwaway, monkeypatch):
    """Values longer than LARGE_VALUE_BYTES leave their row's COPY and are read in overlapping windows: a token
    at a value's end, one across a window edge, one in a large bytea and a must-be-NULL large value are each
    found once, in their own row and column, with the fingerprint of the token (or of the whole value)."""
    monkeypatch.setattr(copy_reader, "LARGE_VALUE_BYTES", 64 << 10)
    monkeypatch.setattr(copy_reader, "VALUE_WINDOW", 32 << 10)
    monkeypatch.setattr(copy_reader, "VALUE_OVERLAP", 4 << 10)
    end, edge, raw, small = github(), slack(), stripe(), github()
    filler = "lorem ipsum é "  # multibyte: windows are bytes of the text's UTF-8
    body = (filler * (300_000 // len(filler)))
    cut = (32 << 10) * 3 - 20  # the slack token starts 20 bytes before the third window edge
    at_edge = body.encode()[:cut].decode("utf-8", "ignore")
    at_edge = at_edge + " " * (cut - len(at_edge.encode())) + edge.value + " " + body
    with as_owner(server, throwaway) as c:
        c.execute("create table public.docs (id int primary key, body text, extra jsonb, blob bytea)")
        c.execute("insert into public.docs values (1, %s, null, null), (2, %s, %s, null), (3, 'small ' || %s, null, %s)",
                  (body + " " + end.value, at_edge, Jsonb({"k": os.urandom(60_000).hex()}), small.value,
                   b"\x00" * 200_000 + raw.value.encode()))
    calls = []
    real = copy_reader.scan_large_value
    monkeypatch.setattr(copy_reader, "scan_large_value", lambda *a, **kw: calls.append(a[2]) or real(*a, **kw))
    findings = [f for f in scan(server, throwaway) if f.table == "docs"]
    got = sorted((f.rule, f.row_key, f.column, f.fingerprint) for f in findings)
    assert got == sorted([
        ("betterleaks.github-pat", "1", "body", textscan.fingerprint(SALT, end.value.encode())),
        ("betterleaks.slack-bot-token", "2", "body", textscan.fingerprint(SALT, edge.value.encode())),
        ("betterleaks.stripe-access-token", "3", "blob", textscan.fingerprint(SALT, raw.value.encode())),
        ("betterleaks.github-pat", "3", "body", textscan.fingerprint(SALT, small.value.encode()))]), got
    # the large ones, and only they, in windows (jsonb: stored larger than _STORED_SMALL, so measured)
    assert sorted(calls) == ["blob", "body", "body", "extra"]
    assert edge.value.encode() not in at_edge.encode()[:cut] and len(at_edge.encode()) > 3 * (32 << 10)


def test_a_large_catalog_value_is_read_in_windows(server, throwaway):
    """A comment (any catalog text) longer than LARGE_VALUE_BYTES is read in overlapping windows after its
    place's COPY: a token at its end and one across a window edge are each found once, on that object."""
    end, edge = github(), slack()
    at = 2 * copy_reader.VALUE_WINDOW - 20  # the Slack token starts 20 bytes before the second window's end
    comment = "x" * at + edge.value + " " + "y" * (copy_reader.LARGE_VALUE_BYTES + 100) + " " + end.value
    with as_owner(server, throwaway) as c:
        c.execute("create table public.documented (id int primary key)")
        c.execute(sql.SQL("comment on table public.documented is {}").format(sql.Literal(comment)))
    found = [f for f in scan(server, throwaway) if f.extra.get("place") == "table public.documented (comment)"]
    assert sorted((f.rule, f.fingerprint) for f in found) == sorted([
        ("betterleaks.github-pat", textscan.fingerprint(SALT, end.value.encode())),
        ("betterleaks.slack-bot-token", textscan.fingerprint(SALT, edge.value.encode()))]), found
    assert find_leaks({"findings": _text(found)}, [end, edge]) == []
