"""Findings as printed: a place named by table, column and row key, or by the catalog object's kind and
identity; every name that matched a rule registered first and printed as its label."""

from __future__ import annotations

import psycopg

from ..shared.model import Finding
from .findings import RawHit
from .redact import RedactedNames
from .rules import MUST_BE_EMPTY, MUST_BE_NULL, UNREADABLE, engine

def identify(conn: psycopg.Connection, refs: set[tuple]) -> dict[tuple, tuple[str, str]]:
    if not refs:
        return {}
    rows = conn.execute("""
        select r.c, r.o, r.s, i.type, i.identity
        from rows from (pg_catalog.unnest(%s::pg_catalog.oid[]), pg_catalog.unnest(%s::pg_catalog.oid[]),
                       pg_catalog.unnest(%s::int[])) r(c, o, s)
        cross join lateral pg_catalog.pg_identify_object(r.c, r.o, r.s) i""",
                        ([r[0] for r in refs], [r[1] for r in refs], [r[2] for r in refs])).fetchall()
    return {(int(c), int(o), int(s)): (t, ident) for c, o, s, t, ident in rows}


def render(hits: list[RawHit], idents: dict[tuple, tuple[str, str]], names: RedactedNames) -> list[Finding]:
    eng = engine()
    # every identifier that matched is registered before anything is printed
    for h in hits:
        if h.name:
            names.add(h.name)
    out = []
    for h in hits:
        info = eng.info(h.rule)
        extra = {"source": info.source if info else "fix7", "family": info.family if info else h.rule, **h.extra}
        if h.rules:  # one occurrence, every rule that matched it (rule names only, never the value)
            extra["rules"] = list(h.rules)
        if h.kind == "table":
            table, column = names.name(h.table), names.name(h.column)
            if h.rule == MUST_BE_EMPTY:
                msg = f"{table}: {h.extra.get('rows')} row(s); a sanitized clone carries none"
                extra["place"] = f"table {table}"
                out.append(Finding(h.rule, msg, table=table, extra=extra))
                continue
            row_key = names.scrub(h.row_key)
            extra["place"] = f"{table}.{column}"
            what = "a value (it must be NULL)" if h.rule == MUST_BE_NULL else h.rule
            out.append(Finding(h.rule, f"{table}.{column}: {what} in row {row_key}", table=table, column=column,
                               row_key=row_key, fingerprint=h.fingerprint or None, extra=extra))
            continue
        if h.ref is not None:
            kind, ident = idents.get(h.ref, ("catalog object", f"{h.ref[0]}:{h.ref[1]}:{h.ref[2]}"))
            if h.part == "name":
                place = f"{kind} name {names.label(h.name or '')}"
            else:
                place = f"{kind} {names.scrub(ident)} ({h.part})"
        else:
            kind = h.kind
            if h.kind == "setting":
                setting = names.name(h.extra.get("setting"))
                extra["setting"] = setting
                place = (f"setting name {names.label(h.name or '')} on {h.place}" if h.part == "name"
                         else f"setting {setting} on {h.place} (value)")
            else:
                place = h.place or kind
        place = names.scrub(place)
        extra["place"] = place
        extra["kind"] = kind
        if h.rule == UNREADABLE:
            msg = f"{place}: cannot be read by the restoring role, so it cannot be proven free of secrets"
        else:
            msg = f"{place}: {h.rule}"
        out.append(Finding(h.rule, msg, fingerprint=h.fingerprint or None, extra=extra))
    return out
