"""Why a restore failed, in the operator's words and without the dump's data: the server's error lines cleaned
of values, what the dump refers to but does not create, and what the rehearsal server lacks (extensions,
collations, its version)."""

from __future__ import annotations

import re

from ..dumps.archive import version_major
from ..dumps.formats import DumpInfo, refuse
from ..postgres import extensions
from ..postgres.server import RehearsalServer
from ..postgres.server_faults import from_tool_lines
from ..shared.errors import Fix7Error, ServerFault, withhold_values

# Statements pg_dump writes that a role-less clone cannot run and a rehearsal does not need.

# -- error messages without data ---------------------------------------------------------------

_PSQL_PREFIX = re.compile(r"^psql:<stdin>:(\d+): ")


def clean_error_lines(stderr: str, line_offset: int = 0) -> list[str]:
    """The server's error lines, with row values and COPY data echoes cut out."""
    out: list[str] = []
    for raw in stderr.splitlines():
        ln = raw.strip()
        if not ln:
            continue
        m = _PSQL_PREFIX.match(ln)
        if m:
            ln = f"line {max(int(m.group(1)) - line_offset, 1)}: " + ln[m.end():]
        body = re.sub(r"^(?:line \d+: |pg_restore: )", "", ln)
        if body.startswith(("Command was:", "HINT:", "pg_restore: warning", "WARNING:")):
            continue
        if body.startswith("DETAIL:"):
            if re.search(r"Failing row contains|Key \(|=\(", body):
                ln = re.sub(r"(Failing row contains ).*", r"\1(values withheld).", ln)
                ln = re.sub(r"(Key \([^)]*\))=\(.*", r"\1=(values withheld).", ln)
            else:
                continue
        if body.startswith("CONTEXT:") or "CONTEXT:" in body:
            m2 = re.search(r"COPY ([^,]+), line (\d+)", ln)
            fn = _FUNCTION_CONTEXT.search(ln)
            if m2:
                ln = ln.split("CONTEXT:")[0] + f"CONTEXT: COPY {m2.group(1)}, data line {m2.group(2)} (values withheld)"
            elif fn:  # the function the server was running: its name only, never its arguments' values
                ln = ln.split("CONTEXT:")[0] + f"CONTEXT: function {fn.group(1) or fn.group(2)}"
            else:
                continue
        if "ERROR" in ln or "error:" in ln or "DETAIL" in ln or "CONTEXT" in ln:
            out.append(withhold_values(ln)[:400])
    return out


# 'SQL function "is_code" during inlining', 'PL/pgSQL function public.is_code(text) line 3 at RETURN'
_FUNCTION_CONTEXT = re.compile(r'CONTEXT:\s+(?:SQL function "((?:[^"]|"")+)"|PL/pgSQL function ([^\s(]+)\()')

# "relation "public.customer" does not exist", "type "public.year" does not exist", "schema "store" ..."
_MISSING = re.compile(r'\b(relation|type|schema|function|sequence|collation|text search configuration|'
                      r'operator class|access method|foreign table|table)\s+"?([^"\s(]+(?:\([^)]*\))?)"?\s+'
                      r'does not exist')


class RestoreFailed(Fix7Error):
    """The server stopped the restore: its error lines (values withheld) and the objects it found missing."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message, rule="restore_failed")
        self.lines = lines
        self.missing = missing_dependencies(lines)


def missing_dependencies(lines: list[str]) -> list[str]:
    """'relation public.customer', 'type public.year': what a restore's errors say does not exist."""
    out: list[str] = []
    for ln in lines:
        for kind, name in _MISSING.findall(ln):
            item = f"{kind} {name}"
            if item not in out:
                out.append(item)
    return out


# pg_restore's own words (never the server's: those follow "could not execute query:") for an archive it cannot
# read to the end; intake does not read the data blocks through, the restore does (core/run/intake_vouch.py)
_ARCHIVE_DAMAGED = re.compile(
    r"^pg_restore: error: (?:could not uncompress data|could not decompress data|could not find block ID|"
    r"found unexpected block ID|unrecognized data block type|could not read from input file: end of file|"
    r"unexpected end of file|could not read input file: end of file|corrupt tar header)")


def restore_failed(server: RehearsalServer, tool: str, lines: list[str], rc: int | None,
                   dump: DumpInfo | None = None) -> Fix7Error:
    """What stopped the restore: the server (its fault, not the clone's), else the dump: an archive `dump` that
    cannot be read to the end (truncated or damaged), or what it holds."""
    fault = from_tool_lines(lines, server.describe())
    if fault is not None:
        return fault
    damaged = next((ln for ln in lines if _ARCHIVE_DAMAGED.match(ln)), None)
    if damaged is not None and dump is not None:
        return refuse(dump.path, f"its data cannot be read to the end ({damaged.removeprefix('pg_restore: error: ')}"
                      "); it is truncated or damaged, and nothing of it was kept", "Supply the complete archive as "
                      "pg_dump wrote it.", rule="dump_truncated")
    quoted = " | ".join(lines[:3]) if lines else f"{tool} exited with status {rc} and printed no error"
    return RestoreFailed(f"The dump did not restore into the throwaway clone ({tool} stopped at the first error, "
                         f"nothing was kept): {quoted}. Supply a dump that restores without superuser rights, or fix "
                         "what the server reports.", lines)


# -- extensions the rehearsal server lacks ---------------------------------------------------------

_NOT_AVAILABLE = re.compile(r'extension "([^"]+)" is not available|could not open extension control file '
                            r'"[^"]*/([^/"]+)\.control"')
_NO_LIBRARY = re.compile(r'could not load library "[^"]*/([^/"]+)\.so": ([^:\s]+): cannot open shared object')


def dump_extensions(info: DumpInfo) -> list[str]:
    """The extensions the dump creates (its table of contents; plpgsql is the server's own)."""
    return sorted({e.name.strip('"') for e in info.toc if e.kind == "EXTENSION"} - {"plpgsql"})


def _extension_error(server: RehearsalServer, missing: list[str], unloadable: dict[str, str]) -> Fix7Error:
    parts = []
    if missing:
        parts.append(f"The rehearsal server ({server.describe()}) lacks the extension(s) the dump creates: "
                     f"{', '.join(missing)}. Fix: " + extensions.fix_for(missing, embedded=server.kind == "embedded",
                                                                       server=server.describe()) + ".")
    for ext, lib in sorted(unloadable.items()):
        pkg = extensions.SYSTEM_LIBRARIES.get(ext, (None, None, None))[2]
        parts.append(f"The rehearsal server has the extension {ext} but cannot load it: its module needs {lib}, "
                     f"which the server's machine lacks. Fix: install it there"
                     + (f" (as root on Debian: apt-get install {pkg})" if pkg else "") + ".")
    return Fix7Error(" ".join(parts) + " Then rehearse again; nothing was restored.", rule="extension_missing")


def check_extensions(server: RehearsalServer, info: DumpInfo) -> None:
    """Refuse, naming each one and its fix, a dump whose extensions the rehearsal server cannot create."""
    wanted = dump_extensions(info)
    if not wanted:
        return
    with server.connect(purpose="available extensions") as c:
        available = {r[0] for r in c.execute("select name from pg_catalog.pg_available_extensions")}
    missing = [e for e in wanted if e not in available]
    unloadable = {}
    if server.kind == "embedded":  # its modules load on this machine: a lacking system library shows here
        unloadable = {e: lib for e in wanted if e in available and (lib := extensions.missing_system_library(e))}
    if missing or unloadable:
        raise _extension_error(server, missing, unloadable)


def extension_failure(server: RehearsalServer, e: RestoreFailed) -> Fix7Error | None:
    """The restore stopped on an extension (SQL without a table of contents, an external server's module)."""
    missing, unloadable = [], {}
    for ln in e.lines:
        for a, b in _NOT_AVAILABLE.findall(ln):
            if (a or b) not in missing:
                missing.append(a or b)
        for ext, lib in _NO_LIBRARY.findall(ln):
            unloadable[ext] = lib
    return _extension_error(server, missing, unloadable) if missing or unloadable else None


OLDEST_SERVER = 15  # the oldest rehearsal server tested (make test: Debian's PostgreSQL 15)


def assert_server_takes(server: RehearsalServer, info: DumpInfo) -> None:
    """Refuse, before anything is created, a server older than the dump's source or older than supported.

    A dump of a newer server can use what the older one lacks (types, syntax, catalog columns): the clone could
    not be production-shaped there. Neither is a fault of the clone: the server is the wrong one (exit 4).
    """
    major = server.version() // 10000
    source = version_major(info.server_version)
    if major < OLDEST_SERVER:
        raise ServerFault(f"The rehearsal server ({server.describe()}) runs PostgreSQL {major}; rehearsals need "
                          f"PostgreSQL {OLDEST_SERVER} to 18. Point --server at a supported server (or leave it "
                          "unset for the embedded PostgreSQL 18). Nothing is wrong with the clone.",
                          rule="server.version")
    if source is not None and source > major:
        raise ServerFault(f"The dump comes from PostgreSQL {source} ({info.server_version}), newer than the rehearsal "
                          f"server ({server.describe()}, PostgreSQL {major}): it could use what {major} lacks, so it "
                          f"is not restored there. Rehearse on a server of PostgreSQL {source} or newer (the same "
                          "major as production is best, or the embedded PostgreSQL 18). Nothing is wrong with the "
                          "clone.", rule="server.version")
# -- what the server lacks, what the dump names without its schema ------------------------------------

_NO_LOCALE = re.compile(r'could not create locale "([^"]+)"')
_NO_COLLATION = re.compile(r'collation "([^"]+)"(?: for encoding "[^"]+")? does not exist')
_NO_ICU = "ICU is not supported in this build"


def _server_collations(server: RehearsalServer) -> tuple[list[str], bool]:
    """The collations the server offers (name, and provider when not libc) and whether it was built with ICU
    (initdb imports ICU's locales as *-x-icu collations only then)."""
    with server.connect(purpose="available collations") as c:
        rows = c.execute("select collname, collprovider from pg_catalog.pg_collation "
                         "where collencoding in (-1, pg_catalog.pg_char_to_encoding("
                         "pg_catalog.current_setting('server_encoding'))) order by 1").fetchall()
    icu = any(name.endswith("-x-icu") for name, _ in rows)
    kinds = {"i": "ICU", "b": "builtin", "d": None, "c": None}
    offered = [f"{name} ({kinds[p]})" if kinds.get(p) else name for name, p in rows
               if p != "d" and (icu or p != "i")]
    return offered, icu


def collation_failure(server: RehearsalServer, e: RestoreFailed, info: DumpInfo) -> Fix7Error | None:
    """The restore stopped on a collation the server lacks (a libc locale, or any ICU collation on a server
    built without ICU, like the embedded one): a property of the server, not of the clone (rule
    server_collation), naming what is missing, what the server offers, and how to get a server that has it."""
    locales, names, icu_needed = [], [], False
    for ln in e.lines:
        locales += [x for x in _NO_LOCALE.findall(ln) if x not in locales]
        names += [x for x in _NO_COLLATION.findall(ln) if x not in names]
        icu_needed = icu_needed or _NO_ICU in ln
    if not (locales or names or icu_needed):
        return None
    try:
        offered, has_icu = _server_collations(server)
    except Exception:  # noqa: BLE001 - the reason stands without the list
        offered, has_icu = [], False
    missing = [f"the libc locale {x!r}" for x in locales] + [f"the collation {x!r}" for x in names]
    if icu_needed:
        created = [e_.label for e_ in info.toc if e_.kind == "COLLATION"]
        missing.append("an ICU collation" + (f" (the dump creates {', '.join(created[:8])})" if created else ""))
    icu_wanted = icu_needed or any(x.endswith("-x-icu") for x in names)
    where = server.describe()
    parts = [f"The rehearsal server ({where}) lacks {', '.join(missing)}, which the dump uses; nothing was "
             "restored. This is a property of the server, not a verdict on the clone."]
    parts.append(f"It offers {', '.join(offered)}" + ("" if has_icu else " and was built without ICU") + "."
                 if offered else ("It was built without ICU." if not has_icu else ""))
    if icu_wanted and not has_icu:
        parts.append("Fix: rehearse on a PostgreSQL 15-18 server built with ICU (the PGDG and Debian/Ubuntu "
                     "postgresql-NN packages and the official Docker images are), e.g. `fix7 rehearse --server "
                     "postgresql://USER@HOST/DB`" + ("; the embedded PostgreSQL of the wheel has no ICU"
                                                      if server.kind == "embedded" else "") + ".")
    else:
        parts.append("Fix: install the locale on the server's machine (Debian: add it to /etc/locale.gen, run "
                     "locale-gen, restart PostgreSQL and run `select pg_import_system_collations('pg_catalog')` "
                     "as its superuser), or rehearse on a server that has it (`fix7 rehearse --server "
                     "postgresql://USER@HOST/DB`).")
    return Fix7Error(" ".join(p for p in parts if p), rule="server_collation")


def unqualified_name_failure(e: RestoreFailed, info: DumpInfo) -> Fix7Error | None:
    """A function the restore called (a domain CHECK, a default, an index expression) names a table without its
    schema: pg_dump restores with an empty search_path, so PostgreSQL finds no such table although the dump
    creates it. Name the function and the unqualified name (rule unqualified_name), not a partial dump."""
    for i, ln in enumerate(e.lines):
        m = re.search(r'relation "([^".]+)" does not exist', ln)
        if not m:
            continue
        fn = next((f.group(1) for later in e.lines[i:i + 3]
                   if (f := re.search(r"CONTEXT: function (\S+)", later))), None)
        if fn is None:
            continue
        name = m.group(1)
        created = sorted({f"{t.schema}.{t.name}" for t in info.toc
                          if t.kind in ("TABLE", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "FOREIGN TABLE")
                          and t.name == name and t.schema})
        where = f"the dump creates it as {', '.join(created)}" if created else "the dump creates no such table"
        qualified = created[0] if created else f"SCHEMA.{name}"
        return Fix7Error(
            f"The dump's function {fn} names the table {name!r} without its schema, and the restore called it "
            f"(a domain CHECK, a column default, an index or a constraint using it): pg_dump restores with an empty "
            f"search_path, so PostgreSQL found no {name!r} ({where}); nothing was kept. Fix the function in "
            f"production: write {qualified} in its body, or give it its own search_path (ALTER FUNCTION {fn} "
            f"SET search_path = {qualified.split('.')[0]}), then dump again and rehearse.",
            rule="unqualified_name")
    return None
