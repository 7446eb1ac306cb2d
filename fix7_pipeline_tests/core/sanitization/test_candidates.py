"""Table A from a disk with real dumps, unrelated databases and credential stores that must never be opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fix7_pipeline.core.sanitization.candidates import find_candidates, format_table
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.core import hostile


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("home")
    name = "fix7h_candidates_demo"
    builder.build_clone(name, registry_rows=5)
    try:
        builder.dump_clone(name, "custom", root / "dumps" / "birth surface ü.dump")
        builder.dump_clone(name, "directory", root / "dumps" / "birth_dir")
        builder.dump_clone(name, "plain-gz", root / "dumps" / "birth.sql.gz")
    finally:
        builder.drop_clone(name)
    other = "fix7h_candidates_other"
    hostile.factory_db(other, "create table public.notes (id int primary key, body text);")
    try:
        hostile.pg_dump(other, root / "dumps" / "unrelated.sql", "-Fp")
    finally:
        builder.drop_clone(other)
    made = hostile.fdw_and_prod_webhook(root / "dumps")
    (made["plain"]).unlink()
    made["webhooks"].unlink()
    (root / "apps").mkdir()
    con = sqlite3.connect(root / "apps" / "state.sqlite")
    con.execute("create table t(x)")
    con.commit()
    con.close()
    stores = [root / ".config" / "gcloud" / "credentials.db", root / ".config" / "gcloud" / "access_tokens.db",
              root / "Library" / "Chrome" / "Default" / "Login Data", root / ".pgpass", root / "vault.kdbx",
              root / ".aws" / "credentials", root / "Bitwarden" / "data.json", root / ".netrc",
              root / "login.keychain-db"]
    for p in stores:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("secret")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "hidden.dump").write_bytes((root / "dumps" / "birth surface ü.dump").read_bytes())
    (root / "docs").mkdir()
    (root / "docs" / "data.json").write_text("{}")
    return root


def by_name(rows):
    return {Path(r["candidate_clone"]).name: r for r in rows}


def test_table_a_classifies_dumps_databases_and_credential_stores(disk, monkeypatch):
    import builtins

    opened: list[str] = []
    real_open = builtins.open

    def recording_open(file, *a, **kw):
        opened.append(str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", recording_open)
    rows = by_name(find_candidates([disk]))
    monkeypatch.undo()
    assert any(o.endswith("state.sqlite") for o in opened)  # the recorder sees what is sniffed
    assert not [o for o in opened if Path(o).name in {"credentials.db", "access_tokens.db", "Login Data", ".pgpass",
                                                       "vault.kdbx", "credentials", ".netrc", "login.keychain-db"}
                or o.endswith("Bitwarden/data.json")]
    for name in ("birth surface ü.dump", "birth_dir", "birth.sql.gz"):
        r = rows[name]
        assert r["production_shaped"] is True and r["present"] is True, r
        assert r["allowed"] == "candidate - rehearsal gates decide" and r["isolated"] == "to be proven after restore"
    assert rows["unrelated.sql"]["production_shaped"] is False and rows["unrelated.sql"]["allowed"] is False
    fdw = rows["fdw.dump"]
    assert fdw["allowed"] is False and fdw["isolated"] is False and "foreign_server" in fdw["note"]
    assert rows["state.sqlite"]["allowed"] is False and "SQLite" in rows["state.sqlite"]["source"]
    for name in ("credentials.db", "access_tokens.db", "Login Data", ".pgpass", "vault.kdbx", "credentials",
                 "data.json", ".netrc", "login.keychain-db"):
        r = rows[name]
        assert r["allowed"] is False and r["contains_secrets"] == "credential store - MUST NOT be used", name
        assert "not opened" in r["note"]
    assert "hidden.dump" not in rows  # .venv is skipped
    assert not any(r["candidate_clone"].endswith("docs/data.json") for r in find_candidates([disk]))


def test_walk_is_bounded_and_missing_roots_are_reported(disk, tmp_path):
    rows = find_candidates([disk], max_files=3)
    assert rows[-1]["source"] == "search limit" and "Stopped after 3 files" in rows[-1]["note"]
    shallow = find_candidates([disk], max_depth=0)
    assert not any("gcloud" in r["candidate_clone"] for r in shallow)
    missing = find_candidates([tmp_path / "nowhere"])
    assert missing == [missing[0]] and missing[0]["present"] is False


def test_format_table_is_readable(disk):
    text = format_table(find_candidates([disk]))
    header = text.splitlines()[0]
    for col in ("candidate_clone", "production_shaped", "isolated", "contains_secrets", "allowed", "present"):
        assert col in header
    assert "credential store - MUST NOT be used" in text and "note:" in text
    assert "secret\n" not in text
    assert format_table([]) == "No candidate clones found."
