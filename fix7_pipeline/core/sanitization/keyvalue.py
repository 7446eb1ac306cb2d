"""Key/value context: whether what follows a secret-sounding key can be a secret.

fix7's assignment and header rules key on a word (`token`, `auth`, `credential`, `Bearer`) and match any
long enough value after it, at a low entropy floor, so a real credential of few characters' variety is kept.
What holds the look-alikes down is read here, from the key the value was written under and the value's own
shape, the same in a JSON object, a config line, a URL query or a header:

- a key that names something else than a secret: an id, a URL or endpoint, a name, a hash or digest, an
  expiry, a reference (`token_id`, `secret_arn`, `token_endpoint`, `password_hash`), or a public half
  (`public_key`, `publishable_key`);
- a value that is a reference or a placeholder (`${VAR}`, `{{ var }}`, `%(var)s`, `<your-key>`, `arn:`,
  `vault:`), a mask (`********`, `xxxx…`), a URL, a file path (an object key `uploads/2024/a1b2.png`), or a
  phrase of words (`birth-cdn-credentials-84`);
- a value with too little variety to be generated (fewer than 6 distinct characters).
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote_to_bytes

from .documentation_values import is_documentation, is_placeholder_word
from .generated_values import GENERATED_VALUE, looks_generated

# Rules that judge by context or look rather than by a provider's format: a word before the value, or what the
# value looks like. They rank after a provider's pattern, and a contract's look-alike column silences them.
KEYED_ON_A_WORD = ("fix7.secret-assignment", "fix7.authorization-header", GENERATED_VALUE)

# the key right before a value: `key=`, `"key": "`, `key => '`, `\"key\": \"` (JSON inside a string)
_KEY_BEFORE = re.compile(rb"([A-Za-z0-9_.-]{1,80})(?:\\?[\"']){0,3}\s*(?:=|:|=>)\s*(?:\\?[\"']){0,3}\s*$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_OTHER_THING = re.compile(
    r"(?:^|_)(?:id|ids|uuid|guid|arn|url|urls|uri|endpoint|endpoints|host|hostname|domain|path|file|filename|"
    r"dir|name|names|type|kind|version|hash|hashed|digest|checksum|sha|sha1|sha256|sha512|md5|etag|fingerprint|"
    r"length|len|size|count|expiry|expires|expires_at|expires_in|expiration|ttl|lifetime|format|prefix|hint|ref|"
    r"reference|policy|scope|scopes|provider|issuer|audience|header|field|column|label|mode|method|algorithm|alg|"
    r"strategy|status|state|enabled|required|rotation|rotated_at|location|region|template|type_id|owner|user|"
    r"username|login|email|created|created_at|updated_at|last_used|source|description|commit|revision|rev|cursor|nonce|salt|iv|h1|"
    r"subject|sub|claim|claims|aud|iss|"
    # a public address or a content address: whom a message goes to, where a payment lands, what a file hashes to
    r"recipient|recipients|sender|address|wallet|cid|did|"
    r"image|img|icon|logo|avatar|photo|thumbnail|"
    # a key of a data structure, not a credential (added after v2's held-out measurement)
    r"(?:cache|idempotency|partition|sort|primary|foreign|routing|dedup|dedupe|lookup|object|row|map|index|shard|"
    r"group|order|composite|natural|surrogate|unique|storage|s3|blob)_key|"
    # an object of commerce: a Stripe-style typed id (`price_1Nx…`), not a credential (tuning, v2's classes)
    r"price|prices|product|products|plan|sku|invoice|customer|subscription|charge|coupon)$")
_ACCOUNT_NAME = re.compile(r"(?:^|_)(?:user|username|login|email)$")
# a public half, or a public JSON Web Key's parts (its modulus `n`, exponent `e`, curve point `x`/`y`, certificates)
_PUBLIC = re.compile(r"public|publishable|(?:^|_)pub(?:$|_)|author|^(?:n|e|x|y|x5c|x5t|x5t_s256)$")
_REFERENCE = re.compile(rb"^(?:\$\{|\$\(|\{\{|%\(|<|arn:|vault:|op://|ref\+|env:|secret/|ssm:|sm://|awssm)|\}\}?$|>$")
_MASK = re.compile(rb"(.)\1{5,}")
_DIGEST_LABEL = re.compile(rb"^(?:sha1|sha224|sha256|sha384|sha512|md5)[-:]", re.I)  # sha256-AP1A…= (SRI): a digest
_PATH = re.compile(rb"^[\w.-]*(?:/[\w.-]+)+\.[A-Za-z][A-Za-z0-9]{1,4}$")  # uploads/2024/a1b2.png: an object key
# Words (a version suffix, short numbers) joined by - _ . : the name of a secret ("birth-cdn-credentials-84"), not one
# (a word longer than 12 letters is a random run: hf_ and 34 letters is a Hugging Face token).
_WORD_PHRASE = re.compile(rb"[A-Za-z]{2,12}(?:[-_.](?:[A-Za-z]{1,12}[0-9]{0,3}|[0-9]{1,4}))+")
# a value that is itself an assignment (`Server=127.0.0.1`, `--password=password`): never base64's end padding
_ASSIGNMENT = re.compile(rb"^-{0,2}([A-Za-z_][A-Za-z0-9_.-]*)=(?!=*$)")
_SECRET_WORD = re.compile(r"password|passwd|pwd|passphrase|secret|token|key|auth|credential|creds")
MIN_DISTINCT = 6
# A value shorter than these is kept only under a key that names a credential outright (`password`, `token`,
# `api_key`, `secret`, `credential`: not `auth`, nor `key` alone) or in an Authorization header, and only when it is
# more than a word (`kafka123`, `hardcoded0`) or a word that is no state or stand-in (`petclinic` is a password,
# `changeme`, `required`, `redacted` are not); digits alone are not.
SHORT_ASSIGNMENT, SHORT_HEADER = 12, 16
_STRONG_KEY = re.compile(r"(?:^|_)(?:password|passwd|pwd|pass|passphrase|secret|token|api_key|apikey|credential|"
                         r"credentials|creds)(?:$|_)")
_MORE_THAN_A_WORD = re.compile(rb"[A-Za-z]").search, re.compile(rb"[^A-Za-z]").search
# a word under a password key that says how the password is kept rather than being one (a stand-in for one, like
# `changeme`, is documentation_values' placeholder word)
_STATE_WORD = re.compile(
    rb"required|optional|enabled|disabled|inherit|inherited|external|generated|rotated|expired|revoked|pending|"
    rb"invalid|missing|notset|unset|removed|masked|provided|supplied|encrypted|undefined|anonymous|readonly", re.I)


def key_before(data: bytes, start: int) -> str | None:
    """The key a value at `start` is assigned to, lower case with camelCase split by `_` (None: no key)."""
    return _key_and_reference(data, start)[0]


def _key_and_reference(data: bytes, start: int) -> tuple[str | None, bool]:
    """(key_before's key, whether that word is a variable's name read rather than a key written:
    `$GITHUB_TOKEN:x-oauth-basic@`)."""
    m = _KEY_BEFORE.search(data, max(0, start - 120), start)
    if not m:
        return None, False
    return _normal(m.group(1)), data[max(0, m.start() - 1):m.start()] in (b"$", b"{", b"%")


def _normal(key: bytes) -> str:
    return re.sub(r"[-.]", "_", _CAMEL.sub("_", key.decode("ascii", "replace"))).lower()


def key_names_a_secret(key: str | None, *, generated: bool = False) -> bool:
    """A key some secret word matched that still names something else (an id, a URL, a public half).

    `generated`: the value looks generated, which no user name or e-mail address does, so a key naming one
    (`login`, `user`) says nothing about it."""
    if key is None:
        return True
    if generated:
        key = _ACCOUNT_NAME.sub("", key)
    return not (_OTHER_THING.search(key) or _PUBLIC.search(key))


def value_can_be_secret(value: bytes) -> bool:
    """Not a URL, a reference, a placeholder, a mask or a phrase of words, and varied enough (read through
    URL encoding: a query string carries `%24%7BVAR%7D`)."""
    if b"%" in value:
        value = unquote_to_bytes(value)
    if (b"://" in value or value.startswith(b"//") or _WORD_PHRASE.fullmatch(value) or _REFERENCE.search(value)
            or _MASK.search(value) or _PATH.match(value) or _DIGEST_LABEL.match(value)):
        return False
    return len(set(value)) >= MIN_DISTINCT


def key_names_a_credential(key: str | None) -> bool:
    """A key that names a credential outright, so that a short value under it is one."""
    return key is not None and _STRONG_KEY.search(key) is not None and key_names_a_secret(key)


def more_than_a_word(value: bytes) -> bool:
    return all(test(value) for test in _MORE_THAN_A_WORD)


BASIC_CREDENTIALS = "fix7.basic-credentials"


def basic_credentials(value: bytes) -> bool:
    """base64 of `user:password` (RFC 7617): printable, a colon with something on each side."""
    try:
        raw = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, colon, password = raw.partition(b":")
    return bool(colon and user and password) and all(32 <= c < 127 for c in raw)


_TOKEN_EDGE = re.compile(rb"[\s\"'=,;(\[{]")


def _inside_arn(data: bytes, start: int) -> bool:
    """The match's key and value lie inside one Amazon Resource Name (a reference to a secret, never one)."""
    lo = max(0, start - 200)
    edges = [m.end() for m in _TOKEN_EDGE.finditer(data, lo, start)]
    return data.startswith(b"arn:", edges[-1] if edges else lo)


def plausible(rule_id: str, data: bytes, start: int, end: int) -> bool:
    """Whether a match, `data[start:end]`, can be a secret: not a documentation value (any rule), and for a
    word-keyed rule a value and key that can hold one."""
    if is_documentation(rule_id, data, start, end, generic=rule_id in KEYED_ON_A_WORD):
        return False
    if rule_id == BASIC_CREDENTIALS:
        return basic_credentials(data[start:end])
    if rule_id in KEYED_ON_A_WORD and _inside_arn(data, start):
        return False  # `arn:aws:secretsmanager:…:secret:dev/db-AbCdEf` names a secret, it holds none
    if rule_id == GENERATED_VALUE:
        value = data[start:end]
        return looks_generated(value) and value_can_be_secret(value) and \
            key_names_a_secret(key_before(data, start), generated=True)
    if rule_id not in KEYED_ON_A_WORD:
        return True
    value = data[start:end]
    key = None
    if rule_id == "fix7.secret-assignment" and (inner := _ASSIGNMENT.match(value)) and \
            not looks_generated(inner.group(1)):  # `Ci0a2bSpRy…=XVoh…` is a token with `=` in it
        # the value is an assignment itself (`DB_PASSWORD=hardcoded4` under `passwords`): its own key decides
        key = _normal(inner.group(1))
        if not _SECRET_WORD.search(key):
            return False  # `Server=127.0.0.1;…` under `auth`
        value, start = value[inner.end():], start + inner.end()
    if not value_can_be_secret(value):
        return False
    if rule_id == "fix7.secret-assignment":
        written, reference = _key_and_reference(data, start)
        if reference:
            return False
        key = key or written
        if len(value) < SHORT_ASSIGNMENT:
            return key_names_a_credential(key) and (more_than_a_word(value) or (
                value.isalpha() and not _STATE_WORD.fullmatch(value) and not is_placeholder_word(value)))
        return key_names_a_secret(key)
    return len(value) >= SHORT_HEADER or more_than_a_word(value)
