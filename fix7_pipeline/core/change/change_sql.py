"""The operator's FIX7 change and its rollback: read, screened, run in one transaction each.

"One transaction" is checked twice: the screen refuses, before anything runs, every statement
the project's psql-compatible lexer sees ending or leaving the transaction; and the server's own
transaction id, read at the start and again just before COMMIT, proves the file stayed in it.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from psycopg import pq

from . import impact as impact_mod
from ..postgres.server import CHANGE, RehearsalServer
from ..postgres.sql_lexer import Lexed, Statement, iter_lexed, lex
from ..postgres.throwaways import Throwaway
from ..shared.errors import EXIT_USAGE, Fix7Error, withhold_values
from ..shared.model import FAILED, PASSED, Finding, StageOutcome
from ..shared.paths import state_dir
from ..storage.store import evidence_path

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
_LEADING_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\s+[A-Za-z_][A-Za-z0-9_$]*)*")
_DO_ENDS_TRANSACTION = re.compile(r"(?i)\b(commit|rollback|call)\b")
_STRING_SYNTAX = re.compile(r"(?i)\bstandard_conforming_strings\b")
MAX_STATEMENT_FINDINGS = 25


@dataclass(frozen=True)
class ChangeSQL:
    """A change file as intake read it. Between stages only its facts travel: the sha256, the size and `copy`,
    the private copy intake wrote as it read the file (so an edit of the operator's file after intake does not
    change what runs); `loaded()` reads the copy back, checked against the sha256, when the change runs."""

    label: str
    path: str
    sha256: str
    text: str = ""
    copy: str = ""
    bytes: int = 0

    def summary(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "bytes": self.bytes or len(self.text.encode())}

    def loaded(self) -> ChangeSQL:
        """This change with its text: the private copy's, if its sha256 is still the one intake recorded."""
        if self.text or not self.copy:
            return self
        try:
            raw = evidence_path(self.copy).read_bytes()  # in S3 when the steps share no folder (run_outputs.py)
        except OSError as e:
            raise Fix7Error(f"The {self.label} SQL intake copied ({self.copy}) cannot be read ({e.strerror}); "
                            "nothing was run. Rehearse again.", rule="change_copy") from None
        if hashlib.sha256(raw).hexdigest() != self.sha256:
            raise Fix7Error(f"The {self.label} SQL intake copied ({self.copy}) is no longer what intake read (its "
                            "sha256 changed); nothing was run. Rehearse again.", rule="change_copy")
        return replace(self, text=raw.decode("utf-8"))


def copies_dir(run_id: str) -> Path:
    """Where intake keeps a run's private copies of its change files (removed when the run ends)."""
    return state_dir() / "change-copies" / run_id


def discard_copies(run_id: str) -> None:
    import shutil

    shutil.rmtree(copies_dir(run_id), ignore_errors=True)


STALE_COPIES_S = 7 * 86400  # no rehearsal runs a week: copies this old were left by a run that was killed


def sweep_stale_copies(now: float | None = None) -> list[str]:
    """Remove the change copies of runs that ended without removing them (kill -9); returns their run ids."""
    import shutil

    root = copies_dir("-").parent
    now = time.time() if now is None else now
    swept = []
    for d in root.iterdir() if root.is_dir() else ():
        try:
            if now - d.stat().st_mtime > STALE_COPIES_S:
                shutil.rmtree(d, ignore_errors=True)
                swept.append(d.name)
        except OSError:
            continue
    return swept


def check_change_path(path: str | Path | None, label: str) -> Path:
    """The change file's path, checked without reading it (given, a regular file, not too large, not empty):
    what `fix7 rehearse` refuses before any run; intake reads the file, once (read_change)."""
    if not path:
        raise Fix7Error(f"No {label} SQL file was given.", EXIT_USAGE, rule="change_file")
    p = Path(path).expanduser()
    if not p.is_file():
        raise Fix7Error(f"The {label} SQL file {str(p)!r} does not exist or is not a regular file.", EXIT_USAGE,
                        rule="change_file")
    size = p.stat().st_size
    if size > MAX_CHANGE_BYTES:
        raise Fix7Error(f"The {label} SQL file {str(p)!r} is larger than {MAX_CHANGE_BYTES} bytes.", EXIT_USAGE,
                        rule="change_file")
    if size == 0:
        raise _empty(label, p)
    return p


def _empty(label: str, p: Path) -> Fix7Error:
    return Fix7Error(f"The {label} SQL file {str(p)!r} is empty: there is no change to rehearse.", EXIT_USAGE,
                     rule="change_file")


def read_change(path: str | Path | None, label: str, copy_dir: str | Path | None = None) -> ChangeSQL:
    """The change file's sha256, checked as UTF-8 SQL with a statement, or a usage error that says what is wrong
    with it. Read once, in blocks: into a private copy in `copy_dir` (the copy is what runs; see ChangeSQL), or,
    without one, into the returned text."""
    p = check_change_path(path, label)
    digest, decoder, size = hashlib.sha256(), codecs.getincrementaldecoder("utf-8")(), 0
    parts: list[bytes] = []
    copy, out = None, None
    if copy_dir is not None:
        Path(copy_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, copy = tempfile.mkstemp(dir=copy_dir, prefix=f"{label}-", suffix=".sql")
        out = os.fdopen(fd, "wb")
    try:
        try:
            with open(p, "rb") as f, (out or open(os.devnull, "wb")):
                while block := f.read(1 << 20):
                    size += len(block)
                    if size > MAX_CHANGE_BYTES:
                        raise Fix7Error(f"The {label} SQL file {str(p)!r} is larger than {MAX_CHANGE_BYTES} bytes.",
                                        EXIT_USAGE, rule="change_file")
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError as e:
                        raise Fix7Error(f"The {label} SQL file {str(p)!r} is not UTF-8 (invalid byte at offset "
                                        f"{size - len(block) + e.start}); save it as UTF-8.", EXIT_USAGE,
                                        rule="change_file") from None
                    digest.update(block)
                    (out.write if out else parts.append)(block)
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    raise Fix7Error(f"The {label} SQL file {str(p)!r} is not UTF-8 (it ends inside a character); "
                                    "save it as UTF-8.", EXIT_USAGE, rule="change_file") from None
        except OSError as e:
            raise Fix7Error(f"The {label} SQL file {str(p)!r} cannot be read ({e.strerror}).", EXIT_USAGE,
                            rule="change_file") from None
        text = b"".join(parts).decode("utf-8") if out is None else ""
        with (open(copy, encoding="utf-8", newline="") if copy else _lines(text)) as lines:
            if next(iter_lexed(lines), None) is None:  # comments and bare `;` are no change
                raise _empty(label, p)
    except BaseException:
        if copy:
            os.unlink(copy)
        raise
    return ChangeSQL(label, str(p.resolve()), digest.hexdigest(), text, copy or "", size)


class _lines:
    """A text's lines, as a context manager like an open file."""

    def __init__(self, text: str):
        self.text = text

    def __enter__(self):
        return iter(self.text.splitlines(keepends=True))

    def __exit__(self, *exc):
        return False


def transaction_control(st: Statement, source: str) -> str | None:
    """The kind of statement that would end or leave the rehearsal's transaction, or None.

    Savepoints (SAVEPOINT, RELEASE, ROLLBACK TO) stay inside it, and SET TRANSACTION and SET SESSION
    CHARACTERISTICS only describe it, so they pass. A procedure may commit, so every CALL is refused;
    a DO block is refused when its body says COMMIT, ROLLBACK or CALL anywhere, comments included:
    the body is PL/pgSQL, which this lexer does not parse, so only a plain word search is sound.
    """
    m = _LEADING_WORDS.match(st.text)
    if not m:
        return None
    words = m.group(0).lower().split()
    first, rest = words[0], [w for w in words[1:] if w not in ("work", "transaction")]
    if first in ("begin", "end", "abort"):
        return first.upper()
    if first == "start":
        return "START TRANSACTION"
    if first == "prepare" and words[1:2] == ["transaction"]:
        return "PREPARE TRANSACTION"
    if first in ("commit", "rollback"):
        if rest[:1] == ["prepared"]:
            return f"{first.upper()} PREPARED"
        if first == "rollback" and rest[:1] == ["to"]:
            return None
        if rest[:2] == ["and", "chain"]:
            return f"{first.upper()} AND CHAIN"
        return first.upper()
    if first == "call":
        return "CALL"
    if first == "do" and _DO_ENDS_TRANSACTION.search(source):
        return "DO"
    return None


def _transaction_finding(label: str, st: Statement, kind: str) -> Finding:
    if kind == "CALL":
        what, fix = "CALL, which runs a procedure that may COMMIT or ROLLBACK and so end", \
            "put the procedure's statements in the file instead"
    elif kind == "DO":
        what, fix = "a DO block with COMMIT, ROLLBACK or CALL in its body, which could end", \
            "take those words out of the block, comments included"
    else:
        what, fix = f"{kind}, which would end or leave", ("remove it: the rehearsal begins and commits the "
                                                          "transaction itself, and SAVEPOINT, RELEASE and ROLLBACK "
                                                          "TO SAVEPOINT are allowed")
        if kind == "END":
            fix += (" (a SQL-standard BEGIN ATOMIC ... END function body is read as separate statements here; "
                    "write the body as a string, AS $$ ... $$)")
    return Finding(rule="change_transaction_control", extra={"line": st.line, "statement": kind},
                   message=f"{label} SQL line {st.line} is {what} the one transaction the rehearsal runs the whole "
                           f"file in, under its statement and lock timeouts; {fix}")


def screen_change(change: ChangeSQL, lexed: Lexed | None = None) -> list[Finding]:
    """Refuse what must not run in a rehearsal: outward connections, server files, transaction control.

    Transaction control is found in the lexer's statements, so every statement on a line is seen,
    and quotes, dollar quotes and comments neither hide one nor look like one.
    """
    findings = []
    for rule, rx in _OUTWARD:
        for m in rx.finditer(change.text):
            line = change.text.count("\n", 0, m.start()) + 1
            findings.append(Finding(rule=f"change_{rule}", message=f"{change.label} SQL line {line} uses {rule}, "
                                    "which reaches outside the throwaway database; a rehearsal never runs it"))
            break
    lexed = lexed or lex(change.text)
    if lexed.metas:
        meta = lexed.metas[0]
        findings.append(Finding(rule="change_meta_command", extra={"line": meta.line},
                                message=f"{change.label} SQL line {meta.line} is a psql meta-command "
                                        f"(\\{meta.word}); give plain SQL"))
    for st in lexed.statements:
        if _STRING_SYNTAX.search(st.text):
            findings.append(Finding(rule="change_string_syntax", extra={"line": st.line},
                                    message=f"{change.label} SQL line {st.line} changes "
                                            "standard_conforming_strings, which changes where the server sees "
                                            "quotes end, so the screen could no longer see every statement "
                                            "it runs; leave the setting alone"))
            break
    # a statement's source (which may be most of the file) is only needed for a DO block's body
    tx = [(st, kind) for st in lexed.statements
          if (kind := transaction_control(st, lexed.source(st) if st.text[:2].lower() == "do" else ""))]
    findings += [_transaction_finding(change.label, st, kind) for st, kind in tx[:MAX_STATEMENT_FINDINGS]]
    if len(tx) > MAX_STATEMENT_FINDINGS:
        findings.append(Finding(rule="change_transaction_control",
                                message=f"{change.label} SQL: {len(tx) - MAX_STATEMENT_FINDINGS} more statements "
                                        "control the transaction"))
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

    Uses the one SQL lexer (core/postgres/sql_lexer.py, as the dump screening does), so quotes, comments and dollar
    quotes never split a statement; running piece by piece tells which statement failed.
    """
    return list(iter_statement_chunks(lex(text)))


def iter_statement_chunks(lexed: Lexed):
    """statement_chunks of a text already lexed, one piece at a time (a large file is not held twice more)."""
    lines = lexed.lines
    starts: list[int] = []
    for st in lexed.statements:
        if st.line and (not starts or st.line > starts[-1]):
            starts.append(st.line)
    if not starts:
        yield 1, 1, lines.text
        return
    real_first = starts[0]
    starts[0] = 1
    bounds = [*starts, len(lines) + 1]
    for i in range(len(starts)):  # lines bounds[i] .. bounds[i + 1] - 1, as one slice of the text
        yield (bounds[i], real_first if i == 0 else bounds[i],
               lines.text[lines.start(bounds[i] - 1):lines.start(bounds[i + 1] - 1)])


class ChangeStopped(Exception):
    """The server showed the change cannot be reported as rehearsed in one transaction.

    Raised inside the connection's block, so the block rolls back whatever transaction is still open.
    """

    def __init__(self, rule: str, message: str, transaction_id: str):
        super().__init__(message)
        self.rule, self.message, self.transaction_id = rule, message, transaction_id


_OPEN_SQL = ("select pg_catalog.pg_current_xact_id()::text, "
             "(select setting from pg_catalog.pg_settings where name = 'statement_timeout'), "
             "(select setting from pg_catalog.pg_settings where name = 'lock_timeout')")


def session_options(statement_timeout_s: int, lock_timeout_s: int) -> str:
    """Startup options, the session's own defaults: no COMMIT, ROLLBACK or RESET in the file sheds them."""
    st, lt = int(statement_timeout_s), int(lock_timeout_s)
    return (f"-c statement_timeout={st}s -c lock_timeout={lt}s -c idle_in_transaction_session_timeout={st}s "
            "-c standard_conforming_strings=on")


def _strings_as_lexed(conn: psycopg.Connection) -> bool:
    """The server reads quotes as the screen's lexer did (it reports the setting after every change)."""
    return conn.info.parameter_status("standard_conforming_strings") == "on"


def open_transaction(conn: psycopg.Connection, label: str, statement_timeout_s: int, lock_timeout_s: int) -> str:
    """Begin the change's transaction; the server's id for it, once the server shows the session is as asked."""
    xid, statement_ms, lock_ms = conn.execute(_OPEN_SQL).fetchone()
    expected = (str(int(statement_timeout_s) * 1000), str(int(lock_timeout_s) * 1000))
    if (statement_ms, lock_ms) != expected or not _strings_as_lexed(conn):
        raise ChangeStopped("session_not_as_asked", (
            f"{label} was not run: the server would run it with statement_timeout {statement_ms} ms, lock_timeout "
            f"{lock_ms} ms and standard_conforming_strings "
            f"{conn.info.parameter_status('standard_conforming_strings')} instead of the {expected[0]} ms, "
            f"{expected[1]} ms and on asked for in the connection's startup options, so the rehearsal's "
            "timeouts and screen would not hold"), xid)
    return xid


def transaction_escape(conn: psycopg.Connection, xid: str, *, ask_server: bool = True) -> str | None:
    """Why the server says the connection is no longer in transaction `xid`, or None.

    The transaction status comes with every reply at no cost; `ask_server` also compares the
    server's transaction id, which catches a COMMIT followed by a new BEGIN.
    """
    status = conn.info.transaction_status
    if status != pq.TransactionStatus.INTRANS:
        return f"the server reports no open transaction (status {status.name})"
    if ask_server:
        now = conn.execute("select pg_catalog.pg_current_xact_id()::text").fetchone()[0]
        if now != xid:
            return f"the server's transaction id changed from {xid} to {now}"
    return None


def _escaped(label: str, xid: str, why: str) -> ChangeStopped:
    return ChangeStopped("transaction_escaped", (
        f"{label} did not stay in one transaction: {why}. What ran before that may have been committed outside "
        "the rehearsal's transaction, so the change is not reported as rehearsed in one transaction; what was "
        "still open was rolled back"), xid)


def _leading_kind(lexed: Lexed, line: int) -> str:
    st = next((st for st in lexed.statements if st.line == line), None)
    m = _LEADING_WORDS.match(st.text) if st else None
    return " ".join(m.group(0).split()[:2]).upper() if m else "?"


def _run_chunks(conn: psycopg.Connection, change: ChangeSQL, xid: str, meter: impact_mod.Meter | None = None,
                lexed: Lexed | None = None) -> None:
    """Each statement line in turn, checking after each that the server is still in transaction `xid`.

    With a meter, each is timed alone and measured after the checks (core/change/impact.py).
    """
    lexed = lexed or lex(change.text)
    for first_line, statement_line, chunk in iter_statement_chunks(lexed):
        cur = conn.cursor()
        started = time.perf_counter()
        try:
            cur.execute(chunk)
        except psycopg.Error as e:
            if meter is not None:
                meter.failed(statement_line, _leading_kind(lexed, statement_line),
                             time.perf_counter() - started)
            raise _AtLine(e, first_line, statement_line, chunk) from None
        duration = time.perf_counter() - started
        escape = transaction_escape(conn, xid, ask_server=False)
        if escape:
            raise _escaped(change.label, xid, f"{escape} after line {statement_line}")
        if not _strings_as_lexed(conn):  # the server lexes each piece whole, with the setting it starts with
            raise ChangeStopped("change_string_syntax", (
                f"{change.label} was stopped after line {statement_line}: it turned standard_conforming_strings "
                "off, which changes where the server sees quotes end, so the screen's reading of the rest of the "
                "file no longer holds; the transaction was rolled back"), xid)
        if meter is not None:
            meter.statement(conn, statement_line, cur, duration)
    escape = transaction_escape(conn, xid)
    if escape:
        raise _escaped(change.label, xid, f"{escape} by the end of the file")


def run_change(server: RehearsalServer, tw: Throwaway, change: ChangeSQL, *, statement_timeout_s: int = 600,
               lock_timeout_s: int = 15, impact: impact_mod.ImpactSettings | None = None) -> StageOutcome:
    """Run the whole file in one transaction as the clone's owner; an error rolls it all back.

    It passes only when the server's transaction id at COMMIT is the one it had before the file ran.
    What each statement did that production would feel is measured as it runs (`details["impact"]`,
    core/change/impact.py); thresholds breached there do not change this stage's status (the packet's verdict
    reads them).
    """
    summary = {"change": change.summary(), "statement_timeout_s": statement_timeout_s,
               "lock_timeout_s": lock_timeout_s}
    lexed = lex(change.text)  # once: the screen, the pieces run and the impact analysis all read it
    refused = screen_change(change, lexed)
    if refused:
        more = f" (+{len(refused) - 1} more)" if len(refused) > 1 else ""
        return StageOutcome(status=FAILED, findings=refused, details={**summary, "ran": False},
                            reason=f"{change.label} refused before anything ran: {refused[0].message}{more}")
    started = time.monotonic()
    meter = impact_mod.Meter(change.label, impact)
    measured: dict = {}

    def impact_details() -> dict:
        return {"impact": meter.result(lexed)} if measured else {}

    try:
        with server.connect(tw.database, tw.login, purpose=change.label, autocommit=False, session=CHANGE,
                            options=session_options(statement_timeout_s, lock_timeout_s)) as conn:
            meter.prepare(conn, impact_mod.function_names(lexed))
            xid = open_transaction(conn, change.label, statement_timeout_s, lock_timeout_s)
            meter.start(conn)
            measured["started"] = True
            _run_chunks(conn, change, xid, meter, lexed)
            meter.commit(conn)
    except ChangeStopped as e:
        return StageOutcome(status=FAILED, reason=e.message, findings=[Finding(rule=e.rule, message=e.message)],
                            details={**summary, "duration_s": round(time.monotonic() - started, 3),
                                     "transaction_id": e.transaction_id, "one_transaction": False,
                                     **impact_details()})
    except impact_mod.MeasurementFailed as e:
        where = f" after line {e.after_line}" if e.after_line else " before the first statement"
        msg = (f"{change.label} was stopped: a measurement query of the rehearsal failed{where} "
               f"({server_error_message(e.error)}), which aborted the transaction; it was rolled back and is not "
               "reported as rehearsed")
        return StageOutcome(status=FAILED, reason=msg, findings=[Finding(rule="impact_measurement", message=msg)],
                            details={**summary, "duration_s": round(time.monotonic() - started, 3)})
    except (_AtLine, psycopg.Error) as e:
        msg = (server_error_message(e.error, e.chunk, first_line=e.first_line, statement_line=e.statement_line)
               if isinstance(e, _AtLine) else server_error_message(e))
        return StageOutcome(status=FAILED, reason=f"{change.label} failed and was rolled back: {msg}",
                            findings=[Finding(rule=f"{change.label}_error", message=msg)],
                            details={**summary, "duration_s": round(time.monotonic() - started, 3),
                                     **impact_details()})
    return StageOutcome(status=PASSED, reason=f"{change.label} committed in one transaction (xid {xid}, confirmed "
                                              "by the server)",
                        details={**summary, "duration_s": round(time.monotonic() - started, 3),
                                 "transaction_id": xid, "one_transaction": True, **impact_details()})
