"""The restore diff: what the clone looks like after apply + rollback, against the snapshot anchor.

Tables whose row count and content hash match the anchor are skipped with no row work. For a table
that differs, rows are bucketed by a hash of their primary key (4096 or 65536 buckets) inside
PostgreSQL on both sides, and only the buckets whose (count, hash) summaries differ go further: the
anchor's (key hash, row hash) pairs of those buckets are relayed by binary COPY into a temporary
table of the after side's session, where one join gives exact added / removed / changed counts.
Python relays bytes and reads counts; it never holds rows. Rows are compared over the columns both
sides have, so a column the change added (and the rollback dropped, or forgot) never makes rows
differ: the column is a schema difference.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .fingerprint import qualified, row_hash, row_text, snapshot

EXAMPLES = 5
DIFF_SETTINGS = {"work_mem": "64MB", "enable_sort": "off"}  # hash aggregates: the planner overestimates groups


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


def bucket_hex_digits(rows: int) -> int:
    """4096 buckets for ordinary tables, 65536 for large ones, so a few scattered changes in a
    million rows touch a small share of the table."""
    return 3 if rows <= 65536 else 4


def _bucket_source(t: dict, columns: list[str], key: list[str] | None, digits: int) -> sql.Composable:
    """(bucket, key hash, row hash) per row; without a primary key the whole row is the key."""
    key_text = row_text("t", key) if key else row_text("t", columns)
    return sql.SQL(
        "select ('x' || substr(md5({kt}), 1, {digits}))::bit({bits})::int as b, md5({kt})::uuid as k, {h} as h "
        "from {tab} t").format(digits=sql.Literal(digits), bits=sql.Literal(4 * digits), kt=key_text,
                               h=row_hash(row_text("t", columns)), tab=qualified(t["schema"], t["name"]))


def _bucket_summaries(conn: psycopg.Connection, source: sql.Composable) -> dict[int, tuple]:
    q = sql.SQL("select b, count(*), coalesce(sum(h), 0) from ({src}) s group by b").format(src=source)
    with snapshot(conn):
        _tune(conn)
        return {b: (int(n), int(h)) for b, n, h in conn.execute(q).fetchall()}


def _tune(conn: psycopg.Connection) -> None:
    for name, value in DIFF_SETTINGS.items():
        conn.execute("select set_config(%s, %s, true)", (name, value))


def _in_buckets(source: sql.Composable, buckets: list[int]) -> sql.Composable:
    return sql.SQL("select k, h from ({src}) s where b = any({buckets}::int[])").format(
        src=source, buckets=sql.Literal(buckets))


def _relay_anchor_rows(anchor_conn: psycopg.Connection, after_conn: psycopg.Connection,
                       source: sql.Composable, buckets: list[int]) -> None:
    """Binary COPY of the anchor's (key hash, row hash) pairs into the after session's temp table."""
    after_conn.execute("create temp table fix7_diff_anchor (k uuid, h bigint) on commit drop")
    out_q = sql.SQL("copy ({}) to stdout (format binary)").format(_in_buckets(source, buckets))
    with snapshot(anchor_conn), anchor_conn.cursor().copy(out_q) as out, \
            after_conn.cursor().copy("copy fix7_diff_anchor (k, h) from stdin (format binary)") as into:
        for block in out:
            into.write(block)
    after_conn.execute("analyze fix7_diff_anchor")


_KEYED_SQL = """
create temp table fix7_diff_rows on commit drop as
select coalesce(s.k, a.k) as k,
       case when a.k is null then 'added' when s.k is null then 'removed' else 'changed' end as kind
from fix7_diff_anchor a full join ({after}) s on s.k = a.k
where a.k is null or s.k is null or a.h <> s.h
"""

_KEYLESS_SQL = """
select coalesce(sum(greatest(coalesce(s.n, 0) - coalesce(a.n, 0), 0)), 0),
       coalesce(sum(greatest(coalesce(a.n, 0) - coalesce(s.n, 0), 0)), 0)
from (select k, count(*) as n from fix7_diff_anchor group by k) a
full join (select k, count(*) as n from ({after}) x group by k) s on s.k = a.k
"""


def _key_examples(conn: psycopg.Connection, t: dict, key: list[str], key_hashes: list) -> list[str]:
    """Primary-key values (never other columns) of a few differing rows, for the operator."""
    if not key_hashes:
        return []
    q = sql.SQL("select {cols} from {tab} t where md5({kt})::uuid = any(%s) limit {n}").format(
        cols=sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in key),
        tab=qualified(t["schema"], t["name"]), kt=row_text("t", key), n=sql.Literal(EXAMPLES))
    with snapshot(conn):
        rows = conn.execute(q, (list(key_hashes),)).fetchall()
    if len(key) == 1:
        return sorted(str(r[0]) for r in rows)
    return sorted(", ".join(f"{c}={v}" for c, v in zip(key, r)) for r in rows)


def table_row_diff(anchor_conn: psycopg.Connection, after_conn: psycopg.Connection, a: dict, b: dict) -> dict:
    """Exact added/removed/changed counts for one table present on both sides."""
    columns = sorted(set(a["columns"]) & set(b["columns"]))
    key = a["key"] if a["key"] and a["key"] == b["key"] and set(a["key"]) <= set(columns) else None
    digits = bucket_hex_digits(max(a["rows"], b["rows"]))
    anchor_source, after_source = _bucket_source(a, columns, key, digits), _bucket_source(b, columns, key, digits)
    a_sum, b_sum = _bucket_summaries(anchor_conn, anchor_source), _bucket_summaries(after_conn, after_source)
    buckets = sorted(x for x in set(a_sum) | set(b_sum) if a_sum.get(x) != b_sum.get(x))
    result = {"table": f"{a['schema']}.{a['name']}", "added": 0, "removed": 0, "changed": 0,
              "key": key, "buckets": len(buckets)}
    if not buckets:
        return result
    hashes: dict[str, list] = {}
    with snapshot(after_conn, read_only=False):
        _tune(after_conn)
        _relay_anchor_rows(anchor_conn, after_conn, anchor_source, buckets)
        after_rows = _in_buckets(after_source, buckets)
        if key is None:
            added, removed = after_conn.execute(sql.SQL(_KEYLESS_SQL).format(after=after_rows)).fetchone()
            result.update(added=int(added), removed=int(removed))
        else:
            after_conn.execute(sql.SQL(_KEYED_SQL).format(after=after_rows))
            counts = dict(after_conn.execute("select kind, count(*) from fix7_diff_rows group by kind").fetchall())
            result.update({kind: int(counts.get(kind, 0)) for kind in ("added", "removed", "changed")})
            for kind in ("added", "removed", "changed"):
                hashes[kind] = [r[0] for r in after_conn.execute(
                    "select k from fix7_diff_rows where kind = %s order by k limit %s", (kind, EXAMPLES))]
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
    return {"tables": tables, "schema": schema, "sequences": sequences,
            "empty": not tables and not schema and not errors,
            "tables_unchanged": skipped, "tables_compared": compared}
