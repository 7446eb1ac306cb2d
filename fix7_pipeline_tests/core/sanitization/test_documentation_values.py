"""Documentation values and placeholders: a URL whose password is a placeholder, a hand-written run in order
or a repeated unit under a generic rule, a JWT whose header is no JSON are not findings; the same shapes with
a generated password or token are. Values are random per run where they stand for a secret; assertions
compare counts and rule names only."""

from __future__ import annotations

import base64
import json

import pytest

from fix7_pipeline.core.sanitization import documentation_values as dv, textscan
from fix7_pipeline_tests.e2e_support import rnd

SALT = "doc-test"


def _found(text: str) -> int:
    return len(textscan.scan_value(text.encode(), SALT))


@pytest.mark.parametrize("password", ["password", "mypassword", "YOUR_PASSWORD", "REPLACE_WITH_PASSWORD", "pass",
                                      "{{pass}}", "${DB_PASSWORD}", "********", "1111", "svc_reporting"])
@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mongodb", "https"])
def test_a_url_with_a_placeholder_password_is_no_finding(scheme, password):
    assert _found(json.dumps({"value": f"{scheme}://svc_reporting:{password}@db.internal.test:5432/app"})) == 0


@pytest.mark.parametrize("scheme", ["postgresql", "mysql", "mongodb", "https"])
def test_a_url_with_a_real_password_is_found_whatever_its_host(scheme):
    for host in ("db.internal.test", "db.example.com", "localhost"):
        password = rnd(18)
        assert _found(json.dumps({"value": f"{scheme}://svc_reporting:{password}@{host}:5432/app"})) == 1, host
    # a weak password is a password: a word with more to it than the placeholder
    assert _found(json.dumps({"value": f"{scheme}://svc:mySecret{rnd(3)}2024@db.internal.test/app"})) == 1


def test_a_generated_look_in_order_is_documentation_under_a_neutral_key():
    doc = "zq_12345678901aBcDeFgHiJkLmNoPqRsT1234567890abcde"
    assert _found(json.dumps({"data": doc})) == 0
    assert _found(json.dumps({"data": "zq_" + rnd(46)})) == 1
    # under a secret word the key vouches: kept
    assert _found(json.dumps({"zq_token": doc})) == 1


def test_a_repeated_unit_or_a_marker_is_documentation_for_generic_rules_only():
    assert _found(json.dumps({"api_token": "abcd1234" * 8})) == 0
    assert _found(json.dumps({"api_token": "ssk-NotARealKeyButLooksLike" + rnd(8)})) == 0
    assert _found(json.dumps({"api_token": rnd(40)})) == 1
    # a provider's own pattern keeps a hand-written value in its format (GitHub's ghp_ and 36)
    assert _found(json.dumps({"value": "ghp_" + "ab" * 18})) == 1


def test_a_jwt_pattern_inside_a_word_is_no_jwt():
    assert _found("keyJob.start(); foreignKeyJsonObject.get(name)") == 0
    b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    token = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': rnd(12)})}.{rnd(43)}"
    assert _found(f"session={token}") >= 1
    # a header longer than the shape checks read (a certificate chain in x5c) is still read whole
    long_header = b64({"alg": "RS256", "x5c": [rnd(700)]})
    span = f"{long_header}.{b64({'sub': rnd(12)})}.{rnd(43)}".encode()
    assert not dv.is_documentation("detect-secrets.JwtTokenDetector.0", span, 0, len(span), generic=False)


def test_a_typed_object_id_and_an_sri_digest_are_no_credentials():
    assert _found(json.dumps({"price": "price_" + rnd(24)})) == 0
    assert _found(json.dumps({"auth": "sha256-" + base64.b64encode(rnd(32).encode()).decode()})) == 0


def test_the_checks_read_only_the_match():
    assert dv._in_order(b"xxabcdefghxx") and dv._in_order(b"aAbBcCdDeEfFgGhH") and not dv._in_order(b"Zq81xLmW4pT7")
    assert dv._periodic(b"ab" * 12) and not dv._periodic(b"AKIA" + b"Q7" * 3)
    assert dv.url_credentials_are_placeholders(b"x mysql://app:app@h/db", 6, 18)
    assert not dv.url_credentials_are_placeholders(b"mysql://app:Zq81xLmW4p@h/db", 0, 20)


def test_the_key_pair_aws_publishes_is_documentation_for_every_rule():
    """AWS's documented pair matches provider patterns as well as the generic rules: never a finding. A key
    id of the same shape is."""
    doc = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    assert _found(doc) == 0
    assert _found("aws_access_key_id = AKIA" + rnd(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")) == 1


@pytest.mark.parametrize("password", ["{PASSWORD_HERE}", "PLACEHOLDER", "{2}", "<YourStrong@Passw0rd>", "DBPASSWORD",
                                      "changeit"])
def test_a_connection_string_with_a_placeholder_password_is_no_finding(password):
    for text in (f"Server=db.internal.test;Database=births;User Id=app;Password={password};",
                 f"jdbc:postgresql://db.internal.test/births?user=app&password={password}"):
        assert _found(json.dumps({"value": text})) == 0, text
    real = rnd(14)
    assert _found(json.dumps({"value": f"Server=db.internal.test;Database=births;User Id=app;Password={real};"})) >= 1


def test_a_template_user_with_githubs_fixed_password_is_no_finding_and_a_token_there_is():
    assert _found("git remote add origin https://${GITHUB_TOKEN}:x-oauth-basic@github.com/acme/births.git") == 0
    token = "ghp_" + rnd(36)
    assert _found(f"git remote add origin https://{token}:x-oauth-basic@github.com/acme/births.git") >= 1


def test_a_placeholder_run_is_documentation_and_a_twitter_bearer_tokens_leading_run_is_not():
    assert _found(json.dumps({"value": "glpat-" + "a" * 20})) == 0
    assert _found(json.dumps({"twitter_bearer_token": "A" * 22 + rnd(90)})) >= 1


def test_a_token_filled_or_masked_within_a_longer_match_is_documentation():
    # the run is judged against its token, not against the registry URL a rule matched with it
    assert _found(json.dumps({"data": "//registry.npmjs.org/:_authToken=npm_" + "0" * 36})) == 0
    assert _found(json.dumps({"data": "ghp_" + rnd(30) + "x" * 6})) == 0
    assert _found(json.dumps({"data": "//registry.npmjs.org/:_authToken=npm_" + rnd(36)})) >= 1
    assert _found(json.dumps({"data": "ghp_" + rnd(33) + "x" * 3})) >= 1


def test_a_template_password_behind_a_named_expansion_is_no_finding():
    assert _found(json.dumps({"value": "redis://admin:$env{admin_pwd}@cache.internal.test"})) == 0


def test_a_private_key_block_whose_body_is_a_template_is_no_finding():
    assert _found(json.dumps({"setting": "-----BEGIN PRIVATE KEY-----\n${ENV_PRIVATE_KEY}\n-----END PRIVATE KEY-----"})) == 0


def test_the_storage_emulators_published_key_is_documentation():
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    assert _found(f"DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey={key};") == 0
