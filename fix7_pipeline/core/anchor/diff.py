"""The restore diff: what the clone looks like after apply + rollback, against the snapshot anchor.

Tables whose row count and content hash match the anchor are skipped with no row work. For a table
that differs, rows are bucketed by a hash of their primary key (4096 or 65536 buckets) inside
PostgreSQL on both sides, and only the buckets whose (count, hash) summaries differ go further: the
(key hash, row hash) pairs of those buckets are streamed from both sides in key order and merged,
which gives exact added / removed / changed counts. Nothing is written on either side, and Python holds
two pairs at a time, never rows. Rows are compared over the columns both
sides have, so a column the change added (and the rollback dropped, or forgot) never makes rows
differ: the column is a schema difference.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from .fingerprint import column_senders, qualified, row_hash, row_text, snapshot

EXAMPLES = 5
STREAM_ROWS = 20000
DIFF_SETTINGS = {"work_mem": "64MB", "enable_sort": "off"}  # hash aggregates: the planner overestimates groups


def schema_diff(anchor: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """Objects added, removed or changed, a changed one with the attributes that differ (never values)."""
    out = []
    for key in sorted(set(anchor) | set(after)):
        if key not in after:
            out.append({"object": key, "change": "removed"})
        elif key not in anchor:
            out.append({"object": key, "change": "added"})
        elif anchor[key] != after[key]:
            a, b = anchor[key], after[key]
            out.append({"object": key, "change": "changed",
                        "attributes": sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))})
    return out


def _next_value(p: dict) -> int:
    return p["last_value"] + p.get("increment", 1) if p["is_called"] else p["last_value"]


def sequence_diff(anchor: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """Positions of sequences present on both sides; forward moves are warnings (a rollback cannot un-draw
    values). A changed definition (increment, bounds) is a schema difference, reported there once."""
    out = []
    for key in sorted(set(anchor) & set(after)):
        a, b = anchor[key], after[key]
        if a.get("increment") != b.get("increment"):
            if (a["last_value"], a["is_called"]) == (b["last_value"], b["is_called"]):
                continue
            out.append({"sequence": key, "anchor": a["last_value"], "after": b["last_value"], "severity": "error"})
            continue
        if _next_value(a) == _next_value(b):
            continue
        forward = (_next_value(b) - _next_value(a)) * a.get("increment", 1) > 0
        out.append({"sequence": key, "anchor": a["last_value"], "after": b["last_value"],
                    "severity": "warning" if forward else "error"})
    return out


def large_object_diff(anchor: dict[str, dict], after: dict[str, dict]) -> dict:
    """Large objects by oid: added, removed, or with other content (never the content)."""
    added = sorted(set(after) - set(anchor), key=int)
    removed = sorted(set(anchor) - set(after), key=int)
    changed = sorted((k for k in set(anchor) & set(after) if anchor[k] != after[k]), key=int)
    return {"added": added, "removed": removed, "changed": changed}


def bucket_hex_digits(rows: int) -> int:
    """4096 buckets for ordinary tables, 65536 for large ones, so a few scattered changes in a
    million rows touch a small share of the table."""
    return 3 if rows <= 65536 else 4


def _bucket_source(t: dict, senders: dict[str, str | None], key: list[str] | None, digits: int) -> sql.Composable:
    """(bucket, key hash, row hash) per row; without a primary key the whole row is the key."""
    key_text = row_text("t", key) if key else row_text("t", sorted(senders))
    return sql.SQL(
        "select ('x' || pg_catalog.substr(pg_catalog.md5({kt}), 1, {digits}))::pg_catalog.bit({bits})::pg_catalog.int4 "
        "as b, pg_catalog.md5({kt})::pg_catalog.uuid as k, {h} as h "
        "from only {tab} t").format(digits=sql.Literal(digits), bits=sql.Literal(4 * digits), kt=key_text,
                               h=row_hash("t", senders), tab=qualified(t["schema"], t["name"]))


def compared_senders(a: dict, b: dict, columns: list[str]) -> dict[str, str | None]:
    """How each compared column is hashed on both sides: in its send form where both sides have the same one,
    else as text, so a column whose type changed (a schema difference) does not make its equal values differ."""
    a_by, b_by = a.get("hashed_by") or {}, b.get("hashed_by") or {}
    return column_senders(columns, [a_by.get(c) if a_by.get(c) == b_by.get(c) else None for c in columns])


def _bucket_summaries(conn: psycopg.Connection, source: sql.Composable) -> dict[int, tuple]:
    q = sql.SQL("select b, count(*), coalesce(sum(h), 0) from ({src}) s group by b").format(src=source)
    with snapshot(conn):
        _tune(conn)
        return {b: (int(n), int(h)) for b, n, h in conn.execute(q).fetchall()}


def _tune(conn: psycopg.Connection, *, sort: bool = False) -> None:
    for name, value in DIFF_SETTINGS.items():
        if sort and name == "enable_sort":
            continue
        conn.execute("select set_config(%s, %s, true)", (name, value))


def _pairs(conn: psycopg.Connection, source: sql.Composable, buckets: list[int]) -> Iterator[tuple]:
    """(key hash, row hash) of the rows in `buckets`, ordered by key hash, streamed by a server cursor."""
    q = sql.SQL("select k, h from ({src}) s where b = any({buckets}::pg_catalog.int4[]) order by k").format(
        src=source, buckets=sql.Literal(buckets))
    with snapshot(conn):
        _tune(conn, sort=True)
        with conn.cursor(name=f"fix7_diff_{id(source):x}") as cur:
            cur.itersize = STREAM_ROWS
            cur.execute(q)
            yield from cur


_END = object()


def _chain(head, rows: Iterator[tuple]) -> Iterator[tuple]:
    if head is _END:
        return
    yield head
    yield from rows


def _merge(anchor_rows: Iterator[tuple], after_rows: Iterator[tuple], keyed: bool) -> tuple[dict, dict]:
    """Exact added/removed/changed counts from two key-ordered streams, with a few key hashes of each kind.

    Keyed: one row per key, a key on one side only is added or removed, a different row hash is
    changed. Without a key the row hash is the key and rows are a multiset: counts are compared.
    """
    counts = {"added": 0, "removed": 0, "changed": 0}
    examples: dict[str, list] = {"added": [], "removed": [], "changed": []}

    def note(kind: str, key, n: int = 1) -> None:
        counts[kind] += n
        if len(examples[kind]) < EXAMPLES:
            examples[kind].append(key)

    def grouped(rows: Iterator[tuple]) -> Iterator[tuple]:
        if keyed:
            yield from rows
            return
        current, n = _END, 0
        for k, _h in rows:
            if k == current:
                n += 1
                continue
            if current is not _END:
                yield current, n
            current, n = k, 1
        if current is not _END:
            yield current, n

    a_it, b_it = grouped(anchor_rows), grouped(after_rows)
    a, b = next(a_it, _END), next(b_it, _END)
    while a is not _END or b is not _END:
        if b is _END or (a is not _END and a[0] < b[0]):
            note("removed", a[0], 1 if keyed else a[1])
            a = next(a_it, _END)
        elif a is _END or b[0] < a[0]:
            note("added", b[0], 1 if keyed else b[1])
            b = next(b_it, _END)
        else:
            if keyed and a[1] != b[1]:
                note("changed", a[0])
            elif not keyed and a[1] != b[1]:
                note("added" if b[1] > a[1] else "removed", a[0], abs(b[1] - a[1]))
            a, b = next(a_it, _END), next(b_it, _END)
    return counts, examples


def _key_examples(conn: psycopg.Connection, t: dict, key: list[str], key_hashes: list) -> list[str]:
    """Primary-key values (never other columns) of a few differing rows, for the operator."""
    if not key_hashes:
        return []
    q = sql.SQL("select {cols} from only {tab} t where pg_catalog.md5({kt})::pg_catalog.uuid = any(%s) limit {n}").format(
        cols=sql.SQL(", ").join(sql.SQL("pg_catalog.concat(t.{})").format(sql.Identifier(c)) for c in key),
        tab=qualified(t["schema"], t["name"]), kt=row_text("t", key), n=sql.Literal(EXAMPLES))
    with snapshot(conn):
        rows = conn.execute(q, (list(key_hashes),)).fetchall()
    if len(key) == 1:
        return sorted(str(r[0]) for r in rows)
    return sorted(", ".join(f"{c}={v}" for c, v in zip(key, r)) for r in rows)


def table_row_diff(anchor_conn: psycopg.Connection, after_conn: psycopg.Connection, a: dict, b: dict) -> dict:
    """Exact added/removed/changed counts for one table present on both sides; neither side is written."""
    columns = sorted(set(a["columns"]) & set(b["columns"]))
    key = a["key"] if a["key"] and a["key"] == b["key"] and set(a["key"]) <= set(columns) else None
    digits = bucket_hex_digits(max(a["rows"], b["rows"]))
    senders = compared_senders(a, b, columns)
    anchor_source, after_source = _bucket_source(a, senders, key, digits), _bucket_source(b, senders, key, digits)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fix7-diff") as pool:  # one side per core
        a_job = pool.submit(_bucket_summaries, anchor_conn, anchor_source)
        b_sum = _bucket_summaries(after_conn, after_source)
        a_sum = a_job.result()
    buckets = sorted(x for x in set(a_sum) | set(b_sum) if a_sum.get(x) != b_sum.get(x))
    result = {"table": f"{a['schema']}.{a['name']}", "added": 0, "removed": 0, "changed": 0,
              "key": key, "buckets": len(buckets)}
    if not buckets:
        return result
    a_rows, b_rows = _pairs(anchor_conn, anchor_source, buckets), _pairs(after_conn, after_source, buckets)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fix7-diff") as pool:  # both sides sort at once
        a_head, b_head = pool.submit(next, a_rows, _END), pool.submit(next, b_rows, _END)
        a_first, b_first = a_head.result(), b_head.result()
    counts, hashes = _merge(_chain(a_first, a_rows), _chain(b_first, b_rows), keyed=key is not None)
    result.update(counts)
    if key is not None:
        result["examples"] = {
            "added": _key_examples(after_conn, b, key, hashes["added"]),
            "removed": _key_examples(anchor_conn, a, key, hashes["removed"]),
            "changed": _key_examples(anchor_conn, a, key, hashes["changed"]),
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
    blobs = large_object_diff(anchor_fp.get("large_objects", {}), after_fp.get("large_objects", {}))
    return {"tables": tables, "schema": schema, "sequences": sequences, "large_objects": blobs,
            "empty": not tables and not schema and not errors and not any(blobs.values()),
            "tables_unchanged": skipped, "tables_compared": compared}


def fingerprint_differences(expected: dict, actual: dict) -> list[dict]:
    """Every place two fingerprints differ, by name only: the section (schema, tables, sequences), the object
    key, whether it is missing or extra, and for a changed entry which of its fields differ (never a value).

    Complete by construction: it walks every section and key of both fingerprints, so two fingerprints with
    no difference listed here are equal (and have the same anchor id).
    """
    out: list[dict] = []
    for section in sorted(set(expected) | set(actual)):
        a, b = expected.get(section), actual.get(section)
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b:
                out.append({"section": section, "object": None, "change": "section differs"})
            continue
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append({"section": section, "object": key, "change": "missing"})
            elif key not in a:
                out.append({"section": section, "object": key, "change": "extra"})
            elif a[key] != b[key]:
                entry = {"section": section, "object": key, "change": "changed"}
                if isinstance(a[key], dict) and isinstance(b[key], dict):
                    entry["fields"] = sorted(f for f in set(a[key]) | set(b[key]) if a[key].get(f) != b[key].get(f))
                out.append(entry)
    return out
