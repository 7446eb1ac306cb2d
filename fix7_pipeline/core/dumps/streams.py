"""Reading a dump's bytes: path checks, sha256 as intake records it, capped gunzip, lines as psql reads them."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zlib
from pathlib import Path

from .formats import (CHUNK, DEFAULT_MAX_GZIP_RATIO, DEFAULT_MAX_PLAIN_BYTES, DIRECTORY, GZIP_RATIO_GRACE_BYTES,
                      MAX_LINE, PLAIN_GZIP, DumpInfo, refuse)



def resolve_path(path: Path, allowed_roots: list[Path] | None) -> Path:
    path = Path(os.path.expanduser(str(path)))
    try:
        path.lstat()
    except FileNotFoundError:
        raise refuse(path, "nothing exists at that path", "Check the path the operator named; supply the "
                     "sanitized pg_dump of the birth surface there.", rule="dump_missing") from None
    except OSError as e:
        raise refuse(path, f"its metadata cannot be read ({e.strerror})", rule="dump_unreadable") from None
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise refuse(path, f"the path cannot be resolved ({getattr(e, 'strerror', None) or e})",
                     rule="dump_unreadable") from None
    if allowed_roots is not None:
        roots = [Path(os.path.expanduser(str(r))).resolve() for r in allowed_roots]
        if not any(real == r or r in real.parents for r in roots):
            via = " (it is a symbolic link)" if path.is_symlink() else ""
            raise refuse(path, f"it resolves to {real}{via}, outside the allowed dump locations "
                         f"({', '.join(str(r) for r in roots)})", "Place the dump itself (not a link to "
                         "elsewhere) under one of the allowed locations.", rule="dump_outside_roots")
    return real


def hash_file(path: Path, h=None) -> tuple[str, int]:
    h = h or hashlib.sha256()
    n = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
    except OSError as e:
        raise refuse(path, f"it cannot be read ({e.strerror})", "Make the file readable by the user running "
                     "the rehearsal.", rule="dump_unreadable") from None
    return h.hexdigest(), n


def hash_dump(path: Path, fmt: str) -> str:
    """sha256 as inspect_dump computes it, for re-checking a dump just before it is restored."""
    return (hash_directory(path) if fmt == DIRECTORY else hash_file(path))[0]


def hash_directory(path: Path) -> tuple[str, int]:
    """sha256 over the sorted member names and contents; anything but plain files is refused."""
    h = hashlib.sha256()
    total = 0
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise refuse(path, f"the directory cannot be listed ({e.strerror})", rule="dump_unreadable") from None
    for name in names:
        member = path / name
        try:
            st = member.lstat()
        except OSError as e:
            raise refuse(path, f"its member {name!r} cannot be read ({e.strerror})",
                         rule="dump_unreadable") from None
        if not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise refuse(path, f"the directory-format dump holds {name!r}, which is {kind}; pg_restore would "
                         "read whatever it points at", "Supply the directory exactly as pg_dump -Fd wrote it "
                         "(regular files only).", rule="dump_directory_member")
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + str(st.st_size).encode() + b"\0")
        sub = hashlib.sha256()
        _, n = hash_file(member, sub)
        h.update(sub.digest())
        total += n
    return h.hexdigest(), total


# -- gzip, capped -----------------------------------------------------------------------------

class _CappedGunzip(io.RawIOBase):
    """Decompresses a gzip file as a stream, refusing once output exceeds the size or ratio caps."""

    def __init__(self, path: Path, max_bytes: int, max_ratio: int, fileobj=None):
        self._f = fileobj if fileobj is not None else open(path, "rb")
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._path, self._max, self._ratio = path, max_bytes, max_ratio
        self._buf = b""
        self.compressed_in = 0
        self.out = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self._buf and not self._eof:
            if self._z.unconsumed_tail:
                data = self._z.decompress(self._z.unconsumed_tail, CHUNK)
            else:
                raw = self._f.read(64 * 1024)
                if not raw:
                    if not self._z.eof:
                        raise refuse(self._path, "the gzip stream is truncated", "Supply the complete file.",
                                     rule="dump_truncated")
                    self._eof = True
                    return
                self.compressed_in += len(raw)
                if self._z.eof:  # concatenated gzip members
                    rest = self._z.unused_data + raw
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    raw = rest
                data = self._z.decompress(raw, CHUNK)
            self.out += len(data)
            if self.out > self._max:
                raise refuse(self._path, f"it expands beyond {self._max} bytes (the cap for a plain dump)",
                             "Supply a custom-format dump (pg_dump -Fc) or raise the cap if the clone is really "
                             "that large.", rule="dump_too_large")
            if self.out > GZIP_RATIO_GRACE_BYTES and self.out > self._ratio * max(self.compressed_in, 1):
                raise refuse(self._path, f"it expands more than {self._ratio}:1, which a pg_dump does not; it "
                             "looks like a decompression bomb", rule="dump_gzip_bomb")
            self._buf = data

    def readinto(self, b) -> int:
        self._fill()
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


class HashingReader(io.RawIOBase):
    """Reads a file while hashing exactly the bytes read: the restore proves it ran the inspected file."""

    def __init__(self, path: Path):
        self._f = open(path, "rb", buffering=0)
        self.sha = hashlib.sha256()
        self.n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self.sha.update(memoryview(b)[:n])
            self.n += n
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


def open_plain(info_or_path, *, max_bytes: int = DEFAULT_MAX_PLAIN_BYTES,
               max_ratio: int = DEFAULT_MAX_GZIP_RATIO, gzipped: bool | None = None,
               raw: io.RawIOBase | None = None) -> io.BufferedReader:
    """A binary stream of the plain SQL (decompressed on the fly for gzip), capped."""
    if isinstance(info_or_path, DumpInfo):
        path, gzipped = info_or_path.path, info_or_path.format == PLAIN_GZIP
        max_bytes, max_ratio = info_or_path.max_plain_bytes, info_or_path.max_gzip_ratio
    else:
        path = Path(info_or_path)
    if gzipped:
        src = io.BufferedReader(raw, CHUNK) if raw is not None else None
        return io.BufferedReader(_CappedGunzip(path, max_bytes, max_ratio, fileobj=src), CHUNK)
    if raw is not None:
        return io.BufferedReader(raw, CHUNK)
    return open(path, "rb", buffering=CHUNK)


def iter_lines(stream) -> "iter[tuple[int, str, bool]]":
    """(line number, text, complete) with bytes mapped 1:1 to str (latin-1); over-long lines come in pieces."""
    lineno = 1
    while True:
        raw = stream.readline(MAX_LINE)
        if not raw:
            return
        complete = raw.endswith(b"\n")
        yield lineno, raw.decode("latin-1"), complete
        if complete:
            lineno += 1


# -- the psql-compatible lexer ----------------------------------------------------------------
