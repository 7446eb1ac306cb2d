"""The evidence packet on disk: its file names, how a file of it is hashed, and how one is written.

Below both the packet (`core/evidence/report.py`, which renders and seals it) and the audit chain
(`core/evidence/audit.py`, which seals and verifies it), so neither imports the other for these.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..shared.errors import EXIT_USAGE, Fix7Error
from ..storage.store import is_remote

REPORT = "rehearsal-report.json"
PROVENANCE = "clone-provenance.json"
READABLE = "rehearsal-report.md"
FINDINGS = "sanitization-findings.jsonl"  # every finding of the secret scan, one JSON object a line
JOURNAL = "rehearsal-journal.jsonl"  # what the stages appended as they ran (core/evidence/journal.py)
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
        if e.errno in NO_SPACE or getattr(e, "evidence_store", False):  # full disk, or the object store failed
            raise EvidenceNotWritten(path, e) from None
        raise


def sha256_file(path: Path) -> str:
    if is_remote(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write via a temp file in the same directory, fsync, then rename: readers never see half a file.

    Only for files fix7 names in a folder it owns (the packet's); a path the operator names goes through
    `write_output`, which never swaps what is there. In S3 the object is created only if none has its key: a
    sealed packet file is never replaced (FileExistsError).
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    if is_remote(path):
        return path.create(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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
def _refused(path: Path, why: str):
    return Fix7Error(f"The output {str(path)!r} {why}; name a regular file (or a character device, a FIFO or a "
                     "symlink to one), or leave the option out.", EXIT_USAGE, rule="output_path")


def output_problem(path: Path) -> str | None:
    """Why fix7 cannot write the operator-named output `path`, or None: checked before a run, so a usage error
    costs no rehearsal. A symlink is judged by what it points at; a FIFO's reader is only known at write time."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None  # created when written, its folders too (it may sit in the evidence folder the run makes)
    except OSError as e:
        return f"cannot be checked ({e.strerror or type(e).__name__})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        return "is neither a regular file, a character device nor a FIFO (a block device or a socket)"
    return None


def write_output(path: Path, text: str) -> None:
    """Write `text` into the path the operator named (--junit, -o): into it, never replacing it.

    A regular file is truncated and rewritten in place (its inode, mode, owner and other links stay), a
    symlink is followed (the link stays a link; its target gets the text), a character device or a FIFO is
    written through. A directory, block device or socket, or a FIFO no process reads, is refused (exit 2).
    """
    path = Path(path)
    problem = output_problem(path)
    if problem:
        raise _refused(path, problem)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        fifo = False
        try:
            Path(os.path.realpath(path)).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _refused(path, f"cannot be created ({e.strerror or type(e).__name__})") from None
    if fifo:  # opening a FIFO for writing blocks until a reader comes; none now -> ENXIO, refused
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise _refused(path, "is a FIFO that no process reads") from None
        raise _refused(path, f"cannot be opened for writing ({e.strerror or type(e).__name__})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):  # swapped since the check
            raise _refused(path, "is neither a regular file, a character device nor a FIFO")
        if fifo:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
        if stat.S_ISREG(mode):
            os.fsync(fd)
    except OSError as e:
        raise _refused(path, f"could not be written ({e.strerror or type(e).__name__})") from None
    finally:
        os.close(fd)
