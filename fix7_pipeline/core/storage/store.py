"""Where the evidence is kept: a folder on this machine, or a prefix in an S3 bucket (`s3://bucket/prefix`).

`evidence_path(text)` is the one way from an evidence location (--evidence-dir, FIX7_EVIDENCE_ROOT, a packet's
`evidence_dir`, FIX7_AUDIT_CHAIN) to the object that reads and writes it: a pathlib.Path for a folder here, an
S3Path (core/storage/s3_store.py) for `s3://`. Both answer the same questions (`/ name`, exists, is_file,
read_bytes, read_text, stat().st_size, unlink) and both make the writes the evidence's guarantees rest on:
`create_exclusive` (the journal's first entry, the render claim: one creator wins), `write_sealed` (a packet
file) and the journal's and chain's appends. Any other `scheme://` is refused before anything is written, never
taken for a folder named `scheme:`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..shared.errors import EXIT_USAGE, Fix7Error
from .s3_store import S3Path, reachable_problem, url_problem

SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
SUPPORTED = ("s3",)


def scheme(location) -> str | None:
    """The URL scheme of `location` ("s3", "gs", ...), lower-cased; None for a path on this machine."""
    m = SCHEME.match(str(location)) if isinstance(location, str) else None
    return m.group(1).lower() if m else None


def is_remote(location) -> bool:
    """`location` is kept in object storage (an S3Path, or text naming one)."""
    return isinstance(location, S3Path) or scheme(location) == "s3"


def unsupported_problem(location, what: str = "evidence directory") -> str | None:
    """One paragraph when `location` is a URL fix7 cannot keep evidence at; None for s3:// and plain paths."""
    kind = scheme(location)
    if kind is None or kind in SUPPORTED:
        if kind == "s3":
            return url_problem(str(location), what)
        return None
    return (f"The {what} {str(location)!r} is a {kind}:// URL, and fix7 keeps evidence only in a folder on this "
            f"machine or in an S3 bucket (s3://bucket/prefix, credentials and endpoint from the standard AWS "
            f"environment variables). Nothing was written: name a folder or an s3:// location (an S3-compatible "
            f"store such as MinIO or Ceph is s3:// with AWS_ENDPOINT_URL).")


def evidence_path(location) -> Path:
    """The evidence location `location` as a Path (a folder here) or an S3Path (s3://bucket/prefix).

    An unsupported URL raises EvidenceLocationRefused (exit 2): it is never read as a relative folder."""
    if isinstance(location, (Path, S3Path)):
        return location
    text = os.fspath(location)
    if scheme(text) == "s3":
        return S3Path.from_url(text)
    problem = unsupported_problem(text)
    if problem:
        raise Fix7Error(problem, EXIT_USAGE, rule="evidence_dir")
    return Path(text)


def evidence_root(default: Path) -> Path:
    """FIX7_EVIDENCE_ROOT (a folder, or s3://bucket/prefix), else `default`."""
    env = os.environ.get("FIX7_EVIDENCE_ROOT")
    return evidence_path(env) if env else default


def root_problem(root: str) -> str | None:
    """Why FIX7_EVIDENCE_ROOT `root` cannot take packets, in one paragraph; None when it can (checked before a run:
    an unsupported URL, or a bucket that does not answer, costs no rehearsal)."""
    problem = unsupported_problem(root, "evidence root (FIX7_EVIDENCE_ROOT)")
    if problem or not is_remote(root):
        return problem
    return reachable_problem(evidence_path(root))
