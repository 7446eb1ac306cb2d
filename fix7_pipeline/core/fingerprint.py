"""The snapshot anchor's logical fingerprint, computed inside PostgreSQL.

Three parts: every schema object of the user schemas (keyed by name, hashed definition), every
user table's row count and order-independent content hash (a sum of 64-bit row hashes, so no sort),
and every sequence's position. The fingerprint is small JSON; its sha256 is the anchor id. Rows never
leave the server.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager

import psycopg
from psycopg import pq, sql

USER_SCHEMAS = """
    select oid, nspname from pg_namespace
    where nspname not in ('pg_catalog', 'information_schema')
      and nspname !~ '^pg_toast' and nspname !~ '^pg_temp_'
"""

def _acl(column: str, kind: str | None, owner: str | None) -> str:
    """Privileges as a sorted list, NULL read as the owner's defaults (columns: none), so GRANT + REVOKE
    round trips and ACL item order leave no difference."""
    base = f"coalesce({column}, acldefault('{kind}', {owner}))" if kind else column
    return f"(select string_agg(x::text, ',' order by x::text) from unnest({base}) x)"


# Each branch yields (object key, definition text); objects that belong to an extension are keyed
# only as the extension itself. Columns are keyed by name (never attnum) and dropped columns are
# not objects, so a column added and then dropped leaves no trace. Privileges are compared against the
# owner's defaults, so a GRANT undone by a REVOKE leaves no trace either.
SCHEMA_OBJECTS_SQL = f"""
with ns as ({USER_SCHEMAS}),
ext as (select classid, objid from pg_depend where deptype = 'e'),
rel as (
  select c.*, n.nspname from pg_class c join ns n on n.oid = c.relnamespace
  where not exists (select 1 from ext where ext.classid = 'pg_class'::regclass and ext.objid = c.oid)
)
select key, md5(def) from (
  select 'schema ' || n.nspname as key, coalesce(obj_description(n.oid, 'pg_namespace'), '') as def
  from ns n

  union all
  select case r.relkind when 'f' then 'foreign table ' else 'table ' end || r.nspname || '.' || r.relname,
    concat_ws('|', r.relkind, r.relpersistence, pg_get_partkeydef(r.oid), pg_get_expr(r.relpartbound, r.oid),
              array_to_string(r.reloptions, ','), r.relrowsecurity, r.relforcerowsecurity,
              {_acl('r.relacl', 'r', 'r.relowner')},
              obj_description(r.oid, 'pg_class'),
              (select s.srvname || ':' || coalesce(array_to_string(ft.ftoptions, ','), '')
               from pg_foreign_table ft join pg_foreign_server s on s.oid = ft.ftserver
               where ft.ftrelid = r.oid))
  from rel r where r.relkind in ('r', 'p', 'f')

  union all
  select case r.relkind when 'm' then 'materialized view ' else 'view ' end || r.nspname || '.' || r.relname,
    concat_ws('|', pg_get_viewdef(r.oid), array_to_string(r.reloptions, ','),
              {_acl('r.relacl', 'r', 'r.relowner')},
              obj_description(r.oid, 'pg_class'))
  from rel r where r.relkind in ('v', 'm')

  union all
  select 'column ' || r.nspname || '.' || r.relname || '.' || a.attname,
    concat_ws('|', format_type(a.atttypid, a.atttypmod), case when a.attnotnull then 'not null' end,
              pg_get_expr(d.adbin, d.adrelid), nullif(a.attgenerated, ''), nullif(a.attidentity, ''),
              case when a.attcollation <> t.typcollation then a.attcollation::regcollation::text end,
              col_description(r.oid, a.attnum), {_acl('a.attacl', None, None)})
  from rel r
  join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  where r.relkind in ('r', 'p', 'f')

  union all
  select 'constraint ' || n.nspname || '.' || coalesce(cr.relname, ct.typname, '') || '.' || co.conname,
    concat_ws('|', co.contype, pg_get_constraintdef(co.oid))
  from pg_constraint co join ns n on n.oid = co.connamespace
  left join pg_class cr on cr.oid = co.conrelid
  left join pg_type ct on ct.oid = co.contypid

  union all
  select 'index ' || r.nspname || '.' || r.relname,
    concat_ws('|', pg_get_indexdef(r.oid), case when not i.indisvalid then 'invalid' end,
              case when i.indisclustered then 'clustered' end)
  from rel r join pg_index i on i.indexrelid = r.oid
  where r.relkind in ('i', 'I')

  union all
  select 'sequence ' || r.nspname || '.' || r.relname,
    concat_ws('|', format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
              s.seqcycle, {_acl('r.relacl', 's', 'r.relowner')},
              (select dr.refobjid::regclass::text || '.' || da.attname
               from pg_depend dr join pg_attribute da on da.attrelid = dr.refobjid and da.attnum = dr.refobjsubid
               where dr.classid = 'pg_class'::regclass and dr.objid = r.oid and dr.deptype in ('a', 'i')
                 and dr.refclassid = 'pg_class'::regclass limit 1))
  from rel r join pg_sequence s on s.seqrelid = r.oid

  union all
  select case p.prokind when 'p' then 'procedure ' when 'a' then 'aggregate ' else 'function ' end
           || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
    concat_ws('|', case when p.prokind = 'a'
                        then (select concat_ws(',', g.aggtransfn, g.aggfinalfn, g.aggtranstype::regtype,
                                               g.agginitval, g.aggkind)
                              from pg_aggregate g where g.aggfnoid = p.oid)
                        else pg_get_functiondef(p.oid) end,
              {_acl('p.proacl', 'f', 'p.proowner')}, obj_description(p.oid, 'pg_proc'))
  from pg_proc p join ns n on n.oid = p.pronamespace
  where not exists (select 1 from ext where ext.classid = 'pg_proc'::regclass and ext.objid = p.oid)

  union all
  select 'trigger ' || r.nspname || '.' || r.relname || '.' || tg.tgname,
    concat_ws('|', pg_get_triggerdef(tg.oid), tg.tgenabled)
  from rel r join pg_trigger tg on tg.tgrelid = r.oid
  where not tg.tgisinternal

  union all
  select 'type ' || n.nspname || '.' || t.typname,
    concat_ws('|', t.typtype,
      case t.typtype
        when 'e' then (select string_agg(e.enumlabel, ',' order by e.enumsortorder)
                       from pg_enum e where e.enumtypid = t.oid)
        when 'd' then concat_ws(',', format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault)
        when 'r' then (select concat_ws(',', rg.rngsubtype::regtype, rg.rngsubdiff)
                       from pg_range rg where rg.rngtypid = t.oid)
        when 'c' then (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ','
                                         order by a.attnum)
                       from pg_attribute a where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)
      end, {_acl('t.typacl', 'T', 't.typowner')}, obj_description(t.oid, 'pg_type'))
  from pg_type t join ns n on n.oid = t.typnamespace
  where (t.typtype in ('e', 'd', 'r')
         or (t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c'))
    and not exists (select 1 from ext where ext.classid = 'pg_type'::regclass and ext.objid = t.oid)

  union all
  select 'extension ' || x.extname, concat_ws('|', x.extversion, xn.nspname)
  from pg_extension x join pg_namespace xn on xn.oid = x.extnamespace
  where x.extname <> 'plpgsql'

  union all
  select 'policy ' || r.nspname || '.' || r.relname || '.' || po.polname,
    concat_ws('|', po.polcmd, po.polpermissive, po.polroles::regrole[]::text,
              pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid))
  from rel r join pg_policy po on po.polrelid = r.oid

  union all
  select 'rule ' || r.nspname || '.' || r.relname || '.' || rw.rulename, pg_get_ruledef(rw.oid)
  from rel r join pg_rewrite rw on rw.ev_class = r.oid
  where rw.rulename <> '_RETURN'
) o
"""

TABLES_SQL = f"""
with ns as ({USER_SCHEMAS})
select n.nspname, c.relname,
  (select array_agg(a.attname::text order by a.attname)
   from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as columns,
  (select array_agg(a.attname::text order by k.ord)
   from pg_constraint co cross join lateral unnest(co.conkey) with ordinality k(attnum, ord)
   join pg_attribute a on a.attrelid = co.conrelid and a.attnum = k.attnum
   where co.conrelid = c.oid and co.contype = 'p') as key
from pg_class c join ns n on n.oid = c.relnamespace
where c.relkind = 'r'
  and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid
                  and d.deptype = 'e')
order by 1, 2
"""

SEQUENCES_SQL = f"""
with ns as ({USER_SCHEMAS})
select n.nspname, c.relname, s.seqincrement
from pg_class c join ns n on n.oid = c.relnamespace join pg_sequence s on s.seqrelid = c.oid
order by 1, 2
"""


def qualified(schema: str, name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def row_text(alias: str, columns: list[str]) -> sql.Composable:
    """A row's text over the named columns in name order: stable under column order and dropped columns."""
    cols = sorted(columns)
    if not cols:
        return sql.SQL("''")
    return sql.SQL("row({})::pg_catalog.text").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in cols))


def row_hash(text_expr: sql.Composable) -> sql.Composable:
    """A row's 64-bit hash: the first 64 bits of md5 of its text, as a signed bigint."""
    return sql.SQL("('x' || pg_catalog.substr(pg_catalog.md5({}), 1, 16))::pg_catalog.bit(64)::pg_catalog.int8").format(
        text_expr)


TEXT_SETTINGS = {"search_path": "pg_catalog, pg_temp", "timezone": "UTC", "datestyle": "ISO, YMD", "intervalstyle": "postgres",
                 "extra_float_digits": "1", "bytea_output": "hex"}


@contextmanager
def snapshot(conn: psycopg.Connection, read_only: bool = True):
    """One repeatable-read snapshot (when the connection is idle) with fixed text settings, so row text
    and hashes do not depend on the session."""
    def settle():
        for name, value in TEXT_SETTINGS.items():
            conn.execute("select set_config(%s, %s, true)", (name, value))

    if conn.info.transaction_status == pq.TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute("set transaction isolation level repeatable read, "
                         + ("read only" if read_only else "read write"))
            settle()
            yield
    else:
        settle()
        yield


def schema_objects(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute(SCHEMA_OBJECTS_SQL).fetchall()
    return dict(sorted((k, h) for k, h in rows))


def table_content(conn: psycopg.Connection, schema: str, name: str, columns: list[str]) -> tuple[int, str]:
    """(row count, content hash) of one table over the given columns, computed in the server."""
    q = sql.SQL("select pg_catalog.count(*), pg_catalog.md5(pg_catalog.count(*) || ':' || "
                "coalesce(pg_catalog.sum({h}), 0)) from only {t} t").format(
        h=row_hash(row_text("t", columns)), t=qualified(schema, name))
    count, digest = conn.execute(q).fetchone()
    return int(count), digest


def table_fingerprints(conn: psycopg.Connection) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for schema, name, columns, key in conn.execute(TABLES_SQL).fetchall():
        columns = list(columns or [])
        rows, digest = table_content(conn, schema, name, columns)
        out[f"{schema}.{name}"] = {"schema": schema, "name": name, "rows": rows, "hash": digest,
                                   "key": list(key) if key else None, "columns": columns}
    return out


def sequence_positions(conn: psycopg.Connection) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for schema, name, increment in conn.execute(SEQUENCES_SQL).fetchall():
        last_value, is_called = conn.execute(
            sql.SQL("select last_value, is_called from {}").format(qualified(schema, name))).fetchone()
        out[f"{schema}.{name}"] = {"last_value": int(last_value), "is_called": bool(is_called),
                                   "increment": int(increment)}
    return out


def fingerprint(conn: psycopg.Connection) -> dict:
    """Schema objects, table contents and sequence positions, from one snapshot."""
    with snapshot(conn):
        return {"schema": schema_objects(conn), "tables": table_fingerprints(conn),
                "sequences": sequence_positions(conn)}


def anchor_id(fp: dict) -> str:
    canonical = json.dumps(fp, sort_keys=True, separators=(",", ":"), default=str)
    return "anc-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]
