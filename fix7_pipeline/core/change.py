"""The operator's FIX7 change and its rollback: read, screened, run in one transaction each."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .errors import EXIT_USAGE, Fix7Error, withhold_values
from .model import BLOCKED, FAILED, PASSED, Finding, StageOutcome
from .server import CHANGE, RehearsalServer, Throwaway

MAX_CHANGE_BYTES = 50 * 1024 * 1024

# Statements a rehearsal never runs: they reach outside the throwaway database.
_OUTWARD = [
    ("dblink", re.compile(r"(?i)\bdblink(_\w+)?\s*\(|\bcreate\s+extension\s+(if\s+not\s+exists\s+)?\"?dblink")),
    ("postgres_fdw", re.compile(r"(?i)\bpostgres_fdw\b|\bcreate\s+(foreign\s+data\s+wrapper|server)\b")),
    ("user_mapping", re.compile(r"(?i)\bcreate\s+user\s+mapping\b")),
    ("subscription", re.compile(r"(?i)\bcreate\s+subscription\b")),
    ("copy_program", re.compile(r"(?i)\bcopy\b[^;]*\b(to|from)\s+program\b")),
    ("server_file", re.compile(r"(?i)\bcopy\b[^;]*\b(to|from)\s+'|\bpg_(read|write)_(binary_)?file\s*\(|\blo_(import|export)\s*\(")),
    ("untrusted_language", re.compile(r"(?i)\blanguage\s+(plpython3?u|plperlu|pltclu|c)\b")),
]
_TX_CONTROL = re.compile(r"(?im)^\s*(begin(\s+(work|transaction))?|start\s+transaction|commit(\s+(work|transaction))?|"
                         r"end(\s+(work|transaction))?|rollback(\s+(work|transaction))?)\s*;\s*$")
_META = re.compile(r"(?m)^\s*\\[a-zA-Z!]")


@dataclass(frozen=True)
class ChangeSQL:
    label: str
    path: str
    sha256: str
    text: str

    def summary(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "bytes": len(self.text.encode())}


def read_change(path: str | Path | None, label: str) -> ChangeSQL:
    """The change file as UTF-8 text, or a usage error that says what is wrong with it."""
    if not path:
        raise Fix7Error(f"No {label} SQL file was given.", EXIT_USAGE, rule="change_file")
    p = Path(path).expanduser()
    if not p.is_file():
        raise Fix7Error(f"The {label} SQL file {str(p)!r} does not exist or is not a regular file.", EXIT_USAGE,
                        rule="change_file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise Fix7Error(f"The {label} SQL file {str(p)!r} cannot be read ({e.strerror}).", EXIT_USAGE,
                        rule="change_file") from None
    if len(raw) > MAX_CHANGE_BYTES:
        raise Fix7Error(f"The {label} SQL file {str(p)!r} is larger than {MAX_CHANGE_BYTES} bytes.", EXIT_USAGE,
                        rule="change_file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Fix7Error(f"The {label} SQL file {str(p)!r} is not UTF-8 (invalid byte at offset {e.start}); "
                        "save it as UTF-8.", EXIT_USAGE, rule="change_file") from None
    body = re.sub(r"--[^\n]*", "", text)
    if not body.strip().strip(";").strip():
        raise Fix7Error(f"The {label} SQL file {str(p)!r} is empty: there is no change to rehearse.", EXIT_USAGE,
                        rule="change_file")
    return ChangeSQL(label, str(p.resolve()), hashlib.sha256(raw).hexdigest(), text)


def screen_change(change: ChangeSQL) -> list[Finding]:
    """Refuse what must not run in a rehearsal: outward connections, server files, transaction control."""
    findings = []
    for rule, rx in _OUTWARD:
        for m in rx.finditer(change.text):
            line = change.text.count("\n", 0, m.start()) + 1
            findings.append(Finding(rule=f"change_{rule}", message=f"{change.label} SQL line {line} uses {rule}, "
                                    "which reaches outside the throwaway database; a rehearsal never runs it"))
            break
    if _META.search(change.text):
        line = change.text.count("\n", 0, _META.search(change.text).start()) + 1
        findings.append(Finding(rule="change_meta_command",
                                message=f"{change.label} SQL line {line} is a psql meta-command; give plain SQL"))
    tx = list(_TX_CONTROL.finditer(change.text))
    if tx:
        line = change.text.count("\n", 0, tx[0].start()) + 1
        findings.append(Finding(rule="change_transaction_control",
                                message=f"{change.label} SQL line {line} controls the transaction; the rehearsal runs "
                                        "the whole file in one transaction, so remove BEGIN/COMMIT/ROLLBACK"))
    return findings


def _line_of(text: str, position: str | None) -> int | None:
    try:
        return text.count("\n", 0, int(position) - 1) + 1
    except (TypeError, ValueError):
        return None


class _AtLine(Exception):
    def __init__(self, error: psycopg.Error, first_line: int, statement_line: int, chunk: str):
        self.error, self.first_line, self.statement_line, self.chunk = error, first_line, statement_line, chunk


def server_error_message(e: psycopg.Error, text: str | None = None, *, first_line: int = 1,
                         statement_line: int | None = None) -> str:
    """The server's primary message, SQLSTATE and line; DETAIL lines are dropped as they can quote row values."""
    diag = getattr(e, "diag", None)
    primary = (diag.message_primary if diag else None) or (str(e).splitlines() or [type(e).__name__])[0]
    state = getattr(e, "sqlstate", None) or ""
    at = _line_of(text, diag.statement_position) if (diag and text) else None
    line = (first_line + at - 1) if at else statement_line
    where = f" at line {line}" if line else ""
    return f"{withhold_values(primary)} (SQLSTATE {state}){where}"


def statement_chunks(text: str) -> list[tuple[int, int, str]]:
    """(first line, statement line, SQL) pieces that concatenate back to the file, one per statement start line.

    Uses the psql-compatible lexer of the dump screening, so quotes, comments and dollar
    quotes never split a statement; running piece by piece tells which statement failed.
    """
    from .dumps import PlainScanner

    scanner = PlainScanner()
    lines = text.splitlines(keepends=True)
    starts: list[int] = []
    for lineno, line in enumerate(lines, start=1):
        _, statements, _ = scanner.feed(lineno, line, True)
        for st in statements:
            if st.line and (not starts or st.line > starts[-1]):
                starts.append(st.line)
    if not starts:
        return [(1, 1, text)]
    real_first = starts[0]
    starts[0] = 1
    bounds = [*starts, len(lines) + 1]
    chunks = []
    for i in range(len(starts)):
        chunk = "".join(lines[bounds[i] - 1:bounds[i + 1] - 1])
        chunks.append((bounds[i], real_first if i == 0 else bounds[i], chunk))
    return chunks


def run_change(server: RehearsalServer, tw: Throwaway, change: ChangeSQL, *, statement_timeout_s: int = 600,
               lock_timeout_s: int = 15) -> StageOutcome:
    """Run the whole file in one transaction as the clone's owner; an error rolls it all back."""
    refused = screen_change(change)
    if refused:
        return StageOutcome.from_findings(refused, details={"change": change.summary()}, fail_status=BLOCKED)
    started = time.monotonic()
    try:
        with server.connect(tw.database, tw.login, purpose=change.label, autocommit=False, session=CHANGE) as conn:
            conn.execute(f"set local statement_timeout = '{int(statement_timeout_s)}s'")
            conn.execute(f"set local lock_timeout = '{int(lock_timeout_s)}s'")
            conn.execute(f"set local idle_in_transaction_session_timeout = '{int(statement_timeout_s)}s'")
            for first_line, statement_line, chunk in statement_chunks(change.text):
                try:
                    conn.execute(chunk)
                except psycopg.Error as e:
                    raise _AtLine(e, first_line, statement_line, chunk) from None
            conn.commit()
    except (_AtLine, psycopg.Error) as e:
        msg = (server_error_message(e.error, e.chunk, first_line=e.first_line, statement_line=e.statement_line)
               if isinstance(e, _AtLine) else server_error_message(e))
        return StageOutcome(status=FAILED, reason=f"{change.label} failed and was rolled back: {msg}",
                            findings=[Finding(rule=f"{change.label}_error", message=msg)],
                            details={"change": change.summary(), "duration_s": round(time.monotonic() - started, 3)})
    return StageOutcome(status=PASSED, reason=f"{change.label} committed in one transaction",
                        details={"change": change.summary(), "duration_s": round(time.monotonic() - started, 3),
                                 "statement_timeout_s": statement_timeout_s, "lock_timeout_s": lock_timeout_s})
