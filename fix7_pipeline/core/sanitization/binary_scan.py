"""Bytes that are not text in PostgreSQL: bytea columns and large objects, decoded from hex here and
scanned as bytes (a large one in overlapping windows)."""

from __future__ import annotations

import psycopg
from psycopg import sql as psql

from . import copy_reader, textscan
from .copy_reader import key_sql, qualified_table
from .findings import RawHit
from .plan import TablePlan
from .rules import MUST_BE_NULL, UNREADABLE

LO_WINDOW = 1 << 20            # large objects are read in windows of this size ...
LO_OVERLAP = 16 << 10          # ... overlapping by this much, so no secret is cut in two


def scan_bytea(conn: psycopg.Connection, p: TablePlan, salt: str, key_of) -> list[RawHit]:
    """bytea columns: their bytes, decoded from hex here (PostgreSQL never prints them as text); one larger
    than LARGE_VALUE_BYTES is read in windows after the COPY, like a large text value."""
    limit = psql.Literal(copy_reader.LARGE_VALUE_BYTES)
    fields = [key_sql(p)] + [psql.SQL("case when pg_catalog.octet_length(t.{c}) > {n} then '' else "
                                       "pg_catalog.encode(t.{c}, 'hex') end").format(c=psql.Identifier(c), n=limit)
                              for c in p.bytea]
    fields.append(psql.SQL("concat_ws(',', {})").format(psql.SQL(", ").join(
        psql.SQL("case when pg_catalog.octet_length(t.{}) > {} then {} end").format(
            psql.Identifier(c), limit, psql.Literal(str(i))) for i, c in enumerate(p.bytea, start=1))))
    fields.append(psql.SQL("t.ctid::pg_catalog.text"))
    where = psql.SQL(" or ").join(psql.SQL("t.{} is not null").format(psql.Identifier(c)) for c in p.bytea)
    query = psql.SQL("copy (select {} from {} t where {}) to stdout").format(
        psql.SQL(", ").join(fields), qualified_table(p), where)
    out: list[RawHit] = []
    large: list[tuple[list[bytes], bytes, list[str]]] = []
    for raw in copy_reader.copy_chunks(conn, query):
        batch = textscan.ValueBatch(salt)
        keys: dict[int, bytes] = {}
        for n, line in enumerate(raw.split(b"\n")):
            if not line:
                continue
            row = textscan.parse_copy_row(line)
            keys[n] = row[0]
            big = {int(f) for f in row[-2].split(b",") if f}
            if big:
                large.append(([row[0]], row[-1], [p.bytea[i - 1] for i in sorted(big)]))
            for i, col in enumerate(p.bytea, start=1):
                if row[i] == b"\\N" or i in big:
                    continue
                value = bytes.fromhex(row[i].decode())
                batch.add((n, col), value)
                if col in p.must_be_null:
                    out.append(RawHit(MUST_BE_NULL, textscan.fingerprint(salt, value), "table", p.contract_name,
                                      col, key_of(row, bool(textscan.scan_value(row[0], salt)), col)))
        batch.flush()
        key_hits = {r for (r, _c), _h in batch.hits if textscan.scan_value(keys[r], salt)}
        out += [RawHit(h.rule, h.fingerprint, "table", p.contract_name, col, key_of([keys[r]], r in key_hits, col),
                       rules=h.rules) for (r, col), h in batch.hits]
    for fields, ctid, cols in large:
        key_hit = bool(textscan.scan_value(fields[0], salt))
        for col in cols:
            hits, whole = copy_reader.scan_large_value(conn, p, col, ctid, salt, bytea=True)
            out.extend(RawHit(h.rule, h.fingerprint, "table", p.contract_name, col, key_of(fields, key_hit, col),
                              rules=h.rules) for h in hits)
            if col in p.must_be_null:
                out.append(RawHit(MUST_BE_NULL, whole, "table", p.contract_name, col, key_of(fields, key_hit, col)))
    return out


def lo_readable(conn: psycopg.Connection) -> str:
    """Whether the session may read large object m: the server's own test from PostgreSQL 17 on; before it, the
    same rule over the catalog (the owner's privileges, a SELECT grant to the session's roles or to PUBLIC, or
    lo_compat_privileges, which turns the checks off)."""
    if conn.info.server_version >= 170000:
        return "pg_catalog.has_largeobject_privilege(m.oid, 'SELECT')"
    return ("(pg_catalog.current_setting('lo_compat_privileges')::pg_catalog.bool "
            "or pg_catalog.pg_has_role(m.lomowner, 'USAGE') "
            "or exists (select from pg_catalog.aclexplode(m.lomacl) a where a.privilege_type = 'SELECT' "
            "and (a.grantee = 0 or pg_catalog.pg_has_role(a.grantee, 'USAGE'))))")


def scan_large_objects(conn: psycopg.Connection, salt: str) -> list[RawHit]:
    out = []
    rows = conn.execute(f"select m.oid::pg_catalog.int8, {lo_readable(conn)} "
                        "from pg_catalog.pg_largeobject_metadata m order by 1").fetchall()
    readable = [oid for oid, ok in rows if ok]
    out += [RawHit(UNREADABLE, "", "unreadable", place=f"large object {oid}", part="data")
            for oid, ok in rows if not ok]
    if not readable:
        return out
    sizes = dict(conn.execute("select m.oid::pg_catalog.int8, pg_catalog.lo_lseek64(pg_catalog.lo_open(m.oid, 262144), "
                              "0, 2) from pg_catalog.pg_largeobject_metadata m where m.oid = any(%s)",
                              (readable,)).fetchall())
    windows = [(oid, off) for oid in readable for off in range(0, max(int(sizes.get(oid) or 0), 1), LO_WINDOW)]
    seen: set[tuple] = set()
    for i in range(0, len(windows), 64):
        part = windows[i:i + 64]
        values = psql.SQL(", ").join(psql.SQL("({}::pg_catalog.oid, {}::pg_catalog.int8)").format(
            psql.Literal(o), psql.Literal(off)) for o, off in part)
        query = psql.SQL("copy (select w.o, w.off, pg_catalog.encode(pg_catalog.lo_get(w.o, w.off, {}), 'hex') "
                         "from (values {}) w(o, off)) to stdout").format(psql.Literal(LO_WINDOW + LO_OVERLAP), values)
        for raw in copy_reader.copy_chunks(conn, query):
            for line in raw.split(b"\n"):
                if not line:
                    continue
                oid, off, data = textscan.parse_copy_row(line)
                chunk = bytes.fromhex(data.decode())
                for h in textscan.scan_value(chunk, salt):
                    at = (int(oid), int(off) + h.start, h.rule)
                    if at in seen:
                        continue
                    seen.add(at)
                    out.append(RawHit(h.rule, h.fingerprint, "large object", place=f"large object {int(oid)}",
                                      extra={"offset": int(off) + h.start}, rules=h.rules))
    return out
