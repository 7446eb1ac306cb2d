"""Proof that a restored clone points at nothing live: catalog and outward-pointer columns, in SQL.

Every check runs inside PostgreSQL and returns per-host summaries, never whole tables. A pointer
passes only when its host is local, reserved (.invalid, .test, .example, .localhost) or on the
operator's allow list; anything unreadable fails closed.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from ..contract.from_yaml import default_contract
from ..dumps.screening import OUTWARD_EXTENSIONS, TRUSTED_EXTENSIONS
from ..postgres.hosts import HostPolicy, redact_url
from ..postgres.proof_sql import as_text
from ..shared.model import Finding

# Addresses recorded as history, not places anything connects to.
HISTORY_COLUMNS = {("directus_activity", "ip"), ("directus_activity", "origin"), ("directus_sessions", "ip"),
                   ("directus_sessions", "origin")}
HISTORY_COLUMN_NAMES = {"user_agent"}
SAMPLE_KEYS = 5
LARGE_VALUE_BYTES = 2 << 20   # longer values are searched in windows of VALUE_WINDOW characters ...
VALUE_WINDOW = 16 << 20       # (each window's start is counted in characters from the value's start)
VALUE_OVERLAP = 4 << 10       # ... overlapping by more than any host name is long

_URL_HOST_RE = r"^\s*[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#\s]*@)?(\[[^]]*\]|[^:/?#\s]+)"
_HOST_CHARS = "a-z0-9._-"
_USER_SCHEMAS = "n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and n.nspname !~ '^pg_temp'"


def _glob_core(pattern: str) -> str:
    core = []
    for ch in pattern.strip().lower():
        if ch == "*":
            core.append(f"[{_HOST_CHARS}]*")
        elif ch == "?":
            core.append(f"[{_HOST_CHARS}]")
        elif ch.isalnum() or ch in "-_":
            core.append(ch)
        else:
            core.append("\\" + ch)
    return "".join(core)


def production_regex(policy: HostPolicy) -> str | None:
    """The production host globs ('*.corp.internal') as one POSIX regex whose group 1 is the host in free text."""
    if not policy.production_patterns:
        return None
    cores = "|".join(f"(?:{_glob_core(p)})" for p in policy.production_patterns)
    return f"(?:^|[^{_HOST_CHARS}])({cores})(?=$|[^{_HOST_CHARS}])"


def _literal_runs(patterns) -> tuple[str, ...] | None:
    """Each glob's longest run without a wildcard (a value the full regex matches holds one of them), or None when a glob has no such run or one that is not plain
    ASCII (then every value goes to the full regex)."""
    runs = []
    for p in patterns:
        run = max(re.split(r"[*?]", p.strip().lower()), key=len)
        if not run or not run.isascii():
            return None
        runs.append(run)
    return tuple(runs)


def _prefilter(v: sql.Composable, runs: tuple[str, ...] | None) -> sql.Composable:
    """A test cheaper than the regex that no value the regex matches fails: a value with any character beyond
    ASCII always goes on to the regex (its collation may case-fold it in ways ASCII lower-casing does not), and
    an ASCII one only if, lower-cased byte by byte (collation C), it holds one of the literal runs."""
    if not runs:
        return sql.SQL("")
    ascii_lower = sql.SQL('pg_catalog.lower({} COLLATE pg_catalog."C")').format(v)
    holds = sql.SQL(" or ").join(sql.SQL("pg_catalog.strpos({}, {}) > 0").format(ascii_lower, sql.Literal(r))
                                 for r in runs)
    # not char_length: a SQL_ASCII dump restored as UTF8 can hold bytes that are no character, and counting
    # characters raises on them, where the regex, lower (collation C) and strpos read them as they are
    return sql.SQL("({v} OPERATOR(pg_catalog.~) {beyond_ascii} or {holds}) and ").format(
        v=v, beyond_ascii=sql.Literal(r"[^\x01-\x7f]"), holds=holds)


def display_url(url: str) -> str:
    """Only scheme://host[:port]/…: userinfo, path and query can all carry tokens (webhook paths often do)."""
    red = redact_url(url)
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]*)(.*)$", red)
    if not m:
        return "<unparseable url>"
    return m.group(1) + ("/…" if m.group(2).strip("/") else "")


def _rows(conn: psycopg.Connection, query, params=None) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def _catalog_findings(conn: psycopg.Connection, policy: HostPolicy) -> list[Finding]:
    out: list[Finding] = []

    def host_note(host: str | None) -> str:
        if not host:
            return "no host option (it may use a default or a service file)"
        if policy.production_match(host):
            return f"host {host} matches production pattern {policy.production_match(host)!r}"
        return f"host {host}" + (" (isolated)" if policy.is_isolated(host) else " (not isolated)")

    for (name,) in _rows(conn, "select fdwname from pg_foreign_data_wrapper order by 1"):
        out.append(Finding("foreign_data_wrapper", f"The clone carries foreign-data wrapper {name}; a clone must "
                           "carry no way to reach another server.", extra={"isolation": True, "object": name}))
    for name, host, fdw in _rows(conn, """
            select s.srvname,
                   (select option_value from pg_options_to_table(s.srvoptions) where option_name in ('host', 'hostaddr')
                    order by option_name limit 1), w.fdwname
            from pg_foreign_server s join pg_foreign_data_wrapper w on w.oid = s.srvfdw order by 1"""):
        out.append(Finding("foreign_server", f"The clone carries foreign server {name} ({fdw}, {host_note(host)}); "
                           "a clone must carry no foreign servers.",
                           extra={"isolation": True, "object": name, "host": host}))
    for server, user in _rows(conn, "select srvname, usename from pg_user_mappings order by 1, 2"):
        out.append(Finding("user_mapping", f"The clone carries a user mapping for {user} on server {server} (its "
                           "options are not shown: they hold credentials); a clone must carry none.",
                           extra={"isolation": True, "object": f"{user}@{server}"}))
    for table, server in _rows(conn, """
            select ft.ftrelid::regclass::text, s.srvname from pg_foreign_table ft
            join pg_foreign_server s on s.oid = ft.ftserver order by 1"""):
        out.append(Finding("foreign_table", f"The clone carries foreign table {table} on server {server}.",
                           table=table, extra={"isolation": True, "object": table}))
    # subconninfo is readable by superusers only; any subscription at all is refused, so its name will do
    for name, enabled in _rows(conn, """
            select subname, subenabled from pg_subscription
            where subdbid = (select oid from pg_database where datname = pg_catalog.current_database())
            order by 1"""):
        out.append(Finding("subscription", f"The clone carries subscription {name} "
                           f"({'enabled' if enabled else 'disabled'}); a clone must carry no subscriptions.",
                           extra={"isolation": True, "object": name}))
    for (name,) in _rows(conn, "select pubname from pg_publication order by 1"):
        out.append(Finding("publication", f"The clone carries publication {name}; nothing subscribes to it on the "
                           "rehearsal server, but it was not expected.", severity="warning",
                           extra={"isolation": False, "object": name}))
    for (name,) in _rows(conn, "select extname from pg_extension order by 1"):
        if name in OUTWARD_EXTENSIONS or name not in TRUSTED_EXTENSIONS:
            outward = name in OUTWARD_EXTENSIONS
            out.append(Finding("extension_not_allowed", f"The clone has extension {name} installed"
                               + (", which can connect to other hosts." if outward else
                                  ", which is not on the trusted-extension allow list."),
                               extra={"isolation": outward, "object": name}))
    for (fn,) in _rows(conn, f"""
            select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where {_USER_SCHEMAS}
              and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid
                              and d.deptype = 'e')
              and p.prosrc ~* '(\\mdblink\\w*\\s*\\(|\\mpostgres_fdw\\M|\\mhost\\s*=\\s*[^\\s'']+)'
            order by 1"""):
        out.append(Finding("remote_call", f"Function {fn} calls dblink / postgres_fdw or carries a connection "
                           "string; a clone must not reach another server.", extra={"isolation": True, "object": fn}))
    for (view,) in _rows(conn, f"""
            select c.oid::regclass::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relkind in ('v', 'm') and {_USER_SCHEMAS}
              and pg_get_viewdef(c.oid) ~* '(\\mdblink\\w*\\s*\\(|\\mpostgres_fdw\\M)' order by 1"""):
        out.append(Finding("remote_call", f"View {view} calls dblink / postgres_fdw; a clone must not reach another "
                           "server.", table=view, extra={"isolation": True, "object": view}))
    return out


def settings_findings(planted: list[dict]) -> list[Finding]:
    """Database- and role-level settings the dump placed: they would steer every later session."""
    out = []
    for p in planted:
        scope = f"database {p['database']}" if p["database"] else ""
        scope += (" and " if scope and p["role"] else "") + (f"role {p['role']}" if p["role"] else "")
        out.append(Finding("database_setting", f"The clone sets {p['name']} for {scope} (value not shown); a "
                           "sanitized clone carries no database or role settings, which would steer every "
                           "session in it.", extra={"isolation": True, "object": p["name"]}))
    return out


def _table_exists(conn, table: str, column: str) -> tuple[str, str, int] | None:
    """(schema, table, column type oid) of the first table holding `column`, or None."""
    row = conn.execute("""
        select n.nspname, c.relname, a.atttypid::pg_catalog.int8 from pg_class c join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attname = %s and not a.attisdropped
        where c.relname = %s and c.relkind in ('r', 'p') order by n.nspname = 'public' desc limit 1""",
                       (column, table)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def _pk_expr(conn, schema: str, table: str) -> sql.Composable:
    cols = [r[0] for r in conn.execute("""
        select a.attname from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass and i.indisprimary
        order by array_position(i.indkey::int2[], a.attnum)""", (schema, table))]
    if not cols:
        return sql.SQL("ctid::pg_catalog.text")
    # concat_ws takes "any" and prints with each type's output function: no user cast can intercept it
    return sql.SQL("pg_catalog.concat_ws(',', {})").format(sql.SQL(", ").join(map(sql.Identifier, cols)))


def _holds_out_of_line(conn, schema: str, table: str) -> bool:
    """Whether the table, or a table a scan of it reads (its partitions and inheritors), stores any value out of
    line (TOAST). A value kept in its row fits a page: even compressed it is far below LARGE_VALUE_BYTES, so a
    table with empty TOAST needs no windowed search, and its columns are read in one scan."""
    return bool(conn.execute("""
        with recursive tree(oid) as (
            select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
            where n.nspname = %s and c.relname = %s
            union select i.inhrelid from pg_catalog.pg_inherits i join tree t on i.inhparent = t.oid)
        select coalesce(pg_catalog.bool_or(pg_catalog.pg_relation_size(c.reltoastrelid) > 0), false)
        from tree join pg_catalog.pg_class c on c.oid = tree.oid where c.reltoastrelid <> 0""",
                             (schema, table)).fetchone()[0])


def _pointer_findings(conn, policy: HostPolicy, pointers) -> tuple[list[Finding], list[dict]]:
    out: list[Finding] = []
    checked: list[dict] = []
    for p in pointers:
        loc = _table_exists(conn, p["table"], p["column"])
        if not loc:
            continue
        schema, table, col_type = loc
        col = sql.Identifier(p["column"])
        expr = sql.SQL("({} OPERATOR(pg_catalog.->>) {})").format(col, sql.Literal(p["json_key"])) \
            if p.get("json_key") else as_text(col, col_type)
        status_loc = _table_exists(conn, p["table"], p["status_column"]) if p.get("status_column") else None
        status = as_text(sql.Identifier(p["status_column"]), status_loc[2]) if status_loc \
            else sql.SQL("null::pg_catalog.text")
        conds = [sql.SQL("{} is not null and btrim({}) <> ''").format(expr, expr)]
        for k, v in (p.get("where") or {}).items():
            conds.append(sql.SQL("{} OPERATOR(pg_catalog.=) {}").format(as_text(sql.Identifier(k)),
                                                                          sql.Literal(str(v))))
        q = sql.SQL("""
            with p as (select {pk} as row_key, {expr} as url, {status} as status from {tbl} where {cond}),
            h as (select row_key, url, status, lower(substring(url from {rx})) as host from p)
            select host, count(*), (array_agg(row_key order by row_key))[1:{n}],
                   array_agg(distinct coalesce(status, '')), min(url)
            from h group by host order by host nulls first""").format(
            pk=_pk_expr(conn, schema, table), expr=expr, status=status, tbl=sql.Identifier(schema, table),
            cond=sql.SQL(" and ").join(conds), rx=sql.Literal(_URL_HOST_RE), n=sql.Literal(SAMPLE_KEYS))
        column = p["column"] + (f"->>'{p['json_key']}'" if p.get("json_key") else "")
        rows = conn.execute(q).fetchall()
        checked.append({"table": table, "column": column, "hosts": len(rows)})
        for host, count, keys, statuses, sample in rows:
            statuses = sorted(s for s in statuses if s)
            extra = {"isolation": True, "host": host, "rows": count, "row_keys": keys, "url": display_url(sample)
                     if host else None, "source_column": p["column"]}
            if statuses:
                extra["status"] = statuses
            what = f"{table}.{column}"
            state = f" ({'/'.join(statuses)})" if statuses else ""
            if host is None:
                out.append(Finding("outward_pointer", f"{count} value(s) of {what}{state} are not URLs with a host "
                                   f"(first row {keys[0]}), so their target cannot be proven isolated.",
                                   table=table, column=column, row_key=keys[0], extra=extra))
            elif not policy.is_isolated(host.strip("[]")):
                hit = policy.production_match(host.strip("[]"))
                why = f"matches production pattern {hit!r}" if hit else "is neither local, reserved nor allowed"
                out.append(Finding("outward_pointer", f"{what}{state} points at {host}, which {why} "
                                   f"({count} row(s), first {keys[0]}: {display_url(sample)}).",
                                   table=table, column=column, row_key=keys[0], extra=extra))
            else:
                out.append(Finding("outward_pointer", f"{what}{state} points at {host}, an isolated host.",
                                   severity="note", table=table, column=column, row_key=keys[0], extra=extra))
    return out, checked


def _production_scan(conn, policy: HostPolicy) -> list[Finding]:
    """Every text/varchar/char/json/jsonb column of every user table, searched for production hosts in SQL."""
    rx = production_regex(policy)
    if not rx:
        return []
    cols = conn.execute(f"""
        select n.nspname, c.relname, a.attname, a.atttypid::pg_catalog.int8 from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        join pg_type t on t.oid = a.atttypid
        left join pg_type bt on bt.oid = t.typbasetype
        where c.relkind in ('r', 'p') and {_USER_SCHEMAS}
          and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                          and d.deptype = 'e')
          and (coalesce(bt.oid, t.oid) in ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype,
                                            'json'::regtype, 'jsonb'::regtype, 'name'::regtype)
               or t.typcategory = 'S')
        order by 1, 2, a.attnum""").fetchall()
    out: list[Finding] = []
    by_table: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for schema, table, column, type_oid in cols:
        by_table.setdefault((schema, table), []).append((column, type_oid))
    runs = _literal_runs(policy.production_patterns)
    for (schema, table), columns in by_table.items():
        pk = _pk_expr(conn, schema, table)
        if _holds_out_of_line(conn, schema, table):
            hits = [(column, *hit) for column, type_oid in columns
                    for hit in _column_scan(conn, schema, table, column, type_oid, pk, rx)]
        else:  # every value is in its row: none can be large, one scan for all its columns
            hits = _one_scan(conn, schema, table, columns, pk, rx, runs)
        out += [_production_finding(policy, table, column, host, count, keys) for column, host, count, keys in hits]
    return out


def _column_scan(conn, schema: str, table: str, column: str, type_oid: int, pk: sql.Composable,
                 rx: str) -> list[tuple[str, int, list]]:
    """(host, rows, sample keys) for every production host in one column of a table that stores values out of
    line; a value longer than LARGE_VALUE_BYTES is matched in overlapping windows: the server's regex works on
    four bytes a character, and refuses a text of more than 256 MB."""
    v = as_text(sql.Identifier(column), type_oid)
    large = sql.SQL("coalesce(pg_catalog.octet_length({v}) > {lim}, false)").format(
        v=v, lim=sql.Literal(LARGE_VALUE_BYTES))
    if type_oid not in (25, 1043):  # text, varchar: the length is read from the stored header; else only a
        # value stored larger than 16 kB is printed to be measured (a smaller one is at most a few MB)
        large = sql.SQL("case when coalesce(pg_catalog.pg_column_size({c}) > {small}, false) then {large} "
                        "else false end").format(c=sql.Identifier(column), small=sql.Literal(16 << 10), large=large)
    q = sql.SQL("""
        select lower(m[1]) as host, count(distinct row_key), (array_agg(distinct row_key))[1:{n}]
        from (select {pk} as row_key, {v} as v from {tbl} where case when {large} then false else {v} ~* {rx} end
              union all
              select s.row_key, pg_catalog.substr(s.v, o::pg_catalog.int4, {w} + {ov}) from
              (select {pk} as row_key, {v} operator(pg_catalog.||) '' as v from {tbl} where {large} offset 0) s
              cross join lateral pg_catalog.generate_series(1, pg_catalog.length(s.v), {w}) o
              where pg_catalog.substr(s.v, o::pg_catalog.int4, {w} + {ov}) ~* {rx}) s
        cross join lateral regexp_matches(v, {rx}, 'gi') m
        group by 1 order by 1""").format(
        pk=pk, v=v, tbl=sql.Identifier(schema, table), large=large,
        rx=sql.Literal(rx), n=sql.Literal(SAMPLE_KEYS), w=sql.Literal(VALUE_WINDOW), ov=sql.Literal(VALUE_OVERLAP))
    return conn.execute(q).fetchall()


def _one_scan(conn, schema: str, table: str, columns: list[tuple[str, int]], pk: sql.Composable,
              rx: str, runs: tuple[str, ...] | None) -> list[tuple[str, str, int, list]]:
    """(column, host, rows, sample keys) for every production host in any of `columns`, in one scan of a table
    whose values are all in their rows (none large): each row is read once and tested column by column until one
    matches; only the rows that matched are read again (by ctid) for their key and hosts. In column, then host
    order."""
    tbl = sql.Identifier(schema, table)
    texts = [as_text(sql.Identifier(c), t) for c, t in columns]
    any_match = sql.SQL(" or ").join(sql.SQL("({}{} ~* {})").format(_prefilter(v, runs), v, sql.Literal(rx))
                                     for v in texts)
    named = sql.SQL(", ").join(sql.SQL("{} as {}").format(v, sql.Identifier(f"v{i}")) for i, v in enumerate(texts))
    values = sql.SQL(", ").join(sql.SQL("({}, k.{})").format(sql.Literal(i), sql.Identifier(f"v{i}"))
                                for i in range(len(columns)))
    q = sql.SQL("""
        with hits as (select ctid as fix7_tid from {tbl} where {any_match})
        select u.i, lower(m[1]) as host, count(distinct k.row_key), (array_agg(distinct k.row_key))[1:{n}]
        from hits h
        cross join lateral (select {pk} as row_key, {named} from {tbl}
                            where ctid OPERATOR(pg_catalog.=) h.fix7_tid) k
        cross join lateral (values {values}) u(i, v)
        cross join lateral regexp_matches(u.v, {rx}, 'gi') m
        group by 1, 2 order by 1, 2""").format(
        tbl=tbl, any_match=any_match, pk=pk, named=named, values=values, rx=sql.Literal(rx),
        n=sql.Literal(SAMPLE_KEYS))
    return [(columns[i][0], host, count, keys) for i, host, count, keys in conn.execute(q).fetchall()]


def _production_finding(policy: HostPolicy, table: str, column: str, host: str, count: int, keys: list) -> Finding:
    hit = policy.production_match(host) or "a production pattern"
    keys = sorted(keys)
    if (table, column) in HISTORY_COLUMNS or column in HISTORY_COLUMN_NAMES:
        return Finding("production_host_in_history", f"{table}.{column} records production host {host} "
                       f"as history in {count} row(s) (first {keys[0]}); history is not a pointer.",
                       severity="note", table=table, column=column, row_key=keys[0],
                       extra={"host": host, "rows": count, "pattern": hit})
    return Finding("production_host", f"{table}.{column} names production host {host} (pattern "
                   f"{hit!r}) in {count} row(s), first {keys[0]}; a clone must not point at production.",
                   table=table, column=column, row_key=keys[0],
                   extra={"isolation": True, "host": host, "rows": count, "row_keys": keys, "pattern": hit})


def prove_isolation(conn: psycopg.Connection, policy: HostPolicy,
                    contract_pointer_columns: list[dict] | tuple[dict, ...] | None = None) -> list[Finding]:
    """All isolation findings for the clone behind `conn` (an admin connection to it)."""
    if contract_pointer_columns is None:  # the birth surface's pointers, from the default contract
        contract_pointer_columns = default_contract().pointers
    pointers = contract_pointer_columns
    findings = _catalog_findings(conn, policy)
    pointer_findings, _checked = _pointer_findings(conn, policy, pointers)
    findings += pointer_findings
    covered = {(f.table, f.extra.get("source_column"), f.extra.get("host")) for f in pointer_findings if f.is_error}
    findings += [f for f in _production_scan(conn, policy)
                 if (f.table, f.column, f.extra.get("host")) not in covered]
    return findings


def isolation_proven(findings: list[Finding]) -> bool:
    return not any(f.is_error for f in findings)
