"""Held-out corpus v4: two more scanners' test data, fixed before any tuning of the fourth round.

`python -m benchmarks.heldout_v4` (`make bench-heldout-v4`). v3 was measured once and is looked at from this
round on, so it is tuning, with v1, v2 and the project's own corpus. v4 takes values from two projects never used
by fix7 for a rule or a filter (neither is a peer nor a peer's rule examples), each at the commit `heldout.json`
fixes, extracted into `.fix7/bench/heldout/` (never into this repository) and checked against the manifest's
sha256:

- `aquasecurity/trivy` `pkg/fanal/secret/`: every finding `scanner_test.go` expects from a built-in rule (not a
  rule the tests' own config files define) is a secret; the value is the span of the input line that the
  expected `Match` masks with `*` (a finding over several lines is those lines, with the BEGIN and END lines
  of a key that enclose them). The lines of the inputs it
  expects no finding in (`invalid-aws-secrets.txt`, `openai-invalid.txt`) are negatives, and so is a Stripe
  publishable key (a public half: fix7 never counts one a secret);
- `bridgecrewio/checkov` `tests/secrets/sanity/`: the values of `secrets/true_positive.json` are secrets, those of
  `non_secrets/true_negative.json` negatives (its prose left out, as in v2 and v3).

Values are planted by `heldout_v2.plant_all` exactly as v2's and v3's (three key styles per secret, negatives under
a neutral key), beside look-alike classes written down here before any tuning (`LOOKALIKES_V4`). Results name
sources, kinds, contexts and counts, never a value.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

from benchmarks import corpus as bc
from benchmarks import heldout as h1
from benchmarks import heldout_v2 as h2
from benchmarks import heldout_versions as hv

MANIFEST = h1.MANIFEST
SOURCES_V4 = ("trivy-secret-tests", "checkov-secret-sanity-tests")

_TRIVY_DIR = "pkg/fanal/secret"
_TRIVY_NEGATIVE_FILES = ("invalid-aws-secrets.txt", "openai-invalid.txt")
_TRIVY_PUBLIC = ("stripe-publishable-token",)
_GO_STRING = r'"((?:[^"\\]|\\.)*)"'
_CASE = re.compile(r"\n\s*name:\s*" + _GO_STRING)
_INPUT = re.compile(r'inputFilePath:\s*(?:filepath\.Join\("testdata",\s*"([^"]+)"\)|"testdata/([^"]+)")')
_NAMED = re.compile(r"(\w+)\s*:=\s*types\.SecretFinding\{")
_RULE = re.compile(r"RuleID:\s*" + _GO_STRING)
_STRING_VAR = re.compile(r"^\s*(\w+)\s*:=\s*(.+?)\s*$", re.M)
# trivy's helper for the OpenAI cases: openAIFinding(rule id, title, severity, length), the whole line 1 masked
_OPENAI = re.compile(r'(\w+)\s*:=\s*openAIFinding\("([^"]+)",\s*"[^"]*",\s*"[^"]*",\s*(\d+)\)')


def _go_unquote(s: str) -> str:
    return json.loads('"' + s.replace("\\'", "'") + '"')


def _block(text: str, open_at: int) -> str:
    """The text of the brace block whose `{` is at `open_at`."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at:i + 1]
    return text[open_at:]


def _finding(chunk: str, names: dict[str, str] | None = None) -> dict | None:
    rule, start = _RULE.search(chunk), re.search(r"StartLine:\s*(\d+)", chunk)
    end, match = re.search(r"EndLine:\s*(\d+)", chunk), re.search(r"\bMatch:\s*(.+),\s*(?://.*)?$", chunk, re.M)
    value = _go_string_expr(match.group(1), names) if match else None
    if not (rule and start and value):
        return None
    return {"rule": rule.group(1), "start": int(start.group(1)),
            "end": int(end.group(1)) if end else int(start.group(1)), "match": value}


_EXPR_PART = re.compile(_GO_STRING + r'|`([^`]*)`|strings\.Repeat\(' + _GO_STRING + r',\s*(\d+)\)|(\w+)|\+|\s+')


def _go_string_expr(expr: str, names: dict[str, str] | None = None) -> str | None:
    """A Go string expression of literals, raw strings, strings.Repeat(...) and known string variables joined by
    +, evaluated; None for any other."""
    expr = re.sub(r"\s*//.*$", "", expr.strip())
    out, at = [], 0
    while at < len(expr):
        m = _EXPR_PART.match(expr, at)
        if not m:
            return None
        if m.group(1) is not None:
            out.append(_go_unquote(m.group(1)))
        elif m.group(2) is not None:
            out.append(m.group(2))
        elif m.group(3) is not None:
            out.append(_go_unquote(m.group(3)) * int(m.group(4)))
        elif m.group(5) is not None:
            if m.group(5) not in (names or {}):
                return None
            out.append(names[m.group(5)])
        at = m.end()
    return "".join(out)


def _findings_in(chunk: str, named: dict[str, dict], names: dict[str, str]) -> list[dict]:
    """Every finding a test case expects: the named ones it lists and the ones written inline."""
    out = [named[n] for n in re.findall(r"\b(\w+)\b", chunk) if n in named]
    starts = [m.start() for m in _RULE.finditer(chunk)]
    for i, s in enumerate(starts):
        f = _finding(chunk[s:starts[i + 1] if i + 1 < len(starts) else len(chunk)], names)
        if f:
            out.append(f)
    return out


def _masked_span(line: str, match: str) -> str | None:
    """The part of `line` that `match` (the line as trivy prints it) masks with asterisks."""
    stars = re.search(r"\*{3,}", match)
    if not stars:
        return None
    prefix, suffix = match[:stars.start()], match[stars.end():]
    at = line.find(prefix) if prefix else 0
    if at < 0:
        return None
    start = at + len(prefix)
    value = line[start:start + len(stars.group(0))]
    if len(value) != len(stars.group(0)) or (suffix and not line[start + len(value):].startswith(suffix[:12])):
        return None
    return value


def extract_trivy(git_dir: Path, commit: str) -> list[dict]:
    test = h2._show(git_dir, commit, f"{_TRIVY_DIR}/scanner_test.go")
    custom = set()
    for f in h2._files(git_dir, commit, f"{_TRIVY_DIR}/testdata"):
        if f.endswith((".yaml", ".yml")):
            doc = yaml.safe_load(h2._show(git_dir, commit, f)) or {}
            custom |= {str(r.get("id")) for r in (doc.get("rules") or []) if isinstance(r, dict)}
    strings_ = {}
    for m in _STRING_VAR.finditer(test):
        v = _go_string_expr(m.group(2), strings_)
        if v is not None:
            strings_[m.group(1)] = v
    named = {m.group(1): {"rule": m.group(2), "start": 1, "end": 1, "match": "*" * int(m.group(3))}
             for m in _OPENAI.finditer(test)}
    for m in _NAMED.finditer(test):
        f = _finding(_block(test, m.end() - 1), strings_)
        if f:
            named[m.group(1)] = f
    cases = list(_CASE.finditer(test))
    per_file: dict[str, dict[tuple, dict]] = {}
    quiet: set[str] = set()
    for i, c in enumerate(cases):
        chunk = test[c.start():cases[i + 1].start() if i + 1 < len(cases) else len(test)]
        inp = _INPUT.search(chunk)
        if not inp:
            continue
        name = inp.group(1) or inp.group(2)
        found = [f for f in _findings_in(chunk, named, strings_) if f["rule"] not in custom]
        if "want:          types.Secret{}" in chunk or re.search(r"want:\s*types\.Secret\{\}", chunk):
            quiet.add(name)
        for f in found:
            per_file.setdefault(name, {})[(f["start"], f["end"], f["match"])] = f
    out = []
    for name, findings in sorted(per_file.items()):
        try:
            lines = h2._show(git_dir, commit, f"{_TRIVY_DIR}/testdata/{name}").splitlines()
        except Exception:  # noqa: BLE001 - a case whose input is not at this commit
            continue
        for (start, end, match), f in sorted(findings.items()):
            if end > start:  # a key's body: with its BEGIN and END lines when they enclose it, as it was written
                first = start - 1 if start >= 2 and lines[start - 2].startswith("-----BEGIN") else start
                last = end + 1 if end < len(lines) and lines[end].startswith("-----END") else end
                value = "\n".join(lines[first - 1:last]).strip()
            elif start <= len(lines):
                value = _masked_span(lines[start - 1], match)
            else:
                value = None
            if not value or not h2.MIN_VALUE <= len(value) <= h2.MAX_VALUE or not h2.printable(value):
                continue
            part = "negative" if f["rule"] in _TRIVY_PUBLIC else "secret"
            out.append({"source": "trivy", "part": part, "kind": f"trivy{'' if part == 'secret' else '-ok'}:{f['rule']}",
                        "provider": h2._provider(f["rule"]), "value": value})
    for name in _TRIVY_NEGATIVE_FILES:
        if name not in quiet:
            continue
        for ln in h2._show(git_dir, commit, f"{_TRIVY_DIR}/testdata/{name}").splitlines():
            v = h2.value_of(ln)
            if v and h2._not_a_word(v):
                out.append({"source": "trivy", "part": "negative", "kind": f"trivy-none:{name.split('.')[0]}",
                            "provider": "service", "value": v})
    return out


_CHECKOV_DIR = "tests/secrets/sanity"


def extract_checkov(git_dir: Path, commit: str) -> list[dict]:
    out = []
    for path, part in (("secrets/true_positive.json", "secret"), ("non_secrets/true_negative.json", "negative")):
        doc = json.loads(h2._show(git_dir, commit, f"{_CHECKOV_DIR}/{path}"))
        for key, v in doc.items():
            if not isinstance(v, str) or not h2.MIN_VALUE <= len(v) <= h2.MAX_VALUE or not h2.printable(v):
                continue
            if part == "negative" and (not h2._not_a_word(v) or len(v.split()) > 2):
                continue
            out.append({"source": "checkov", "part": part, "kind": f"checkov{'' if part == 'secret' else '-ok'}:"
                        f"{key.lower()}", "provider": h2._provider(key) if part == "secret" else "service",
                        "value": v})
    return out


EXTRACTORS_V4 = {"trivy-secret-tests": extract_trivy, "checkov-secret-sanity-tests": extract_checkov}


# -- look-alike classes v4, written down with the sources, before any tuning of this round ---------------

def _hex(g: bc.Gen, n: int) -> str:
    return g.chars(bc.ALPHABETS["H"], n)


_MESSAGE_KEYS = ("error.password.too_short", "auth.token.expired", "errors.api_key.missing", "secret.rotation.due",
                 "login.password.reset_sent", "credential.invalid_format", "token.refresh.failed",
                 "password.policy.min_length", "apikey.revoked.notice", "secret.not_found")

LOOKALIKES_V4: tuple[tuple[str, str, object], ...] = (
    ("i18n-message-key", "message_key", lambda g: _MESSAGE_KEYS[int(g.chars(bc.ALPHABETS["D"], 1))]),
    ("jwt-header-only", "jwt_header",
     lambda g: g.b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": _hex(g, 8)}).encode(), urlsafe=True,
                     pad=False)),
    ("jwks-key-id", "kid", lambda g: _hex(g, 40)),
    ("stripe-event-id", "event_id", lambda g: "evt_" + g.chars(bc.ALPHABETS["N"], 24)),
    ("acme-account-url", "acme_account",
     lambda g: "https://acme-v02.api.letsencrypt.org/acme/acct/" + g.chars(bc.ALPHABETS["D"], 10)),
    ("semver-build-metadata", "build", lambda g: f"4.{g.chars('123456789', 1)}.{g.chars(bc.ALPHABETS['D'], 2)}"
                                                f"+build.{_hex(g, 7)}"),
    ("ga-measurement-id", "ga_measurement_id", lambda g: "G-" + g.chars(bc.ALPHABETS["u"], 10)),
    ("slack-channel-id", "slack_channel", lambda g: "C0" + g.chars(bc.ALPHABETS["u"], 9)),
    ("otpauth-url-without-secret", "otp_issuer_url",
     lambda g: f"otpauth://totp/Births:{g.chars(bc.ALPHABETS['L'], 6)}?issuer=Births&digits=6"),
    ("ssh-ed25519-public-key", "deploy_key",
     lambda g: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + g.b64(g.raw(32), pad=False)[:43] + " deploy@births"),
)


VERSION = hv.Version("v4", SOURCES_V4, EXTRACTORS_V4, LOOKALIKES_V4, __doc__.splitlines()[0])
load_v4, plants_v4, run, main = VERSION.load, VERSION.plants, VERSION.run, VERSION.main


if __name__ == "__main__":
    sys.exit(main())
