"""Scanning the catalog places of `catalog_sql`, and the places the restoring role cannot read (fail closed)."""

from __future__ import annotations

import psycopg

from . import copy_reader, textscan
from .catalog_sql import CATALOG_BODIES, CATALOG_FIELDS, LARGE_MARK, THIS_DB
from .findings import RawHit
from .rules import UNREADABLE, engine

def scan_catalog_part(conn: psycopg.Connection, label: str, query: str, salt: str) -> list[RawHit]:
    out = []
    large = False
    for raw in copy_reader.copy_chunks(conn, query):
        large = large or LARGE_MARK.encode() in raw
        decoded = textscan.decode_copy_text(raw)
        for cand in textscan.candidates(decoded, engine().scanner):
            if cand.index % CATALOG_FIELDS != CATALOG_FIELDS - 1:
                continue
            hits = textscan.scan_value(decoded[cand.start:cand.end], salt)
            if not hits:
                continue
            classid, objid, subid, fld, value = textscan.row_fields(decoded, cand, CATALOG_FIELDS)
            ref = (int(classid), int(objid), int(subid))
            fname = fld.decode()
            for h in hits:
                out.append(RawHit(h.rule, h.fingerprint, "catalog", ref=ref, part=fname,
                                  name=value.decode("utf-8", "replace") if fname == "name" else None,
                                  rules=h.rules))
    if large:
        out += scan_large_catalog_values(conn, label, salt)
    return out


def scan_large_catalog_values(conn: psycopg.Connection, label: str, salt: str) -> list[RawHit]:
    """The values of one catalog place longer than LARGE_VALUE_BYTES (a function body, a comment), in windows of
    VALUE_WINDOW bytes overlapping by VALUE_OVERLAP, as table values are read: the value is printed once."""
    window, overlap, large = copy_reader.VALUE_WINDOW, copy_reader.VALUE_OVERLAP, copy_reader.LARGE_VALUE_BYTES
    query = (f"copy (select x.classid, x.objid, x.subid, x.field, pg_catalog.length(d.b), o, "
             f"pg_catalog.encode(pg_catalog.substr(d.b, o::pg_catalog.int4, {window + overlap}), 'hex') "
             f"from (select * from ({CATALOG_BODIES[label]}) x(classid, objid, subid, field, value) "
             f"where pg_catalog.octet_length(x.value) > {large} offset 0) x "
             f"cross join lateral (select pg_catalog.convert_to(x.value, 'UTF8') as b offset 0) d "
             f"cross join lateral pg_catalog.generate_series(1::pg_catalog.int8, "
             f"pg_catalog.length(d.b)::pg_catalog.int8, {window}::pg_catalog.int8) o) to stdout")
    out = []
    with conn.cursor().copy(query) as copy:
        for row in copy_reader.copy_rows(copy):
            classid, objid, subid, fld, total, start, data = row.split(b"\t")
            data = bytes.fromhex(data.decode())
            own, last = min(len(data), window), int(start) - 1 + window >= int(total)
            for h in textscan.scan_value(data, salt):
                if h.start < own or last:
                    out.append(RawHit(h.rule, h.fingerprint, "catalog", ref=(int(classid), int(objid), int(subid)),
                                      part=fld.decode(), rules=h.rules))
    return out


def unreadable_catalog(conn: psycopg.Connection) -> list[RawHit]:
    """What the restoring role cannot read but the dump may have filled: fail closed."""
    out = []
    subs = conn.execute(f"select s.oid from pg_catalog.pg_subscription s where s.subdbid = {THIS_DB}").fetchall()
    if subs:
        try:
            conn.execute("select s.subconninfo from pg_catalog.pg_subscription s limit 1").fetchall()
        except psycopg.errors.InsufficientPrivilege:
            for (oid,) in subs:
                out.append(RawHit(UNREADABLE, "", "unreadable", ref=(regclass(conn, "pg_subscription"), int(oid), 0),
                                  part="connection string"))
    for umid, readable in conn.execute("""
            select u.umid, u.umoptions is not null or pg_catalog.pg_has_role(s.srvowner, 'USAGE')
                   or (u.umuser = (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user)
                       and pg_catalog.has_server_privilege(s.oid, 'USAGE'))
            from pg_catalog.pg_user_mappings u join pg_catalog.pg_foreign_server s on s.oid = u.srvid""").fetchall():
        if not readable:
            out.append(RawHit(UNREADABLE, "", "unreadable", ref=(regclass(conn, "pg_user_mapping"), int(umid), 0),
                              part="options"))
    return out


def regclass(conn: psycopg.Connection, name: str) -> int:
    return int(conn.execute("select %s::regclass::oid", (f"pg_catalog.{name}",)).fetchone()[0])
