"""The restore diff: what the clone looks like after apply + rollback, against the snapshot anchor.

Tables whose row count and content hash match the anchor are skipped with no row work. For a table
that differs, rows are bucketed by a hash of their primary key inside PostgreSQL on both sides; only
the buckets whose (count, hash) summaries differ are streamed as (key hash, row hash) pairs, one
bucket at a time, so Python never holds a whole table. Rows are compared over the columns both sides
have, so a column the change added (and the rollback dropped, or forgot) never makes rows differ:
the column itself is a schema difference.
"""

from __future__ import annotations

from collections import Counter
from itertools import groupby

import psycopg
from psycopg import sql

from .fingerprint import qualified, row_text, slice_sum, snapshot

BUCKETS = 4096
BUCKET_BITS = 12
EXAMPLES = 5
FETCH_ROWS = 20000


def schema_diff(anchor: dict[str, str], after: dict[str, str]) -> list[dict]:
    out = []
    for key in sorted(set(anchor) | set(after)):
        if key not in after:
            out.append({"object": key, "change": "removed"})
        elif key not in anchor:
            out.append({"object": key, "change": "added"})
        elif anchor[key] != after[key]:
            out.append({"object": key, "change": "changed"})
    return out


def _next_value(p: dict) -> int:
    return p["last_value"] + p.get("increment", 1) if p["is_called"] else p["last_value"]


def sequence_diff(anchor: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """Sequences present on both sides; forward moves are warnings (a rollback cannot un-draw values)."""
    out = []
    for key in sorted(set(anchor) & set(after)):
        a, b = anchor[key], after[key]
        if _next_value(a) == _next_value(b) and a.get("increment") == b.get("increment"):
            continue
        step = a.get("increment", 1)
        forward = a.get("increment") == b.get("increment") and (_next_value(b) - _next_value(a)) * step > 0
        out.append({"sequence": key, "anchor": a["last_value"], "after": b["last_value"],
                    "severity": "warning" if forward else "error"})
    return out


def _bucket_source(t: dict, columns: list[str], key: list[str] | None) -> sql.Composable:
    """(bucket, key hash, row hash) per row; without a primary key the whole row is the key."""
    key_text = row_text("t", key) if key else row_text("t", columns)
    return sql.SQL(
        "select ('x' || substr(k, 1, 3))::bit({bits})::int as b, k, h from "
        "(select md5({kt}) as k, md5({rt}) as h from {tab} t) x").format(
        bits=sql.Literal(BUCKET_BITS), kt=key_text, rt=row_text("t", columns), tab=qualified(t["schema"], t["name"]))


def _bucket_summaries(conn: psycopg.Connection, source: sql.Composable) -> dict[int, tuple]:
    q = sql.SQL("select b, count(*), {agg} from ({src}) s group by b").format(
        agg=slice_sum(sql.SQL("h")), src=source)
    with snapshot(conn):
        return {b: (n, h) for b, n, h in conn.execute(q).fetchall()}


def _stream(conn: psycopg.Connection, source: sql.Composable, buckets: list[int], name: str):
    """(bucket, key hash, row hash) rows of the given buckets, in bucket order, from a server-side cursor."""
    q = sql.SQL("select b, k, h from ({src}) s where b = any(%s) order by b").format(src=source)
    with conn.cursor(name=name) as cur:
        cur.itersize = FETCH_ROWS
        cur.execute(q, (buckets,))
        yield from cur


def _by_bucket(rows):
    for bucket, group in groupby(rows, key=lambda r: r[0]):
        yield bucket, [(k, h) for _, k, h in group]


def _compare_streams(anchor_rows, after_rows, keyed: bool, examples: dict[str, list[str]]) -> tuple[int, int, int]:
    added = removed = changed = 0
    a_iter, b_iter = _by_bucket(anchor_rows), _by_bucket(after_rows)
    a_next, b_next = next(a_iter, None), next(b_iter, None)
    while a_next is not None or b_next is not None:
        if b_next is None or (a_next is not None and a_next[0] < b_next[0]):
            a_rows, b_rows, a_next = a_next[1], [], next(a_iter, None)
        elif a_next is None or b_next[0] < a_next[0]:
            a_rows, b_rows, b_next = [], b_next[1], next(b_iter, None)
        else:
            a_rows, b_rows = a_next[1], b_next[1]
            a_next, b_next = next(a_iter, None), next(b_iter, None)
        if keyed:
            a_map, b_map = dict(a_rows), dict(b_rows)
            only_b = [k for k in b_map if k not in a_map]
            only_a = [k for k in a_map if k not in b_map]
            diff = [k for k in a_map if k in b_map and a_map[k] != b_map[k]]
            for label, keys in (("added", only_b), ("removed", only_a), ("changed", diff)):
                examples[label].extend(keys[:EXAMPLES - len(examples[label])])
            added, removed, changed = added + len(only_b), removed + len(only_a), changed + len(diff)
        else:
            a_count, b_count = Counter(k for k, _ in a_rows), Counter(k for k, _ in b_rows)
            added += sum((b_count - a_count).values())
            removed += sum((a_count - b_count).values())
    return added, removed, changed


def _key_examples(conn: psycopg.Connection, t: dict, key: list[str], key_hashes: list[str]) -> list[str]:
    """Primary-key values (never other columns) of a few differing rows, for the operator."""
    if not key_hashes:
        return []
    q = sql.SQL("select {cols} from {tab} t where md5({kt}) = any(%s) limit {n}").format(
        cols=sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in key),
        tab=qualified(t["schema"], t["name"]), kt=row_text("t", key), n=sql.Literal(EXAMPLES))
    with snapshot(conn):
        rows = conn.execute(q, (key_hashes,)).fetchall()
    if len(key) == 1:
        return sorted(str(r[0]) for r in rows)
    return sorted(", ".join(f"{c}={v}" for c, v in zip(key, r)) for r in rows)


def table_row_diff(anchor_conn: psycopg.Connection, after_conn: psycopg.Connection, a: dict, b: dict) -> dict:
    """Exact added/removed/changed counts for one table present on both sides."""
    columns = sorted(set(a["columns"]) & set(b["columns"]))
    key = a["key"] if a["key"] and a["key"] == b["key"] and set(a["key"]) <= set(columns) else None
    source = _bucket_source(a, columns, key)
    after_source = _bucket_source(b, columns, key)
    a_sum, b_sum = _bucket_summaries(anchor_conn, source), _bucket_summaries(after_conn, after_source)
    buckets = sorted(x for x in set(a_sum) | set(b_sum) if a_sum.get(x) != b_sum.get(x))
    result = {"table": f"{a['schema']}.{a['name']}", "added": 0, "removed": 0, "changed": 0,
              "key": key, "buckets": len(buckets)}
    if not buckets:
        return result
    examples: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    with snapshot(anchor_conn), snapshot(after_conn):
        added, removed, changed = _compare_streams(
            _stream(anchor_conn, source, buckets, "fix7_diff_anchor"),
            _stream(after_conn, after_source, buckets, "fix7_diff_after"), key is not None, examples)
    result.update(added=added, removed=removed, changed=changed)
    if key:
        result["examples"] = {
            "added": _key_examples(after_conn, b, key, examples["added"]),
            "removed": _key_examples(anchor_conn, a, key, examples["removed"]),
            "changed": _key_examples(anchor_conn, a, key, examples["changed"]),
        }
    return result


def restore_diff(anchor_fp: dict, after_fp: dict, anchor_conn: psycopg.Connection,
                 after_conn: psycopg.Connection) -> dict:
    """Tables, schema objects and sequences that differ between the anchor copy and the clone after rollback."""
    schema = schema_diff(anchor_fp["schema"], after_fp["schema"])
    sequences = sequence_diff(anchor_fp["sequences"], after_fp["sequences"])
    tables: list[dict] = []
    skipped = compared = 0
    a_tables, b_tables = anchor_fp["tables"], after_fp["tables"]
    for name in sorted(set(a_tables) | set(b_tables)):
        a, b = a_tables.get(name), b_tables.get(name)
        if a is None:
            tables.append({"table": name, "added": b["rows"], "removed": 0, "changed": 0, "only_in": "after"})
        elif b is None:
            tables.append({"table": name, "added": 0, "removed": a["rows"], "changed": 0, "only_in": "anchor"})
        elif a["rows"] == b["rows"] and a["hash"] == b["hash"] and a["columns"] == b["columns"]:
            skipped += 1
        else:
            compared += 1
            d = table_row_diff(anchor_conn, after_conn, a, b)
            if d["added"] or d["removed"] or d["changed"]:
                tables.append(d)
    errors = [s for s in sequences if s["severity"] == "error"]
    return {"tables": tables, "schema": schema, "sequences": sequences,
            "empty": not tables and not schema and not errors,
            "tables_unchanged": skipped, "tables_compared": compared}
