"""The evidence packet on disk: its file names, how a file of it is hashed, and how one is written.

Below both the packet (`core/report.py`, which renders and seals it) and the audit chain
(`core/audit.py`, which seals and verifies it), so neither imports the other for these.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import Fix7Error

REPORT = "rehearsal-report.json"
PROVENANCE = "clone-provenance.json"
READABLE = "rehearsal-report.md"
FINDINGS = "sanitization-findings.jsonl"  # every finding of the secret scan, one JSON object a line
JOURNAL = "rehearsal-journal.jsonl"  # what the stages appended as they ran (core/journal.py)
RENDER_CLAIM = ".rehearsal-render.claim"  # created exclusively by the one renderer of the packet
PACKET_FILES = (REPORT, PROVENANCE, READABLE, FINDINGS, JOURNAL)


# The file system holding the evidence is full (or the user's quota or file-size limit is reached): a fault of
# the disk, never a verdict on the clone. sysexits' EX_IOERR is the exit code of a run that ends on it.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
EXIT_EVIDENCE_NOT_WRITTEN = 74


class EvidenceNotWritten(Fix7Error):
    """The evidence could not be written where it belongs: the cause (its errno name) and the path."""

    def __init__(self, path: Path | str, error: OSError):
        self.path = str(path)
        self.errno_name = errno.errorcode.get(error.errno or 0, str(error.errno))
        self.strerror = error.strerror or os.strerror(error.errno or 0)
        super().__init__(f"The evidence could not be written: {self.strerror} ({self.errno_name}) writing "
                         f"{self.path}. Nothing was judged: free space on that file system (or name another "
                         "--evidence-dir) and rehearse again.", EXIT_EVIDENCE_NOT_WRITTEN,
                         rule="evidence_not_written")

    def as_dict(self) -> dict:
        return {"errno": self.errno_name, "path": self.path, "message": self.message}


@contextmanager
def writing(path: Path | str):
    """Around a write of the evidence: a full disk becomes EvidenceNotWritten naming `path`."""
    try:
        yield
    except OSError as e:
        if e.errno in NO_SPACE:
            raise EvidenceNotWritten(path, e) from None
        raise


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


def write_evidence(path: Path, text: str) -> None:
    """write_atomic for a file of the evidence packet: a full disk is EvidenceNotWritten, naming `path`."""
    with writing(path):
        write_atomic(path, text)
