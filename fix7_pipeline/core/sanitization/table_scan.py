"""One table's text columns scanned from its COPY stream: findings per value, must-be-NULL columns that
hold a value, must-be-empty tables with rows, and large values read afterwards in windows."""

from __future__ import annotations

import re

import psycopg
from psycopg import sql as psql

from . import copy_reader, textscan
from .binary_scan import scan_bytea
from .copy_reader import qualified_table, table_select
from .findings import RawHit
from .plan import TablePlan
from .rules import KEYED_ON_A_WORD, MUST_BE_EMPTY, MUST_BE_NULL, engine

_SECRETISH_KEY = ("token", "secret", "password", "key", "hash")


def keys_are_secretish(p: TablePlan) -> bool:
    """Keys that may themselves be secrets (a session token as primary key) are shown only as fingerprints."""
    return p.must_be_empty or any(c in p.must_be_null or any(s in c.lower() for s in _SECRETISH_KEY)
                                  for c in p.pk)


def _kept(p: TablePlan, col: str, hits: list[textscan.Hit]) -> list[textscan.Hit]:
    """Hits of a column the contract says holds look-alikes (ids, public keys): only those some rule other
    than a word-keyed one matched."""
    if col not in p.lookalike_columns:
        return hits
    return [h for h in hits if set(h.rules or (h.rule,)) - set(KEYED_ON_A_WORD)]


def scan_table_raw(conn: psycopg.Connection, p: TablePlan, salt: str) -> list[RawHit]:
    out: list[RawHit] = []
    eng = engine()
    secretish = keys_are_secretish(p)
    header_idx = {i for i, c in enumerate(p.columns, start=1) if c in p.header_columns}
    rows = 0

    def key_of(fields: list[bytes], key_hit: bool, col: str | None) -> str:
        key = fields[0].decode("utf-8", "replace")
        if not p.pk:
            return key
        if secretish or key_hit or (col is not None and col in p.pk):
            return "fingerprint:" + textscan.fingerprint(salt, fields[0])
        return key

    large: list[tuple[list[bytes], bytes, list[int], set[int]]] = []  # (fields, ctid, large columns, set must-be-NULL)
    if p.columns:
        query, per_row = table_select(p)
        values_end = 1 + len(p.columns)  # after the key and the values: flags and the ctid, never scanned
        for raw in copy_reader.copy_chunks(conn, query):
            rows += raw.count(b"\n")
            decoded = textscan.decode_copy_text(raw)
            found: dict[int, list] = {}   # row index -> [fields, key_hit, [(col, hit)]]
            for scanner, headers in ((eng.scanner, False), *(((eng.header_scanner, True),) if header_idx else ())):
                for cand in textscan.candidates(decoded, scanner):
                    row, col = divmod(cand.index, per_row)
                    if col == 0 or col >= values_end:
                        if col == 0:
                            entry = found.setdefault(row, [None, False, []])
                            entry[1] = True
                            if entry[0] is None:
                                entry[0] = textscan.row_fields(decoded, cand, per_row)
                        continue
                    if headers and col not in header_idx:
                        continue
                    hits = textscan.scan_value(decoded[cand.start:cand.end], salt, headers=headers)
                    if not hits:
                        continue
                    entry = found.setdefault(row, [None, False, []])
                    if entry[0] is None:
                        entry[0] = textscan.row_fields(decoded, cand, per_row)
                    entry[2].extend((p.columns[col - 1], h) for h in hits)
            for row in sorted(found):
                fields, key_hit, hits = found[row]
                by_column: dict[str, list] = {}
                for col, h in hits:  # the header scanner and the main one can match one value's secret
                    by_column.setdefault(col, []).append(h)
                for col, col_hits in by_column.items():
                    for h in _kept(p, col, textscan.merge(col_hits)):
                        out.append(RawHit(h.rule, h.fingerprint, "table", p.contract_name, col,
                                          key_of(fields, key_hit, col), rules=h.rules))
            out.extend(flagged_rows(p, raw, salt, key_of, large))
    for fields, ctid, cols, unset in large:  # after the table's COPY: the connection is free again
        key_hit = bool(textscan.scan_value(fields[0], salt))
        for i in cols:
            col = p.columns[i - 1]
            col_hits = []
            for headers in (False, True) if i in header_idx else (False,):
                hits, whole = copy_reader.scan_large_value(conn, p, col, ctid, salt, headers=headers)
                col_hits += hits
            out.extend(RawHit(h.rule, h.fingerprint, "table", p.contract_name, col, key_of(fields, key_hit, col),
                              rules=h.rules) for h in _kept(p, col, textscan.merge(col_hits)))
            if i in unset:
                out.append(RawHit(MUST_BE_NULL, whole, "table", p.contract_name, col, key_of(fields, key_hit, col)))
    if p.bytea:
        out.extend(scan_bytea(conn, p, salt, key_of))
    if p.must_be_empty:
        if not p.columns:
            rows = conn.execute(psql.SQL("select count(*) from {} t").format(qualified_table(p))).fetchone()[0]
        if rows:
            out.append(RawHit(MUST_BE_EMPTY, "", "table", p.contract_name, extra={"rows": rows}))
    return out


def flagged_rows(p: TablePlan, raw: bytes, salt: str, key_of, large: list) -> list[RawHit]:
    """Rows with a set must-be-NULL column (a finding each) or a large value (queued in `large`, read later in
    windows): their last fields, the indexes of those columns, say which (raw TAB and LF are separators only)."""
    out = []
    pattern = _FLAGS_NULL if p.must_be_null else _FLAGS
    for m in pattern.finditer(raw):
        if not m.group(1) and not m.group(m.lastindex - 1):
            continue
        start = raw.rfind(b"\n", 0, m.start()) + 1
        fields = textscan.parse_copy_row(raw[start:m.end() - 1])
        unset = {int(f) for f in m.group(1).split(b",") if f} if p.must_be_null else set()
        big = [int(f) for f in m.group(m.lastindex - 1).split(b",") if f]
        if big:
            large.append((fields[:1], m.group(m.lastindex), big, unset & set(big)))
        if unset - set(big):
            key_hit = bool(textscan.scan_value(fields[0], salt))
            for i in sorted(unset - set(big)):
                col, value = p.columns[i - 1], fields[i]
                out.append(RawHit(MUST_BE_NULL, textscan.fingerprint(salt, value), "table", p.contract_name, col,
                                  key_of(fields, key_hit, col)))
    return out


_FLAGS = re.compile(rb"\t([0-9,]+)\t(\([0-9]+,[0-9]+\))\n")
_FLAGS_NULL = re.compile(rb"\t([0-9,]*)\t([0-9,]*)\t(\([0-9]+,[0-9]+\))\n")
