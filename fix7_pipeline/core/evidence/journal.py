"""The run's evidence as it happens: an append-only, fsynced journal in the packet directory.

Every stage appends what it learnt as JSON lines to `rehearsal-journal.jsonl`; nothing rewrites a line. Each
entry is one `write()` of one line on an O_APPEND descriptor, fsynced before the stage goes on, so stages in
several processes may append at once and a crash (even kill -9) leaves every entry written so far, readable.
The first entry (the packet's starting fields) creates the file exclusively and whole (written aside, then
linked in): of two runs naming one directory, one gets it, and no reader sees a journal without it. The packet files are rendered from the journal once, when the run ends (core/evidence/report.render).

An entry is {"op": "set" | "extend" | "extend_new" | "pop", "path": [...], "value": ...}: `fold` applies them
in order to the first entry's fields, giving exactly the data rehearsal-report.json is rendered from.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import tempfile
from pathlib import Path

from ..storage import s3_store
from ..storage.store import evidence_path, is_remote
from .packet_files import JOURNAL, sha256_file, write_evidence, writing


class JournalTaken(Exception):
    """The directory already holds a journal: another run's packet."""


def _line(entry: dict) -> bytes:
    return (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode("utf-8")


def _write(fd: int, data: bytes) -> None:
    """One write() of the whole line (O_APPEND places it at the end as one piece), then fsync."""
    written = os.write(fd, data)
    if written != len(data):  # a regular file takes less than asked only when its file system is full
        raise OSError(errno.ENOSPC, f"the journal took {written} of {len(data)} bytes")
    os.fsync(fd)


def create(directory: Path, fields: dict) -> Path:
    """The journal, created exclusively (link() refuses a name that exists), holding `fields` as its first entry."""
    directory = evidence_path(directory)
    path = directory / JOURNAL
    if is_remote(directory):  # in S3 one object per entry (core/storage/s3_store.py)
        with writing(path):
            try:
                s3_store.journal_create(directory, _line({"op": "start", "value": fields}))
            except FileExistsError:
                raise JournalTaken(str(path)) from None
        return path
    with writing(path):
        directory.mkdir(parents=True, exist_ok=True)
        # written whole under a name of its own, then linked in: the journal is never seen (nor left by a kill)
        # empty, and link() fails where a name exists, as O_EXCL does
        fd, name = tempfile.mkstemp(prefix=f".{JOURNAL}.", suffix=".draft", dir=directory)
        draft = Path(name)
        try:
            try:
                os.fchmod(fd, 0o644)
                _write(fd, _line({"op": "start", "value": fields}))
            finally:
                os.close(fd)
            try:
                os.link(draft, path)
            except FileExistsError:
                raise JournalTaken(str(path)) from None
        finally:
            draft.unlink(missing_ok=True)
        _fsync_dir(directory)
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append(directory: Path, *entries: dict) -> None:
    """Append entries to an existing journal (never creates one: a stage writes only into its own run's)."""
    path = evidence_path(directory) / JOURNAL
    if is_remote(path):
        with writing(path):
            return s3_store.journal_append(path.parent, [_line(e) for e in entries])
    with writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            for entry in entries:
                _write(fd, _line(entry))
        finally:
            os.close(fd)


def read(directory: Path) -> list[dict]:
    """The journal's entries in order. A last line cut short by a crash mid-write is left out; any other
    unreadable line is an error."""
    directory = evidence_path(directory)
    raw = s3_store.journal_bytes(directory) if is_remote(directory) else (directory / JOURNAL).read_bytes()
    lines = raw.split(b"\n")
    entries = []
    for n, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            entries.append(json.loads(raw))
        except ValueError:
            if n == len(lines) - 1:  # no newline after it: the write that made it never finished
                break
            raise ValueError(f"{JOURNAL} line {n + 1} is not a journal entry") from None
    if not entries or entries[0].get("op") != "start":
        raise ValueError(f"{JOURNAL} does not begin with the packet's start entry")
    return entries


def fold(entries: list[dict]) -> dict:
    """The packet data the entries describe: the start entry's fields with every later entry applied."""
    data = copy.deepcopy(entries[0]["value"])
    for e in entries[1:]:
        *parents, key = e["path"]
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        op = e["op"]
        if op == "set":
            node[key] = e["value"]
        elif op == "extend":
            node.setdefault(key, []).extend(e["value"])
        elif op == "extend_new":
            have = node.setdefault(key, [])
            have.extend(v for v in e["value"] if v not in have)
        elif op == "pop":
            node.pop(key, None)
        else:
            raise ValueError(f"{JOURNAL}: unknown entry op {op!r}")
    return data


def exists(directory: Path) -> bool:
    directory = evidence_path(directory)
    return s3_store.journal_exists(directory) if is_remote(directory) else (directory / JOURNAL).is_file()


class Journal:
    """What a stage appends to its run's journal. It reads nothing back: the packet is rendered at the end.

    `recorded` holds the stages this holder recorded (or, opened by `replay`, the journal had recorded), and
    `sealed` the audit-chain entry of the render this holder made: what an interruption needs to know.
    """

    def __init__(self, directory: Path, recorded: set[str] | None = None):
        self.dir = evidence_path(directory)
        self.recorded: set[str] = set(recorded or ())
        self.sealed: dict | None = None

    def put(self, path: list[str], value, op: str = "set") -> None:
        append(self.dir, {"op": op, "path": list(path), "value": value})

    def set(self, **fields) -> None:
        append(self.dir, *({"op": "set", "path": [k], "value": v} for k, v in fields.items()))

    def record_stage(self, stage: str, outcome, duration_s: float | None = None) -> None:
        entry = outcome.as_dict()
        if duration_s is not None:
            entry["duration_s"] = round(duration_s, 3)
        self.put(["stages", stage], entry)
        self.recorded.add(stage)

    def add_connections(self, entries: list[dict]) -> None:
        if entries:
            self.put(["connections"], list(entries), "extend")

    def throwaways(self, key: str, value, op: str = "set") -> None:
        self.put(["throwaways", key], value, op)

    def write_file(self, name: str, text: str) -> dict:
        """A further packet file, written atomically; its sha256 goes into rehearsal-report.json (`files`), which
        the audit chain seals, so the file cannot be edited unnoticed."""
        path = self.dir / name
        write_evidence(path, text)
        entry = {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        self.put(["files", name], entry)
        return entry
