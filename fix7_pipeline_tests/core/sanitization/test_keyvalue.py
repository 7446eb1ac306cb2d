"""Key/value context: neutral keys and low-entropy credentials are found in every shape a producer writes
them; what the key or the value says is not a secret (an id, a reference, a public half) is left alone.
Values are random per run and never printed: assertions compare rule names and counts only."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from fix7_pipeline.core.sanitization import keyvalue, textscan
from fix7_pipeline_tests.e2e_support import rnd

SALT = "kv-test"
ASSIGN = "fix7.secret-assignment"


def _rules(text: str) -> list[set[str]]:
    return [set(h.rules) for h in textscan.scan_value(text.encode(), SALT)]


def _shapes(key: str, value: str) -> dict[str, str]:
    """One key/value pair as the benchmark's contexts write it."""
    return {
        "json value": json.dumps({key: value}),
        "nested json": json.dumps({"integration": {"settings": {key: value}}}),
        "config line": f"# imported\n{key.upper()}={value}\nPOOL_SIZE=5",
        "config in a json string": json.dumps({"config": f"{key.upper()}={value}\nBACKUP_ENABLED=true"}),
        "url query": f"https://directus.example.test/admin/login?{key}={quote(value, safe='')}&lang=en",
        "yaml": f"{key}: {value}",
        "header": f"X-{key.replace('_', '-')}: {value}",
    }


@pytest.mark.parametrize("key", ["auth", "credential", "credentials", "aiven_key", "AivenCredential", "db_passwd",
                                 "x_api_key", "session_token", "provider_auth"])
def test_neutral_and_provider_keys_are_found_in_every_shape(key):
    value = rnd(20)
    for shape, text in _shapes(key, value).items():
        if shape == "header" and not any(w in key.lower() for w in ("key", "token", "auth")):
            continue  # a header named X-Credential is not a header convention
        found = _rules(text)
        assert len(found) == 1 and ASSIGN in found[0], (key, shape, found)


def test_a_low_entropy_real_credential_is_kept():
    """Real passwords and keys of little variety (a word, digits, a hex run) above 2.5 bits/char."""
    for value in ("Summer2024Birth!", "birthregistry" + rnd(4, "0123456789"), rnd(24, "0123456789abcdef")):
        found = _rules(json.dumps({"db_password": value}))
        assert len(found) == 1 and ASSIGN in found[0], found


@pytest.mark.parametrize("key,value", [
    ("token_id", "0f8fad5b-d9cb-469f-a165-70867728950e"),
    ("secret_arn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:birth/db-AbCdEf"),
    ("publishable_key", "pk_live_" + "Q" * 3 + rnd(30)),
    ("public_key", "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + rnd(20)),
    ("token_endpoint", "https://login.example.test/oauth2/v2.0/token"),
    ("credential", "vault:secret/data/birth/app#password"),
    ("auth", "${BIRTH_AUTH_TOKEN}"),
    ("api_key", "x" * 32),
    ("password", "********************"),
    ("password_hash_algorithm", "argon2id-with-pepper"),
    ("secret_name", "birth-cdn-credentials-84"),
    ("token_expires_at", "2026-12-04T10:40:00.000Z"),
    ("key_fingerprint", "SHA256:" + rnd(43)),
    ("key", f"uploads/2024/{rnd(16)}.png"),
], ids=lambda v: v if v.isidentifier() else "value")
def test_look_alikes_under_secret_words_are_not_findings(key, value):
    for shape, text in _shapes(key, value).items():
        found = [r for r in _rules(text) if ASSIGN in r]
        assert found == [], (key, shape)


def test_key_before_reads_every_shape():
    for text, key in ((b'{"aivenCredential": "', "aiven_credential"), (b"AIVEN_KEY=", "aiven_key"),
                      (b'{\\"api_key\\": \\"', "api_key"), (b"token => '", "token"), (b"no key here ", None)):
        assert keyvalue.key_before(text, len(text)) == key, text
    assert keyvalue.key_names_a_secret("aiven_credential") and keyvalue.key_names_a_secret(None)
    assert not keyvalue.key_names_a_secret("token_id") and not keyvalue.key_names_a_secret("publishable_key")


@pytest.mark.parametrize("key", ["cache_key", "idempotency_key", "partition_key", "s3_key", "sort_key"])
def test_a_data_structure_key_is_no_credential_key(key):
    """The word `key` of a cache, an idempotency token or an index names no secret (a UUID or a hex run there)."""
    import uuid
    for value in (str(uuid.uuid4()), "v2:" + rnd(32, "0123456789abcdef")):
        assert _rules(json.dumps({key: value})) == [], key
    assert _rules(json.dumps({"api_key": str(uuid.uuid4())}))  # the same value under a credential key is found


@pytest.mark.parametrize("key", ["db_password", "service_token", "acme_api_key", "client_secret", "credential",
                                 "PASSWD"])
def test_a_short_credential_under_a_credential_key_is_found(key):
    """8 to 11 characters, more than a word (`kafka123`): found under a key that names a credential outright (nine
    distinct characters: a value of less variety can fall under the rules' 2.5 bits/char floor)."""
    import random
    value = "".join(random.sample("abcdefghjkmnpqrstuvwxyz", 6) + random.sample("0123456789", 3))
    for shape in ("json value", "nested json", "config line", "url query", "yaml"):
        found = _rules(_shapes(key, value)[shape])
        assert len(found) == 1 and ASSIGN in found[0], (key, shape, found)


@pytest.mark.parametrize("key,value", [
    ("auth", "kafka123x"),           # `auth` alone names a scheme as often as a credential
    ("api_key_version", "v2.10.3a"),  # a key naming something else
    ("db_password", "changeme"),      # a default, a placeholder
    ("db_password", "required"),      # how the password is kept, not a password
    ("api_token", "disabled"),
    ("client_secret", "redacted"),
    ("session_token", "12345678"),    # digits only
])
def test_a_short_value_that_is_no_credential_is_left_alone(key, value):
    assert _rules(json.dumps({key: value})) == [], key


@pytest.mark.parametrize("value", ["petclinic", "sunflower", "awfasefsd", "Bluebird"])
def test_a_word_password_under_a_password_key_is_found(value):
    """A word is a (weak) password when a key names a credential outright and the word is no state or stand-in."""
    for key in ("db_password", "redis_secret", "mysql_token"):
        found = _rules(json.dumps({key: value}))
        assert len(found) == 1 and ASSIGN in found[0], (key, value)
    assert _rules(json.dumps({"note": value})) == []


def _short() -> str:
    """Ten distinct characters, letters then digits: a short credential above every floor."""
    import random
    return "".join(random.sample("abcdefghjkmnpqrstuvwxyz", 7) + random.sample("0123456789", 3))


def test_a_short_bearer_token_is_found_and_a_word_is_not():
    value = _short()
    found = _rules(f"POST /flows/trigger Authorization: Bearer {value}")
    assert any("fix7.authorization-header" in f for f in found), found
    assert _rules("Authorization: Bearer undefined") == []


def test_basic_credentials_are_found_where_they_decode_to_user_and_password():
    import base64
    creds = base64.b64encode(f"svc_{rnd(5)}:{rnd(12)}".encode()).decode()
    found = _rules(json.dumps({"upstream": f"Basic {creds}"}))
    assert any(keyvalue.BASIC_CREDENTIALS in f for f in found), found
    not_creds = base64.b64encode(rnd(18).encode()).decode()  # no colon: not user:password
    assert not any(keyvalue.BASIC_CREDENTIALS in f for f in _rules(f"note: Basic {not_creds}"))


@pytest.mark.parametrize("sep", ["&", "&amp;"])
@pytest.mark.parametrize("name", ["password", "pwd", "userpass", "pass"])
def test_a_password_in_a_url_query_is_found_behind_an_html_escaped_ampersand(sep, name):
    url = f"jdbc:mysql://db.internal.test/births?user=app{sep}{name}={_short()}"
    found = _rules(url)
    assert any("fix7.connection-string-password.url-query" in f for f in found), (name, sep, found)


@pytest.mark.parametrize("value", ["svc:$apr1$Jq3kT9zw$" + "Xb7Lp2Qm9Rk4Zt8WvB3nQ.",
                                   "{SSHA}" + "Xb7Lp2Qm9Rk4Zt8WvB3nQaYdK2sP"])
def test_apache_and_ldap_password_hashes_are_found(value):
    found = _rules(json.dumps({"note": value}))
    assert any("fix7.password-hash" in f for f in found), found


def test_a_secret_named_inside_an_arn_is_no_finding():
    arn = "arn:aws:secretsmanager:eu-west-2:123456789012:secret:births/db-" + rnd(6)
    assert _rules(json.dumps({"data": arn})) == []
    assert _rules(f"DATA={arn}\nPOOL_SIZE=5") == []


@pytest.mark.parametrize("key", ["token_subject", "sub", "aud"])
def test_a_claim_name_is_no_credential_key(key):
    assert _rules(json.dumps({key: "system:serviceaccount:births:" + rnd(6, "abcdefghjkmnpqrstuvwxyz") + "-writer"})) == []


def test_a_value_that_is_an_assignment_is_judged_by_its_own_key():
    assert _rules(json.dumps({"auth": "Server=127.0.0.1;User ID=sa;Initial Catalog=births"})) == []
    found = _rules(json.dumps({"passwords": "DB_PASSWORD=" + _short()}))
    assert len(found) == 1 and ASSIGN in found[0], found
    token = rnd(30) + "=" + rnd(40)  # a token with `=` inside is still a finding
    assert _rules(json.dumps({"acme_token": token})), "a token with = inside was not found"
