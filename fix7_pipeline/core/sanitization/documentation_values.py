"""Values a reviewer reads as documentation or a placeholder, not as a credential, whatever rule matched them.

Scanners' own test data and docs are full of values shaped like a secret but written by hand: a URL whose
password is `password`, the user's name again, `YOUR_PASSWORD`, `{{pass}}` or a mask; a token with the
alphabet or the digits in order (`aBcDeFgH…1234567890`), a short unit repeated (`abababab…`), or a marker word
(`EXAMPLE`, `NotAReal`); a JWT whose header is no JSON (`keyJob.start()` holds `eyJ`). A generated credential
holds none of these by chance (an 8-long run in order has odds of about 1e-10 in a 40-character token).

The shape checks silence only the generic rules (a value under a secret word, a generated-looking value; a run
in order only the latter): a near-miss of a provider's prefix (`gsk_…` one character too long) is what they
flag. A provider's own pattern is trusted with its format. The URL checks are for the rules that match a URL's user and password, the JWT
check for detect-secrets' JWT pattern (which has no boundary). Decided per hit, never per value.

The price: a real password that holds a marker word (`Example2024!`) under a secret word is no finding of
the generic rules any more; a provider's own pattern still finds a provider's key that does.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

from .generated_values import GENERATED_VALUE

# rules (by prefix) that match credentials in a URL's user information (`scheme://user:password@host`)
URL_CREDENTIAL_RULES = ("detect-secrets.BasicAuthDetector", "betterleaks.generic-credential-uri",
                        "betterleaks.mongodb-connection-string", "betterleaks.sidekiq-sensitive-url",
                        "fix7.connection-string-password")
JWT_RULES = ("detect-secrets.JwtTokenDetector",)
CONNECTION_STRING_RULES = ("fix7.connection-string-password",)  # their match is the password alone

_USERINFO = re.compile(rb"://([^:/?#@\s]{0,128}):([^@/?#\s]{0,256})@([^/?#:\s]{0,255})")
# what GitHub and GitLab take as the password when the user part carries the token
_FIXED_PASSWORDS = (b"x-oauth-basic", b"x-access-token")
# a word for a password, alone or behind `your`/`my`/`replace with` (`mypassword`, `YOUR_PASSWORD`, `pass`);
# with anything more (`mySecret789`, `secret123`) it is a password, however weak
_PLACEHOLDER_WORD = re.compile(
    rb"(?:(?:your|my|the|db|user|admin|new|old|default|replace[_-]?with|insert|enter|change)[_-]?(?:own[_-]?)?)?"
    rb"(?:password|passwd|passphrase|pass|pwd|secret|token|credential|pw)s?(?:[_-]?here)?|changeme|changeit|redacted|"
    rb"hidden|none|null", re.I)
_TEMPLATE = re.compile(rb"^(?:\{\{?.*\}\}?|\$[A-Za-z_]*\{.*\}|\$\(.*\)|<.*>|%\(.*\)s|%[A-Za-z_]+%|\$[A-Za-z_]+)$")
_MASK = re.compile(rb"^(?:[*xX#.]|\xe2\x80\xa2)+$")  # ****, xxxx, •••• (U+2022)
_MARKER = re.compile(rb"example|sample|notareal|notreal|placeholder|dummy", re.I)
# the key pair AWS publishes in its documentation (gitleaks allows it too): never live, whatever rule matched it
# and the storage key Microsoft publishes for its emulator (Azurite, the Azure Storage Emulator)
_PUBLISHED = re.compile(rb"AKIAIOSFODNN7EXAMPLE|wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY|"
                        rb"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
# one character a dozen times in a row over half its token: a placeholder in any format
# (`glpat-aaaaaaaaaaaaaaaaaaaa`, `npm_000…0` behind a registry URL); a Twitter bearer token's leading run of `A`s
# is a fifth of it
_FILLER = re.compile(rb"(.)\1{11,}")
_TOKEN_CHARS = re.compile(rb"[A-Za-z0-9_+/=.-]+")
# a token whose end is masked: `sk-EUk0…fAxxxxxxx`, `…000000`
_MASKED_TAIL = re.compile(rb"(?:x{6,}|X{6,}|0{6,}|\*{4,})$")
# a private key block whose body is a template: `-----BEGIN PRIVATE KEY-----\n${ENV_PRIVATE_KEY}\n-----END…`
_PEM_TEMPLATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:\s|\\[nr])*(?:\$\{|\{\{|<|%\()")
_MIN_PASSWORD_DISTINCT = 5
_RUN = 8          # characters in alphabetical or numeric order
_PERIOD = 8       # the longest repeated unit
_PERIODIC_SHARE = 0.6
_READ = 512       # of a match, the bytes the shape checks read (a word-keyed match can run long)


def url_credentials_are_placeholders(data: bytes, start: int, end: int) -> bool:
    """The URL around the match `data[start:end]` (a rule may match the password alone) has a placeholder
    password: a word for a password, the user's name, a template, a mask, too few distinct characters. Not its
    host: a sanitized dump rewrites hosts to `example.test` and may keep the password."""
    lo = max(0, start - 300)
    m = next((m for m in _USERINFO.finditer(data, lo, min(len(data), end + 300))
              if m.start() < end and m.end() > start), None)
    if not m:
        return False
    user, password, host = m.groups()
    if password in _FIXED_PASSWORDS and _TEMPLATE.match(user):
        return True  # `https://${GITHUB_TOKEN}:x-oauth-basic@github.com`: the token is the template's
    return password_is_placeholder(password, user)


def is_placeholder_word(value: bytes) -> bool:
    """A word for a password alone or behind `your`/`my`/`replace with`, or a stand-in (`changeme`, `redacted`)."""
    return _PLACEHOLDER_WORD.fullmatch(value) is not None


def password_is_placeholder(password: bytes, user: bytes | None = None) -> bool:
    """A password that is a word for one, the user's name again, a template, a mask, a marker word or of too
    few distinct characters: in a URL's user information or after `password=` in a connection string."""
    if b"%" in password:
        from urllib.parse import unquote_to_bytes
        password = unquote_to_bytes(password)
    return (password == user or is_placeholder_word(password) or _TEMPLATE.match(password)
            is not None or _MASK.match(password) is not None or _MARKER.search(password) is not None
            or len(set(password)) < _MIN_PASSWORD_DISTINCT)


def _in_order(span: bytes) -> bool:
    """A run of _RUN characters each one past the one before (`abcdefgh`, `12345678`, `aAbBcC…` read
    without case and doubled letters)."""
    s = re.sub(rb"(.)\1+", rb"\1", span.lower())
    run = 1
    for a, b in zip(s, s[1:]):
        run = run + 1 if b == a + 1 and (chr(b).isalnum()) else 1
        if run >= _RUN:
            return True
    return False


def _periodic(span: bytes) -> bool:
    """Most of the span one short unit repeated (`abab…`, `abcd1234abcd1234…`)."""
    n = len(span)
    if n < 16:
        return False
    for p in range(1, _PERIOD + 1):
        run = best = 0
        for i in range(p, n):
            run = run + 1 if span[i] == span[i - p] else 0
            best = max(best, run)
        if best + p >= max(16, _PERIODIC_SHARE * n):
            return True
    return False


def _filled(span: bytes) -> bool:
    """A token of the span that is mostly one character, or whose end is masked."""
    for tok in _TOKEN_CHARS.finditer(span):
        t = tok.group(0)
        if len(t) >= 16 and (_MASKED_TAIL.search(t) or any(len(m.group(0)) * 2 >= len(t)
                                                           for m in _FILLER.finditer(t))):
            return True
    return False


def _jwt_header_is_json(span: bytes) -> bool:
    head = span.split(b".", 1)[0]
    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(head + b"=" * (-len(head) % 4))), dict)
    except (binascii.Error, ValueError):
        return False


def is_documentation(rule_id: str, data: bytes, start: int, end: int, *, generic: bool) -> bool:
    """Whether the match `data[start:end]` is a documentation value or a placeholder rather than a credential.
    The shape checks (a marker, a repeated unit) are for `generic` rules only, a run in order for a value's
    mere look (`fix7.generated-value`) only: a provider's own pattern knows its prefix and length, and
    scanners' tests hold hand-written values in a valid format."""
    span = data[start:min(end, start + _READ)]
    if _PUBLISHED.search(span) or _filled(span):
        return True
    if b"PRIVATE KEY" in data[max(0, start - 64):end + 64] and _PEM_TEMPLATE.search(data, max(0, start - 64),
                                                                                     min(len(data), end + 200)):
        return True
    # a marker in a URL is its host's or path's word (`db.example.com`), judged by the URL checks instead
    if generic and ((b"://" not in span and _MARKER.search(span)) or _periodic(span)):
        return True
    if rule_id == GENERATED_VALUE and _in_order(span):
        return True  # under a secret word a run in order is kept: the key vouches more than the look
    if rule_id.startswith(URL_CREDENTIAL_RULES) and url_credentials_are_placeholders(data, start, end):
        return True
    if rule_id.startswith(CONNECTION_STRING_RULES) and password_is_placeholder(data[start:end]):
        return True  # `password={PASSWORD_HERE}`, `Password=PLACEHOLDER;`, `?password=password`
    if rule_id.startswith(JWT_RULES) and not _jwt_header_is_json(data[start:end]):  # a header can carry x5c
        return True
    return False
