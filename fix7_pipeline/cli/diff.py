"""`fix7 diff DB_A DB_B`: the restore diff's machinery between any two databases on the rehearsal server.

For an operator investigating a kept anchor and clone (`--keep-databases`). It connects through the
same host guard, as a non-superuser role (the throwaways' own restoring role by default), in the
pinned, read-only proof session, and compares the catalog fingerprint, the data and pg_dump's schema
text. Exit 0 equal, 1 different, 2 usage, 4 the rehearsal server or its login failed (unreachable, a
missing privilege).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from contextlib import contextmanager

from fix7_pipeline.core.shared.errors import EXIT_USAGE, Fix7Error

_THROWAWAY = re.compile(r"^fix7_(?:clone|anchor|probe|scratch|restore)_([a-z0-9]+)")
_THROWAWAY_ROLE = re.compile(r"^fix7_restorer_[a-z0-9]+$")


def _role_for(server, database: str, role: str | None) -> str:
    """The role to read `database` as: --role, else its throwaway's restoring role, else its non-superuser owner."""
    if role:
        return role
    m = _THROWAWAY.match(database)
    if m:
        return f"fix7_restorer_{m.group(1)}"
    with server.connect(purpose="diff: owner") as c:
        row = c.execute("select r.rolname, r.rolsuper from pg_catalog.pg_database d join pg_catalog.pg_roles r "
                        "on r.oid = d.datdba where d.datname = %s", (database,)).fetchone()
    if not row:
        raise Fix7Error(f"Database {database!r} does not exist on the rehearsal server.", EXIT_USAGE, rule="usage")
    if row[1]:
        raise Fix7Error(f"Database {database!r} belongs to a superuser; name a non-superuser role that can read it "
                        "with --role (fix7 never reads a database as a superuser).", EXIT_USAGE, rule="usage")
    return row[0]


@contextmanager
def _reading_login(server, role: str, password: str | None):
    """The login to read as. A kept throwaway role on an external server has a password derived from a key that
    ended with its rehearsal: the admin (which created the role) gives it a one-time password for this diff, held
    in this process only, and takes it away again afterwards (back to the derived one where a key is known)."""
    from psycopg import sql

    from fix7_pipeline.core.postgres.server import Login

    if password or server.kind != "external" or not _THROWAWAY_ROLE.match(role):
        yield Login(role, password)
        return
    once = secrets.token_urlsafe(32)
    with server.connect(purpose="diff: one-time password for the kept role") as c:
        c.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(role), sql.Literal(once)))
    try:
        yield Login(role, once)
    finally:
        try:
            after = server.throwaway_login(role).password
        except Fix7Error:
            after = None
        with server.connect(purpose="diff: take the one-time password back") as c:
            c.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(role), sql.Literal(after)))


def compare(server, db_a: str, db_b: str, role: str | None = None) -> dict:
    from fix7_pipeline.core.anchor import diff as diff_mod
    from fix7_pipeline.core.anchor import fingerprint, schema_text
    from fix7_pipeline.core.postgres.server import Login

    with server.connect(purpose="diff: databases") as c:
        found = {r[0] for r in c.execute("select datname from pg_catalog.pg_database where datname = any(%s)",
                                         ([db_a, db_b],))}
    missing = [d for d in (db_a, db_b) if d not in found]
    if missing:
        raise Fix7Error(f"Database {missing[0]!r} does not exist on the rehearsal server.", EXIT_USAGE, rule="usage")
    name = _role_for(server, db_a, role)
    with _reading_login(server, name, os.environ.get("FIX7_DIFF_PASSWORD") or None) as login:
        with server.connect(db_a, login, purpose="diff: a") as a, server.connect(db_b, login, purpose="diff: b") as b, \
                server.connect(db_a, login, purpose="diff: a (second core)") as ha, \
                server.connect(db_b, login, purpose="diff: b (second core)") as hb:
            fp_a, fp_b = fingerprint.fingerprint(a, [ha]), fingerprint.fingerprint(b, [hb])
            result = diff_mod.restore_diff(fp_a, fp_b, a, b)
        text = schema_text.differing(schema_text.schema_sections(server, db_a, login),
                                     schema_text.schema_sections(server, db_b, login))
    result["schema_text_differs"] = text
    result["blind_spots"] = text if not result["schema"] else []
    result["equal"] = result["empty"] and not text
    result["role"] = login.role
    return result


def render(result: dict, db_a: str, db_b: str) -> str:
    if result["equal"]:
        return f"{db_a} and {db_b} are equal: schema objects, rows, sequences, large objects and pg_dump schema text"
    lines = [f"{db_a} -> {db_b}:"]
    lines += [f"  schema  {o['object']}: {o['change']}"
              + (f" ({', '.join(o['attributes'])})" if o.get("attributes") else "") for o in result["schema"]]
    for t in result["tables"]:
        keys = "; ".join(f"{k} {', '.join(v)}" for k, v in (t.get("examples") or {}).items() if v)
        lines.append(f"  rows    {t['table']}: {t['added']} added, {t['removed']} removed, {t['changed']} changed"
                     + (f" (keys: {keys})" if keys else ""))
    lines += [f"  seq     {s['sequence']}: {s['anchor']} -> {s['after']}" for s in result["sequences"]]
    lines += [f"  lob     {oid}: {kind}" for kind, oids in result["large_objects"].items() for oid in oids]
    lines += [f"  blind spot: pg_dump text differs in {s}, the fingerprint saw nothing" for s in result["blind_spots"]]
    return "\n".join(lines)


def cmd_diff(args) -> int:
    from fix7_pipeline.core.postgres.hosts import HostPolicy
    from fix7_pipeline.core.postgres.server import RehearsalServer

    url = args.server or os.environ.get("FIX7_REHEARSAL_SERVER") or "embedded"
    server = RehearsalServer.from_url(url, HostPolicy((), tuple(args.allow_host or ())))
    result = compare(server, args.db_a, args.db_b, args.role)
    if args.json:
        print(json.dumps({k: v for k, v in result.items()}, default=str))
    else:
        print(render(result, args.db_a, args.db_b))
    return 0 if result["equal"] else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("diff", help="compare two databases on the rehearsal server (e.g. a kept anchor and "
                                           "clone) with the restore diff's machinery; exit 1 if they differ")
    p.add_argument("db_a")
    p.add_argument("db_b")
    p.add_argument("--server", metavar="URL", help="the rehearsal server (default: FIX7_REHEARSAL_SERVER or the "
                                                   "embedded PostgreSQL 18)")
    p.add_argument("--allow-host", action="append", metavar="PATTERN", help="glob of hosts known to be isolated")
    p.add_argument("--role", help="the non-superuser role to read both as (default: the throwaways' restoring role, "
                                  "or the database owner); its password, if any, in FIX7_DIFF_PASSWORD")
    p.add_argument("--json", action="store_true", help="print the diff as one JSON object")
    p.set_defaults(func=cmd_diff)
