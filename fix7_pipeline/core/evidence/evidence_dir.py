"""Where a run's evidence packet goes: a fresh directory per run, or one the operator names that can take a
packet (a sealed packet is never overwritten)."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from ..shared.errors import EXIT_USAGE, Fix7Error
from ..storage import s3_store
from ..storage.store import evidence_path, is_remote, unsupported_problem
from .packet_files import PACKET_FILES, RENDER_CLAIM


def default_evidence_dir(root: Path, sha256: str | None, run_id: str) -> Path:
    """<utc-timestamp>-<sha8>-<run8>: the run id keeps runs started in the same second apart."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return root / f"{stamp}-{(sha256 or 'noclone')[:8]}-{run_id[:8]}"


class EvidenceDirRefused(Fix7Error):
    """The evidence directory cannot take a new packet: one sentence, exit 2."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_USAGE, rule="evidence_dir")


def _packet_file_names(names) -> list[str]:
    """The names among `names` that a packet writes: its files and their temp files (write_atomic)."""
    temp = tuple(f".{name}." for name in PACKET_FILES)
    return sorted(n for n in names if n in PACKET_FILES or n.startswith(temp))


def _writable_dir(directory: Path) -> bool:
    """Really writable, root included: a probe file is created and removed (os.access alone trusts root)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        fd, probe = tempfile.mkstemp(prefix=".fix7-write-probe-", dir=directory)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def evidence_dir_problem(directory: Path, *, also: tuple[Path, ...] = ()) -> str | None:
    """Why `directory` cannot take a new evidence packet, in one sentence; None when it can.

    A directory holding any file a packet writes, or a file in `also` (the JUnit report the CLI will write
    there, which may not be named like a packet file at all), is refused: a sealed packet is never
    overwritten. So is a path that is not a directory or cannot be written. Nothing is written into a
    refused directory (the write probe of a usable one is created and removed).
    """
    fresh = "name a new directory, or leave it unset (--evidence-dir, evidence_dir) for a fresh one"
    if not isinstance(directory, Path) and (problem := unsupported_problem(directory)):
        return problem
    if is_remote(directory):
        return _remote_dir_problem(evidence_path(directory), fresh)
    d = Path(directory)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in str(d)):
        return f"The evidence directory name {str(d)!r} holds a control character; {fresh}."
    try:
        here = d.resolve()
        also = tuple(p.resolve() for p in also)
        clash = sorted(p.name for p in also if p.parent == here and p.name in PACKET_FILES)
        if clash:
            return f"The JUnit report would overwrite the packet's {clash[0]} in {d}; write it to another file."
        if d.exists() or d.is_symlink():
            if not d.is_dir():
                return f"The evidence directory {d} is not a directory; {fresh}."
            held = _packet_file_names(os.listdir(d))
            held += sorted(p.name for p in also if p.parent == here and p.name not in held
                           and (p.exists() or p.is_symlink()))
            if held:
                return (f"The evidence directory {d} already holds an evidence packet ({', '.join(held[:4])}), "
                        f"and a packet is never overwritten; {fresh}.")
            if not _writable_dir(d):
                return f"The evidence directory {d} is not writable by this user; make it writable or {fresh}."
            return None
        parent = d.parent
        while not (parent.exists() or parent.is_symlink()) and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"The evidence directory {d} cannot be created: {parent} is not a directory; {fresh}."
        if not _writable_dir(parent):
            return (f"The evidence directory {d} cannot be created: {parent} is not writable by this user; "
                    f"make it writable or {fresh}.")
    except (OSError, RuntimeError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        return f"The evidence directory {d} cannot be checked ({why}); {fresh}."
    return None


def _remote_dir_problem(d, fresh: str) -> str | None:
    """evidence_dir_problem for a prefix in S3: the bucket answers, and no packet (nor journal) is there."""
    problem = s3_store.reachable_problem(d)
    if problem:
        return problem
    try:
        names = d.names()
    except OSError as e:
        return f"The evidence directory {d} cannot be checked ({e.strerror}); {fresh}."
    held = _packet_file_names(names) + [n for n in (RENDER_CLAIM, s3_store.JOURNAL_ENTRIES) if n in names]
    if held:
        return (f"The evidence directory {d} already holds an evidence packet ({', '.join(held[:4])}), "
                f"and a packet is never overwritten; {fresh}.")
    return None
