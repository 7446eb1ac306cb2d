"""The evidence packet on disk: its file names, how a file of it is hashed, and how one is written.

Below both the packet (`core/report.py`, which renders and seals it) and the audit chain
(`core/audit.py`, which seals and verifies it), so neither imports the other for these.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

REPORT = "rehearsal-report.json"
PROVENANCE = "clone-provenance.json"
READABLE = "rehearsal-report.md"
FINDINGS = "sanitization-findings.jsonl"  # every finding of the secret scan, one JSON object a line
JOURNAL = "rehearsal-journal.jsonl"  # what the stages appended as they ran (core/journal.py)
RENDER_CLAIM = ".rehearsal-render.claim"  # created exclusively by the one renderer of the packet
PACKET_FILES = (REPORT, PROVENANCE, READABLE, FINDINGS, JOURNAL)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
