"""Builders of real and hostile dumps for the core tests.

Sources live on the demo factory server (its own embedded PostgreSQL, with the production roles
`directus` and `birth_app` the rehearsal server must never have); dumps are made with the wheel's
pg_dump exactly as an operator would, then, for hostile cases, bent the way an attacker would.
"""

from __future__ import annotations

import gzip
import os
import secrets
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from fix7_pipeline.demo import builder
from fix7_pipeline.core.postgres.server import pg_tool


def factory_db(name: str, setup_sql: str) -> str:
    """A fresh factory database with `setup_sql` run in it (as the factory's superuser)."""
    builder.drop_clone(name)
    with psycopg.connect(**builder.factory_conninfo(), autocommit=True) as c:
        for role in builder.OWNER_ROLES:
            if not c.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
                c.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        c.execute(sql.SQL("create database {} template template0 encoding 'UTF8'").format(sql.Identifier(name)))
    with psycopg.connect(**builder.factory_conninfo(name), autocommit=True) as c:
        c.execute(setup_sql)
    return name


def pg_dump(database: str, out: Path, *args: str) -> Path:
    """The wheel's pg_dump against the factory, with extra switches (e.g. -t to take part of a database)."""
    info = builder.factory_conninfo(database)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=info["host"], PGPORT=str(info["port"]), PGUSER=info["user"], PGDATABASE=database)
    r = subprocess.run([pg_tool("pg_dump"), *args, "-f", str(out)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def marker_path() -> Path:
    return Path("/tmp") / f"fix7-marker-{secrets.token_hex(8)}"


CHECK_WRITES_FILE_SQL = """
create table public.guarded (id int primary key, note text);
insert into public.guarded values (1, 'one'), (2, 'two');
create function public.leave_mark(i int) returns boolean language plpgsql as $f$
begin
  execute format('copy (select %s) to %L', i, '{marker}');
  return true;
end $f$;
alter table public.guarded add constraint guarded_mark check (public.leave_mark(id)) not valid;
update pg_constraint set convalidated = true where conname = 'guarded_mark';
alter table public.guarded owner to directus;
alter function public.leave_mark(int) owner to directus;
"""


def check_constraint_file_writer(tmp: Path, marker: Path, fmt: str = "plain") -> Path:
    """A dump whose CHECK constraint calls a function that writes a server-side file during COPY."""
    name = f"fix7h_mark_{secrets.token_hex(3)}"
    factory_db(name, CHECK_WRITES_FILE_SQL.format(marker=marker))
    try:
        flag = {"plain": "-Fp", "custom": "-Fc"}[fmt]
        return pg_dump(name, tmp / f"mark.{fmt}", flag)
    finally:
        builder.drop_clone(name)


def with_lines_after_unrestrict(plain: Path, out: Path, extra: list[str]) -> Path:
    """A real plain dump with lines appended after pg_dump's closing \\unrestrict (the restrict-mode escape)."""
    text = plain.read_text()
    assert "\\unrestrict " in text, "this pg_dump writes no \\restrict pair"
    out.write_text(text.rstrip("\n") + "\n" + "\n".join(extra) + "\n")
    return out


def with_line_inserted(plain: Path, out: Path, before: str, new_lines: list[str]) -> Path:
    """A real plain dump with lines inserted before the first line starting with `before`."""
    lines = plain.read_text().splitlines(keepends=True)
    idx = next(i for i, ln in enumerate(lines) if ln.startswith(before))
    lines[idx:idx] = [ln + "\n" for ln in new_lines]
    out.write_text("".join(lines))
    return out


FDW_SQL = """
create extension postgres_fdw;
create server prod_db foreign data wrapper postgres_fdw options (host 'db.prod.corp.internal', dbname 'directus');
create user mapping for postgres server prod_db options (user 'directus', password 'prod-password-not-for-tests');
create foreign table public.remote_registry (id uuid) server prod_db;
create table public.directus_webhooks (
    id integer primary key, name varchar(255) not null, method varchar(10) default 'POST' not null,
    url varchar(255) not null, status varchar(10) default 'active' not null, data boolean default true not null,
    actions varchar(100) not null, collections varchar(255) not null, headers json);
insert into public.directus_webhooks values
  (1, 'Prod notifier', 'POST', 'https://hooks.prod.corp.internal/birth', 'active', true, 'create', 'birth_registry',
   null),
  (2, 'Test notifier', 'POST', 'https://certs.example.test/hooks/birth', 'active', true, 'create', 'birth_registry',
   null);
alter table public.directus_webhooks owner to directus;
grant select on public.directus_webhooks to birth_app;
"""


def fdw_and_prod_webhook(tmp: Path) -> dict[str, Path]:
    """Dumps of a database with FDW + user mapping to a production-looking host and a webhook to production:
    the whole of it (custom and plain) and, with -t, just the webhooks table (what a non-superuser can restore)."""
    name = f"fix7h_fdw_{secrets.token_hex(3)}"
    factory_db(name, FDW_SQL)
    try:
        return {"custom": pg_dump(name, tmp / "fdw.dump", "-Fc"),
                "plain": pg_dump(name, tmp / "fdw.sql", "-Fp"),
                "webhooks": pg_dump(name, tmp / "webhooks only.dump", "-Fc", "-t", "public.directus_webhooks")}
    finally:
        builder.drop_clone(name)


def gzip_bomb(path: Path, expanded_bytes: int) -> Path:
    """A gzip'd 'plain dump' with a real header whose COPY data is one row repeated: it expands ~1000:1."""
    block = b"x" * 1023 + b"\n"
    block *= 1024
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(b"--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 18.6\n"
                b"-- Dumped by pg_dump version 18.6\n\nCOPY public.t (x) FROM stdin;\n")
        for _ in range(expanded_bytes // len(block)):
            f.write(block)
    return path


def truncated_copy(src: Path, out: Path, keep_fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    out.write_bytes(data[: int(len(data) * keep_fraction)])
    return out
