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


def _acl(column: str, kind: str | None, owner: str | None) -> str:
    base = f"coalesce({column}, acldefault('{kind}', {owner}))" if kind else column
    return f"(select string_agg(x::text, ',' order by x::text) from unnest({base}) x)"


def _not_ext(catalog: str, alias: str) -> str:
    return (f"not exists (select 1 from ext where ext.classid = '{catalog}'::regclass "
            f"and ext.objid = {alias}.oid)")


def _comment(alias: str, catalog: str) -> str:
    return f"obj_description({alias}.oid, '{catalog}')"


SCHEMA_OBJECTS_SQL = f"""
with ns as ({USER_SCHEMAS}),
ext as (select classid, objid from pg_depend where deptype = 'e'),
rel as (
  select c.*, n.nspname from pg_class c join ns n on n.oid = c.relnamespace
  where {_not_ext('pg_class', 'c')}
)
select key, md5(coalesce(def, '')) from (
  select 'schema ' || n.nspname as key,
    concat_ws('|', coalesce({_comment('n', 'pg_namespace')}, ''), pg_get_userbyid(n.nspowner),
              {_acl('n.nspacl', 'n', 'n.nspowner')}) as def
  from pg_namespace n join ns on ns.oid = n.oid

  union all
  select 'default privileges for ' || pg_get_userbyid(d.defaclrole) || coalesce(' in schema ' || dn.nspname, '')
           || ' on ' || d.defaclobjtype::text,
    (select string_agg(x::text, ',' order by x::text) from unnest(d.defaclacl) x)
  from pg_default_acl d left join pg_namespace dn on dn.oid = d.defaclnamespace

  union all
  select case r.relkind when 'f' then 'foreign table ' else 'table ' end || r.nspname || '.' || r.relname,
    concat_ws('|', r.relkind, r.relpersistence, r.relreplident, pg_get_partkeydef(r.oid),
              pg_get_expr(r.relpartbound, r.oid), array_to_string(r.reloptions, ','), r.relrowsecurity,
              r.relforcerowsecurity, (select amname from pg_am where oid = r.relam),
              (select spcname from pg_tablespace where oid = r.reltablespace),
              {_acl('r.relacl', 'r', 'r.relowner')}, pg_get_userbyid(r.relowner), {_comment('r', 'pg_class')},
              (select string_agg(i.inhparent::regclass::text, ',' order by i.inhseqno)
               from pg_inherits i where i.inhrelid = r.oid),
              (select i.indexrelid::regclass::text from pg_index i where i.indrelid = r.oid and i.indisreplident),
              (select s.srvname || ':' || coalesce(array_to_string(ft.ftoptions, ','), '')
               from pg_foreign_table ft join pg_foreign_server s on s.oid = ft.ftserver
               where ft.ftrelid = r.oid))
  from rel r where r.relkind in ('r', 'p', 'f')

  union all
  select case r.relkind when 'm' then 'materialized view ' else 'view ' end || r.nspname || '.' || r.relname,
    concat_ws('|', pg_get_viewdef(r.oid), array_to_string(r.reloptions, ','), r.relispopulated,
              r.relpersistence, {_acl('r.relacl', 'r', 'r.relowner')}, pg_get_userbyid(r.relowner),
              {_comment('r', 'pg_class')})
  from rel r where r.relkind in ('v', 'm')

  union all
  select 'column ' || r.nspname || '.' || r.relname || '.' || a.attname,
    concat_ws('|', format_type(a.atttypid, a.atttypmod), case when a.attnotnull then 'not null' end,
              pg_get_expr(d.adbin, d.adrelid), nullif(a.attgenerated, ''), nullif(a.attidentity, ''),
              case when a.attcollation <> t.typcollation then a.attcollation::regcollation::text end,
              col_description(r.oid, a.attnum), {_acl('a.attacl', None, None)},
              'local=' || a.attislocal, 'inherited=' || a.attinhcount,
              case when a.attstorage <> t.typstorage then 'storage=' || a.attstorage::text end,
              'statistics=' || coalesce(a.attstattarget::text, '-1'),
              nullif(a.attcompression, ''), array_to_string(a.attoptions, ','),
              array_to_string(a.attfdwoptions, ','))
  from rel r
  join pg_attribute a on a.attrelid = r.oid and a.attnum > 0 and not a.attisdropped
  join pg_type t on t.oid = a.atttypid
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
  where r.relkind in ('r', 'p', 'f', 'm')

  union all
  select 'constraint ' || n.nspname || '.' || coalesce(cr.relname, ct.typname, '') || '.' || co.conname,
    concat_ws('|', co.contype, pg_get_constraintdef(co.oid), co.conislocal, co.coninhcount, co.connoinherit,
              co.condeferrable, co.condeferred, {_comment('co', 'pg_constraint')})
  from pg_constraint co join ns n on n.oid = co.connamespace
  left join pg_class cr on cr.oid = co.conrelid
  left join pg_type ct on ct.oid = co.contypid

  union all
  select 'index ' || r.nspname || '.' || r.relname,
    concat_ws('|', pg_get_indexdef(r.oid), case when not i.indisvalid then 'invalid' end,
              case when i.indisclustered then 'clustered' end, {_comment('r', 'pg_class')},
              (select string_agg(ia.attnum || '=' || ia.attstattarget, ',' order by ia.attnum)
               from pg_attribute ia where ia.attrelid = r.oid and ia.attstattarget is not null
                 and ia.attstattarget >= 0))
  from rel r join pg_index i on i.indexrelid = r.oid
  where r.relkind in ('i', 'I')

  union all
  select 'sequence ' || r.nspname || '.' || r.relname,
    concat_ws('|', format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache,
              s.seqcycle, r.relpersistence, {_acl('r.relacl', 's', 'r.relowner')}, pg_get_userbyid(r.relowner),
              {_comment('r', 'pg_class')},
              (select dr.refobjid::regclass::text || '.' || da.attname
               from pg_depend dr join pg_attribute da on da.attrelid = dr.refobjid and da.attnum = dr.refobjsubid
               where dr.classid = 'pg_class'::regclass and dr.objid = r.oid and dr.deptype in ('a', 'i')
                 and dr.refclassid = 'pg_class'::regclass limit 1))
  from rel r join pg_sequence s on s.seqrelid = r.oid

  union all
  select case p.prokind when 'p' then 'procedure ' when 'a' then 'aggregate ' else 'function ' end
           || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
    concat_ws('|', case when p.prokind = 'a'
                        then (select concat_ws(',', g.aggkind, g.aggnumdirectargs, g.aggtransfn, g.aggfinalfn,
                                               g.aggcombinefn, g.aggserialfn, g.aggdeserialfn, g.aggmtransfn,
                                               g.aggminvtransfn, g.aggmfinalfn, g.aggfinalextra, g.aggmfinalextra,
                                               g.aggfinalmodify, g.aggmfinalmodify, g.aggsortop::regoperator,
                                               g.aggtranstype::regtype, g.aggtransspace, g.aggmtranstype::regtype,
                                               g.aggmtransspace, g.agginitval, g.aggminitval, p.proparallel)
                              from pg_aggregate g where g.aggfnoid = p.oid)
                        else pg_get_functiondef(p.oid) end,
              {_acl('p.proacl', 'f', 'p.proowner')}, pg_get_userbyid(p.proowner), {_comment('p', 'pg_proc')})
  from pg_proc p join ns n on n.oid = p.pronamespace
  where {_not_ext('pg_proc', 'p')}

  union all
  select 'trigger ' || r.nspname || '.' || r.relname || '.' || tg.tgname,
    concat_ws('|', pg_get_triggerdef(tg.oid), tg.tgenabled, {_comment('tg', 'pg_trigger')})
  from rel r join pg_trigger tg on tg.tgrelid = r.oid
  where not tg.tgisinternal

  union all
  select 'type ' || n.nspname || '.' || t.typname,
    concat_ws('|', t.typtype,
      case t.typtype
        when 'e' then (select string_agg(e.enumlabel, ',' order by e.enumsortorder)
                       from pg_enum e where e.enumtypid = t.oid)
        when 'd' then concat_ws(',', format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault,
                                case when t.typcollation <> 0 then t.typcollation::regcollation::text end)
        when 'r' then (select concat_ws(',', rg.rngsubtype::regtype, rg.rngsubdiff, rg.rngcanonical,
                                        rg.rngcollation::regcollation,
                                        (select opcname from pg_opclass where oid = rg.rngsubopc))
                       from pg_range rg where rg.rngtypid = t.oid)
        when 'c' then (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                         || coalesce(' collate ' || nullif(a.attcollation, 0)::regcollation::text, ''),
                                         ',' order by a.attnum)
                       from pg_attribute a where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)
      end, {_acl('t.typacl', 'T', 't.typowner')}, pg_get_userbyid(t.typowner), {_comment('t', 'pg_type')})
  from pg_type t join ns n on n.oid = t.typnamespace
  where (t.typtype in ('e', 'd', 'r')
         or (t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c'))
    and {_not_ext('pg_type', 't')}

  union all
  select 'extension ' || x.extname,
    concat_ws('|', x.extversion, xn.nspname, x.extrelocatable, {_comment('x', 'pg_extension')})
  from pg_extension x join pg_namespace xn on xn.oid = x.extnamespace
  where x.extname <> 'plpgsql'

  union all
  select 'policy ' || r.nspname || '.' || r.relname || '.' || po.polname,
    concat_ws('|', po.polcmd, po.polpermissive, po.polroles::regrole[]::text,
              pg_get_expr(po.polqual, po.polrelid), pg_get_expr(po.polwithcheck, po.polrelid),
              {_comment('po', 'pg_policy')})
  from rel r join pg_policy po on po.polrelid = r.oid

  union all
  select 'rule ' || r.nspname || '.' || r.relname || '.' || rw.rulename,
    concat_ws('|', pg_get_ruledef(rw.oid), rw.ev_enabled, {_comment('rw', 'pg_rewrite')})
  from rel r join pg_rewrite rw on rw.ev_class = r.oid
  where rw.rulename <> '_RETURN'

  union all
  select 'collation ' || n.nspname || '.' || co.collname,
    concat_ws('|', co.collprovider, co.collisdeterministic, co.collencoding, co.collcollate, co.collctype,
              to_jsonb(co) ->> 'colllocale', to_jsonb(co) ->> 'colliculocale', to_jsonb(co) ->> 'collicurules',
              pg_get_userbyid(co.collowner), {_comment('co', 'pg_collation')})
  from pg_collation co join ns n on n.oid = co.collnamespace
  where {_not_ext('pg_collation', 'co')}

  union all
  select 'statistics ' || n.nspname || '.' || st.stxname,
    concat_ws('|', pg_get_statisticsobjdef(st.oid), st.stxstattarget, pg_get_userbyid(st.stxowner),
              {_comment('st', 'pg_statistic_ext')})
  from pg_statistic_ext st join ns n on n.oid = st.stxnamespace

  union all
  select 'operator ' || n.nspname || '.' || o.oprname || '(' || coalesce(nullif(o.oprleft, 0)::regtype::text, 'none')
           || ', ' || coalesce(nullif(o.oprright, 0)::regtype::text, 'none') || ')',
    concat_ws('|', o.oprkind, o.oprcode, o.oprrest, o.oprjoin, nullif(o.oprcom, 0)::regoperator,
              nullif(o.oprnegate, 0)::regoperator, o.oprcanmerge, o.oprcanhash, o.oprresult::regtype,
              pg_get_userbyid(o.oprowner), {_comment('o', 'pg_operator')})
  from pg_operator o join ns n on n.oid = o.oprnamespace
  where {_not_ext('pg_operator', 'o')}

  union all
  select 'cast (' || ca.castsource::regtype || ' as ' || ca.casttarget::regtype || ')',
    concat_ws('|', nullif(ca.castfunc, 0)::regprocedure, ca.castcontext, ca.castmethod,
              {_comment('ca', 'pg_cast')})
  from pg_cast ca
  where (ca.castsource >= {FIRST_USER_OID} or ca.casttarget >= {FIRST_USER_OID} or ca.oid >= {FIRST_USER_OID})
    and {_not_ext('pg_cast', 'ca')}

  union all
  select 'conversion ' || n.nspname || '.' || cv.conname,
    concat_ws('|', pg_encoding_to_char(cv.conforencoding), pg_encoding_to_char(cv.contoencoding), cv.conproc,
              cv.condefault, pg_get_userbyid(cv.conowner), {_comment('cv', 'pg_conversion')})
  from pg_conversion cv join ns n on n.oid = cv.connamespace
  where {_not_ext('pg_conversion', 'cv')}

  union all
  select 'text search configuration ' || n.nspname || '.' || cf.cfgname,
    concat_ws('|', (select prsname from pg_ts_parser where oid = cf.cfgparser),
              (select string_agg(m.maptokentype || ':' || m.mapseqno || ':' || m.mapdict::regdictionary, ','
                                 order by m.maptokentype, m.mapseqno)
               from pg_ts_config_map m where m.mapcfg = cf.oid),
              pg_get_userbyid(cf.cfgowner), {_comment('cf', 'pg_ts_config')})
  from pg_ts_config cf join ns n on n.oid = cf.cfgnamespace
  where {_not_ext('pg_ts_config', 'cf')}

  union all
  select 'text search dictionary ' || n.nspname || '.' || dc.dictname,
    concat_ws('|', (select tmplname from pg_ts_template where oid = dc.dicttemplate), dc.dictinitoption,
              pg_get_userbyid(dc.dictowner), {_comment('dc', 'pg_ts_dict')})
  from pg_ts_dict dc join ns n on n.oid = dc.dictnamespace
  where {_not_ext('pg_ts_dict', 'dc')}

  union all
  select 'event trigger ' || e.evtname,
    concat_ws('|', e.evtevent, e.evtfoid::regprocedure, e.evtenabled, array_to_string(e.evttags, ','),
              pg_get_userbyid(e.evtowner), {_comment('e', 'pg_event_trigger')})
  from pg_event_trigger e

  union all
  select 'publication ' || pb.pubname,
    concat_ws('|', pb.puballtables, pb.pubinsert, pb.pubupdate, pb.pubdelete, pb.pubtruncate, pb.pubviaroot,
              to_jsonb(pb) ->> 'pubgencols', pg_get_userbyid(pb.pubowner), {_comment('pb', 'pg_publication')},
              (select string_agg(pr.prrelid::regclass::text || coalesce(' where ' || pg_get_expr(pr.prqual,
                                 pr.prrelid), '') || coalesce(' ' || pr.prattrs::text, ''), ','
                                 order by pr.prrelid::regclass::text)
               from pg_publication_rel pr where pr.prpubid = pb.oid),
              (select string_agg(pn.pnnspid::regnamespace::text, ',' order by pn.pnnspid::regnamespace::text)
               from pg_publication_namespace pn where pn.pnpubid = pb.oid))
  from pg_publication pb

  union all
  select 'foreign data wrapper ' || w.fdwname,
    concat_ws('|', nullif(w.fdwhandler, 0)::regproc, nullif(w.fdwvalidator, 0)::regproc, array_to_string(w.fdwoptions, ','),
              {_acl('w.fdwacl', 'F', 'w.fdwowner')}, {_comment('w', 'pg_foreign_data_wrapper')})
  from pg_foreign_data_wrapper w
  where {_not_ext('pg_foreign_data_wrapper', 'w')}

  union all
  select 'foreign server ' || fs.srvname,
    concat_ws('|', (select fdwname from pg_foreign_data_wrapper where oid = fs.srvfdw), fs.srvtype, fs.srvversion,
              array_to_string(fs.srvoptions, ','), {_acl('fs.srvacl', 'S', 'fs.srvowner')},
              pg_get_userbyid(fs.srvowner), {_comment('fs', 'pg_foreign_server')})
  from pg_foreign_server fs

  union all
  select 'user mapping for ' || um.usename || ' server ' || um.srvname, array_to_string(um.umoptions, ',')
  from pg_user_mappings um

  union all
  select 'large object ' || lo.oid,
    concat_ws('|', pg_get_userbyid(lo.lomowner), {_acl('lo.lomacl', 'L', 'lo.lomowner')},
              {_comment('lo', 'pg_largeobject')})
  from pg_largeobject_metadata lo
) o
"""
