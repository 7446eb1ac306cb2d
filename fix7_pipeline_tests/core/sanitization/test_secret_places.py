"""Issue 22: a credential URI is a finding wherever the dump puts it, through the whole scan (scan_secrets).

A SQL-standard function body (BEGIN ATOMIC) keeps no source text (pg_proc.prosrc is empty; the body is a
parse tree in prosqlbody), so it is read back with pg_get_function_sqlbody; an extended-statistics
expression with pg_get_statisticsobjdef.
"""

from __future__ import annotations

import pytest

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.sanitization.secrets import scan_secrets
from fix7_pipeline_tests.e2e_support import rnd
from fix7_pipeline_tests.pg import as_owner

RULE = "betterleaks.generic-credential-uri"


def _scan(server, tw):
    found = scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"), tw.database,
                         load_contract(None), "salt")
    return [f for f in found if f.rule == RULE]


@pytest.mark.parametrize("ddl, place", [
    ("create function public.etl_source() returns text language sql begin atomic "
     "select 'postgres://etl:{pw}@db.prod.internal/births'; end", "function public.etl_source() (body)"),
    ("create procedure public.etl_load() language sql begin atomic "
     "select 'postgres://user:{pw}@host/db'; end", "procedure public.etl_load() (body)"),
    ("create function public.etl_plain() returns text language plpgsql as $$ begin "
     "return 'postgres://user:{pw}@host/db'; end $$", "function public.etl_plain() (body)"),
    ("create table public.t (a text, b text); create statistics public.s on (a || 'postgres://u:{pw}@db.prod/x'),"
     " b from public.t", "statistics object public.s (definition)"),
])
def test_a_credential_uri_is_a_finding_wherever_it_is(server, throwaway, ddl, place):
    with as_owner(server, throwaway) as c:
        c.execute(ddl.format(pw=rnd(14)))
    found = _scan(server, throwaway)
    assert [f.extra.get("place") for f in found] == [place], [f.message for f in found]
