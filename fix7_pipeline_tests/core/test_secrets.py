"""Secret scan in PostgreSQL: every rule found where planted, nothing on a clean clone, no value leaks."""

from __future__ import annotations

import json

import pytest
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from fix7_pipeline.core.contract import load_contract
from fix7_pipeline.core.secrets import SECRET_RULES, scan_catalog, scan_secrets
from fix7_pipeline_tests.core.test_shape import USERS, make_birth_surface
from fix7_pipeline_tests.pg import as_owner, proof, superuser

PLANTS = {
    "connection_string_password": "postgresql://app_rw:Sup3rS3cretPw@db1.prod.internal:5432/births",
    "private_key": ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
                    "-----END RSA PRIVATE KEY-----"),
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "aws_access_key": "AKIAIOSFODNN7QWERTYZ",
    "github_token": "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "gitlab_token": "glpat-xY9abcdEFGhijk12345L",
    "slack_token": "xoxb-1234567890-abcdefghijKLMN",
    "stripe_key": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "openai_key": "sk-proj-Ab3dEfGh1jKlMnOpQrStUvWx9z",
    "google_api_key": "AIzaSyD4k2Lm9Qp2Rs8Tv5Wx7Yz0Ab3Cd6Ef9Gh",
    "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$QmF0dGVyeUhvcnNlU3RhcGxl",
    "secret_assignment": "CLIENT_SECRET=Hx7Lp2Qm9Rk4Zt8WvB3n",
}
assert set(PLANTS) == {r.name for r in SECRET_RULES}
LIBPQ = "HOST=db2.prod.internal USER=app PASSWORD=Zq82kLmvTT DBNAME=births"
SALT = "run-salt-7f3a"


def _windows(value: str, n: int = 8) -> set[str]:
    return {value[i:i + n] for i in range(len(value) - n + 1)}


@pytest.fixture
def planted(server, throwaway):
    make_birth_surface(server, throwaway)
    with as_owner(server, throwaway) as c:
        c.execute("create table extra_notes (id int primary key, t text, v varchar(500), j json, jb jsonb)")
        for i, (rule, secret) in enumerate(PLANTS.items()):
            rid = 100 + i
            c.execute("insert into extra_notes values (%s, %s, %s, %s, %s)",
                      (rid, f"note: {secret} end", secret, Json({"k": secret}), Jsonb({"deep": [secret]})))
            c.execute("insert into system_issues (id, code, severity, details, opened_at) "
                      "values (%s, %s, 'info', %s, now())", (rid, f"leak {secret}", Jsonb({"ctx": secret})))
            c.execute("insert into directus_activity (id, action, collection, item) values (%s, 'x', 'c', 'i')",
                      (rid,))
            c.execute("insert into directus_revisions (id, activity, collection, item, data) "
                      "values (%s, %s, 'c', %s, %s)", (rid, rid, secret[:255], Json({"v": secret})))
        c.execute("insert into extra_notes (id, t) values (999, %s)", (LIBPQ,))
        c.execute("update directus_users set password = %s, auth_data = %s where id = %s",
                  (PLANTS["password_hash"], Json({"sso": "x"}), USERS[0]))
        c.execute("insert into directus_sessions (token, \"user\", expires) values (%s, %s, now())",
                  ("SessTok" + "9" * 40, USERS[0]))
        c.execute("update directus_webhooks set headers = %s where id = 1",
                  (Json([{"header": "Authorization", "value": "Bearer abc"}]),))
    return throwaway


def _factory(server, tw):
    return lambda db: server.connect(db, tw.login, purpose="secret scan")


def test_every_rule_found_where_planted(server, planted):
    findings = scan_secrets(_factory(server, planted), planted.database, load_contract(None), SALT, workers=3)
    got = {(f.rule, f.table, f.column, f.row_key) for f in findings}
    for i, rule in enumerate(PLANTS):
        rid = str(100 + i)
        for table, column in [("extra_notes", "t"), ("extra_notes", "v"), ("extra_notes", "j"),
                              ("extra_notes", "jb"), ("system_issues", "code"), ("system_issues", "details"),
                              ("directus_revisions", "item"), ("directus_revisions", "data")]:
            assert (rule, table, column, rid) in got, (rule, table, column)
    assert ("connection_string_password", "extra_notes", "t", "999") in got
    assert ("must_be_null", "directus_users", "password", USERS[0]) in got
    assert ("must_be_null", "directus_users", "auth_data", USERS[0]) in got
    assert ("password_hash", "directus_users", "password", USERS[0]) in got
    assert ("secret_header", "directus_webhooks", "headers", "1") in got
    empty = [f for f in findings if f.rule == "must_be_empty"]
    assert [(f.table, f.extra["rows"]) for f in empty] == [("directus_sessions", 1)]
    # the session token is the sessions' primary key: never shown as a row key
    assert all("SessTok" not in (f.row_key or "") for f in findings)
    # same secret, same run salt: same fingerprint wherever it sits
    fps = {f.fingerprint for f in findings if f.rule == "aws_access_key"}
    assert len(fps) == 1 and len(fps.pop()) == 16


def test_findings_never_carry_a_value(server, planted):
    findings = scan_secrets(_factory(server, planted), planted.database, load_contract(None), SALT, workers=2)
    text = "\n".join([str(findings), json.dumps([f.as_dict() for f in findings])])
    for secret in [*PLANTS.values(), LIBPQ, "SessTok" + "9" * 40]:
        assert secret not in text
        leaked = [w for w in _windows(secret) if w in text]
        assert leaked == [], leaked


def test_clean_clone_has_no_findings(server, throwaway):
    """sha256 columns and ordinary rows are data, not secrets."""
    make_birth_surface(server, throwaway)
    with as_owner(server, throwaway) as c:
        c.execute("create table notes (id int primary key, body text, meta jsonb)")
        c.execute("""insert into notes values
          (1, 'password=changeme is what the old docs said', '{"token_type": "bearer"}'),
          (2, 'see postgres://db.example.test:5432/app for the schema', '{"sha": "%s"}'),
          (3, 'risk-assessment-for-the-new-service, task-1234567890abcdefghijk', '{"api_key": "${FROM_ENV}"}')
        """ % ("ab" * 32))
        c.execute("update birth_registry set content_hash = %s", ("9f" * 32,))
    findings = scan_secrets(_factory(server, throwaway), throwaway.database, load_contract(None), SALT)
    assert findings == []


def test_fingerprints_change_with_the_salt(server, planted):
    def fp(salt):
        return {f.fingerprint for f in scan_secrets(_factory(server, planted), planted.database,
                                                     load_contract(None), salt) if f.rule == "stripe_key"}
    assert fp("a") != fp("b")
    with pytest.raises(ValueError):
        scan_secrets(_factory(server, planted), planted.database, load_contract(None), "")


def test_catalog_user_mapping_password(server, throwaway):
    with superuser(server, throwaway.database) as c:
        c.execute("create extension if not exists postgres_fdw")
        c.execute("create server prod_srv foreign data wrapper postgres_fdw options (host 'db.prod.internal')")
        c.execute("create user mapping for public server prod_srv options (user 'app', password 'Hunter2Hunter2x')")
        # as if the dump's role had been given the wrapper: then it owns the server and sees the options
        c.execute(sql.SQL("grant usage on foreign data wrapper postgres_fdw to {}").format(
            sql.Identifier(throwaway.login.role)))
        c.execute(sql.SQL("alter server prod_srv owner to {}").format(sql.Identifier(throwaway.login.role)))
    with proof(server, throwaway) as c:
        findings = scan_catalog(c)
    mapping = [f for f in findings if f.rule == "user_mapping_password"]
    assert len(mapping) == 1 and mapping[0].extra == {"server": "prod_srv", "user": "public"}
    assert "Hunter2" not in str(findings)
