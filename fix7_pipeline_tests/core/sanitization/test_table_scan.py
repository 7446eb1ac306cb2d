"""A table's scan and the contract's look-alike columns: ids, public keys and client ids the contract names
silence the word-keyed rules there, never a provider's pattern (a real token in such a column is found)."""

from __future__ import annotations

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.contract.model import with_annotations
from fix7_pipeline.core.sanitization.secrets import scan_secrets
from fix7_pipeline_tests.e2e_support import rnd
from fix7_pipeline_tests.pg import as_owner


def _rows_found(server, tw, contract) -> dict[str, set[str]]:
    found = scan_secrets(lambda db: server.connect(db, tw.login, purpose="secret scan"), tw.database, contract,
                         "salt-lookalike")
    out: dict[str, set[str]] = {}
    for f in found:
        if f.table == "client_keys":
            out.setdefault(f.row_key, set()).update(f.extra.get("rules") or [f.rule])
    return out


def test_lookalike_columns_silence_word_keyed_rules_only(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table public.client_keys (id int primary key, client_config text)")
        c.execute("insert into public.client_keys values (1, %s), (2, %s)",
                  (f"client_token={rnd(24)}", f"rotated to ghp_{rnd(36)}"))
    base = load_contract(None)
    plain = _rows_found(server, throwaway, base)
    assert "fix7.secret-assignment" in plain["1"] and "betterleaks.github-pat" in plain["2"]
    annotated = with_annotations(base, {**base.annotations, "lookalike_columns": {"client_keys": ["client_config"]}})
    silenced = _rows_found(server, throwaway, annotated)
    assert "1" not in silenced and "betterleaks.github-pat" in silenced["2"]


def test_encoded_secrets_are_found_through_copy_once_per_row(server, throwaway):
    """Through the whole table scan (COPY text, chunk candidates, each value confirmed alone): JSON inside JSON
    strings at depth 1 and 2, a URL-encoded query, a base64 config blob; each one finding on its own row."""
    import base64
    import json
    from urllib.parse import quote

    from psycopg.types.json import Jsonb

    def nest(inner: dict, depth: int) -> dict:
        doc: object = inner
        for _ in range(depth):
            doc = {"payload": json.dumps(doc)}
        return doc

    rows = {1: Jsonb(nest({"auth": rnd(24)}, 1)), 2: Jsonb(nest({"credential": rnd(24)}, 2)),
            3: Jsonb({"next": "/cb?" + quote(f"api_key={rnd(24)}&x=1", safe="")}),
            4: Jsonb({"config_b64": base64.b64encode(f"DB_PASSWORD={rnd(22)}\n".encode()).decode()}),
            5: Jsonb(nest({"note": "nothing secret here", "count": 3}, 2))}
    with as_owner(server, throwaway) as c:
        c.execute("create table public.client_keys (id int primary key, body jsonb)")
        for i, v in rows.items():
            c.execute("insert into public.client_keys values (%s, %s)", (i, v))
    found = scan_secrets(lambda db: server.connect(db, throwaway.login, purpose="secret scan"), throwaway.database,
                         load_contract(None), "salt-encoded")
    per_row = sorted(f.row_key for f in found if f.table == "client_keys")
    assert per_row == ["1", "2", "3", "4"]
