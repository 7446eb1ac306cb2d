"""Issue 22: the true reason and the documented exit code, through the CLI.

A contract that cannot be read (YAML) or made (schema SQL PostgreSQL refuses) is a usage error, exit 2, like a
change file that cannot be read: it is the operator's input, not a verdict on the clone. The packet states the
clone's encoding, and a SQL_ASCII dump whose text is not UTF-8 is said so, never passed without a word.
"""

from __future__ import annotations

import json

import pytest

from fix7_pipeline_tests.e2e_support import DagsterHome, load_packet, minimal_plain_dump, rehearse_args, tiny_change


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("true_reasons_home"), "reasons")
    yield h
    h.drop()


def _usage_error(r) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    return r.stderr


@pytest.mark.parametrize("name, text, said", [
    ("contract.yaml", "shape: [this is: not a contract\n", "could not be read"),
    ("contract.sql", "create table public.t (id integer primary key, x no_such_type);\n", "PostgreSQL did not accept"),
])
def test_a_broken_contract_exits_2(home, tmp_path, name, text, said):
    contract = tmp_path / name
    contract.write_text(text)
    r = home.cli(*rehearse_args(minimal_plain_dump(tmp_path / "clone.sql"), tiny_change(tmp_path / "change"),
                                tmp_path / "ev", "--contract", str(contract)))
    err = _usage_error(r)
    assert said in err and str(contract) in err


# -- the clone's encoding ---------------------------------------------------------------------------------

ASCII_SOURCE = "fix7_t_reasons_sql_ascii"


@pytest.fixture(scope="module")
def sql_ascii_dumps(tmp_path_factory):
    """A SQL_ASCII database whose text holds a Latin-1 byte (production servers in SQL_ASCII do), dumped plain and
    custom by the wheel's pg_dump."""
    import psycopg
    from psycopg import sql

    from fix7_pipeline.demo import builder

    builder.drop_clone(ASCII_SOURCE)
    with psycopg.connect(**builder.factory_conninfo(), autocommit=True) as c:
        c.execute(sql.SQL("create database {} template template0 encoding 'SQL_ASCII' locale 'C'").format(
            sql.Identifier(ASCII_SOURCE)))
    with psycopg.connect(**builder.factory_conninfo(ASCII_SOURCE), autocommit=True) as c:
        c.execute("set client_encoding = 'SQL_ASCII'")
        c.execute("create table public.people (id integer primary key, name text, note varchar(40))")
        c.execute(b"insert into public.people values (1, 'Ren\xe9e', 'ok'), (2, 'plain', 'caf\xe9')")
    d = tmp_path_factory.mktemp("sql_ascii")
    try:
        yield {fmt: builder.dump_clone(ASCII_SOURCE, fmt, d / f"ascii.{fmt}") for fmt in ("plain", "custom")}
    finally:
        builder.drop_clone(ASCII_SOURCE)


@pytest.mark.parametrize("fmt", ["custom", pytest.param("plain", marks=pytest.mark.slow)])
def test_a_sql_ascii_dump_with_invalid_utf8_is_stated_never_passed_silently(home, tmp_path, sql_ascii_dumps, fmt):
    ev = tmp_path / "ev"
    home.cli(*rehearse_args(sql_ascii_dumps[fmt], tiny_change(tmp_path / "change"), ev))
    packet = load_packet(ev)
    encoding = packet["clone"]["encoding"]
    assert encoding["dump"] == "SQL_ASCII" and encoding["clone_database"] == "UTF8"
    assert encoding["invalid_utf8"] is True
    assert encoding["invalid_utf8_columns"] == ["public.people.name", "public.people.note"]
    said = [f for f in packet["stages"]["sanitization"]["findings"] if f["rule"] == "invalid_utf8"]
    assert len(said) == 1 and "SQL_ASCII" in said[0]["message"] and "public.people.name" in said[0]["message"]
    assert "0xe9" not in json.dumps(packet)  # the server's error names the bytes; it is never recorded
