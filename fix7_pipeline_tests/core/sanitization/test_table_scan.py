"""A table's scan and the contract's look-alike columns: ids, public keys and client ids the contract names
silence the word-keyed rules there, never a provider's pattern (a real token in such a column is found)."""

from __future__ import annotations

from fix7_pipeline.core.contract.load import load_contract
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
