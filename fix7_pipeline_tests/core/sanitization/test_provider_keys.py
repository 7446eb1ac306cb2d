"""Provider-named keys and vendor-prefixed tokens: rules derived from the pinned catalogs (no hand-written word
list), found in every shape a producer writes them; ids, digests and base64 text under such keys or with such
prefixes are left alone. Values are random per run; assertions compare rule names only."""

from __future__ import annotations

import json
import random
import string

import pytest

from fix7_pipeline.core.sanitization import field_detectors, provider_keys, rules, textscan
from fix7_pipeline_tests.core.sanitization.test_keyvalue import _shapes

SALT = "pk-test"
_rng = random.SystemRandom()


def _rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    while True:
        s = "".join(_rng.choice(alphabet) for _ in range(n))
        if alphabet != string.ascii_letters + string.digits or (
                any(c.isdigit() for c in s) and any(c.islower() for c in s) and any(c.isupper() for c in s)):
            return s


def _rules(text: str) -> set[str]:
    return {r for h in textscan.scan_value(text.encode(), SALT) for r in h.rules}


def test_provider_words_come_from_the_catalogs():
    plugins = tuple(sorted({r.plugin for r in field_detectors.detect_secrets_rules()[0]}))
    words = provider_keys.provider_words(provider_keys._catalog_ids(str(rules.cache_dir())), plugins)
    assert {"aiven", "mailgun", "github", "twilio", "openai"} <= set(words)
    assert not set(words) & provider_keys.GENERIC and "git" not in words  # GitHubTokenDetector -> github
    assert rules.engine().info(provider_keys.PROVIDER_ASSIGNMENT) is not None


@pytest.mark.parametrize("key", ["aiven", "Mailgun", "github_pat", "twilio"])
def test_a_value_under_a_provider_name_alone_is_found_in_every_shape(key):
    value = _rand(22)
    for shape, text in _shapes(key, value).items():
        if shape == "header":
            continue
        assert _rules(text), (key, shape)


@pytest.mark.parametrize("key,value", ids=lambda v: v if len(v) < 20 else "value", argvalues=[
    ("github_commit", _rand(40, "0123456789abcdef")),
    ("stripe_customer_id", "cus_" + _rand(14)),
    ("github_url", "https://github.example.test/birth/" + _rand(12)),
    ("secret_arn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:birth/db-" + _rand(6)),
    ("integrity", "sha512-" + _rand(60)),
    ("jwks", json.dumps({"kty": "RSA", "n": _rand(40) + "-abcd-" + _rand(40) + "_" + _rand(30), "e": "AQAB"})),
])
def test_ids_digests_and_base64_text_are_left_alone(key, value):
    for shape, text in _shapes(key, value).items():
        if shape == "header":
            continue
        found = _rules(text) & {provider_keys.PROVIDER_ASSIGNMENT, provider_keys.PREFIXED_TOKEN}
        assert not found, (key, shape, found)


@pytest.mark.parametrize("prefix", ["zq_", "acme_live_", "vnd-pat-"])
def test_a_vendor_prefixed_token_is_found_under_any_key(prefix):
    token = prefix + _rand(36)
    for text in (json.dumps({"value": token}), f"Re-ran the import with {token} and approved.",
                 f"https://app.example.test/cb?data={token}&lang=en"):
        assert provider_keys.PREFIXED_TOKEN in _rules(text), (prefix, text[:8])
    assert provider_keys.PREFIXED_TOKEN not in _rules(json.dumps({"value": prefix + _rand(36, "abcdef0123456789")}))


@pytest.mark.parametrize("alphabet", ["mixed", "lower", "upper"])
def test_a_generated_value_under_a_neutral_key_is_found(alphabet):
    chars = {"mixed": string.ascii_letters + string.digits, "lower": string.ascii_lowercase + string.digits,
             "upper": string.ascii_uppercase + string.digits}[alphabet]
    while True:
        value = _rand(32, chars)
        if any(c.isdigit() for c in value) and len(set(value)) >= 20:
            break
    for key in ("value", "data", "conn"):
        for shape, text in _shapes(key, value).items():
            if shape == "header":
                continue
            assert provider_keys.GENERATED_VALUE in _rules(text), (alphabet, key, shape)


@pytest.mark.parametrize("what", ["hex digest", "uuid", "base64 json cursor", "words", "one case, few characters"])
def test_what_only_looks_generated_is_left_alone(what):
    import base64
    import uuid
    value = {"hex digest": _rand(40, "0123456789abcdef"), "uuid": str(uuid.uuid4()),
             "base64 json cursor": base64.urlsafe_b64encode(json.dumps({"after": str(uuid.uuid4()), "limit": 50})
                                                            .encode()).decode().rstrip("="),
             "words": "birth-registry-backfill-2024-final",
             "one case, few characters": _rand(30, "abcdefgh0123")}[what]
    for key in ("value", "data"):
        for shape, text in _shapes(key, value).items():
            if shape == "header":
                continue
            assert provider_keys.GENERATED_VALUE not in _rules(text), (what, key, shape)
