"""Every schema object a dump can restore and a rollback can leave behind, as (key, definition) rows.

One query over the catalog, run in a proof session (names resolve in pg_catalog alone, so
`regclass`/`regproc` text is schema-qualified and stable). Keys name the object the way an operator
would look for it; definitions list every attribute that can differ, with object references printed
as names, never oids, so an object dropped and re-created the same way leaves no difference. Objects
that belong to an extension are keyed only as the extension itself. Privileges are compared against
the owner's defaults, so a GRANT undone by a REVOKE leaves no trace, and so is a column added and
dropped again (dropped columns are not objects). Values that can hold credentials (server and
user-mapping options) are hashed with the rest and never leave the server.
"""

from __future__ import annotations

USER_SCHEMAS = """
    select oid, nspname from pg_namespace
    where nspname not in ('pg_catalog', 'information_schema')
      and nspname !~ '^pg_toast' and nspname !~ '^pg_temp_'
"""

FIRST_USER_OID = 16384


def _not_ext(catalog: str, alias: str) -> str:
    return (f"not exists (select 1 from ext where ext.classid = '{catalog}'::regclass "
            f"and ext.objid = {alias}.oid)")


# Each row: (key, array of 'attribute:md5'). Attributes are hashed one by one, so a diff names the
# attribute that differs and never holds its value.
SCHEMA_OBJECTS_SQL = f"""
with ns as ({USER_SCHEMAS}),
ext as (select classid, objid from pg_depend where deptype = 'e'),
rel as (
  select c.*, n.nspname from pg_class c join ns n on n.oid = c.relnamespace
  where {_not_ext('pg_class', 'c')}
)
select key, attrs from (
  select 'schema ' || n.nspname as key,
    array['comment:' || md5(coalesce((obj_description(n.oid, 'pg_namespace'))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(n.nspowner))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(n.nspacl, acldefault('n', n.nspowner))) x))::text, ''))] as attrs
  from pg_namespace n join ns on ns.oid = n.oid

  union all
  select 'default privileges for ' || pg_get_userbyid(d.defaclrole) || coalesce(' in schema ' || dn.nspname, '')
           || ' on ' || d.defaclobjtype::text,
    array['privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(d.defaclacl) x))::text, ''))]
  from pg_default_acl d left join pg_namespace dn on dn.oid = d.defaclnamespace

  union all
  select case r.relkind when 'f' then 'foreign table ' else 'table ' end || r.nspname || '.' || r.relname,
    array['kind:' || md5(coalesce((r.relkind)::text, '')),
      'persistence:' || md5(coalesce((r.relpersistence)::text, '')),
      'replica identity:' || md5(coalesce((r.relreplident)::text, '')),
      'replica identity index:' || md5(coalesce(((select i.indexrelid::regclass::text from pg_index i where i.indrelid = r.oid and i.indisreplident))::text, '')),
      'partition key:' || md5(coalesce((pg_get_partkeydef(r.oid))::text, '')),
      'partition bound:' || md5(coalesce((pg_get_expr(r.relpartbound, r.oid))::text, '')),
      'options:' || md5(coalesce((array_to_string(r.reloptions, ','))::text, '')),
      'row security:' || md5(coalesce((r.relrowsecurity)::text, '')),
      'force row security:' || md5(coalesce((r.relforcerowsecurity)::text, '')),
      'access method:' || md5(coalesce(((select amname from pg_am where oid = r.relam))::text, '')),
      'tablespace:' || md5(coalesce(((select spcname from pg_tablespace where oid = r.reltablespace))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(r.relacl, acldefault('r', r.relowner))) x))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(r.relowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(r.oid, 'pg_class'))::text, '')),
      'inherits:' || md5(coalesce(((select string_agg(i.inhparent::regclass::text, ',' order by i.inhseqno) from pg_inherits i where i.inhrelid = r.oid))::text, '')),
      'foreign table:' || md5(coalesce(((select s.srvname || ':' || coalesce(array_to_string(ft.ftoptions, ','), '') from pg_foreign_table ft join pg_foreign_server s on s.oid = ft.ftserver where ft.ftrelid = r.oid))::text, ''))]
  from rel r where r.relkind in ('r', 'p', 'f')

  union all
  select case r.relkind when 'm' then 'materialized view ' else 'view ' end || r.nspname || '.' || r.relname,
    array['definition:' || md5(coalesce((pg_get_viewdef(r.oid))::text, '')),
      'options:' || md5(coalesce((array_to_string(r.reloptions, ','))::text, '')),
      'populated:' || md5(coalesce((r.relispopulated)::text, '')),
      'persistence:' || md5(coalesce((r.relpersistence)::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(r.relacl, acldefault('r', r.relowner))) x))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(r.relowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(r.oid, 'pg_class'))::text, ''))]
  from rel r where r.relkind in ('v', 'm')

  union all
  select 'column ' || r.nspname || '.' || r.relname || '.' || a.attname,
    array['type:' || md5(coalesce((format_type(a.atttypid, a.atttypmod))::text, '')),
      'not null:' || md5(coalesce((a.attnotnull)::text, '')),
      'default:' || md5(coalesce((pg_get_expr(d.adbin, d.adrelid))::text, '')),
      'generated:' || md5(coalesce((nullif(a.attgenerated, ''))::text, '')),
      'identity:' || md5(coalesce((nullif(a.attidentity, ''))::text, '')),
      'collation:' || md5(coalesce((case when a.attcollation <> t.typcollation then a.attcollation::regcollation::text end)::text, '')),
      'comment:' || md5(coalesce((col_description(r.oid, a.attnum))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(a.attacl) x))::text, '')),
      'local:' || md5(coalesce((a.attislocal)::text, '')),
      'inherited:' || md5(coalesce((a.attinhcount)::text, '')),
      'storage:' || md5(coalesce((case when a.attstorage <> t.typstorage then a.attstorage::text end)::text, '')),
      'statistics:' || md5(coalesce((coalesce(a.attstattarget::text, '-1'))::text, '')),
      'compression:' || md5(coalesce((nullif(a.attcompression, ''))::text, '')),
      'options:' || md5(coalesce((array_to_string(a.attoptions, ','))::text, '')),
      'foreign options:' || md5(coalesce((array_to_string(a.attfdwoptions, ','))::text, ''))]
  from rel r
  join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  where r.relkind in ('r', 'p', 'f', 'm')

  union all
  select 'constraint ' || n.nspname || '.' || coalesce(cr.relname, ct.typname, '') || '.' || co.conname,
    array['kind:' || md5(coalesce((co.contype)::text, '')),
      'definition:' || md5(coalesce((pg_get_constraintdef(co.oid))::text, '')),
      'local:' || md5(coalesce((co.conislocal)::text, '')),
      'inherited:' || md5(coalesce((co.coninhcount)::text, '')),
      'no inherit:' || md5(coalesce((co.connoinherit)::text, '')),
      'deferrable:' || md5(coalesce((co.condeferrable)::text, '')),
      'deferred:' || md5(coalesce((co.condeferred)::text, '')),
      'comment:' || md5(coalesce((obj_description(co.oid, 'pg_constraint'))::text, ''))]
  from pg_constraint co join ns n on n.oid = co.connamespace
  left join pg_class cr on cr.oid = co.conrelid
  left join pg_type ct on ct.oid = co.contypid

  union all
  select 'index ' || r.nspname || '.' || r.relname,
    array['definition:' || md5(coalesce((pg_get_indexdef(r.oid))::text, '')),
      'valid:' || md5(coalesce((i.indisvalid)::text, '')),
      'clustered:' || md5(coalesce((i.indisclustered)::text, '')),
      'comment:' || md5(coalesce((obj_description(r.oid, 'pg_class'))::text, '')),
      'statistics:' || md5(coalesce(((select string_agg(ia.attnum || '=' || ia.attstattarget, ',' order by ia.attnum) from pg_attribute ia where ia.attrelid = r.oid and ia.attstattarget is not null and ia.attstattarget >= 0))::text, ''))]
  from rel r join pg_index i on i.indexrelid = r.oid
  where r.relkind in ('i', 'I')

  union all
  select 'sequence ' || r.nspname || '.' || r.relname,
    array['type:' || md5(coalesce((format_type(s.seqtypid, null))::text, '')),
      'start:' || md5(coalesce((s.seqstart)::text, '')),
      'increment:' || md5(coalesce((s.seqincrement)::text, '')),
      'min:' || md5(coalesce((s.seqmin)::text, '')),
      'max:' || md5(coalesce((s.seqmax)::text, '')),
      'cache:' || md5(coalesce((s.seqcache)::text, '')),
      'cycle:' || md5(coalesce((s.seqcycle)::text, '')),
      'persistence:' || md5(coalesce((r.relpersistence)::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(r.relacl, acldefault('s', r.relowner))) x))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(r.relowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(r.oid, 'pg_class'))::text, '')),
      'owned by:' || md5(coalesce(((select dr.refobjid::regclass::text || '.' || da.attname from pg_depend dr join pg_attribute da on da.attrelid = dr.refobjid and da.attnum = dr.refobjsubid where dr.classid = 'pg_class'::regclass and dr.objid = r.oid and dr.deptype in ('a', 'i') and dr.refclassid = 'pg_class'::regclass limit 1))::text, ''))]
  from rel r join pg_sequence s on s.seqrelid = r.oid

  union all
  select case p.prokind when 'p' then 'procedure ' when 'a' then 'aggregate ' else 'function ' end
           || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
    array['definition:' || md5(coalesce((case when p.prokind = 'a' then null else pg_get_functiondef(p.oid) end)::text, '')),
      'aggregate:' || md5(coalesce(((select concat_ws(',', g.aggkind, g.aggnumdirectargs, g.aggtransfn, g.aggfinalfn, g.aggcombinefn, g.aggserialfn, g.aggdeserialfn, g.aggmtransfn, g.aggminvtransfn, g.aggmfinalfn, g.aggfinalextra, g.aggmfinalextra, g.aggfinalmodify, g.aggmfinalmodify, g.aggsortop::regoperator, g.aggtranstype::regtype, g.aggtransspace, g.aggmtranstype::regtype, g.aggmtransspace, g.agginitval, g.aggminitval, p.proparallel) from pg_aggregate g where g.aggfnoid = p.oid))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(p.proacl, acldefault('f', p.proowner))) x))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(p.proowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(p.oid, 'pg_proc'))::text, ''))]
  from pg_proc p join ns n on n.oid = p.pronamespace
  where not exists (select 1 from ext where ext.classid = 'pg_proc'::regclass and ext.objid = p.oid)

  union all
  select 'trigger ' || r.nspname || '.' || r.relname || '.' || tg.tgname,
    array['definition:' || md5(coalesce((pg_get_triggerdef(tg.oid))::text, '')),
      'enabled:' || md5(coalesce((tg.tgenabled)::text, '')),
      'comment:' || md5(coalesce((obj_description(tg.oid, 'pg_trigger'))::text, ''))]
  from rel r join pg_trigger tg on tg.tgrelid = r.oid
  where not tg.tgisinternal

  union all
  select 'type ' || n.nspname || '.' || t.typname,
    array['kind:' || md5(coalesce((t.typtype)::text, '')),
      'definition:' || md5(coalesce((case t.typtype
        when 'e' then (select string_agg(e.enumlabel, ',' order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid)
        when 'd' then concat_ws(',', format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault)
        when 'r' then (select concat_ws(',', rg.rngsubtype::regtype, rg.rngsubdiff, rg.rngcanonical, rg.rngcollation::regcollation, (select opcname from pg_opclass where oid = rg.rngsubopc)) from pg_range rg where rg.rngtypid = t.oid)
        when 'c' then (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || coalesce(' collate ' || nullif(a.attcollation, 0)::regcollation::text, ''), ',' order by a.attnum) from pg_attribute a where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)
      end)::text, '')),
      'collation:' || md5(coalesce((case when t.typtype = 'd' and t.typcollation <> 0 then t.typcollation::regcollation::text end)::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(t.typacl, acldefault('T', t.typowner))) x))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(t.typowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(t.oid, 'pg_type'))::text, ''))]
  from pg_type t join ns n on n.oid = t.typnamespace
  where (t.typtype in ('e', 'd', 'r')
         or (t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c'))
    and not exists (select 1 from ext where ext.classid = 'pg_type'::regclass and ext.objid = t.oid)

  union all
  select 'extension ' || x.extname,
    array['version:' || md5(coalesce((x.extversion)::text, '')),
      'schema:' || md5(coalesce((xn.nspname)::text, '')),
      'relocatable:' || md5(coalesce((x.extrelocatable)::text, '')),
      'comment:' || md5(coalesce((obj_description(x.oid, 'pg_extension'))::text, ''))]
  from pg_extension x join pg_namespace xn on xn.oid = x.extnamespace
  where x.extname <> 'plpgsql'

  union all
  select 'policy ' || r.nspname || '.' || r.relname || '.' || po.polname,
    array['command:' || md5(coalesce((po.polcmd)::text, '')),
      'permissive:' || md5(coalesce((po.polpermissive)::text, '')),
      'roles:' || md5(coalesce((po.polroles::regrole[]::text)::text, '')),
      'using:' || md5(coalesce((pg_get_expr(po.polqual, po.polrelid))::text, '')),
      'with check:' || md5(coalesce((pg_get_expr(po.polwithcheck, po.polrelid))::text, '')),
      'comment:' || md5(coalesce((obj_description(po.oid, 'pg_policy'))::text, ''))]
  from rel r join pg_policy po on po.polrelid = r.oid

  union all
  select 'rule ' || r.nspname || '.' || r.relname || '.' || rw.rulename,
    array['definition:' || md5(coalesce((pg_get_ruledef(rw.oid))::text, '')),
      'enabled:' || md5(coalesce((rw.ev_enabled)::text, '')),
      'comment:' || md5(coalesce((obj_description(rw.oid, 'pg_rewrite'))::text, ''))]
  from rel r join pg_rewrite rw on rw.ev_class = r.oid
  where rw.rulename <> '_RETURN'

  union all
  select 'collation ' || n.nspname || '.' || co.collname,
    array['provider:' || md5(coalesce((co.collprovider)::text, '')),
      'deterministic:' || md5(coalesce((co.collisdeterministic)::text, '')),
      'encoding:' || md5(coalesce((co.collencoding)::text, '')),
      'collate:' || md5(coalesce((co.collcollate)::text, '')),
      'ctype:' || md5(coalesce((co.collctype)::text, '')),
      'locale:' || md5(coalesce((coalesce(to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'colliculocale'))::text, '')),
      'icu rules:' || md5(coalesce((to_jsonb(co) ->> 'collicurules')::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(co.collowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(co.oid, 'pg_collation'))::text, ''))]
  from pg_collation co join ns n on n.oid = co.collnamespace
  where not exists (select 1 from ext where ext.classid = 'pg_collation'::regclass and ext.objid = co.oid)

  union all
  select 'statistics ' || n.nspname || '.' || st.stxname,
    array['definition:' || md5(coalesce((pg_get_statisticsobjdef(st.oid))::text, '')),
      'target:' || md5(coalesce((st.stxstattarget)::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(st.stxowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(st.oid, 'pg_statistic_ext'))::text, ''))]
  from pg_statistic_ext st join ns n on n.oid = st.stxnamespace

  union all
  select 'operator ' || n.nspname || '.' || o.oprname || '(' || coalesce(nullif(o.oprleft, 0)::regtype::text, 'none')
           || ', ' || coalesce(nullif(o.oprright, 0)::regtype::text, 'none') || ')',
    array['kind:' || md5(coalesce((o.oprkind)::text, '')),
      'function:' || md5(coalesce((o.oprcode)::text, '')),
      'restrict:' || md5(coalesce((o.oprrest)::text, '')),
      'join:' || md5(coalesce((o.oprjoin)::text, '')),
      'commutator:' || md5(coalesce((nullif(o.oprcom, 0)::regoperator)::text, '')),
      'negator:' || md5(coalesce((nullif(o.oprnegate, 0)::regoperator)::text, '')),
      'merges:' || md5(coalesce((o.oprcanmerge)::text, '')),
      'hashes:' || md5(coalesce((o.oprcanhash)::text, '')),
      'result:' || md5(coalesce((o.oprresult::regtype)::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(o.oprowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(o.oid, 'pg_operator'))::text, ''))]
  from pg_operator o join ns n on n.oid = o.oprnamespace
  where not exists (select 1 from ext where ext.classid = 'pg_operator'::regclass and ext.objid = o.oid)

  union all
  select 'cast (' || ca.castsource::regtype || ' as ' || ca.casttarget::regtype || ')',
    array['function:' || md5(coalesce((nullif(ca.castfunc, 0)::regprocedure)::text, '')),
      'context:' || md5(coalesce((ca.castcontext)::text, '')),
      'method:' || md5(coalesce((ca.castmethod)::text, '')),
      'comment:' || md5(coalesce((obj_description(ca.oid, 'pg_cast'))::text, ''))]
  from pg_cast ca
  where (ca.castsource >= {FIRST_USER_OID} or ca.casttarget >= {FIRST_USER_OID} or ca.oid >= {FIRST_USER_OID})
    and not exists (select 1 from ext where ext.classid = 'pg_cast'::regclass and ext.objid = ca.oid)

  union all
  select 'conversion ' || n.nspname || '.' || cv.conname,
    array['source encoding:' || md5(coalesce((pg_encoding_to_char(cv.conforencoding))::text, '')),
      'target encoding:' || md5(coalesce((pg_encoding_to_char(cv.contoencoding))::text, '')),
      'function:' || md5(coalesce((cv.conproc)::text, '')),
      'default:' || md5(coalesce((cv.condefault)::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(cv.conowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(cv.oid, 'pg_conversion'))::text, ''))]
  from pg_conversion cv join ns n on n.oid = cv.connamespace
  where not exists (select 1 from ext where ext.classid = 'pg_conversion'::regclass and ext.objid = cv.oid)

  union all
  select 'text search configuration ' || n.nspname || '.' || cf.cfgname,
    array['parser:' || md5(coalesce(((select prsname from pg_ts_parser where oid = cf.cfgparser))::text, '')),
      'mappings:' || md5(coalesce(((select string_agg(m.maptokentype || ':' || m.mapseqno || ':' || m.mapdict::regdictionary, ',' order by m.maptokentype, m.mapseqno) from pg_ts_config_map m where m.mapcfg = cf.oid))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(cf.cfgowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(cf.oid, 'pg_ts_config'))::text, ''))]
  from pg_ts_config cf join ns n on n.oid = cf.cfgnamespace
  where not exists (select 1 from ext where ext.classid = 'pg_ts_config'::regclass and ext.objid = cf.oid)

  union all
  select 'text search dictionary ' || n.nspname || '.' || dc.dictname,
    array['template:' || md5(coalesce(((select tmplname from pg_ts_template where oid = dc.dicttemplate))::text, '')),
      'options:' || md5(coalesce((dc.dictinitoption)::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(dc.dictowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(dc.oid, 'pg_ts_dict'))::text, ''))]
  from pg_ts_dict dc join ns n on n.oid = dc.dictnamespace
  where not exists (select 1 from ext where ext.classid = 'pg_ts_dict'::regclass and ext.objid = dc.oid)

  union all
  select 'event trigger ' || e.evtname,
    array['event:' || md5(coalesce((e.evtevent)::text, '')),
      'function:' || md5(coalesce((e.evtfoid::regprocedure)::text, '')),
      'enabled:' || md5(coalesce((e.evtenabled)::text, '')),
      'tags:' || md5(coalesce((array_to_string(e.evttags, ','))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(e.evtowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(e.oid, 'pg_event_trigger'))::text, ''))]
  from pg_event_trigger e

  union all
  select 'publication ' || pb.pubname,
    array['all tables:' || md5(coalesce((pb.puballtables)::text, '')),
      'actions:' || md5(coalesce((concat_ws(',', pb.pubinsert, pb.pubupdate, pb.pubdelete, pb.pubtruncate))::text, '')),
      'via root:' || md5(coalesce((pb.pubviaroot)::text, '')),
      'generated columns:' || md5(coalesce((to_jsonb(pb) ->> 'pubgencols')::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(pb.pubowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(pb.oid, 'pg_publication'))::text, '')),
      'tables:' || md5(coalesce(((select string_agg(pr.prrelid::regclass::text || coalesce(' where ' || pg_get_expr(pr.prqual, pr.prrelid), '') || coalesce(' ' || pr.prattrs::text, ''), ',' order by pr.prrelid::regclass::text) from pg_publication_rel pr where pr.prpubid = pb.oid))::text, '')),
      'schemas:' || md5(coalesce(((select string_agg(pn.pnnspid::regnamespace::text, ',' order by pn.pnnspid::regnamespace::text) from pg_publication_namespace pn where pn.pnpubid = pb.oid))::text, ''))]
  from pg_publication pb

  union all
  select 'foreign data wrapper ' || w.fdwname,
    array['handler:' || md5(coalesce((nullif(w.fdwhandler, 0)::regproc)::text, '')),
      'validator:' || md5(coalesce((nullif(w.fdwvalidator, 0)::regproc)::text, '')),
      'options:' || md5(coalesce((array_to_string(w.fdwoptions, ','))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(w.fdwacl, acldefault('F', w.fdwowner))) x))::text, '')),
      'comment:' || md5(coalesce((obj_description(w.oid, 'pg_foreign_data_wrapper'))::text, ''))]
  from pg_foreign_data_wrapper w
  where not exists (select 1 from ext where ext.classid = 'pg_foreign_data_wrapper'::regclass and ext.objid = w.oid)

  union all
  select 'foreign server ' || fs.srvname,
    array['wrapper:' || md5(coalesce(((select fdwname from pg_foreign_data_wrapper where oid = fs.srvfdw))::text, '')),
      'type:' || md5(coalesce((fs.srvtype)::text, '')),
      'version:' || md5(coalesce((fs.srvversion)::text, '')),
      'options:' || md5(coalesce((array_to_string(fs.srvoptions, ','))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(fs.srvacl, acldefault('S', fs.srvowner))) x))::text, '')),
      'owner:' || md5(coalesce((pg_get_userbyid(fs.srvowner))::text, '')),
      'comment:' || md5(coalesce((obj_description(fs.oid, 'pg_foreign_server'))::text, ''))]
  from pg_foreign_server fs

  union all
  select 'user mapping for ' || um.usename || ' server ' || um.srvname, array['options:' || md5(coalesce((array_to_string(um.umoptions, ','))::text, ''))]
  from pg_user_mappings um

  union all
  select 'large object ' || lo.oid,
    array['owner:' || md5(coalesce((pg_get_userbyid(lo.lomowner))::text, '')),
      'privileges:' || md5(coalesce(((select string_agg(x::text, ',' order by x::text) from unnest(coalesce(lo.lomacl, acldefault('L', lo.lomowner))) x))::text, '')),
      'comment:' || md5(coalesce((obj_description(lo.oid, 'pg_largeobject'))::text, ''))]
  from pg_largeobject_metadata lo
) o
"""
