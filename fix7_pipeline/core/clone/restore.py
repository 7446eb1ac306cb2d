"""Restoring an untrusted dump into a throwaway database, as a role that can harm nothing else.

Archives go through the wheel's pg_restore with a filtered table of contents; plain dumps are
streamed through the wheel's psql behind a filter that re-screens every line, drops what a
role-less clone cannot run (owners, grants, comments on extensions), and puts psql into
restricted mode with a key the dump cannot know, so no meta-command in the dump can ever run.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from ..dumps.archive import list_archive
from ..dumps.formats import CUSTOM, DIRECTORY, PLAIN, PLAIN_GZIP, TAR, DumpInfo
from ..dumps.screening import PlainScreen, screen_dump, screen_toc
from ..dumps.streams import HashingReader, hash_dump, iter_lines, open_plain
from ..postgres.server import RehearsalServer, pg_tool
from ..postgres.server_faults import from_psycopg
from ..postgres.sql_lexer import Statement
from ..postgres.throwaways import RULE_MEMBERSHIP, Throwaway, assert_least_privilege, role_attributes
from ..shared.errors import Fix7Error
from .restore_jobs import empty_again, restore_jobs
from .restore_failures import (RestoreFailed, check_extensions, clean_error_lines, collation_failure,
                               extension_failure, restore_failed, unqualified_name_failure)

# Statements pg_dump writes that a role-less clone cannot run and a rehearsal does not need.
_DROP_RULES = [
    ("owner", re.compile(r"^ALTER\s.*\sOWNER TO (?:\"(?:[^\"]|\"\")+\"|\S+)\s*;$", re.I | re.S)),
    ("privileges", re.compile(r"^(?:GRANT|REVOKE)\s", re.I)),
    ("privileges", re.compile(r"^ALTER DEFAULT PRIVILEGES\s", re.I)),
    ("session_authorization", re.compile(r"^(?:SET|RESET) SESSION AUTHORIZATION\b", re.I)),
    ("extension_comment", re.compile(r"^COMMENT ON EXTENSION\s", re.I)),
    ("plpgsql", re.compile(r"^CREATE EXTENSION (?:IF NOT EXISTS )?\"?plpgsql\"?[\s;]", re.I)),
    ("publication", re.compile(r"^(?:CREATE|ALTER) PUBLICATION\s", re.I)),
    ("security_label", re.compile(r"^SECURITY LABEL\s", re.I)),
]
_DROP_CANDIDATE = re.compile(r"^(?:ALTER|GRANT|REVOKE|SET SESSION|RESET SESSION|COMMENT ON EXTENSION|"
                             r"CREATE EXTENSION|CREATE PUBLICATION|SECURITY LABEL)\b", re.I)
MAX_HELD_STATEMENT = 1024 * 1024

# TOC entries left out of an archive restore (in addition to pg_restore's --no-* switches).
_SKIP_KINDS = {"ACL", "DEFAULT ACL", "SECURITY LABEL", "PUBLICATION", "PUBLICATION TABLE",
               "PUBLICATION TABLES IN SCHEMA", "SUBSCRIPTION", "SUBSCRIPTION TABLE", "DATABASE",
               "DATABASE PROPERTIES"}

_SCREEN_STOP_RULES = {"psql_meta_command", "unsafe_encoding"}


def drop_reason(st: Statement) -> str | None:
    """Why this statement is left out of a plain restore, or None to run it."""
    for reason, rx in _DROP_RULES:
        if rx.match(st.text):
            return reason
    return None


def _skip_entry(kind: str, name: str) -> str | None:
    if kind in _SKIP_KINDS:
        return kind.lower()
    if kind == "EXTENSION" and name == "plpgsql":
        return "plpgsql"
    if kind == "COMMENT" and name.startswith("EXTENSION "):
        return "extension_comment"
    return None


def _changed(info: DumpInfo) -> Fix7Error:
    return Fix7Error(f"The dump at {info.path} changed after it was inspected (its sha256 no longer matches "
                     f"{info.sha256[:12]}...); refusing to restore a file that is not the one screened. Leave the "
                     "dump untouched while the rehearsal runs.", rule="dump_changed")


# -- archives -----------------------------------------------------------------------------------

def _restore_archive(server: RehearsalServer, tw: Throwaway, info: DumpInfo, timeout: float,
                     schema_only: bool = False) -> dict:
    if hash_dump(info.path, info.format) != info.sha256:
        raise _changed(info)
    _header, toc = list_archive(info.path, info.format, timeout=min(timeout, 600))
    refusals = [f for f in screen_toc(toc) if f.is_error]
    if refusals:
        raise Fix7Error(refusals[0].message, rule=refusals[0].rule)
    client_encoding = _archive_encoding(info, min(timeout, 300))
    skipped: dict[str, int] = {}
    kept = 0
    with tempfile.TemporaryDirectory(prefix="fix7-restore-") as tmp:
        listing = Path(tmp) / "toc.list"
        with open(listing, "w", encoding="utf-8", errors="surrogateescape") as f:
            for e in toc:
                why = _skip_entry(e.kind, e.name)
                if why:
                    skipped[why] = skipped.get(why, 0) + 1
                    f.write(";" + e.line + "\n")
                else:
                    kept += 1
                    f.write(e.line + "\n")
        flag = {CUSTOM: "c", DIRECTORY: "d", TAR: "t"}[info.format]
        options = ["-F", flag, "--no-owner", "--no-privileges", "--no-subscriptions", "--no-publications",
                   "--no-security-labels", "--no-tablespaces", "--exit-on-error", *(["--schema-only"] if schema_only
                                                                                    else [])]
        lacking = lacking_settings(server)
        started = time.monotonic()
        if lacking:
            skipped.update({f"setting {n} (unknown to the server)": 1 for n in lacking})
            summary = _restore_archive_through_psql(server, tw, info, options, listing, lacking, timeout, Path(tmp))
        else:
            summary = _restore_archive_direct(server, tw, info, options, listing, timeout, Path(tmp))
    return {"tool": "pg_restore (wheel)", "command": summary, "duration_s": round(time.monotonic() - started, 3),
            "entries_restored": kept, "entries_skipped": skipped, "client_encoding": client_encoding}


_CLIENT_ENCODING = re.compile(r"^SET client_encoding = '([A-Za-z0-9_-]{1,40})';", re.M)


def _archive_encoding(info: DumpInfo, timeout: float) -> str | None:
    """The encoding the archive was dumped in: pg_restore writes it first (`SET client_encoding`) in the fixed
    preamble of a script of no entries (an empty list: no data block is read, no server is contacted)."""
    flag = {CUSTOM: "c", DIRECTORY: "d", TAR: "t"}[info.format]
    with tempfile.TemporaryDirectory(prefix="fix7-encoding-") as tmp:
        empty = Path(tmp) / "none.list"
        empty.write_text("")
        try:
            r = subprocess.run([pg_tool("pg_restore"), "-F", flag, "-L", str(empty), "-f", "-", str(info.path)],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    m = _CLIENT_ENCODING.search(r.stdout[:65536].decode("ascii", "replace")) if r.returncode == 0 else None
    return m.group(1).upper() if m else None


# Settings the wheel's pg_restore (PostgreSQL 18) sends at the start of every restore, with the server version
# that introduced each; an older server would stop the restore at the first one it lacks.
CLIENT_SETTINGS = {"transaction_timeout": 170000}


def lacking_settings(server: RehearsalServer) -> list[str]:
    """The client tools' settings this server does not have (none on PostgreSQL 17 and newer)."""
    return sorted(n for n, since in CLIENT_SETTINGS.items() if server.version() < since)


def _restore_archive_direct(server, tw, info, options, listing, timeout, tmp: Path) -> str:
    jobs = restore_jobs(info.format, "--schema-only" in options)
    # -j N: N sessions of the same role, data and indexes in parallel; it cannot be one transaction
    how = ["-j", str(jobs)] if jobs > 1 else ["--single-transaction"]
    args = [pg_tool("pg_restore"), *options, *how, "-L", str(listing), "-d", tw.database, str(info.path)]
    # pg_restore -j N: its own session for what comes before the data, N workers, and a session again after them
    env = server.tool_env(tw.database, tw.login, "restore", "pg_restore", sessions=jobs + 2 if jobs > 1 else 1)
    with open(tmp / "stderr", "w+") as err:
        try:
            r = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            if jobs > 1:
                empty_again(server, tw)
            raise Fix7Error(f"Restoring the dump took longer than {timeout:.0f} s and was stopped; nothing was "
                            "kept.", rule="restore_timeout") from None
        err.seek(0)
        stderr = err.read(1024 * 1024)
    if r.returncode != 0:
        if jobs > 1:
            empty_again(server, tw)
        raise restore_failed(server, "pg_restore", clean_error_lines(stderr), r.returncode, info)
    return " ".join(["pg_restore", *options, *how, "-L", "<filtered toc>", "-d", tw.database, "<dump>"])


_SET_LINE = re.compile(rb"^SET ([a-z_]+) = [^;\n]*;\n$")
_HEADER_BYTES = 1024 * 1024


def _restore_archive_through_psql(server, tw, info, options, listing, lacking, timeout, tmp: Path) -> str:
    """pg_restore writes the script, psql runs it in one transaction; the settings the server lacks are left out.

    Only pg_restore's own opening lines are filtered (the settings it sends come before the first object); the
    rest is copied through as it is. pg_restore's script starts with its own \\restrict key, so psql runs no
    meta-command from the dump.
    """
    drop = {n.encode() for n in lacking}
    restore_args = [pg_tool("pg_restore"), *options, "-L", str(listing), "-f", "-", str(info.path)]
    psql_args = [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", tw.database,
                 "-f", "-"]
    env = server.tool_env(tw.database, tw.login, "restore", "psql")
    env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c client_min_messages=warning".strip()
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    deadline = time.monotonic() + timeout
    with open(tmp / "stderr-restore", "w+") as err_r, open(tmp / "stderr-psql", "w+") as err_p:
        producer = subprocess.Popen(restore_args, env=offline, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err_r)
        consumer = subprocess.Popen(psql_args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err_p)
        try:
            _pump(producer.stdout, consumer.stdin, drop, deadline, timeout)
            producer.stdout.close()  # psql stopped early: pg_restore's next write fails at once instead of blocking
            rc_r = producer.wait(timeout=max(1.0, deadline - time.monotonic()))
            rc_p = consumer.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Fix7Error(f"Restoring the dump took longer than {timeout:.0f} s and was stopped; nothing was "
                            "kept.", rule="restore_timeout") from None
        finally:
            for p in (producer, consumer):
                if p.poll() is None:
                    p.kill()  # psql never reached the end of its input, so its one transaction never commits
                    p.wait()
        err_r.seek(0), err_p.seek(0)
        stderr = err_p.read(1024 * 1024) + "\n" + err_r.read(1024 * 1024)
    if rc_p != 0 or rc_r != 0:
        raise restore_failed(server, "pg_restore | psql", clean_error_lines(stderr), rc_p or rc_r, info)
    left_out = ", ".join(lacking)
    return " ".join(["pg_restore", *options, "-L", "<filtered toc>", "-f", "-", "<dump>", "|",
                     f"(without SET {left_out})", "|", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                     "--single-transaction", "-d", tw.database, "-f", "-"])


def _pump(source, sink, drop: set[bytes], deadline: float, timeout: float) -> None:
    """Copy the script through, leaving out `SET name = ...;` lines of the opening for each name in `drop`."""
    head = 0
    try:
        while head < _HEADER_BYTES:
            line = source.readline()
            if not line:
                return
            head += len(line)
            m = _SET_LINE.match(line)
            if m and m.group(1) in drop:
                sink.write(b"\n")
                continue
            sink.write(line)
            if line.startswith(b"-- Name: "):
                break
        while chunk := source.read(1024 * 1024):
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("pg_restore", timeout)
            sink.write(chunk)
    except BrokenPipeError:
        pass  # psql stopped at an error: its exit status and stderr tell which
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass


# -- plain --------------------------------------------------------------------------------------

class _PlainFeeder:
    """Streams the screened, filtered plain dump into psql; aborts (no commit) on anything refused."""

    def __init__(self, info: DumpInfo, proc: subprocess.Popen, key: str, lacking: list[str] = ()):
        self.info, self.proc, self.key = info, proc, key
        self.lacking = re.compile(r"^SET (?:%s) = [^;]*;\s*$" % "|".join(map(re.escape, lacking))) if lacking else None
        self.screen = PlainScreen(hand_written=info.hand_written)
        self.held: list[str] | None = None
        self.held_bytes = 0
        self.statements = 0
        self.copy_blocks = 0
        self.dropped: dict[str, int] = {}
        self.broken = False
        self.client_encoding: str | None = None

    def _write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.proc.stdin.write(text.encode("latin-1"))
        except (BrokenPipeError, ValueError):
            self.broken = True

    def _flush_held(self) -> None:
        if self.held:
            self._write("".join(self.held))
        self.held, self.held_bytes = None, 0

    def _check(self) -> None:
        stop = [f for f in self.screen.findings if f.rule in _SCREEN_STOP_RULES]
        if not stop and self.screen.objects:
            stop = self.screen._object_findings()
        if stop:
            raise Fix7Error(stop[0].message, rule=stop[0].rule)

    def run(self) -> None:
        raw = HashingReader(self.info.path)
        self._write(f"\\restrict {self.key}\n")
        with open_plain(self.info.path, gzipped=self.info.format == PLAIN_GZIP, max_bytes=self.info.max_plain_bytes,
                        max_ratio=self.info.max_gzip_ratio, raw=raw) as stream:
            for lineno, line, complete in iter_lines(stream):
                was_in_statement = self.screen.scanner.in_statement()
                kind, stmts, metas = self.screen.feed(lineno, line, complete)
                self._check()
                if self.broken:
                    return
                if kind != "sql":
                    if kind == "copy_end":
                        self.copy_blocks += 1
                    self._write(line)
                    continue
                if metas:  # only pg_dump's own \restrict / \unrestrict survive screening: ours replaces them
                    self._write("\n" if line.endswith("\n") else "")
                    continue
                self.statements += len(stmts)
                if self.client_encoding is None and stmts:
                    m = _CLIENT_ENCODING.match(stmts[0].text)
                    self.client_encoding = m.group(1).upper() if m else None
                if self.held is not None:
                    self.held.append(line)
                    self.held_bytes += len(line)
                    self._settle(stmts)
                    continue
                if not was_in_statement and self.lacking is not None and self.lacking.match(line):
                    why = "setting unknown to the server"  # pg_dump 17+ sends transaction_timeout
                    self.dropped[why] = self.dropped.get(why, 0) + 1
                    self._write("\n")
                    continue
                if not was_in_statement and line[:1].isalpha() and _DROP_CANDIDATE.match(line):
                    self.held, self.held_bytes = [line], len(line)
                    self._settle(stmts)
                    continue
                self._write(line)
        self.screen.finish()
        self._check()
        if raw.sha.hexdigest() != self.info.sha256:
            raise _changed(self.info)

    def _settle(self, stmts: list[Statement]) -> None:
        """Decide a held statement once it ends: drop it (keeping line numbers) or send it."""
        if self.screen.scanner.in_statement():
            if len(stmts) > 0 or self.held_bytes > MAX_HELD_STATEMENT:
                self._flush_held()
            return
        why = drop_reason(stmts[0]) if len(stmts) == 1 else None
        if why:
            self.dropped[why] = self.dropped.get(why, 0) + 1
            self._write("\n" * sum(1 for ln in self.held if ln.endswith("\n")))
            self.held, self.held_bytes = None, 0
        else:
            self._flush_held()


def _restore_plain(server: RehearsalServer, tw: Throwaway, info: DumpInfo, timeout: float) -> dict:
    key = secrets.token_hex(24)
    args = [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", tw.database,
            "-f", "-"]
    env = server.tool_env(tw.database, tw.login, "restore", "psql")
    env["PGOPTIONS"] = "-c client_min_messages=warning"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fix7-restore-") as tmp:
        errf = open(Path(tmp) / "stderr", "w+")
        proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf)
        feeder = _PlainFeeder(info, proc, key, lacking_settings(server))
        try:
            feeder.run()
            if time.monotonic() - started > timeout:
                raise Fix7Error(f"Restoring the dump took longer than {timeout:.0f} s and was stopped; nothing was "
                                "kept.", rule="restore_timeout")
        except BaseException:
            proc.kill()  # psql never reached end of input, so its single transaction never commits
            proc.wait()
            errf.close()
            raise
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            errf.close()
            raise Fix7Error(f"Restoring the dump took longer than {timeout:.0f} s and was stopped; nothing was kept.",
                            rule="restore_timeout") from None
        errf.seek(0)
        stderr = errf.read(1024 * 1024)
        errf.close()
    if rc != 0 or feeder.broken:
        raise restore_failed(server, "psql", clean_error_lines(stderr, line_offset=1), rc)
    return {"tool": "psql (wheel)",
            "command": f"psql -X -q -v ON_ERROR_STOP=1 --single-transaction -d {tw.database} -f - "
                       "(filtered stream, restricted mode)",
            "duration_s": round(time.monotonic() - started, 3),
            "entries_restored": feeder.statements - sum(feeder.dropped.values()),
            "copy_blocks": feeder.copy_blocks, "entries_skipped": feeder.dropped,
            "client_encoding": feeder.client_encoding}


def _assert_no_memberships(server: RehearsalServer, role: str, attrs: dict) -> None:
    """A NOINHERIT role can still SET ROLE to any role it belongs to, so any membership at all is refused."""
    with server.connect(purpose="role memberships") as c:
        reachable = [r[0] for r in c.execute(
            "select g.rolname from pg_roles g where g.rolname <> %s and pg_has_role(%s, g.oid, 'MEMBER') "
            "order by 1", (role, role))]
    if reachable or attrs.get("member_of"):
        names = sorted(set(reachable) | set(attrs.get("member_of") or []))
        raise Fix7Error(f"The restoring role {role} is a member of {', '.join(names)} and could switch to "
                        "it during the restore; refusing to restore. The restoring role must belong to no role.",
                        rule=RULE_MEMBERSHIP)


def restore(server: RehearsalServer, throwaway: Throwaway, info: DumpInfo, *, timeout: float = 3600,
            screen: bool = True, schema_only: bool = False) -> dict:
    """Restore `info` into `throwaway` as its least-privileged role; any error -> Fix7Error, nothing kept.

    `schema_only` leaves an archive's data out (a contract needs the shape alone); a plain dump runs whole.
    """
    attrs = role_attributes(server, throwaway.login.role)
    if not attrs.get("role") or "superuser" not in attrs:
        raise Fix7Error(f"The restoring role {throwaway.login.role} does not exist on the rehearsal server.",
                        rule="least_privilege")
    assert_least_privilege(attrs)
    _assert_no_memberships(server, throwaway.login.role, attrs)
    if screen:
        refusals = [f for f in screen_dump(info) if f.is_error]
        if refusals:
            more = f" (+{len(refusals) - 1} more)" if len(refusals) > 1 else ""
            raise Fix7Error(refusals[0].message + more, rule=refusals[0].rule)
    check_extensions(server, info)
    try:
        if info.format in (PLAIN, PLAIN_GZIP):
            details = _restore_plain(server, throwaway, info, timeout)
        elif info.format in (CUSTOM, DIRECTORY, TAR):
            details = _restore_archive(server, throwaway, info, timeout, schema_only)
        else:
            raise Fix7Error(f"Unknown dump format {info.format!r}.", rule="dump_unreadable")
    except RestoreFailed as e:
        raise (extension_failure(server, e) or collation_failure(server, e, info)
               or unqualified_name_failure(e, info) or e) from None
    if not schema_only:
        details["statistics"] = analyze(server, throwaway, timeout)
    details.update(database=throwaway.database, role=throwaway.login.role, format=info.format,
                   sha256=info.sha256, least_privilege=attrs)
    return details


def analyze(server: RehearsalServer, throwaway: Throwaway, timeout: float) -> dict:
    """The planner's statistics for the restored clone, as production has them: ANALYZE by the restoring role,
    before any gate.

    A dump carries no statistics unless pg_dump was asked for them, and a clone without them plans the change
    otherwise than production does: at 1M rows the sample change's first statement took 0.5 s with none, 0.1 s
    with all, and 3.6 s when autovacuum had analyzed one table of two before the clone was kept as a template.
    Analyzing every table at once, here, makes the plans production's and the same on every run; ANALYZE
    evaluates what CREATE INDEX already evaluated during the restore (index expressions), as the same role.
    A dump whose ANALYZE fails is not refused for it: the packet says so and the rehearsal plans without."""
    started = time.monotonic()
    try:
        with server.connect(throwaway.database, throwaway.login, purpose="planner statistics (ANALYZE)",
                            options=f"-c statement_timeout={int(timeout * 1000)}") as conn:
            conn.execute("analyze")
    except psycopg.Error as e:
        fault = from_psycopg(e, server.describe())
        if fault is not None:
            raise fault from None
        return {"analyzed": False, "why": f"ANALYZE failed (SQLSTATE {e.sqlstate or '?'}); the rehearsal plans "
                                          "without statistics"}
    return {"analyzed": True, "duration_s": round(time.monotonic() - started, 3)}
