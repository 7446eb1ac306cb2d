"""The fingerprint's row hash: exact values, no blindness to values moved between rows, only built-in functions
called, and a method recorded so fingerprints made another way never compare equal."""

from __future__ import annotations

from fix7_pipeline.core.anchor.diff import fingerprint_differences, restore_diff
from fix7_pipeline.core.anchor.fingerprint import ROW_HASH, anchor_id, fingerprint, table_fingerprints
from fix7_pipeline.core.postgres.throwaways import create_database
from fix7_pipeline_tests.pg import as_owner, proof, superuser


def _hash(c, table: str) -> str:
    return table_fingerprints(c)[f"public.{table}"]["hash"]


def test_values_swapped_between_rows_change_the_hash(server, throwaway):
    """hash_record_extended adds its columns' hashes linearly; unmixed, a table's sum would be the sum of its
    columns' sums, the same after any permutation of one column's values among the rows."""
    with as_owner(server, throwaway) as c:
        c.execute("create table t (id int primary key, who text, n bigint, at timestamptz)")
        c.execute("insert into t select g, 'w' || g, g * 1000, '2025-01-01'::timestamptz + g * interval '1 s' "
                  "from generate_series(1, 50) g")
        before = _hash(c, "t")
        c.execute("update t set who = case id when 1 then 'w2' else 'w1' end where id in (1, 2)")
        assert _hash(c, "t") != before
        c.execute("update t set who = 'w' || id")
        assert _hash(c, "t") == before
        c.execute("update t set n = case id when 3 then 4000 else 3000 end, "
                  "at = case id when 3 then '2025-01-01 00:00:04+00'::timestamptz "
                  "else '2025-01-01 00:00:03+00'::timestamptz end where id in (3, 4)")
        assert _hash(c, "t") != before


def test_values_equal_under_their_type_but_stored_apart_differ(server, throwaway):
    """The send form, not the type's equality: what a rollback turned 1.00 into 1.0 did not put back."""
    with as_owner(server, throwaway) as c:
        c.execute("create table v (id int primary key, amount numeric, ratio float8, span interval, doc jsonb, "
                  "code char(4), big bigint)")
        c.execute("insert into v values (1, 1.00, 0, '1 day', '{\"a\": 1.0}', 'ab', 1)")
        base = _hash(c, "v")
        for change in ("amount = 1.0", "ratio = '-0'", "span = '24 hours'", "doc = '{\"a\": 1.00}'",
                       "big = 4294967296 + 4294967297"):
            c.execute(f"update v set {change}")
            assert _hash(c, "v") != base, change
            c.execute("update v set amount = 1.00, ratio = 0, span = '1 day', doc = '{\"a\": 1.0}', big = 1")
            assert _hash(c, "v") == base
        by = table_fingerprints(c)["public.v"]["hashed_by"]
        assert by == {"id": "int4send", "amount": "numeric_send", "ratio": "float8send", "span": "interval_send",
                      "doc": "jsonb_send", "code": "bpcharsend", "big": "int8send"}


def test_only_built_in_send_functions_of_exactly_the_type(server, throwaway):
    """A domain, array, composite or a type the dump made goes as row text; an enum by its label (enum_send);
    a function the dump named like a built-in one is never called."""
    with superuser(server, throwaway.database) as su:
        # a base type with functions of its own, even in pg_catalog, as only a superuser could make them
        su.execute("create type public.fake4")
        for name, args, returns in (("in", "cstring", "fake4"), ("out", "fake4", "cstring"),
                                    ("recv", "internal", "fake4"), ("send", "fake4", "bytea")):
            su.execute(f"create function pg_catalog.fake4{name}({args}) returns {returns} language internal strict "
                       f"immutable as 'int4{name}'")
        su.execute("create type public.fake4 (input = fake4in, output = fake4out, receive = fake4recv, "
                   "send = fake4send, internallength = 4, passedbyvalue, alignment = int4)")
        su.execute(f"alter type public.fake4 owner to {throwaway.login.role}")
    with as_owner(server, throwaway) as c:
        c.execute("create domain pos as int check (value > 0); create type mood as enum ('sad', 'ok');"
                  "create type pair as (a int, b text)")
        c.execute("create function public.int4send(integer) returns bytea language plpgsql as "
                  "$$ begin raise exception 'the dump''s int4send was called'; end $$")
        c.execute("create function public.hashtextextended(text, bigint) returns bigint language plpgsql as "
                  "$$ begin raise exception 'the dump''s hashtextextended was called'; end $$")
        c.execute("create table odd (id int primary key, p pos, m mood, r pair, a int[], j json, f fake4)")
        c.execute("insert into odd values (1, 5, 'ok', (1, 'x'), '{1,2}', '{\"k\": 1}', '7')")
        c.execute("set search_path = public, pg_catalog")
        fp = fingerprint(c)
        by = fp["tables"]["public.odd"]["hashed_by"]
        assert by == {"id": "int4send", "p": "text", "m": "enum_send", "r": "text", "a": "text", "j": "json_send",
                      "f": "text"}
        base = fp["tables"]["public.odd"]["hash"]
        c.execute("update odd set a = '[0:1]={1,2}'")  # the same elements, other bounds: the text tells them apart
        assert _hash(c, "odd") != base
        c.execute("update odd set a = '{1,2}', f = '8'")
        assert _hash(c, "odd") != base
        c.execute("update odd set f = '7'")
        assert _hash(c, "odd") == base


def test_the_method_is_part_of_the_fingerprint(server, throwaway):
    """A fingerprint stored by a fix7 that hashed rows another way never equals one made now."""
    with as_owner(server, throwaway) as c:
        c.execute("create table t (id int primary key); insert into t values (1)")
        now = fingerprint(c)
    assert now["row_hash"] == ROW_HASH
    older = {k: v for k, v in now.items() if k != "row_hash"}
    assert anchor_id(older) != anchor_id(now)
    assert fingerprint_differences(older, now) == [{"section": "row_hash", "object": None,
                                                    "change": "section differs"}]


def test_a_column_whose_type_changed_is_schema_not_rows(server, throwaway):
    """int -> bigint with the same values: the send forms differ, the rows do not; the diff hashes that column
    as text on both sides and reports the column alone."""
    with as_owner(server, throwaway) as c:
        c.execute("create table r (id int primary key, n int)")
        c.execute("insert into r select g, g from generate_series(1, 300) g")
    anchor = f"{throwaway.database}_anchor"
    throwaway.extra_databases.append(anchor)
    create_database(server, anchor, throwaway.login, template=throwaway.database)
    with proof(server, throwaway, anchor) as c:
        fp = fingerprint(c)
    with as_owner(server, throwaway) as c:
        c.execute("alter table r alter column n type bigint")
    with proof(server, throwaway) as after, proof(server, throwaway, anchor) as anchor_conn:
        after_fp = fingerprint(after)
        assert after_fp["tables"]["public.r"]["hash"] != fp["tables"]["public.r"]["hash"]
        result = restore_diff(fp, after_fp, anchor_conn, after)
    assert result["tables"] == [] and result["tables_compared"] == 1
    assert [o["object"] for o in result["schema"]] == ["column public.r.n"]
