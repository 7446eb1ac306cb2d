"""Detectors other maintained scanners ship, loaded from their pinned packages into fix7's one registry.

detect-secrets (Yelp, Apache-2.0, pinned in requirements.lock): every regex its plugins list in `denylist`
becomes a rule `detect-secrets.<Plugin>.<n>`, written into a rule file under the rule cache and compiled
with Kingfisher's catalog into the one Vectorscan database. Vectorscan and Kingfisher's confirming engine have
no look-around, so a pattern with one is compiled without it (a wider net) and each match is then confirmed
by the plugin's own Python pattern over its value (`confirm`): what is reported is what the plugin reports.

Left out, and listed as such: detect-secrets' public-IP plugin (an address is not a credential) and its
keyword and entropy plugins (no pattern to load: fix7's key/value rules cover that ground). gitleaks'
default rules are not loaded a second time: no maintained package ships its rule file (the PyPI wheels
carry the binary, the rules embedded in it), and Kingfisher's catalog already holds them as
`betterleaks.<gitleaks id>` (of gitleaks 8.30.1's 222 default rule ids, 214 are there; the 8 others are
its generic-api-key keyword rule, which fix7's key/value rule covers, pkcs12-file, a file-name rule, and
six provider rules: alibaba-access-key-id, cloudflare-api-key, datadog-access-token, etsy-access-token,
jfrog-api-key, jfrog-identity-token).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from ..shared.errors import Fix7Error
from .rule_files import cached_rule_file, yaml_str

DETECT_SECRETS = "detect-secrets"
PINNED = "1.5.0"
PREFIX = "detect-secrets."
LEFT_OUT = {"IPPublicDetector": "a public IP address is not a credential"}
_LOOKAROUND = re.compile(r"\(\?(?:<?[=!])")


@dataclass(frozen=True)
class FieldRule:
    id: str
    plugin: str
    description: str
    pattern: str          # as compiled by Kingfisher (look-around removed)
    confirm: re.Pattern | None   # the plugin's own pattern, when it had to be widened


def _strip_lookaround(pattern: str) -> str:
    """The pattern with each (?=...), (?!...), (?<=...), (?<!...) group removed (balanced parentheses)."""
    out, i = [], 0
    while True:
        m = _LOOKAROUND.search(pattern, i)
        if not m:
            out.append(pattern[i:])
            return "".join(out)
        out.append(pattern[i:m.start()])
        depth, j = 0, m.start()
        while j < len(pattern):
            c = pattern[j]
            if c == "\\":
                j += 2
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        i = j + 1


def _non_capturing(pattern: str) -> str:
    """Every capturing group made non-capturing (Kingfisher's finding is the rule's one capture group)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "]":
                out.append("[]")
                i += 2
                continue
        elif c == "(":
            if pattern[i + 1:i + 2] != "?":
                out.append("(?:")
                i += 1
                continue
            if pattern[i + 1:i + 3] == "?P" and pattern[i + 3:i + 4] == "<":
                out.append("(?:")
                i = pattern.index(">", i) + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=1)
def detect_secrets_rules() -> tuple[tuple[FieldRule, ...], str]:
    """detect-secrets' regex plugins as rules, and the package's version. Without the pinned package the
    registry would silently be smaller than the one `fix7 rules` promises: fail closed."""
    try:
        from importlib import metadata

        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        version = metadata.version("detect-secrets")
    except ImportError as e:
        raise Fix7Error(f"The sanitization gate loads detect-secrets' detectors from its pinned package "
                        f"(detect-secrets=={PINNED}, requirements.lock), which is not installed ({e}). Install the "
                        "project with `make install` (or pip install -r requirements.lock).") from e
    out: list[FieldRule] = []
    seen: set[str] = set()
    for secret_type, cls in sorted(get_mapping_from_secret_type_to_class().items(), key=lambda kv: kv[1].__name__):
        if cls.__name__ in LEFT_OUT:
            continue
        denylist = cls.__dict__.get("denylist")
        if not isinstance(denylist, (list, tuple)):
            continue
        for n, rx in enumerate(denylist):
            widened = _strip_lookaround(rx.pattern)
            body = _non_capturing(widened)
            flags = "(?i)" if rx.flags & re.IGNORECASE else ""
            compiled = f"{flags}({body})"
            if compiled in seen:
                continue  # the same pattern twice in one plugin's list: one rule
            seen.add(compiled)
            out.append(FieldRule(f"{PREFIX}{cls.__name__}.{n}", cls.__name__, f"{secret_type} (detect-secrets "
                                 f"{cls.__name__})", compiled, rx if widened != rx.pattern else None))
    return tuple(out), version


def rule_file(cache: Path) -> Path:
    """The detect-secrets rules as a Kingfisher rule file under `cache` (named by its content's digest)."""
    rules, version = detect_secrets_rules()
    lines = [f"# generated by fix7 from detect-secrets {version}: do not edit", "rules:"]
    for r in rules:
        lines += [f"  - name: {yaml_str(r.description)}", f"    id: {r.id}", f"    pattern: {yaml_str(r.pattern)}",
                  "    min_entropy: 0", "    confidence: low"]
    text = "\n".join(lines) + "\n"
    return cached_rule_file(cache, f"detect-secrets-{version}", text)


@functools.lru_cache(maxsize=None)
def _confirmers() -> dict[str, re.Pattern]:
    return {r.id: r.confirm for r in detect_secrets_rules()[0] if r.confirm is not None}


def confirm(rule_id: str, data: bytes, start: int, end: int) -> bool:
    """Whether a widened detect-secrets rule's match is one its plugin's own pattern makes (look-around
    included, read over the whole value)."""
    rx = _confirmers().get(rule_id)
    if rx is None:
        return True
    text = data.decode("utf-8", "replace")
    # offsets are bytes: map them to characters of the decoded text
    s = len(data[:start].decode("utf-8", "replace"))
    e = len(data[:end].decode("utf-8", "replace"))
    return any(m.start() < e and m.end() > s for m in rx.finditer(text))
