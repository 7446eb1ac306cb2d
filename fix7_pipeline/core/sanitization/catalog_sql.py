"""The catalog places the scan reads, one COPY each: (classid, objid, subid, field, value) per text the
dump can have put in the catalog. A value longer than LARGE_VALUE_BYTES is printed as LARGE_MARK and read
afterwards in windows."""

from __future__ import annotations

from ..postgres.proof_sql import FIRST_NORMAL_OID
from .copy_reader import LARGE_VALUE_BYTES

CATALOG_BODIES: dict[str, str] = {}
LARGE_MARK = "<fix7: a value over LARGE_VALUE_BYTES, read in windows>"  # data spelling it only costs a query


def _part(label: str, body: str) -> tuple[str, str]:
    """One catalog place's COPY; a value longer than LARGE_VALUE_BYTES is printed as LARGE_MARK in it and read
    afterwards in windows (`scan_large_catalog_values`)."""
    CATALOG_BODIES[label] = body
    return label, f"copy (select classid, objid, subid, field, case when pg_catalog.octet_length(value) > " \
                  f"{LARGE_VALUE_BYTES} then '{LARGE_MARK}' else value end from ({body}) x(classid, objid, subid, " \
                  f"field, value) where value is not null and value <> '') to stdout"


_N = FIRST_NORMAL_OID


def _named(*catalogs: tuple[str, str]) -> str:
    """A scan row for the name of each object of these catalogs a dump created (oid >= FIRST_NORMAL_OID)."""
    return "".join(f"""
        select '{cat}'::regclass::oid, o.oid, 0, 'name', o.{col}::text from pg_catalog.{cat} o
        where o.oid >= {_N}
        union all""" for cat, col in catalogs)


_NAMED_OBJECTS = _named(("pg_collation", "collname"), ("pg_conversion", "conname"), ("pg_operator", "oprname"),
                        ("pg_opclass", "opcname"), ("pg_opfamily", "opfname"), ("pg_ts_config", "cfgname"),
                        ("pg_ts_dict", "dictname"))
_NAMED_LANGUAGE_OBJECTS = _named(("pg_ts_parser", "prsname"), ("pg_ts_template", "tmplname"),
                                 ("pg_language", "lanname"))
THIS_DB = "(select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())"
_REAL_TYPE = ("t.oid >= {n} and (t.typrelid = 0 or (select c.relkind from pg_catalog.pg_class c where c.oid = t.typrelid)"
              " = 'c') and not exists (select 1 from pg_catalog.pg_type e where e.typarray = t.oid)").format(n=_N)

CATALOG_PARTS: tuple[tuple[str, str], ...] = tuple(_part(label, body) for label, body in (
    ("schemas", f"""
        select 'pg_namespace'::regclass::oid, n.oid, 0, 'name', n.nspname::text from pg_catalog.pg_namespace n
        where n.oid >= {_N}"""),
    ("relations", f"""
        select 'pg_class'::regclass::oid, c.oid, 0, 'name', c.relname::text from pg_catalog.pg_class c
        where c.oid >= {_N} and c.relnamespace <> 'pg_toast'::regnamespace
        union all
        select 'pg_class'::regclass::oid, c.oid, 0, 'options', pg_catalog.array_to_string(c.reloptions, E'\\n')
        from pg_catalog.pg_class c where c.oid >= {_N} and c.reloptions is not null"""),
    ("columns", f"""
        select 'pg_class'::regclass::oid, a.attrelid, a.attnum, 'name', a.attname::text from pg_catalog.pg_attribute a
        join pg_catalog.pg_class c on c.oid = a.attrelid
        where a.attrelid >= {_N} and a.attnum > 0 and not a.attisdropped and c.relnamespace <> 'pg_toast'::regnamespace
        union all
        select 'pg_class'::regclass::oid, a.attrelid, a.attnum, 'options',
               pg_catalog.array_to_string(a.attoptions || a.attfdwoptions, E'\\n')
        from pg_catalog.pg_attribute a
        where a.attrelid >= {_N} and a.attnum > 0 and (a.attoptions is not null or a.attfdwoptions is not null)
        union all
        select 'pg_class'::regclass::oid, d.adrelid, d.adnum,
               case when a.attgenerated <> '' then 'generated expression' else 'default' end,
               pg_catalog.pg_get_expr(d.adbin, d.adrelid)
        from pg_catalog.pg_attrdef d join pg_catalog.pg_attribute a on a.attrelid = d.adrelid and a.attnum = d.adnum
        where d.adrelid >= {_N}"""),
    ("constraints", f"""
        select 'pg_constraint'::regclass::oid, co.oid, 0, 'name', co.conname::text from pg_catalog.pg_constraint co
        where co.oid >= {_N}
        union all
        select 'pg_constraint'::regclass::oid, co.oid, 0, 'definition', pg_catalog.pg_get_constraintdef(co.oid)
        from pg_catalog.pg_constraint co where co.oid >= {_N}"""),
    ("indexes", f"""
        select 'pg_class'::regclass::oid, i.indexrelid, 0, 'definition', pg_catalog.pg_get_indexdef(i.indexrelid)
        from pg_catalog.pg_index i where i.indexrelid >= {_N}"""),
    ("types", f"""
        select 'pg_type'::regclass::oid, t.oid, 0, 'name', t.typname::text from pg_catalog.pg_type t
        where {_REAL_TYPE}
        union all
        select 'pg_type'::regclass::oid, t.oid, 0, 'default', t.typdefault from pg_catalog.pg_type t
        where t.oid >= {_N} and t.typdefault is not null
        union all
        select 'pg_type'::regclass::oid, e.enumtypid, 0, 'enum label', e.enumlabel::text from pg_catalog.pg_enum e
        where e.enumtypid >= {_N}"""),
    ("functions", f"""
        select 'pg_proc'::regclass::oid, p.oid, 0, 'name', p.proname::text from pg_catalog.pg_proc p where p.oid >= {_N}
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'body', p.prosrc from pg_catalog.pg_proc p where p.oid >= {_N}
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'body', pg_catalog.pg_get_function_sqlbody(p.oid)
        from pg_catalog.pg_proc p where p.oid >= {_N} and p.prosqlbody is not null
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'library', p.probin from pg_catalog.pg_proc p
        where p.oid >= {_N} and p.probin is not null
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'settings', pg_catalog.array_to_string(p.proconfig, E'\\n')
        from pg_catalog.pg_proc p where p.oid >= {_N} and p.proconfig is not null
        union all
        select 'pg_proc'::regclass::oid, p.oid, 0, 'arguments', pg_catalog.pg_get_function_arguments(p.oid)
        from pg_catalog.pg_proc p where p.oid >= {_N}
        union all
        select 'pg_proc'::regclass::oid, g.aggfnoid, 0, 'initial value', concat_ws(E'\\n', g.agginitval, g.aggminitval)
        from pg_catalog.pg_aggregate g where g.aggfnoid >= {_N}"""),
    ("views", f"""
        select 'pg_class'::regclass::oid, c.oid, 0, 'definition', pg_catalog.pg_get_viewdef(c.oid)
        from pg_catalog.pg_class c where c.oid >= {_N} and c.relkind in ('v', 'm')"""),
    ("triggers", f"""
        select 'pg_trigger'::regclass::oid, tg.oid, 0, 'name', tg.tgname::text from pg_catalog.pg_trigger tg
        where tg.oid >= {_N} and not tg.tgisinternal
        union all
        select 'pg_trigger'::regclass::oid, tg.oid, 0, 'definition', pg_catalog.pg_get_triggerdef(tg.oid)
        from pg_catalog.pg_trigger tg where tg.oid >= {_N} and not tg.tgisinternal
        union all
        select 'pg_event_trigger'::regclass::oid, e.oid, 0, 'name', e.evtname::text from pg_catalog.pg_event_trigger e
        union all
        select 'pg_event_trigger'::regclass::oid, e.oid, 0, 'tags', pg_catalog.array_to_string(e.evttags, E'\\n')
        from pg_catalog.pg_event_trigger e"""),
    ("policies and rules", f"""
        select 'pg_policy'::regclass::oid, po.oid, 0, 'name', po.polname::text from pg_catalog.pg_policy po
        union all
        select 'pg_policy'::regclass::oid, po.oid, 0, 'using', pg_catalog.pg_get_expr(po.polqual, po.polrelid)
        from pg_catalog.pg_policy po
        union all
        select 'pg_policy'::regclass::oid, po.oid, 0, 'with check', pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid)
        from pg_catalog.pg_policy po
        union all
        select 'pg_rewrite'::regclass::oid, rw.oid, 0, 'name', rw.rulename::text from pg_catalog.pg_rewrite rw
        where rw.oid >= {_N} and rw.rulename <> '_RETURN'
        union all
        select 'pg_rewrite'::regclass::oid, rw.oid, 0, 'definition', pg_catalog.pg_get_ruledef(rw.oid)
        from pg_catalog.pg_rewrite rw where rw.oid >= {_N} and rw.rulename <> '_RETURN'"""),
    ("comments", f"""
        select d.classoid, d.objoid, d.objsubid, 'comment', d.description from pg_catalog.pg_description d
        where d.objoid >= {_N}
        union all
        select d.classoid, d.objoid, 0, 'comment', d.description from pg_catalog.pg_shdescription d
        where (d.classoid = 'pg_database'::regclass and d.objoid = {THIS_DB})
           or (d.classoid = 'pg_authid'::regclass and d.objoid in (
                 select s.refobjid from pg_catalog.pg_shdepend s where s.dbid = {THIS_DB}
                 and s.refclassid = 'pg_authid'::regclass))
        union all
        select s.classoid, s.objoid, s.objsubid, 'security label', s.label from pg_catalog.pg_seclabel s
        where s.objoid >= {_N}"""),
    ("roles", f"""
        select 'pg_authid'::regclass::oid, r.oid, 0, 'name', r.rolname::text from pg_catalog.pg_roles r
        where r.rolname = current_user or r.oid in (
          select s.refobjid from pg_catalog.pg_shdepend s where s.dbid = {THIS_DB}
          and s.refclassid = 'pg_authid'::regclass)"""),
    ("replication and foreign data", f"""
        select 'pg_publication'::regclass::oid, p.oid, 0, 'name', p.pubname::text from pg_catalog.pg_publication p
        union all
        select 'pg_subscription'::regclass::oid, s.oid, 0, 'name', s.subname::text from pg_catalog.pg_subscription s
        where s.subdbid = {THIS_DB}
        union all
        select 'pg_foreign_data_wrapper'::regclass::oid, w.oid, 0, 'name', w.fdwname::text
        from pg_catalog.pg_foreign_data_wrapper w where w.oid >= {_N}
        union all
        select 'pg_foreign_data_wrapper'::regclass::oid, w.oid, 0, 'options',
               pg_catalog.array_to_string(w.fdwoptions, E'\\n') from pg_catalog.pg_foreign_data_wrapper w
        union all
        select 'pg_foreign_server'::regclass::oid, s.oid, 0, 'name', s.srvname::text from pg_catalog.pg_foreign_server s
        union all
        select 'pg_foreign_server'::regclass::oid, s.oid, 0, 'options',
               concat_ws(E'\\n', s.srvtype, s.srvversion, pg_catalog.array_to_string(s.srvoptions, E'\\n'))
        from pg_catalog.pg_foreign_server s
        union all
        select 'pg_class'::regclass::oid, f.ftrelid, 0, 'options', pg_catalog.array_to_string(f.ftoptions, E'\\n')
        from pg_catalog.pg_foreign_table f
        union all
        select 'pg_user_mapping'::regclass::oid, u.umid, 0, 'options', pg_catalog.array_to_string(u.umoptions, E'\\n')
        from pg_catalog.pg_user_mappings u"""),
    ("other objects", f"""
        select 'pg_extension'::regclass::oid, x.oid, 0, 'name', x.extname::text from pg_catalog.pg_extension x
        where x.oid >= {_N}
        union all
        select 'pg_extension'::regclass::oid, x.oid, 0, 'configuration', pg_catalog.array_to_string(x.extcondition, E'\\n')
        from pg_catalog.pg_extension x where x.oid >= {_N}
        union all
        select 'pg_statistic_ext'::regclass::oid, s.oid, 0, 'name', s.stxname::text from pg_catalog.pg_statistic_ext s
        union all
        select 'pg_statistic_ext'::regclass::oid, s.oid, 0, 'definition', pg_catalog.pg_get_statisticsobjdef(s.oid)
        from pg_catalog.pg_statistic_ext s where s.oid >= {_N}
        union all
        {_NAMED_OBJECTS}
        select 'pg_ts_dict'::regclass::oid, d.oid, 0, 'options', d.dictinitoption from pg_catalog.pg_ts_dict d
        where d.oid >= {_N}
        union all
        {_NAMED_LANGUAGE_OBJECTS}
        select 'pg_am'::regclass::oid, a.oid, 0, 'name', a.amname::text from pg_catalog.pg_am a where a.oid >= {_N}"""),
))
CATALOG_FIELDS = 5
