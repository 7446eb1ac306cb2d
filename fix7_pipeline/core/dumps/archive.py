"""Archives (custom, directory, tar) read offline by the wheel's `pg_restore`: header, table of contents, data."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from ..postgres.pg_tools import VERSION_NUM, pg_tool
from .formats import CUSTOM, DIRECTORY, TAR, TocEntry, refuse

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

def version_major(version: str | None) -> int | None:
    if not version:
        return None
    m = VERSION_NUM.search(version)
    return int(m.group(1)) if m else None


def offline_env() -> dict:
    """No libpq settings leak into offline tool runs (pg_restore -l never needs a server)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}




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
    return parse_listing(path, r.stdout)


def parse_listing(path: Path, listing: str) -> tuple[dict, list[TocEntry]]:
    """Header fields and TOC entries of `pg_restore -l` output."""
    header: dict = {}
    entries: list[TocEntry] = []
    for ln in listing.splitlines():
        if ln.startswith(";"):
            m = re.match(r"^;\s+([A-Za-z_ ]+):\s*(.*)$", ln)
            if m:
                header[m.group(1).strip()] = m.group(2).strip()
            continue
        if ln.strip():
            e = parse_toc_line(ln)
            if e is None:
                raise refuse(path, "pg_restore listed a table-of-contents line that cannot be read",
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
                           errors="replace", timeout=timeout, env=offline_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise refuse(path, timed_out.format(t=f"{timeout:.0f}"), rule="dump_unreadable") from None
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if ln.strip()), "no reason given")
        raise refuse(path, failed.format(first=first.replace(str(path), "<dump>")[:300]), supply, rule=rule)
    return r


def tables_from_toc(toc: list[TocEntry]) -> tuple[list[str], list[str]]:
    def qn(e: TocEntry) -> str:
        return f"{e.schema}.{e.name}" if e.schema and e.schema != "-" else e.name

    tables = sorted({qn(e) for e in toc if e.kind in ("TABLE", "FOREIGN TABLE")})
    with_data = sorted({qn(e) for e in toc if e.kind == "TABLE DATA"})
    return tables, with_data


# -- inspect ---------------------------------------------------------------------------------
