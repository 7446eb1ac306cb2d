"""Warnings that name the statement and line: index without CONCURRENTLY, constraint without NOT VALID,
rewrites, volatile defaults, ACCESS EXCLUSIVE on a hot table."""

from __future__ import annotations

from .patterns import patterns
from .units import ACCESS_EXCLUSIVE, bytes_text, scale_note, strength


def resolve_table(meter, parts: list[str]):
    by_name = {(r.schema, r.name): r for r in meter.baseline.values()}
    if len(parts) >= 2:
        return by_name.get((parts[-2], parts[-1]))
    for schema in meter.schemas:
        r = by_name.get((schema, parts[0]))
        if r is not None:
            return r
    return None


def chunk_of(statements: list[dict], line: int) -> dict | None:
    """The measured piece a statement at `line` ran in (the last piece starting at or before it)."""
    best = None
    for s in statements:
        if s["line"] <= line:
            best = s
    return best


def warnings(meter, lexed, impact: dict) -> list[dict]:
    settings = meter.settings
    st = meter.statements
    out: list[dict] = []
    explained: set[tuple[int, str]] = set()

    def add(rule: str, line: int, kind: str, relation: str | None, message: str, **extra):
        out.append({"rule": rule, "line": line, "kind": kind, "relation": relation, "message": message, **extra})

    lab = meter.label
    for stmt in (lexed.statements if lexed is not None else []):
        for p in patterns(lexed.source(stmt), stmt.line):
            rel = resolve_table(meter, p.table)
            if rel is None:
                continue  # a table the change itself creates: no one is using it yet
            piece = chunk_of(st, p.line)
            measured = piece is not None and not piece.get("failed")
            kind = piece["kind"] if piece else "?"
            scale = scale_note(settings, rel.qname)
            held = [lk for lk in impact["locks"] if piece and lk["line"] == piece["line"]
                    and lk["relation"] == rel.qname and not lk["new_relation"]]
            strongest = max(held, key=lambda lk: strength(lk["mode"]), default=None)
            lock_text = (f"; measured: {strongest['mode']} on it for {strongest['held_s']:.2f} s to the end of the "
                         "transaction") if strongest else ""
            if p.rule == "index_without_concurrently":
                size = meter.sizes.get(rel.oid) if rel.oid in meter.baseline else None
                rows = max(settings.clone_rows.get(rel.qname) or 0, settings.production_rows.get(rel.qname) or 0)
                if (size or 0) >= settings.index_warn_bytes or rows >= settings.index_warn_rows:
                    add("index_without_concurrently", p.line, kind, rel.qname,
                        f"{lab} line {p.line}: CREATE INDEX without CONCURRENTLY on {rel.qname} "
                        f"({bytes_text(size)} in the clone{'; ' + scale if scale else ''}) blocks every write to it "
                        f"while the index builds{lock_text}; in production build it with CREATE INDEX "
                        "CONCURRENTLY, outside this transaction (it cannot run inside one)")
            elif p.rule == "constraint_without_not_valid":
                add("constraint_without_not_valid", p.line, kind, rel.qname,
                    f"{lab} line {p.line}: {p.detail} added to {rel.qname} without NOT VALID checks every "
                    f"existing row while it holds its lock{lock_text}{' (' + scale + ')' if scale else ''}; add it "
                    "NOT VALID, then VALIDATE CONSTRAINT in a later transaction")
            elif p.rule == "column_type_change" and measured:
                rw = [r for r in piece["rewrites"] if r["relation"] == rel.qname]
                if rw:
                    explained.add((piece["line"], rel.qname))
                    add("column_type_change_rewrite", p.line, kind, rel.qname,
                        f"{lab} line {p.line}: ALTER COLUMN {p.detail} TYPE {p.extra.get('type') or '?'} rewrote "
                        f"{rel.qname} ({bytes_text(rw[0]['size_before_bytes'])} -> {bytes_text(rw[0]['size_after_bytes'])}) "
                        f"and rebuilt its indexes{lock_text}{' (' + scale + ')' if scale else ''}")
            elif p.rule == "column_type_change":
                add("column_type_change_rewrite", p.line, kind, rel.qname,
                    f"{lab} line {p.line}: ALTER COLUMN {p.detail} TYPE may rewrite {rel.qname}; not measured "
                    "(the change stopped before it)")
            elif p.rule == "add_column":
                volatile = [f for f in p.extra["functions"] if f in meter.volatile]
                old = meter.server_version and meter.server_version < 110000 and p.extra["has_default"]
                why = (f"a volatile DEFAULT ({', '.join(f + '()' for f in volatile)})" if volatile else
                       "a serial type" if p.extra["serial"] else
                       "an identity or stored generated value" if p.extra["identity"] else
                       "a DEFAULT (PostgreSQL before 11 rewrites for any default)" if old else None)
                if why is None:
                    continue
                rw = [r for r in piece["rewrites"] if r["relation"] == rel.qname] if measured else []
                if rw:
                    explained.add((piece["line"], rel.qname))
                what = (f"rewrote {rel.qname} ({bytes_text(rw[0]['size_before_bytes'])} -> "
                        f"{bytes_text(rw[0]['size_after_bytes'])})") if rw else f"rewrites {rel.qname}"
                add("volatile_default", p.line, kind, rel.qname,
                    f"{lab} line {p.line}: ADD COLUMN {p.detail} with {why} {what}: every row is written again "
                    f"under ACCESS EXCLUSIVE{lock_text}{' (' + scale + ')' if scale else ''}; add the column "
                    "without it, then fill it in batches")
    for s in st:
        for r in s["rewrites"]:
            if r["relkind"] == "index" or (s["line"], r["relation"]) in explained:
                continue
            scale = scale_note(settings, r.get("table"))
            add("table_rewrite", s["line"], s["kind"], r["relation"],
                f"{lab} line {s['line']} ({s['kind']}) gave {r['relation']} new storage "
                f"({bytes_text(r['size_before_bytes'])} -> {bytes_text(r['size_after_bytes'])}){' (' + scale + ')' if scale else ''}")
    for lk in impact["locks"]:
        if lk["mode"] == ACCESS_EXCLUSIVE and not lk["new_relation"] and lk["relation"] in settings.hot_tables:
            add("hot_table_access_exclusive", lk["line"], lk["kind"], lk["relation"],
                f"{lab} line {lk['line']} ({lk['kind']}) holds ACCESS EXCLUSIVE on {lk['relation']}, which the "
                f"contract marks hot, for {lk['held_s']:.2f} s (to the end of the transaction): every read and "
                f"write of it waits{' (' + lk['scale'] + ')' if lk.get('scale') else ''}", held_s=lk["held_s"])
    out.sort(key=lambda w: (w["line"], w["rule"]))
    return out
