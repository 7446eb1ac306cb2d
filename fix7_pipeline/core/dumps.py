"""Untrusted dumps: what the file is, what it holds, and whether it is safe to restore at all.

Nothing here connects to a database. Archives are read with the wheel's `pg_restore -l`
(never the system's); plain dumps are read line by line with a small psql-compatible lexer,
so a meta-command hidden after pg_dump's `\\unrestrict` or a foreign server pointing at
production is refused before anything runs.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import os
import re
import stat
import subprocess
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import Fix7Error
from .model import Finding
from .server import pg_tool

PLAIN, PLAIN_GZIP, CUSTOM, DIRECTORY, TAR = "plain", "plain-gzip", "custom", "directory", "tar"
FORMATS = (PLAIN, PLAIN_GZIP, CUSTOM, DIRECTORY, TAR)

DEFAULT_MAX_PLAIN_BYTES = 64 * 1024 ** 3
DEFAULT_MAX_GZIP_RATIO = 200
GZIP_RATIO_GRACE_BYTES = 16 * 1024 ** 2
CHUNK = 1024 * 1024
MAX_LINE = 8 * 1024 * 1024

TRUSTED_EXTENSIONS = frozenset({
    "plpgsql", "pgcrypto", "uuid-ossp", "citext", "pg_trgm", "btree_gin", "btree_gist", "hstore", "intarray",
    "unaccent", "fuzzystrmatch", "tablefunc", "ltree", "isn", "cube", "earthdistance", "seg", "tcn",
    "tsm_system_rows", "tsm_system_time", "dict_int", "lo", "vector", "pgvector",
})
OUTWARD_EXTENSIONS = frozenset({"postgres_fdw", "dblink", "file_fdw", "mysql_fdw", "oracle_fdw", "tds_fdw",
                                "mongo_fdw", "redis_fdw", "multicorn", "pglogical", "pg_net", "http",
                                "plpython3u", "plperlu", "pltclu", "adminpack", "pg_cron", "aws_s3",
                                "aws_commons", "aws_lambda", "pgsql-http", "ogr_fdw", "sqlite_fdw"})
# Client encodings in which a multi-byte character may contain a backslash byte (psql lexes them specially).
UNSAFE_CLIENT_ENCODINGS = {"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB", "MSKANJI",
                           "SHIFTJIS", "WIN932", "WIN936", "WIN949", "WIN950", "TCVN"}

# TOC descriptions pg_dump writes (pg_restore -l), longest first so multi-word kinds match whole.
TOC_KINDS = sorted({
    "ACCESS METHOD", "ACL", "AGGREGATE", "BLOB", "BLOB COMMENTS", "BLOB METADATA", "BLOBS", "CAST",
    "CHECK CONSTRAINT", "COLLATION", "COMMENT", "CONSTRAINT", "CONVERSION", "DATABASE", "DATABASE PROPERTIES",
    "DEFAULT", "DEFAULT ACL", "DOMAIN", "ENCODING", "EVENT TRIGGER", "EXTENSION", "FK CONSTRAINT",
    "FOREIGN DATA WRAPPER", "FOREIGN SERVER", "FOREIGN TABLE", "FUNCTION", "INDEX", "INDEX ATTACH",
    "LARGE OBJECT", "LARGE OBJECTS", "MATERIALIZED VIEW", "MATERIALIZED VIEW DATA", "OPERATOR",
    "OPERATOR CLASS", "OPERATOR FAMILY", "POLICY", "PROCEDURAL LANGUAGE", "PROCEDURE", "PUBLICATION",
    "PUBLICATION TABLE", "PUBLICATION TABLES IN SCHEMA", "ROW SECURITY", "RULE", "SCHEMA", "SEARCHPATH",
    "SECURITY LABEL", "SEQUENCE", "SEQUENCE OWNED BY", "SEQUENCE SET", "SERVER", "SHELL TYPE", "STATISTICS",
    "STATISTICS DATA", "STDSTRINGS", "SUBSCRIPTION", "SUBSCRIPTION TABLE", "TABLE", "TABLE ATTACH",
    "TABLE DATA", "TABLESPACE", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER",
    "TEXT SEARCH TEMPLATE", "TRANSFORM", "TRIGGER", "TYPE", "USER MAPPING", "VIEW", "LANGUAGE",
}, key=len, reverse=True)

# Isolation rules: TOC kind / SQL statement -> rule name.
ISOLATION_KINDS = {
    "FOREIGN DATA WRAPPER": "foreign_data_wrapper", "SERVER": "foreign_server", "FOREIGN SERVER": "foreign_server",
    "USER MAPPING": "user_mapping", "FOREIGN TABLE": "foreign_table", "SUBSCRIPTION": "subscription",
    "SUBSCRIPTION TABLE": "subscription", "EVENT TRIGGER": "event_trigger",
}

_SQL_RULES = [
    (re.compile(r"^CREATE (?:OR REPLACE )?FOREIGN DATA WRAPPER\b"), "foreign_data_wrapper", True),
    (re.compile(r"^(?:CREATE|ALTER) SERVER\b"), "foreign_server", True),
    (re.compile(r"^(?:CREATE|ALTER) USER MAPPING\b"), "user_mapping", True),
    (re.compile(r"^(?:CREATE|ALTER) FOREIGN TABLE\b"), "foreign_table", True),
    (re.compile(r"^IMPORT FOREIGN SCHEMA\b"), "foreign_table", True),
    (re.compile(r"^(?:CREATE|ALTER) SUBSCRIPTION\b"), "subscription", True),
    (re.compile(r"^CREATE (?:OR REPLACE )?EVENT TRIGGER\b"), "event_trigger", False),
    (re.compile(r"^CREATE (?:OR REPLACE )?(?:TRUSTED )?(?:PROCEDURAL )?LANGUAGE\b"), "untrusted_language", False),
]
_CREATE_EXT = re.compile(r'^CREATE EXTENSION (?:IF NOT EXISTS )?("(?:[^"]|"")+"|[^\s;]+)', re.I)
_COPY_FROM_STDIN = re.compile(r"^COPY\b.*\bFROM\s+STDIN\b", re.I | re.S)
_TOC_HEADER = re.compile(r"^-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$")
_VERSION_NUM = re.compile(r"(\d+)(?:\.(\d+))?")
_META_WORD = re.compile(r"\\([A-Za-z]+|[^A-Za-z\s]?)")
# The server's lexer works on bytes: every byte of a non-ASCII character is an identifier character.
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")


def _ident_char(c: str) -> bool:
    """Part of an identifier, so a quote right after it starts no new token ("" is a line's start)."""
    return len(c) == 1 and (c.isascii() and (c.isalnum() or c in "_$") or c >= "\x80")


@dataclass
class TocEntry:
    """One table-of-contents entry: what a restore would create (ids are dump ids, not secrets)."""

    id: int
    kind: str
    schema: str | None
    name: str
    owner: str | None
    line: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "line"}

    @property
    def label(self) -> str:
        """'FOREIGN TABLE public.ft', 'USER MAPPING postgres SERVER prod': how an operator names it."""
        qualified = f"{self.schema}.{self.name}" if self.schema and self.schema != "-" else self.name
        return qualified if qualified.startswith(self.kind + " ") else f"{self.kind} {qualified}"


@dataclass
class DumpInfo:
    """What intake learnt about a dump without restoring it."""

    path: Path
    sha256: str
    bytes: int
    format: str
    compressed: bool
    pg_dump_version: str | None
    server_version: str | None
    archive_version: str | None
    toc: list[TocEntry] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    tables_with_data: list[str] = field(default_factory=list)
    schema_only: bool = False
    hand_written: bool = False  # schema SQL not written by pg_dump (a contract's source), screened all the same
    uncompressed_bytes: int | None = None
    max_plain_bytes: int = DEFAULT_MAX_PLAIN_BYTES
    max_gzip_ratio: int = DEFAULT_MAX_GZIP_RATIO

    @property
    def is_archive(self) -> bool:
        return self.format in (CUSTOM, DIRECTORY, TAR)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "bytes": self.bytes, "format": self.format,
                "compressed": self.compressed, "pg_dump_version": self.pg_dump_version,
                "server_version": self.server_version, "archive_version": self.archive_version,
                "schema_only": self.schema_only, "uncompressed_bytes": self.uncompressed_bytes,
                "tables": self.tables, "tables_with_data": self.tables_with_data,
                "toc_entries": len(self.toc),
                "toc_kinds": _count_kinds(self.toc)}


def _count_kinds(toc: list[TocEntry]) -> dict:
    counts: dict[str, int] = {}
    for e in toc:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return dict(sorted(counts.items()))


def _refuse(path, what: str, supply: str = "", rule: str = "dump_unreadable") -> Fix7Error:
    tail = f" {supply}" if supply else (" Supply a dump made by pg_dump (plain, plain gzip, custom, directory or "
                                        "tar format) of the sanitized, production-shaped clone.")
    return Fix7Error(f"The dump at {path} cannot be used: {what}.{tail}", rule=rule)


# -- wheel tools ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def wheel_major() -> int:
    """Major version of the wheel's pg_restore/psql: dumps from a newer pg_dump are refused (asked once)."""
    out = subprocess.run([pg_tool("pg_restore"), "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    m = _VERSION_NUM.search(out.split(")")[-1] if ")" in out else out)
    return int(m.group(1)) if m else 0


def _major(version: str | None) -> int | None:
    if not version:
        return None
    m = _VERSION_NUM.search(version)
    return int(m.group(1)) if m else None


def _tool_env() -> dict:
    """No libpq settings leak into offline tool runs (pg_restore -l never needs a server)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


# -- path checks and hashing --------------------------------------------------------------------

def _resolve(path: Path, allowed_roots: list[Path] | None) -> Path:
    path = Path(os.path.expanduser(str(path)))
    try:
        path.lstat()
    except FileNotFoundError:
        raise _refuse(path, "nothing exists at that path", "Check the path the operator named; supply the "
                      "sanitized pg_dump of the birth surface there.", rule="dump_missing") from None
    except OSError as e:
        raise _refuse(path, f"its metadata cannot be read ({e.strerror})", rule="dump_unreadable") from None
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as e:
        raise _refuse(path, f"the path cannot be resolved ({getattr(e, 'strerror', None) or e})",
                      rule="dump_unreadable") from None
    if allowed_roots is not None:
        roots = [Path(os.path.expanduser(str(r))).resolve() for r in allowed_roots]
        if not any(real == r or r in real.parents for r in roots):
            via = " (it is a symbolic link)" if path.is_symlink() else ""
            raise _refuse(path, f"it resolves to {real}{via}, outside the allowed dump locations "
                          f"({', '.join(str(r) for r in roots)})", "Place the dump itself (not a link to "
                          "elsewhere) under one of the allowed locations.", rule="dump_outside_roots")
    return real


def _hash_file(path: Path, h=None) -> tuple[str, int]:
    h = h or hashlib.sha256()
    n = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
    except OSError as e:
        raise _refuse(path, f"it cannot be read ({e.strerror})", "Make the file readable by the user running "
                      "the rehearsal.", rule="dump_unreadable") from None
    return h.hexdigest(), n


def hash_dump(path: Path, fmt: str) -> str:
    """sha256 as inspect_dump computes it, for re-checking a dump just before it is restored."""
    return (_hash_directory(path) if fmt == DIRECTORY else _hash_file(path))[0]


def _hash_directory(path: Path) -> tuple[str, int]:
    """sha256 over the sorted member names and contents; anything but plain files is refused."""
    h = hashlib.sha256()
    total = 0
    try:
        names = sorted(os.listdir(path))
    except OSError as e:
        raise _refuse(path, f"the directory cannot be listed ({e.strerror})", rule="dump_unreadable") from None
    for name in names:
        member = path / name
        try:
            st = member.lstat()
        except OSError as e:
            raise _refuse(path, f"its member {name!r} cannot be read ({e.strerror})",
                          rule="dump_unreadable") from None
        if not stat.S_ISREG(st.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise _refuse(path, f"the directory-format dump holds {name!r}, which is {kind}; pg_restore would "
                          "read whatever it points at", "Supply the directory exactly as pg_dump -Fd wrote it "
                          "(regular files only).", rule="dump_directory_member")
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + str(st.st_size).encode() + b"\0")
        sub = hashlib.sha256()
        _, n = _hash_file(member, sub)
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
                        raise _refuse(self._path, "the gzip stream is truncated", "Supply the complete file.",
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
                raise _refuse(self._path, f"it expands beyond {self._max} bytes (the cap for a plain dump)",
                              "Supply a custom-format dump (pg_dump -Fc) or raise the cap if the clone is really "
                              "that large.", rule="dump_too_large")
            if self.out > GZIP_RATIO_GRACE_BYTES and self.out > self._ratio * max(self.compressed_in, 1):
                raise _refuse(self._path, f"it expands more than {self._ratio}:1, which a pg_dump does not; it "
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

@dataclass
class Statement:
    line: int
    text: str           # normalised (comments removed, whitespace collapsed), first 4 KiB
    at_line_start: bool
    col: int = 0        # where it starts on `line` (0-based)
    end_line: int = 0   # where it ends: the line of its semicolon (or of the end of input) ...
    end_col: int = 0    # ... and the column just after it


@dataclass
class Meta:
    line: int
    word: str
    arg: str
    alone: bool         # the meta-command is the whole line, outside any statement


class PlainScanner:
    """Tracks quotes, comments, dollar quotes and COPY data the way psql does, one line at a time."""

    def __init__(self):
        self.in_copy = False
        self.q: str | None = None
        self.depth = 0
        self.std_strings = True
        self.buf: list[str] = []
        self.buf_len = 0
        self.stmt_line: int | None = None
        self.stmt_col = 0
        self.stmt_at_start = False
        self.pending_copy = False
        self.after_copy_junk = False

    def _add(self, s: str) -> None:
        if self.buf_len < 4096:
            self.buf.append(s)
            self.buf_len += len(s)

    def _start(self, lineno: int, col: int) -> None:
        if self.stmt_line is None:
            self.stmt_line, self.stmt_col, self.stmt_at_start = lineno, col, col == 0
            self.buf, self.buf_len = [], 0

    def _end(self, lineno: int, col: int) -> Statement:
        text = " ".join("".join(self.buf).split())
        st = Statement(self.stmt_line or 0, text, self.stmt_at_start, self.stmt_col, lineno, col)
        self.stmt_line, self.buf, self.buf_len = None, [], 0
        return st

    def finish(self, lineno: int, col: int) -> Statement | None:
        """The statement left without a semicolon at the end of input, which a server still runs."""
        if self.stmt_line is None:
            return None
        self.q = None
        return self._end(lineno, col)

    def in_statement(self) -> bool:
        return self.stmt_line is not None or self.q is not None

    def feed(self, lineno: int, line: str, complete: bool = True) -> tuple[str, list[Statement], list[Meta]]:
        """Classify one line: ("copy_data" | "copy_end" | "sql", statements ended on it, meta-commands)."""
        if self.in_copy:
            if line.rstrip("\r\n") == "\\." and complete:
                self.in_copy = False
                return "copy_end", [], []
            return "copy_data", [], []
        stmts: list[Statement] = []
        metas: list[Meta] = []
        i, n = 0, len(line)
        copy_after = False
        while i < n:
            c = line[i]
            q = self.q
            if q is None:
                if c == "-" and line.startswith("--", i):
                    if self.stmt_line is not None:
                        self._add(" ")  # a comment separates words, as the server reads it
                    break
                if c == "/" and line.startswith("/*", i):
                    self.q, self.depth = "/*", 1
                    i += 2
                    continue
                if c.isspace():
                    if self.stmt_line is not None:
                        self._add(" ")
                    i += 1
                    continue
                if copy_after:
                    self.after_copy_junk = True
                if c == "\\":
                    m = _META_WORD.match(line, i)
                    word = m.group(1) if m else ""
                    alone = self.stmt_line is None and not line[:i].strip()
                    metas.append(Meta(lineno, word, line[m.end() if m else i + 1:].strip(), alone))
                    break
                self._start(lineno, i)
                if c == "'":
                    prev = line[i - 1] if i else ""
                    prev2 = line[i - 2] if i > 1 else ""
                    escaped = prev in ("e", "E") and not _ident_char(prev2)
                    self.q = "E'" if (escaped or not self.std_strings) else "'"
                elif c == '"':
                    self.q = '"'
                elif c == "$" and not (i and _ident_char(line[i - 1])):
                    m = _DOLLAR_TAG.match(line, i)
                    if m:
                        self.q = m.group(0)
                        self._add(m.group(0))
                        i += len(m.group(0))
                        continue
                elif c == ";":
                    self._add(";")
                    st = self._end(lineno, i + 1)
                    stmts.append(st)
                    self._note_statement(st)
                    if _COPY_FROM_STDIN.match(st.text):
                        copy_after = True
                    i += 1
                    continue
                self._add(c)
                i += 1
                continue
            if q == "/*":
                if line.startswith("/*", i):
                    self.depth += 1
                    i += 2
                elif line.startswith("*/", i):
                    self.depth -= 1
                    i += 2
                    if self.depth == 0:
                        self.q = None
                        if self.stmt_line is not None:
                            self._add(" ")
                else:
                    i += 1
                continue
            self._add(c)
            if q == "'" or q == '"':
                if c == q[0]:
                    if i + 1 < n and line[i + 1] == q[0]:
                        self._add(c)
                        i += 2
                        continue
                    self.q = None
                i += 1
            elif q == "E'":
                if c == "\\" and i + 1 < n:
                    self._add(line[i + 1])
                    i += 2
                    continue
                if c == "'":
                    if i + 1 < n and line[i + 1] == "'":
                        self._add(c)
                        i += 2
                        continue
                    self.q = None
                i += 1
            else:  # dollar quote
                if line.startswith(q, i):
                    self._add(q[1:])
                    self.q = None
                    i += len(q)
                else:
                    i += 1
        if copy_after and complete:
            self.in_copy = True
        return "sql", stmts, metas

    def _note_statement(self, st: Statement) -> None:
        m = re.match(r"^SET standard_conforming_strings (?:=|TO) '?(on|off)'?\s*;$", st.text, re.I)
        if m:
            self.std_strings = m.group(1).lower() == "on"


# -- screening ----------------------------------------------------------------------------------

_RESTRICT_KEY = re.compile(r"^[A-Za-z0-9]{1,64}$")
_FORBIDDEN_META_HINT = {
    "connect": "the dump was made with --create (-C); make it without -C",
    "c": "the dump was made with --create (-C); make it without -C",
}


_IDENT = r'(?:"(?:[^"]|"")*"|[^\s".(]+)'
_COPY_TARGET = re.compile(rf"^COPY\s+({_IDENT})(?:\.({_IDENT}))?", re.I)


def copy_target(text: str) -> str:
    """'schema.table' (unquoted) of a COPY statement, as the TOC names it."""
    m = _COPY_TARGET.match(text)
    if not m:
        return "?"
    parts = [_unquote_ident(x) for x in m.groups() if x]
    return ".".join(parts)


def _unquote_ident(name: str) -> str:
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


def classify_statement(text: str) -> tuple[str, bool, str | None] | None:
    """(rule, isolation?, extension name) for a statement a restore must not run, else None."""
    up = text.upper()
    for rx, rule, isolation in _SQL_RULES:
        if rx.match(up):
            return rule, isolation, None
    m = _CREATE_EXT.match(text)
    if m:
        ext = _unquote_ident(m.group(1))
        if ext not in TRUSTED_EXTENSIONS:
            return "extension_not_allowed", ext in OUTWARD_EXTENSIONS, ext
    return None


_HOST_IN_OPTIONS = re.compile(r"\bhost\s+'([^']*)'", re.I)
_HOST_IN_CONNINFO = re.compile(r"\bhost\s*=\s*'?([^\s']+)", re.I)
_SUBJECT = re.compile(
    r"^(?:CREATE|ALTER|IMPORT)(?: OR REPLACE)?(?: TRUSTED)?(?: PROCEDURAL)? (USER MAPPING (?:IF NOT EXISTS )?FOR \S+ "
    r"SERVER [^\s;(]+|FOREIGN DATA WRAPPER [^\s;(]+|FOREIGN TABLE (?:IF NOT EXISTS )?[^\s;(]+|SERVER "
    r"(?:IF NOT EXISTS )?[^\s;(]+|SUBSCRIPTION [^\s;(]+|EVENT TRIGGER [^\s;(]+|LANGUAGE [^\s;(]+|"
    r"FOREIGN SCHEMA [^\s;(]+)", re.I)


def _statement_subject(text: str) -> str:
    """What the statement creates, e.g. 'SERVER prod (host db.corp)': the object and its host, no option values."""
    m = _SUBJECT.match(text)
    subject = m.group(1) if m else " ".join(text.split()[:3])
    hosts = _HOST_IN_OPTIONS.findall(text) + _HOST_IN_CONNINFO.findall(text)
    if hosts:
        subject += f" (host {', '.join(sorted(set(hosts)))})"
    return subject


def _meta_finding(meta: Meta, why: str) -> Finding:
    hint = _FORBIDDEN_META_HINT.get(meta.word.lower())
    msg = (f"Line {meta.line} of the plain dump runs the psql meta-command \\{meta.word} {why}; plain dumps may "
           "only carry pg_dump's own \\restrict/\\unrestrict pair, so the dump is refused before anything runs.")
    if hint:
        msg += f" ({hint}.)"
    return Finding(rule="psql_meta_command", message=msg, extra={"line": meta.line, "command": "\\" + meta.word})


class PlainScreen:
    """Incremental screening of a plain dump: used by `screen_dump` and again while restoring."""

    def __init__(self, *, hand_written: bool = False):
        self.hand_written = hand_written  # schema SQL a person wrote: no pg_dump closing line to expect
        self.scanner = PlainScanner()
        self.findings: list[Finding] = []
        self.restrict_key: str | None = None
        self.unrestricted_at: int | None = None
        self.saw_sql_after_unrestrict = False
        self.complete_marker = False
        self.objects: dict[str, list[tuple[int, str, bool]]] = {}

    def feed(self, lineno: int, line: str, complete: bool = True) -> tuple[str, list[Statement], list[Meta]]:
        kind, stmts, metas = self.scanner.feed(lineno, line, complete)
        if kind != "sql":
            if self.unrestricted_at is not None:
                self.saw_sql_after_unrestrict = True
            return kind, stmts, metas
        if self.scanner.after_copy_junk:
            self.scanner.after_copy_junk = False
            self.findings.append(Finding(
                rule="psql_meta_command", extra={"line": lineno},
                message=f"Line {lineno} of the plain dump puts more text after a COPY ... FROM stdin on the same "
                        "line, which pg_dump never writes; the dump is refused."))
        if line.startswith("-- PostgreSQL database dump complete"):
            self.complete_marker = True
        for meta in metas:
            self._meta(meta)
        if self.unrestricted_at is not None and (stmts or self.scanner.in_statement()):
            self.saw_sql_after_unrestrict = True
            self.findings.append(Finding(
                rule="psql_meta_command", extra={"line": lineno},
                message=f"Line {lineno} of the plain dump carries SQL after pg_dump's closing \\unrestrict (line "
                        f"{self.unrestricted_at}), where pg_dump writes nothing; the dump is refused."))
        for st in stmts:
            self._statement(st)
        return kind, stmts, metas

    def _meta(self, meta: Meta) -> None:
        word = meta.word
        if word == "restrict":
            if self.restrict_key is None and self.unrestricted_at is None and meta.alone \
                    and _RESTRICT_KEY.match(meta.arg) and not self.scanner.in_statement():
                self.restrict_key = meta.arg
                return
            self.findings.append(_meta_finding(meta, "a second time or in a place pg_dump never writes it"))
            return
        if word == "unrestrict":
            if self.restrict_key is not None and meta.arg == self.restrict_key and meta.alone \
                    and self.unrestricted_at is None:
                self.unrestricted_at = meta.line
                return
            self.findings.append(_meta_finding(meta, "with a key or in a place that does not match pg_dump's "
                                                     "\\restrict line"))
            return
        where = f"after pg_dump's \\unrestrict (line {self.unrestricted_at})" if self.unrestricted_at else \
            "outside COPY data"
        self.findings.append(_meta_finding(meta, where))
        if self.unrestricted_at is not None:
            self.saw_sql_after_unrestrict = True

    def _statement(self, st: Statement) -> None:
        m = re.match(r"^SET client_encoding = '([^']+)'", st.text, re.I)
        if m and m.group(1).upper().replace("-", "_") in UNSAFE_CLIENT_ENCODINGS:
            self.findings.append(Finding(
                rule="unsafe_encoding", extra={"line": st.line},
                message=f"The plain dump is in client encoding {m.group(1)} (line {st.line}), in which a "
                        "multi-byte character can hide a backslash; make it again with pg_dump -E UTF8."))
        if re.search(r"\sOWNER TO \S+;$", st.text) and st.text.upper().startswith("ALTER "):
            return
        hit = classify_statement(st.text)
        if not hit:
            return
        rule, isolation, ext = hit
        subject = f"EXTENSION {ext}" if ext else _statement_subject(st.text)
        self.objects.setdefault(rule, []).append((st.line, subject, isolation))

    def _object_findings(self) -> list[Finding]:
        out = []
        for rule, items in self.objects.items():
            isolation = any(i[2] for i in items)
            names = [f"{subject} (line {line})" for line, subject, _ in items]
            shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
            what = {"extension_not_allowed": "extensions outside the trusted allow list",
                    "untrusted_language": "procedural languages other than plpgsql",
                    "event_trigger": "event triggers (code that runs on every DDL)"}.get(rule, "pointers to other hosts")
            out.append(Finding(rule=rule, message=f"The plain dump creates {what}: {shown}. Rule {rule}: a clone "
                               "must not carry them; supply a dump without them.",
                               extra={"isolation": isolation, "entries": [s for _, s, _ in items],
                                      "lines": [line for line, _, _ in items]}))
        return out

    def finish(self) -> list[Finding]:
        sc = self.scanner
        self.findings.extend(self._object_findings())
        if sc.in_copy:
            self.findings.append(Finding(rule="dump_truncated", message=(
                "The plain dump ends inside COPY data (no closing \\. line): it is truncated.")))
        elif sc.q is not None or sc.stmt_line is not None:
            self.findings.append(Finding(rule="dump_truncated", message=(
                "The plain dump ends in the middle of a statement: it is truncated or was edited.")))
        if self.restrict_key is not None and self.unrestricted_at is None:
            self.findings.append(Finding(rule="dump_truncated", message=(
                "The plain dump opens pg_dump's \\restrict but never closes it: it is truncated.")))
        if not self.complete_marker and not self.hand_written:
            self.findings.append(Finding(rule="dump_truncated", message=(
                "The plain dump lacks pg_dump's closing '-- PostgreSQL database dump complete' line: it is "
                "truncated or was cut.")))
        return self.findings


def screen_plain(info: DumpInfo) -> list[Finding]:
    screen = PlainScreen(hand_written=info.hand_written)
    with open_plain(info) as f:
        for lineno, line, complete in iter_lines(f):
            screen.feed(lineno, line, complete)
    return screen.finish()


def screen_toc(toc: list[TocEntry]) -> list[Finding]:
    """Refuse TOC entries that point outside the clone or run code the restore cannot contain."""
    findings: list[Finding] = []
    by_rule: dict[str, list[TocEntry]] = {}
    for e in toc:
        rule = ISOLATION_KINDS.get(e.kind)
        if rule is None and e.kind in ("PROCEDURAL LANGUAGE", "LANGUAGE") and e.name != "plpgsql":
            rule = "untrusted_language"
        if rule is None and e.kind == "EXTENSION" and e.name not in TRUSTED_EXTENSIONS:
            rule = "extension_not_allowed"
        if rule:
            by_rule.setdefault(rule, []).append(e)
    for rule, entries in by_rule.items():
        outward = rule in ("foreign_data_wrapper", "foreign_server", "user_mapping", "foreign_table",
                           "subscription") or (rule == "extension_not_allowed"
                                               and any(e.name in OUTWARD_EXTENSIONS for e in entries))
        names = [e.label for e in entries]
        shown = ", ".join(names[:8]) + (f" (+{len(names) - 8} more)" if len(names) > 8 else "")
        what = {"extension_not_allowed": "extensions outside the trusted allow list",
                "untrusted_language": "procedural languages other than plpgsql",
                "event_trigger": "event triggers (code that runs on every DDL)"}.get(
            rule, "pointers to other hosts")
        findings.append(Finding(
            rule=rule, message=f"The dump's table of contents carries {what}: {shown}. Rule {rule}: supply a dump "
                               "without them.",
            extra={"isolation": outward, "entries": names, "toc_ids": [e.id for e in entries]}))
    return findings


def screen_dump(info: DumpInfo) -> list[Finding]:
    """Everything that makes this dump unsafe to restore, found without restoring it."""
    if info.format in (PLAIN, PLAIN_GZIP):
        return screen_plain(info)
    return screen_toc(info.toc)


# -- reading archives -----------------------------------------------------------------------------

def parse_toc_line(line: str) -> TocEntry | None:
    """One `pg_restore -l` entry: 'ID; TABLEOID OID KIND SCHEMA NAME OWNER' (kind may be several words)."""
    m = re.match(r"^(\d+); (\d+) (\d+) (.*)$", line.rstrip("\n"))
    if not m:
        return None
    rest = m.group(4)
    kind = next((k for k in TOC_KINDS if rest.startswith(k + " ")), None)
    if kind is None:
        kind = rest.split(" ", 1)[0]
        tail = rest[len(kind) + 1:]
    else:
        tail = rest[len(kind) + 1:]
    schema, _, tail = tail.partition(" ")
    name, _, owner = tail.rpartition(" ")
    if not name:
        name, owner = owner, ""
    return TocEntry(id=int(m.group(1)), kind=kind, schema=schema or None, name=name, owner=owner or None,
                    line=line.rstrip("\n"))


def list_archive(path: Path, fmt: str | None = None, timeout: float = 300) -> tuple[dict, list[TocEntry]]:
    """Header fields and TOC entries from the wheel's `pg_restore -l`."""
    args = ["-l", *(["-F", {CUSTOM: "c", DIRECTORY: "d", TAR: "t"}[fmt]] if fmt else []), str(path)]
    r = _pg_restore_offline(path, args, timeout, stdout=subprocess.PIPE,
                            timed_out="pg_restore could not list its table of contents within {t} s",
                            failed=f"pg_restore cannot read it as a {fmt or 'pg_dump'} archive ({{first}})",
                            supply="Supply the complete, unmodified archive as pg_dump wrote it.", rule="dump_corrupt")
    header: dict = {}
    entries: list[TocEntry] = []
    for ln in r.stdout.splitlines():
        if ln.startswith(";"):
            m = re.match(r"^;\s+([A-Za-z_ ]+):\s*(.*)$", ln)
            if m:
                header[m.group(1).strip()] = m.group(2).strip()
            continue
        if ln.strip():
            e = parse_toc_line(ln)
            if e is None:
                raise _refuse(path, "pg_restore listed a table-of-contents line that cannot be read",
                              rule="dump_corrupt")
            entries.append(e)
    return header, entries


def verify_archive_data(path: Path, fmt: str, timeout: float = 3600) -> None:
    """Read every data block (pg_restore to /dev/null, no server): a truncated archive is refused here."""
    _pg_restore_offline(path, ["-F", {CUSTOM: "c", DIRECTORY: "d", TAR: "t"}[fmt], "-f", os.devnull, str(path)],
                        timeout, stdout=subprocess.DEVNULL,
                        timed_out="its data could not be read through within {t} s",
                        failed="its data cannot be read to the end ({first}); it is truncated or damaged",
                        supply="Supply the complete archive as pg_dump wrote it.", rule="dump_truncated")


def _pg_restore_offline(path: Path, args: list[str], timeout: float, *, stdout, timed_out: str, failed: str,
                        supply: str, rule: str) -> subprocess.CompletedProcess:
    """The wheel's pg_restore with no server (list or read to /dev/null); a failure refuses the dump."""
    try:
        r = subprocess.run([pg_tool("pg_restore"), *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                           errors="replace", timeout=timeout, env=_tool_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise _refuse(path, timed_out.format(t=f"{timeout:.0f}"), rule="dump_unreadable") from None
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if ln.strip()), "no reason given")
        raise _refuse(path, failed.format(first=first.replace(str(path), "<dump>")[:300]), supply, rule=rule)
    return r


def _tables_from_toc(toc: list[TocEntry]) -> tuple[list[str], list[str]]:
    def qn(e: TocEntry) -> str:
        return f"{e.schema}.{e.name}" if e.schema and e.schema != "-" else e.name

    tables = sorted({qn(e) for e in toc if e.kind in ("TABLE", "FOREIGN TABLE")})
    with_data = sorted({qn(e) for e in toc if e.kind == "TABLE DATA"})
    return tables, with_data


# -- inspect ---------------------------------------------------------------------------------

def _sniff(head: bytes) -> str:
    if head.startswith(b"PGDMP"):
        return "pgdmp"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "text?"


def _check_newer(path: Path, pg_dump_version: str | None) -> None:
    major = _major(pg_dump_version)
    if major is not None and major > wheel_major():
        raise _refuse(path, f"it was made by pg_dump {pg_dump_version}, newer than the rehearsal's client tools "
                      f"(PostgreSQL {wheel_major()}), which cannot read it safely",
                      f"Make it again with pg_dump {wheel_major()} or older against the sanitized copy.",
                      rule="dump_too_new")


def _inspect_plain(path: Path, gzipped: bool, max_bytes: int, max_ratio: int, hand_written: bool = False) -> dict:
    """One streamed pass: header versions, TOC comment headers, COPY blocks, size.

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
        raise _refuse(path, f"it cannot be read ({e.strerror})", rule="dump_unreadable") from None
    scanner = PlainScanner()
    with stream:
        try:
            for lineno, line, complete in iter_lines(stream):
                uncompressed += len(line)
                if lineno <= 64 and not seen_dump_banner:
                    if "\x00" in line:
                        raise _refuse(path, "it holds binary data, so it is not a pg_dump output", rule="dump_not_pg_dump")
                    if line.startswith("-- PostgreSQL database dump"):
                        seen_dump_banner = True
                elif lineno > 64 and not seen_dump_banner and not hand_written:
                    break
                kind, stmts, _ = scanner.feed(lineno, line, complete)
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
                    if _COPY_FROM_STDIN.match(st.text):
                        copies.append(copy_target(st.text))
        except gzip.BadGzipFile:
            raise _refuse(path, "the gzip stream is damaged", rule="dump_corrupt") from None
        except zlib.error as e:
            raise _refuse(path, f"the gzip stream is damaged ({e})", "Supply the complete file.",
                          rule="dump_corrupt") from None
    if not seen_dump_banner and not hand_written:
        raise _refuse(path, "it is not a pg_dump output (no '-- PostgreSQL database dump' header in its first "
                      "lines)", rule="dump_not_pg_dump")
    return {"header": header, "toc": toc, "copies": copies, "uncompressed": uncompressed,
            "sha256": raw.sha.hexdigest(), "bytes": raw.n}


def inspect_dump(path, *, allowed_roots: list[Path] | None = None, max_plain_bytes: int = DEFAULT_MAX_PLAIN_BYTES,
                 max_gzip_ratio: int = DEFAULT_MAX_GZIP_RATIO, verify_data: bool = True,
                 timeout: float = 3600, schema_sql: bool = False) -> DumpInfo:
    """Identify a dump (format, versions, TOC, sha256) without restoring it; refuse anything unusable.

    `schema_sql` also takes plain SQL that pg_dump did not write (a contract's schema source): it is screened
    and restored like any plain dump, only pg_dump's banner, version line and closing line are not required.
    """
    real = _resolve(Path(path), allowed_roots)
    st = os.stat(real)
    if stat.S_ISDIR(st.st_mode):
        toc_file = real / "toc.dat"
        try:
            toc_st = os.lstat(toc_file)
        except FileNotFoundError:
            toc_st = None
        except OSError as e:
            raise _refuse(real, f"the directory cannot be read ({e.strerror})", "Make the directory and its files "
                          "readable by the user running the rehearsal.", rule="dump_unreadable") from None
        if toc_st is None or not stat.S_ISREG(toc_st.st_mode):
            raise _refuse(real, "it is a directory without a toc.dat, so it is not a pg_dump directory-format "
                          "dump", "Name the directory pg_dump -Fd wrote, or a dump file.", rule="dump_not_pg_dump")
        try:
            with open(toc_file, "rb") as f:
                toc_head = f.read(5)
        except OSError as e:
            raise _refuse(real, f"its toc.dat cannot be read ({e.strerror})", "Make the directory and its files "
                          "readable by the user running the rehearsal.", rule="dump_unreadable") from None
        if toc_head != b"PGDMP":
            raise _refuse(real, "its toc.dat is not a pg_dump archive header", rule="dump_corrupt")
        digest, size = _hash_directory(real)
        fmt, compressed = DIRECTORY, any(n.endswith((".gz", ".lz4", ".zst")) for n in os.listdir(real))
    elif stat.S_ISREG(st.st_mode):
        if st.st_size == 0:
            raise _refuse(real, "the file is empty", rule="dump_empty")
        try:
            with open(real, "rb") as f:
                head = f.read(512)
        except OSError as e:
            raise _refuse(real, f"it cannot be read ({e.strerror})", "Make the file readable by the user running "
                          "the rehearsal.", rule="dump_unreadable") from None
        kind = _sniff(head)
        if kind in ("zstd", "lz4", "bzip2", "xz", "zip"):
            raise _refuse(real, f"it is {kind}-compressed, which intake does not expand",
                          "Decompress it, or supply the plain dump gzip-compressed or a custom-format dump.",
                          rule="dump_unsupported_compression")
        if kind == "sqlite":
            raise _refuse(real, "it is a SQLite database, not a PostgreSQL dump", rule="dump_not_pg_dump")
        digest, size = (None, st.st_size) if kind in ("gzip", "text?") else _hash_file(real)
        if kind == "pgdmp":
            if len(head) < 11:
                raise _refuse(real, "its archive header is truncated", rule="dump_truncated")
            if head[10] != 1:
                raise _refuse(real, f"its archive header names an unknown format ({head[10]})", rule="dump_corrupt")
            fmt, compressed = CUSTOM, True
        elif kind == "tar":
            if not head.startswith(b"toc.dat\x00"):
                raise _refuse(real, "it is a tar file, but not one pg_dump -Ft wrote (no toc.dat first)",
                              rule="dump_not_pg_dump")
            fmt, compressed = TAR, False
        elif kind == "gzip":
            with open_plain(real, gzipped=True, max_bytes=max_plain_bytes, max_ratio=max_gzip_ratio) as g:
                try:
                    inner = g.read(512)
                except (zlib.error, EOFError) as e:
                    raise _refuse(real, f"the gzip stream is damaged ({e})", rule="dump_corrupt") from None
            if inner.startswith(b"PGDMP") or (len(inner) >= 262 and inner[257:262] == b"ustar"):
                raise _refuse(real, "it is a gzip-compressed pg_dump archive", "Decompress it and supply the "
                              "archive itself (custom format is already compressed).",
                              rule="dump_unsupported_compression")
            fmt, compressed = PLAIN_GZIP, True
        else:
            fmt, compressed = PLAIN, False
    else:
        raise _refuse(real, "it is neither a regular file nor a directory", rule="dump_not_regular")

    info = DumpInfo(path=real, sha256=digest, bytes=size, format=fmt, compressed=compressed, pg_dump_version=None,
                    server_version=None, archive_version=None, max_plain_bytes=max_plain_bytes,
                    max_gzip_ratio=max_gzip_ratio)
    if fmt in (PLAIN, PLAIN_GZIP):
        got = _inspect_plain(real, fmt == PLAIN_GZIP, max_plain_bytes, max_gzip_ratio, hand_written=schema_sql)
        info.sha256, info.bytes = got["sha256"], got["bytes"]
        if info.bytes != st.st_size:
            raise _refuse(real, "it changed size while it was being read", "Leave the dump untouched while the "
                          "rehearsal runs.", rule="dump_changed")
        info.pg_dump_version = got["header"].get("pg_dump_version")
        info.server_version = got["header"].get("server_version")
        info.toc = got["toc"]
        info.uncompressed_bytes = got["uncompressed"]
        info.tables, _ = _tables_from_toc(info.toc)
        info.tables_with_data = sorted(set(got["copies"]))
        if not info.pg_dump_version and schema_sql:
            info.hand_written = True
        elif not info.pg_dump_version:
            raise _refuse(real, "its header does not say which pg_dump made it ('-- Dumped by pg_dump version')",
                          rule="dump_not_pg_dump")
    else:
        header, toc = list_archive(real, fmt, timeout=min(timeout, 600))
        info.pg_dump_version = header.get("Dumped by pg_dump version")
        info.server_version = header.get("Dumped from database version")
        info.archive_version = header.get("Dump Version")
        info.toc = toc
        info.tables, info.tables_with_data = _tables_from_toc(toc)
        _check_newer(real, info.pg_dump_version)
        if verify_data:
            verify_archive_data(real, fmt, timeout=timeout)
    _check_newer(real, info.pg_dump_version)
    info.schema_only = not info.tables_with_data and not any(e.kind == "TABLE DATA" for e in info.toc)
    return info
