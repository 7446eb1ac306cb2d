"""The one rule registry of the sanitization gate, and the pattern engine that runs it.

Patterns are Kingfisher's (`kingfisher-secret-scanner`, imported as `kingfisher_sdk`): its bundled rule
catalog, detect-secrets' plugin patterns loaded from its pinned package (`field_detectors`) and fix7's own
pattern rules (`fix7_pipeline/rules/fix7.yml`), compiled together into one
Vectorscan database that is cached under `.fix7/kingfisher-rules/`, so a run loads it instead of
compiling it. Scanning is offline and in this process; the engine is built with redaction on, so a
Kingfisher finding never holds the credential it matched. Kingfisher's validation and revocation
(anything that would contact a provider) are never used here.

fix7 keeps its own rules only for what a generic scanner cannot know: the contract's must-be-NULL
columns and must-be-empty tables, its header columns, assignment keys with an entropy floor,
connection strings with passwords, password hashes, and places the restoring role cannot read.
`fix7 rules` lists the registry.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..shared.paths import state_dir
from . import field_detectors, generated_values
from .keyvalue import KEYED_ON_A_WORD

KINGFISHER = "kingfisher"
FIX7 = "fix7"
DETECT_SECRETS = field_detectors.DETECT_SECRETS
RULE_FILES = ("fix7.yml",)
HEADER_RULE_FILE = "fix7-headers.yml"
CONFIDENCE = "low"  # every rule of the catalog: a sanitization gate fails closed

# Contract and reading rules: no pattern, decided per column, table or place.
MUST_BE_NULL = "must_be_null"
MUST_BE_EMPTY = "must_be_empty"
UNREADABLE = "unreadable"
SECRET_HEADER = "fix7.secret-header"
@dataclass(frozen=True)
class RuleInfo:
    """One entry of the registry: what `fix7 rules` prints and what a finding's `rule` names."""

    name: str
    source: str         # kingfisher | detect-secrets | fix7
    description: str
    family: str         # the sanitization suite has one expectation per family
    scope: str = "every text value and catalog text"

    def as_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "family": self.family, "scope": self.scope,
                "description": self.description}


CONTRACT_RULES: tuple[RuleInfo, ...] = (
    RuleInfo(MUST_BE_NULL, FIX7, "a column the contract says a sanitized clone carries as NULL holds a value",
             MUST_BE_NULL, "contract annotations.must_be_null"),
    RuleInfo(MUST_BE_EMPTY, FIX7, "a table the contract says a sanitized clone carries empty has rows",
             MUST_BE_EMPTY, "contract annotations.must_be_empty"),
    RuleInfo(SECRET_HEADER, FIX7, "an Authorization, Cookie or token header with a value",
             SECRET_HEADER, "contract annotations.secret_headers columns"),
    RuleInfo(UNREADABLE, FIX7, "a place that can hold text which the restoring role cannot read: "
             "what cannot be read cannot be proven clean", UNREADABLE, "catalog places, large objects, tables"),
)


def rule_path(name: str) -> Path:
    return Path(str(resources.files("fix7_pipeline") / "rules" / name))


def cache_dir() -> Path:
    """`.fix7/kingfisher-rules/`, private to this user (Kingfisher refuses a cache others could write)."""
    d = state_dir() / "kingfisher-rules"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def _fix7_family(rule_id: str) -> str:
    """fix7.connection-string-password.libpq -> fix7.connection-string-password."""
    parts = rule_id.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else rule_id


@dataclass(frozen=True)
class Engine:
    """The compiled catalog and the two scanners built on it (thread-safe; the scan releases the GIL)."""

    scanner: object          # kingfisher_sdk.Scanner over the catalog and fix7.yml
    header_scanner: object   # kingfisher_sdk.Scanner over fix7-headers.yml only
    rules: tuple[RuleInfo, ...]
    cache_status: str
    version: str

    def info(self, rule_id: str) -> RuleInfo | None:
        return _by_name(self.rules).get(rule_id)


@functools.lru_cache(maxsize=None)
def _by_name(rules: tuple[RuleInfo, ...]) -> dict[str, RuleInfo]:
    return {r.name: r for r in rules}


@functools.lru_cache(maxsize=1)
def engine() -> Engine:
    """The process's engine, built once (the compiled database comes from the disk cache when it can)."""
    import kingfisher_sdk as kf

    cache = cache_dir()
    files = [str(rule_path(n)) for n in RULE_FILES] + [str(field_detectors.rule_file(cache)),
                                                       str(generated_values.rule_file(cache))]
    rules = kf.Rules(files, builtins=True, confidence=CONFIDENCE, cache_dir=str(cache))
    headers = kf.Rules([str(rule_path(HEADER_RULE_FILE))], builtins=False, confidence=CONFIDENCE,
                       cache_dir=str(cache))
    # Inline ignore comments (`kingfisher:ignore`) and markup context would let a dump's author hide a
    # secret from the scan: both are off. Detection only, redacted: no finding keeps the credential.
    policy = kf.DetectionPolicy(inline_ignores=False, markup_context=False, cli_match_semantics=True)
    scanner = kf.Scanner(rules, redact=True, dedup=False, policy=policy)
    header_scanner = kf.Scanner(headers, redact=True, dedup=False, policy=policy)
    registry: list[RuleInfo] = []
    for meta in sorted(rules.metadata(), key=lambda m: m["id"]):
        if not meta.get("visible", True):
            continue  # a component other rules depend on (a client id, a host): never reported alone
        rid = meta["id"]
        if rid.startswith("fix7."):
            registry.append(RuleInfo(rid, FIX7, meta["name"], _fix7_family(rid)))
        elif rid.startswith(field_detectors.PREFIX):
            registry.append(RuleInfo(rid, DETECT_SECRETS, meta["name"], DETECT_SECRETS))
        else:
            registry.append(RuleInfo(rid, KINGFISHER, meta["name"], KINGFISHER))
    registry.extend(CONTRACT_RULES)
    return Engine(scanner=scanner, header_scanner=header_scanner, rules=tuple(registry),
                  cache_status=rules.cache_status, version=kf.__version__)


__all__ = ["KEYED_ON_A_WORD", "engine", "families", "family_of", "registry"]


def registry() -> tuple[RuleInfo, ...]:
    return engine().rules


def families() -> list[str]:
    """Every family the sanitization suite gates, in a stable order: Kingfisher, fix7's, then the contract's."""
    seen: list[str] = []
    for r in registry():
        if r.family not in seen:
            seen.append(r.family)
    return seen


def family_of(rule: str) -> str:
    info = engine().info(rule)
    if info is not None:
        return info.family
    return rule.split(":", 1)[0]
