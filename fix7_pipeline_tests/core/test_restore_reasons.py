"""Issue 22: a restore that stops says the true reason, not "superuser rights" or "a partial dump".

A collation the server lacks (a libc locale, any ICU collation on the ICU-less embedded server) is a property
of the server (rule server_collation): the message names it, what the server offers and how to get one with
ICU. A domain CHECK calling a function that names a table without its schema names the function and the name.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.clone.restore import restore
from fix7_pipeline.demo import builder

SOURCE = "fix7h_restore_reasons"
UNQUALIFIED = """
create table public.codes (code text primary key);
insert into public.codes values ('A'), ('B');
create function public.is_code(v text) returns boolean language sql stable
    as $$ select exists (select 1 from codes where code = v) $$;
create domain public.code_d as text check (public.is_code(value));
create table public.uses (id integer primary key, c public.code_d);
insert into public.uses values (1, 'A');
"""
COLLATED = """
create collation public.german (provider = libc, locale = 'C.utf8');
create table public.names (id integer primary key, name text collate public.german);
insert into public.names values (1, 'x');
"""


def _dump(tmp: Path, name: str, body: str, fmt: str) -> Path:
    builder.drop_clone(name)
    with psycopg.connect(**builder.factory_conninfo(), autocommit=True) as c:
        c.execute(sql.SQL("create database {} template template0 encoding 'UTF8'").format(sql.Identifier(name)))
    try:
        builder.run_sql(name, body)
        return builder.dump_clone(name, fmt, tmp / f"{name}.{fmt}")
    finally:
        builder.drop_clone(name)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("restore_reasons")
    out = {fmt: _dump(d, f"{SOURCE}_u", UNQUALIFIED, fmt) for fmt in ("plain", "custom")}
    out["collated"] = _dump(d, f"{SOURCE}_c", COLLATED, "plain")
    return out


def _edited(src: Path, dest: Path, old: str, new: str) -> Path:
    """The plain dump with one statement changed, as a dump made on a server with that locale would read."""
    text = src.read_text()
    assert old in text, old
    dest.write_text(text.replace(old, new))
    return dest


def _refusal(server, throwaway, path: Path) -> Fix7Error:
    with pytest.raises(Fix7Error) as e:
        restore(server, throwaway, inspect_dump(path), timeout=120)
    return e.value


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_a_function_naming_a_table_without_its_schema_is_named(server, throwaway, dumps, fmt):
    e = _refusal(server, throwaway, dumps[fmt])
    assert e.rule == "unqualified_name", e.message
    assert "is_code" in e.message and "'codes'" in e.message and "public.codes" in e.message
    assert "does not create" not in e.message and "superuser" not in e.message


def test_a_libc_locale_the_server_lacks_is_named_with_what_it_offers(server, throwaway, dumps, tmp_path):
    dump = _edited(dumps["collated"], tmp_path / "de.sql", "locale = 'C.utf8'", "locale = 'de_DE.utf8'")
    e = _refusal(server, throwaway, dump)
    assert e.rule == "server_collation", e.message
    assert "'de_DE.utf8'" in e.message and "C.utf8" in e.message and "POSIX" in e.message
    assert "locale-gen" in e.message and "superuser rights" not in e.message


@pytest.mark.parametrize("old, new, named", [
    ("(provider = libc, locale = 'C.utf8')", "(provider = icu, locale = 'de-DE')", "public.german"),
    ("name text COLLATE public.german", 'name text COLLATE pg_catalog."de-x-icu"', "pg_catalog.de-x-icu"),
])
def test_an_icu_collation_on_the_embedded_server_says_how_to_get_icu(server, throwaway, dumps, tmp_path, old, new,
                                                                    named):
    dump = _edited(dumps["collated"], tmp_path / "icu.sql", old, new)
    e = _refusal(server, throwaway, dump)
    assert e.rule == "server_collation", e.message
    assert named in e.message and "without ICU" in e.message and "built with ICU" in e.message
    assert "--server" in e.message and "C.utf8" in e.message
    assert "does not create" not in e.message and "superuser rights" not in e.message
