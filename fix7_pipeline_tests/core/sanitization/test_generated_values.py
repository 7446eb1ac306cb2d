"""A generated-looking value under any key (neutral words, a provider's name alone) is found in every shape a
producer writes it; digests, UUIDs, base64 of text, words and ids under id keys are left alone. Values are random
per run; assertions compare rule names only, and test ids never carry a value."""

from __future__ import annotations

import base64
import json
import random
import string
import uuid

import pytest

from fix7_pipeline.core.sanitization import generated_values, rules, textscan
from fix7_pipeline_tests.core.sanitization.test_keyvalue import _shapes

SALT = "gv-test"
RULE = generated_values.GENERATED_VALUE
_rng = random.SystemRandom()
ALPHABETS = {"mixed": string.ascii_letters + string.digits, "lower": string.ascii_lowercase + string.digits,
             "upper": string.ascii_uppercase + string.digits}


def _rand(n: int, alphabet: str) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _generated(alphabet: str) -> str:
    while True:
        v = _rand(32, ALPHABETS[alphabet])
        if any(c.isdigit() for c in v) and len(set(v)) >= 20 and (alphabet != "mixed" or (
                any(c.islower() for c in v) and any(c.isupper() for c in v))):
            return v


def _rules(text: str) -> set[str]:
    return {r for h in textscan.scan_value(text.encode(), SALT) for r in h.rules}


def test_the_rule_is_in_the_registry():
    assert rules.engine().info(RULE) is not None


@pytest.mark.parametrize("alphabet", sorted(ALPHABETS))
@pytest.mark.parametrize("key", ["value", "data", "conn", "aiven", "Mailgun"])
def test_a_generated_value_under_any_key_is_found_in_every_shape(alphabet, key):
    value = _generated(alphabet)
    for shape, text in _shapes(key, value).items():
        if shape == "header":
            continue
        assert RULE in _rules(text), (alphabet, key, shape)


LOOKALIKES = {
    "hex digest": lambda: _rand(40, "0123456789abcdef"),
    "uuid": lambda: str(uuid.uuid4()),
    "base64 json cursor": lambda: base64.urlsafe_b64encode(
        json.dumps({"after": str(uuid.uuid4()), "limit": 50}).encode()).decode().rstrip("="),
    "words": lambda: "birth-registry-backfill-2024-final",
    "one case, few characters": lambda: _rand(30, "abcdefgh0123"),
    "hex behind 0x": lambda: "0x" + _rand(40, "0123456789abcdef"),
}


@pytest.mark.parametrize("what", sorted(LOOKALIKES))
def test_what_only_looks_generated_is_left_alone(what):
    value = LOOKALIKES[what]()
    for key in ("value", "data"):
        for shape, text in _shapes(key, value).items():
            if shape == "header":
                continue
            assert RULE not in _rules(text), (what, key, shape)


def test_a_sixteen_character_generated_password_is_found_and_one_case_ids_of_that_length_are_not():
    while True:
        value = _rand(16, ALPHABETS["mixed"])
        if len(set(value)) >= 13 and any(c.isdigit() for c in value) and value.lower() != value != value.upper():
            break
    for key in ("value", "postgresql", "conn"):
        assert RULE in _rules(json.dumps({key: value})), key
    assert RULE not in _rules(json.dumps({"value": _rand(16, ALPHABETS["lower"])}))
    assert RULE not in _rules(json.dumps({"value": _rand(15, ALPHABETS["mixed"])}))


@pytest.mark.parametrize("key", ["request_id", "git_commit", "next_cursor", "avatar", "content_hash", "recipient", "cid",
                                 "wallet_address"])
def test_a_key_naming_something_else_silences_it(key):
    value = _generated("mixed")
    assert RULE not in _rules(json.dumps({key: value})), key
    assert RULE in _rules(json.dumps({"value": value}))


def test_a_digest_or_uuid_never_becomes_a_candidate():
    """The pattern itself passes over hex runs and UUIDs (a clone holds millions: each candidate is scanned alone
    again in Python, which at 1M rows cost six times the scan)."""
    fields = [json.dumps({"content_hash": _rand(64, "0123456789abcdef")}), json.dumps({"id": str(uuid.uuid4())}),
              f"ETAG={_rand(32, '0123456789abcdef')}"]
    chunk = b"\x00".join(f.encode() for f in fields) + b"\x00"
    assert textscan._plain_candidates(chunk, rules.engine().scanner) == []


def _base64_key(n: int) -> str:
    while True:  # random bytes in base64 with + or / in it: an AWS secret key, a storage account key
        v = base64.b64encode(_rng.randbytes(n)).decode()
        if ("+" in v or "/" in v) and any(c.isdigit() for c in v):
            return v


@pytest.mark.parametrize("what", ["40 characters", "88 with padding", "300 characters"])
def test_a_base64_or_long_generated_value_is_found(what):
    value = {"40 characters": lambda: _base64_key(30), "88 with padding": lambda: _base64_key(64),
             "300 characters": lambda: _generated("mixed") * 9 + _rand(12, ALPHABETS["mixed"])}[what]()
    for shape, text in _shapes("data", value).items():
        if shape in ("header", "url query"):
            continue
        assert RULE in _rules(text), (what, shape)


@pytest.mark.parametrize("key", ["login", "user", "username"])
def test_a_generated_value_under_an_account_key_is_found(key):
    """A user name is never generated-looking: under `login` a random 32-character run is a credential."""
    assert RULE in _rules(json.dumps({key: _generated("mixed")})), key
    assert RULE not in _rules(json.dumps({f"{key}_id": _generated("mixed")})), key


@pytest.mark.parametrize("what", ["png", "jpeg", "pdf", "gzip"])
def test_base64_of_a_file_is_left_alone(what):
    magic = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff\xe0", "pdf": b"%PDF-1.7\n", "gzip": b"\x1f\x8b\x08"}
    value = base64.b64encode(magic[what] + _rng.randbytes(60)).decode()
    assert RULE not in _rules(json.dumps({"data": value})), what
    assert RULE in _rules(json.dumps({"data": base64.b64encode(b"\x07" + _rng.randbytes(60)).decode()}))


@pytest.mark.parametrize("part", ["n", "e", "x", "y"])
def test_a_public_json_web_keys_parts_are_left_alone(part):
    """A JWK's modulus and curve point are public; its private exponent `d` is not."""
    value = base64.urlsafe_b64encode(_rng.randbytes(64)).decode().rstrip("=")
    assert RULE not in _rules(json.dumps({"kty": "RSA", part: value})), part
    assert RULE in _rules(json.dumps({"kty": "RSA", "d": value}))


@pytest.mark.parametrize("key", ["nonce", "csp_nonce", "salt", "h1"])
def test_a_nonce_or_salt_or_module_hash_is_left_alone(key):
    assert RULE not in _rules(json.dumps({key: _base64_key(24)})), key


def test_a_public_key_in_base64_is_left_alone_and_a_private_one_is_not():
    """DER SubjectPublicKeyInfo (SEQUENCE { SEQUENCE { algorithm }, BIT STRING }) is public; PKCS#8 is not."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    for key in (rsa.generate_private_key(public_exponent=65537, key_size=2048), ec.generate_private_key(ec.SECP384R1())):
        public = base64.b64encode(key.public_key().public_bytes(ser.Encoding.DER,
                                                                ser.PublicFormat.SubjectPublicKeyInfo)).decode()
        private = base64.b64encode(key.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8,
                                                     ser.NoEncryption())).decode()
        assert not generated_values.public_key_info(private.encode())
        assert RULE not in _rules(json.dumps({"data": public})), "a public key was reported"
        assert RULE in _rules(json.dumps({"data": private})), "a private key in base64 was not found"
