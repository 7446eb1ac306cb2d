"""Identifying a dump without restoring it: format, versions, table of contents, sha256 (`inspect_dump`)."""

from __future__ import annotations

import gzip
import os
import re
import stat
import zlib
from pathlib import Path

from ..postgres.pg_tools import wheel_major
from ..postgres.sql_lexer import COPY_FROM_STDIN, copy_target
from . import archive_read
from .archive import version_major, list_archive, tables_from_toc, verify_archive_data
from .formats import (CUSTOM, DEFAULT_MAX_GZIP_RATIO, DEFAULT_MAX_PLAIN_BYTES, DIRECTORY, PLAIN, PLAIN_GZIP, TAR,
                      DumpInfo, TocEntry, refuse)
from .screening import PlainScreen
from .streams import HashingReader, hash_directory, hash_file, iter_lines, open_plain, resolve_path

_TOC_HEADER = re.compile(r"^-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$")


# Files intake recognises only to refuse them by name: other databases and compressions it does not expand.
_OTHER_MAGIC = ((b"SQLite format 3\x00", "sqlite"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x04\x22\x4d\x18", "lz4"),
                (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))


def _sniff(head: bytes) -> str:
    if head.startswith(b"PGDMP"):
        return "pgdmp"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return next((kind for magic, kind in _OTHER_MAGIC if head.startswith(magic)), "text?")


def _head(dump: Path, path: Path, n: int, what: str, whose: str) -> bytes:
    """The first `n` bytes of `path` (the dump or a member of it), or the refusal that says why they cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise refuse(dump, f"{what} cannot be read ({e.strerror})", f"Make {whose} readable by the user running "
                     "the rehearsal.", rule="dump_unreadable") from None


def _check_newer(path: Path, pg_dump_version: str | None) -> None:
    major = version_major(pg_dump_version)
    if major is not None and major > wheel_major():
        raise refuse(path, f"it was made by pg_dump {pg_dump_version}, newer than the rehearsal's client tools "
                     f"(PostgreSQL {wheel_major()}), which cannot read it safely",
                     f"Make it again with pg_dump {wheel_major()} or older against the sanitized copy.",
                     rule="dump_too_new")


def _inspect_plain(path: Path, gzipped: bool, max_bytes: int, max_ratio: int, hand_written: bool = False) -> dict:
    """One streamed pass: header versions, TOC comment headers, COPY blocks, size, sha256 and the screening
    (`screen`, finished by the caller once it knows whether pg_dump wrote the file): the one read intake makes.

    `hand_written` reads schema SQL a person wrote (a contract's source): no pg_dump banner is required.
    """
    header: dict = {}
    toc: list[TocEntry] = []
    copies: list[str] = []
    seen_dump_banner = False
    uncompressed = 0
    try:
        raw = HashingReader(path)
        stream = open_plain(path, gzipped=gzipped, max_bytes=max_bytes, max_ratio=max_ratio, raw=raw)
    except OSError as e:
        raise refuse(path, f"it cannot be read ({e.strerror})", rule="dump_unreadable") from None
    screen = PlainScreen()
    scanner = screen.scanner
    with stream:
        try:
            for lineno, line, complete in iter_lines(stream):
                uncompressed += len(line)
                if lineno <= 64 and not seen_dump_banner:
                    if "\x00" in line:
                        raise refuse(path, "it holds binary data, so it is not a pg_dump output", rule="dump_not_pg_dump")
                    if line.startswith("-- PostgreSQL database dump"):
                        seen_dump_banner = True
                elif lineno > 64 and not seen_dump_banner and not hand_written:
                    break
                kind, stmts, _ = screen.feed(lineno, line, complete)
                if kind != "sql":
                    continue
                if line.startswith("-- Dumped from database version "):
                    header.setdefault("server_version", line.split("version", 1)[1].strip())
                elif line.startswith("-- Dumped by pg_dump version "):
                    header.setdefault("pg_dump_version", line.split("version", 1)[1].strip())
                elif line.startswith("-- ") and not scanner.in_statement():
                    m = _TOC_HEADER.match(line.rstrip("\r\n"))
                    if m:
                        toc.append(TocEntry(id=len(toc) + 1, kind=m.group(2), schema=m.group(3),
                                            name=m.group(1), owner=m.group(4) or None))
                for st in stmts:
                    if COPY_FROM_STDIN.match(st.text):
                        copies.append(copy_target(st.text))
        except gzip.BadGzipFile:
            raise refuse(path, "the gzip stream is damaged", rule="dump_corrupt") from None
        except zlib.error as e:
            raise refuse(path, f"the gzip stream is damaged ({e})", "Supply the complete file.",
                         rule="dump_corrupt") from None
    if not seen_dump_banner and not hand_written:
        raise refuse(path, "it is not a pg_dump output (no '-- PostgreSQL database dump' header in its first "
                     "lines)", rule="dump_not_pg_dump")
    return {"header": header, "toc": toc, "copies": copies, "uncompressed": uncompressed,
            "sha256": raw.sha.hexdigest(), "bytes": raw.n, "screen": screen}


def _take_listing(info: DumpInfo, path: Path, header: dict, toc) -> None:
    """An archive's header and table of contents into `info`; a dump newer than the wheel's tools is refused."""
    info.pg_dump_version = header.get("Dumped by pg_dump version")
    info.server_version = header.get("Dumped from database version")
    info.archive_version = header.get("Dump Version")
    info.toc = toc
    info.tables, info.tables_with_data = tables_from_toc(toc)
    _check_newer(path, info.pg_dump_version)


def inspect_dump(path, *, allowed_roots: list[Path] | None = None, max_plain_bytes: int = DEFAULT_MAX_PLAIN_BYTES,
                 max_gzip_ratio: int = DEFAULT_MAX_GZIP_RATIO, verify_data: bool = True,
                 timeout: float = 3600, schema_sql: bool = False, restore_reads_custom_data: bool = False) -> DumpInfo:
    """Identify a dump (format, versions, TOC, sha256) without restoring it; refuse anything unusable.

    An archive's data blocks are read through unless `verify_data` is False; `restore_reads_custom_data` leaves a
    custom archive's to the restore that follows (pg_restore reads each block it restores, and a block cut short or
    damaged stops it, told as the dump's fault: core/clone/restore_failures.py). A directory or tar archive is still
    read through: pg_restore feeds a tar member cut short to the server as rows. A plain dump is read whole to be
    screened anyway.

    `schema_sql` also takes plain SQL that pg_dump did not write (a contract's schema source): it is screened
    and restored like any plain dump, only pg_dump's banner, version line and closing line are not required.
    """
    real = resolve_path(Path(path), allowed_roots)
    st = os.stat(real)
    if stat.S_ISDIR(st.st_mode):
        toc_file = real / "toc.dat"
        try:
            toc_st = os.lstat(toc_file)
        except FileNotFoundError:
            toc_st = None
        except OSError as e:
            raise refuse(real, f"the directory cannot be read ({e.strerror})", "Make the directory and its files "
                         "readable by the user running the rehearsal.", rule="dump_unreadable") from None
        if toc_st is None or not stat.S_ISREG(toc_st.st_mode):
            raise refuse(real, "it is a directory without a toc.dat, so it is not a pg_dump directory-format "
                         "dump", "Name the directory pg_dump -Fd wrote, or a dump file.", rule="dump_not_pg_dump")
        if _head(real, toc_file, 5, "its toc.dat", "the directory and its files") != b"PGDMP":
            raise refuse(real, "its toc.dat is not a pg_dump archive header", rule="dump_corrupt")
        digest, size = hash_directory(real)
        fmt, compressed = DIRECTORY, any(n.endswith((".gz", ".lz4", ".zst")) for n in os.listdir(real))
    elif stat.S_ISREG(st.st_mode):
        if st.st_size == 0:
            raise refuse(real, "the file is empty", rule="dump_empty")
        head = _head(real, real, 512, "it", "the file")
        kind = _sniff(head)
        if kind in ("zstd", "lz4", "bzip2", "xz", "zip"):
            raise refuse(real, f"it is {kind}-compressed, which intake does not expand",
                         "Decompress it, or supply the plain dump gzip-compressed or a custom-format dump.",
                         rule="dump_unsupported_compression")
        if kind == "sqlite":
            raise refuse(real, "it is a SQLite database, not a PostgreSQL dump", rule="dump_not_pg_dump")
        # a custom archive is hashed in the one pass that also lists and reads it through (archive_read.py)
        digest, size = (None, st.st_size) if kind in ("gzip", "text?", "pgdmp") else hash_file(real)
        if kind == "pgdmp":
            if len(head) < 11:
                raise refuse(real, "its archive header is truncated", rule="dump_truncated")
            if head[10] != 1:
                raise refuse(real, f"its archive header names an unknown format ({head[10]})", rule="dump_corrupt")
            fmt, compressed = CUSTOM, True
        elif kind == "tar":
            if not head.startswith(b"toc.dat\x00"):
                raise refuse(real, "it is a tar file, but not one pg_dump -Ft wrote (no toc.dat first)",
                             rule="dump_not_pg_dump")
            fmt, compressed = TAR, False
        elif kind == "gzip":
            with open_plain(real, gzipped=True, max_bytes=max_plain_bytes, max_ratio=max_gzip_ratio) as g:
                try:
                    inner = g.read(512)
                except (zlib.error, EOFError) as e:
                    raise refuse(real, f"the gzip stream is damaged ({e})", rule="dump_corrupt") from None
            if inner.startswith(b"PGDMP") or (len(inner) >= 262 and inner[257:262] == b"ustar"):
                raise refuse(real, "it is a gzip-compressed pg_dump archive", "Decompress it and supply the "
                             "archive itself (custom format is already compressed).",
                             rule="dump_unsupported_compression")
            fmt, compressed = PLAIN_GZIP, True
        else:
            fmt, compressed = PLAIN, False
    else:
        raise refuse(real, "it is neither a regular file nor a directory", rule="dump_not_regular")

    info = DumpInfo(path=real, sha256=digest, bytes=size, format=fmt, compressed=compressed, pg_dump_version=None,
                    server_version=None, archive_version=None, max_plain_bytes=max_plain_bytes,
                    max_gzip_ratio=max_gzip_ratio)
    if fmt in (PLAIN, PLAIN_GZIP):
        got = _inspect_plain(real, fmt == PLAIN_GZIP, max_plain_bytes, max_gzip_ratio, hand_written=schema_sql)
        info.sha256, info.bytes = got["sha256"], got["bytes"]
        if info.bytes != st.st_size:
            raise refuse(real, "it changed size while it was being read", "Leave the dump untouched while the "
                         "rehearsal runs.", rule="dump_changed")
        info.pg_dump_version = got["header"].get("pg_dump_version")
        info.server_version = got["header"].get("server_version")
        info.toc = got["toc"]
        info.uncompressed_bytes = got["uncompressed"]
        info.tables, _ = tables_from_toc(info.toc)
        info.tables_with_data = sorted(set(got["copies"]))
        if not info.pg_dump_version and schema_sql:
            info.hand_written = True
        elif not info.pg_dump_version:
            raise refuse(real, "its header does not say which pg_dump made it ('-- Dumped by pg_dump version')",
                         rule="dump_not_pg_dump")
        got["screen"].hand_written = info.hand_written
        info.screened = tuple(got["screen"].finish())
    elif fmt == CUSTOM:
        info.sha256, info.bytes, header, toc, unread = archive_read.read_custom(
            real, timeout, verify=verify_data and not restore_reads_custom_data)
        if info.bytes != st.st_size:
            raise refuse(real, "it changed size while it was being read", "Leave the dump untouched while the "
                         "rehearsal runs.", rule="dump_changed")
        _take_listing(info, real, header, toc)
        if unread is not None:
            raise refuse(real, f"its data cannot be read to the end ({unread}); it is truncated or damaged",
                         "Supply the complete archive as pg_dump wrote it.", rule="dump_truncated")
    else:
        header, toc = list_archive(real, fmt, timeout=min(timeout, 600))
        _take_listing(info, real, header, toc)
        if verify_data:
            verify_archive_data(real, fmt, timeout=timeout)
    _check_newer(real, info.pg_dump_version)
    info.schema_only = not info.tables_with_data and not any(e.kind == "TABLE DATA" for e in info.toc)
    return info
