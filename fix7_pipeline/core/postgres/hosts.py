"""Host classification: what counts as isolated, and what looks like production.

A host is *isolated* when it is local or in a reserved, non-resolvable domain, or
on the operator's allow list. Anything else fails closed.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

RESERVED_SUFFIXES = (".invalid", ".test", ".example", ".localhost")
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _normalise(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(_normalise(host)).is_loopback
    except ValueError:
        return False


def is_reserved_or_local(host: str) -> bool:
    """True for hosts that cannot reach a live production system."""
    h = _normalise(host)
    if not h:
        return False
    if h in LOCAL_NAMES or is_loopback(h):
        return True
    if h.startswith("/"):  # a unix-socket directory is local by construction
        return True
    return any(h.endswith(s) or h == s[1:] for s in RESERVED_SUFFIXES)


def matches_any(host: str, patterns: list[str] | tuple[str, ...]) -> str | None:
    """The first glob pattern (case-insensitive) that `host` matches, or None."""
    h = _normalise(host)
    for p in patterns:
        if fnmatch.fnmatchcase(h, _normalise(p)):
            return p
    return None


@dataclass(frozen=True)
class HostPolicy:
    """Operator's host patterns: production patterns are refused, allow patterns accepted."""

    production_patterns: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] = field(default_factory=tuple)

    def production_match(self, host: str) -> str | None:
        return matches_any(host, self.production_patterns)

    def is_isolated(self, host: str) -> bool:
        if self.production_match(host):
            return False
        return is_reserved_or_local(host) or matches_any(host, self.allow_patterns) is not None


def redact_url(url: str) -> str:
    """The URL with any userinfo (user:password@) replaced: hosts are evidence, credentials are not."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "<redacted>@" + netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=netloc, query="", fragment="").geturl()

