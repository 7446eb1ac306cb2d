"""A custom-format archive read at the disk's and both cores' speed: hashed, listed and read through (a
rehearsal's intake only hashes and lists it: its restore reads the data blocks, core/run/intake_vouch.py).

The file is opened once; pg_restore reads it through that open file (`/dev/fd/N`: the same inode, whatever the
path names meanwhile), so the listing and the data check judge the file that is hashed. The sha256 (large reads)
runs beside the data check, and the data check is split: each data block is read through (decompressed to
/dev/null) by its own offline pg_restore, two at a time, so a truncated or damaged archive is still refused here
and the page cache serves every read after the first.
"""

from __future__ import annotations

import hashlib
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ..postgres.pg_tools import pg_tool
from ..shared.cores import usable_cores
from .archive import offline_env, parse_listing
from .formats import TocEntry, refuse

CHUNK = 4 * 1024 * 1024
# entries with a data block of their own, each read through by its own pg_restore; every other entry goes
# to one further pg_restore, so together they read every block of the archive
_DATA_KINDS = {"TABLE DATA", "BLOBS", "BLOB", "LARGE OBJECT", "LARGE OBJECTS"}


def _workers() -> int:
    return min(2, usable_cores())


def read_custom(path: Path, timeout: float, verify: bool = True) -> tuple[str, int, dict, list[TocEntry], str | None]:
    """(sha256, bytes, header, table of contents, why the data could not be read through or None).

    A listing pg_restore refuses raises (rule dump_corrupt) as `list_archive` does; a data failure is returned for
    the caller to refuse after it has judged the header (a newer pg_dump is the truer reason). `verify=False`:
    hashed and listed only (a rehearsal's restore reads the data blocks, core/clone/restore_failures.py)."""
    deadline = time.monotonic() + timeout
    try:
        f = open(path, "rb", buffering=0)
    except OSError as e:
        raise refuse(path, f"it cannot be read ({e.strerror})", "Make the file readable by the user running the "
                     "rehearsal.", rule="dump_unreadable") from None
    with f, tempfile.TemporaryDirectory(prefix="fix7-intake-") as tmp:
        fd = f.fileno()
        name = f"/dev/fd/{fd}" if os.path.exists(f"/dev/fd/{fd}") else str(path)
        hashed = _Hash(fd)
        thread = threading.Thread(target=hashed.run, name="fix7-intake-sha256", daemon=True)
        thread.start()
        try:
            listed = _run(["-l", "-F", "c", name], fd, deadline, stdout=subprocess.PIPE)
        except subprocess.TimeoutExpired:
            hashed.stop = True
            raise refuse(path, f"pg_restore could not list its table of contents within {timeout:.0f} s",
                         rule="dump_unreadable") from None
        if listed.returncode != 0:
            hashed.stop = True
            raise refuse(path, "pg_restore cannot read it as a custom archive ("
                         f"{_first(listed.stderr, path)})", "Supply the complete, unmodified archive as pg_dump "
                         "wrote it.", rule="dump_corrupt")
        header, toc = parse_listing(path, listed.stdout.decode("utf-8", "surrogateescape"))
        failed = _read_through(toc, name, fd, Path(tmp), deadline, path) if verify else None
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive() or failed == "timeout":
            hashed.stop = True
            raise refuse(path, f"its data could not be read through within {timeout:.0f} s", rule="dump_unreadable")
    if hashed.error is not None:
        raise refuse(path, f"it cannot be read ({hashed.error.strerror})", "Make the file readable by the user "
                     "running the rehearsal.", rule="dump_unreadable")
    return hashed.sha.hexdigest(), hashed.n, header, toc, failed


class _Hash:
    """sha256 of the open file from its first byte (pread: no shared file offset), in large reads."""

    def __init__(self, fd: int):
        self.fd, self.sha, self.n = fd, hashlib.sha256(), 0
        self.error: OSError | None = None
        self.stop = False

    def run(self) -> None:
        try:
            while not self.stop and (chunk := os.pread(self.fd, CHUNK, self.n)):
                self.sha.update(chunk)
                self.n += len(chunk)
        except OSError as e:
            self.error = e


def _read_through(toc: list[TocEntry], name: str, fd: int, tmp: Path, deadline: float, path: Path) -> str | None:
    """Every data block decompressed to /dev/null, one pg_restore per block (and one for all other entries), as
    many at once as there are cores (two at most); the first failure's first line, "timeout", or None."""
    data = [e for e in toc if e.kind in _DATA_KINDS]
    rest = [e for e in toc if e.kind not in _DATA_KINDS]
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    for i, entries in enumerate([[e] for e in data] + ([rest] if rest else [])):
        listing = tmp / f"part{i}.list"
        listing.write_text("".join(e.line + "\n" for e in entries), encoding="utf-8", errors="surrogateescape")
        jobs.put(listing)
    failures: list[str] = []

    def work() -> None:
        while not failures:
            try:
                listing = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                r = _run(["-F", "c", "-L", str(listing), "-f", os.devnull, name], fd, deadline,
                         stdout=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                failures.append("timeout")
                return
            if r.returncode != 0:
                failures.append(_first(r.stderr, path))

    threads = [threading.Thread(target=work, name=f"fix7-intake-check-{i}", daemon=True) for i in range(_workers())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures[0] if failures else None


def _run(args: list[str], fd: int, deadline: float, *, stdout) -> subprocess.CompletedProcess:
    """The wheel's pg_restore, offline, reading the open file `fd`."""
    return subprocess.run([pg_tool("pg_restore"), *args], stdin=subprocess.DEVNULL, stdout=stdout,
                          stderr=subprocess.PIPE, env=offline_env(), pass_fds=(fd,),
                          timeout=max(1.0, deadline - time.monotonic()))


def _first(stderr: bytes, path: Path) -> str:
    text = stderr.decode("utf-8", "replace")
    first = next((ln for ln in text.splitlines() if ln.strip()), "no reason given")
    return first.replace(str(path), "<dump>")[:300]
