"""Screening before anything runs: psql meta-commands, outward pointers, untrusted code in a dump.

A plain dump is screened statement by statement through the one SQL lexer (`core/postgres/sql_lexer.py`), so a
meta-command hidden after pg_dump's `\\unrestrict` or a foreign server pointing at production is refused
before anything is restored; an archive is screened by its table of contents.
"""

from __future__ import annotations

import re

from ..postgres.sql_lexer import Meta, PlainScanner, Statement, unquote_ident
from ..shared.model import Finding
from .formats import PLAIN, PLAIN_GZIP, DumpInfo, TocEntry
from .streams import iter_lines, open_plain

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

# -- screening ----------------------------------------------------------------------------------

_RESTRICT_KEY = re.compile(r"^[A-Za-z0-9]{1,64}$")
_FORBIDDEN_META_HINT = {
    "connect": "the dump was made with --create (-C); make it without -C",
    "c": "the dump was made with --create (-C); make it without -C",
}


def classify_statement(text: str) -> tuple[str, bool, str | None] | None:
    """(rule, isolation?, extension name) for a statement a restore must not run, else None."""
    up = text.upper()
    for rx, rule, isolation in _SQL_RULES:
        if rx.match(up):
            return rule, isolation, None
    m = _CREATE_EXT.match(text)
    if m:
        ext = unquote_ident(m.group(1))
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
    """Everything that makes this dump unsafe to restore, found without restoring it (a plain dump's, found as
    inspect_dump read it, when it did)."""
    if info.format in (PLAIN, PLAIN_GZIP):
        return list(info.screened) if info.screened is not None else screen_plain(info)
    return screen_toc(info.toc)
