"""The contract: the shipped default equals the reference SQL, and the SQL parser agrees with PostgreSQL."""

from __future__ import annotations

import pytest
import yaml

from fix7_pipeline.core.contract import contract_from_dict, contract_from_sql, dump_contract_yaml, load_contract
from fix7_pipeline.core.errors import Fix7Error
from fix7_pipeline.core.server import pg_tool, run_tool
from fix7_pipeline.core.shape import check_shape, read_catalog_shape
from fix7_pipeline_tests.core.test_shape import REFERENCE_SQL
from fix7_pipeline_tests.pg import as_owner, scratch

HAND_WRITTEN = """
CREATE TABLE "Odd Schema Free" (
    "Id" serial PRIMARY KEY,
    code varchar(12) NOT NULL UNIQUE,
    amount numeric(10, 2) DEFAULT 0 CHECK (amount >= 0),
    seen timestamptz,
    flags int[],
    parent integer REFERENCES "Odd Schema Free" ON DELETE SET NULL,
    note text COLLATE "C" DEFAULT 'a;b'
);
create table child (
    a int8 not null, b int2 not null, c bool default true,
    constraint child_pk primary key (a, b),
    foreign key (a) references "Odd Schema Free" ("Id") on update cascade,
    check (a > 0 and b > 0)
);
CREATE UNIQUE INDEX child_c_idx ON child USING btree (c);
"""


def test_default_contract_shape_equals_reference_sql():
    default = load_contract(None)
    derived = contract_from_sql(REFERENCE_SQL.read_text())
    assert default.shape_dict() == derived.shape_dict()
    assert default.tables["birth_registry"].column("content_hash").type == "character(64)"
    assert default.tables["directus_sessions"].foreign_keys[0].on_delete == "CASCADE"
    assert default.must_be_empty == ["directus_sessions"]
    assert default.must_be_null["directus_users"] == ["password", "token", "tfa_secret", "auth_data"]
    assert default.hash_columns == {"birth_registry": ["content_hash", "birth_certificate_hash"],
                                    "os_proposal_approvals": ["approval_hash"]}
    assert {(p["table"], p["column"]) for p in default.pointers} == {
        ("directus_webhooks", "url"), ("directus_operations", "options"), ("directus_settings", "project_url")}
    assert all(t.required for t in default.tables.values())


def test_parser_agrees_with_the_catalog_and_with_pg_dump(server, throwaway, tmp_path):
    """Reference loaded into PostgreSQL: catalog == parse(reference) == parse(pg_dump --schema-only)."""
    with as_owner(server, throwaway) as c:
        c.execute(REFERENCE_SQL.read_text())
        c.execute(HAND_WRITTEN)
        catalog = {n: t.as_dict() for n, t in read_catalog_shape(c).items()}
        hand = contract_from_sql(HAND_WRITTEN)
        assert check_shape(c, hand, scratch(server, throwaway)) == [f for f in check_shape(c, hand, scratch(server, throwaway)) if f.severity == "note"]
        assert not [f for f in check_shape(c, hand, scratch(server, throwaway)) if f.severity != "note"]
        # a real difference in a hand-written check stays an error after PostgreSQL deparses it
        hand.tables["child"].checks[0].definition = "CHECK (a > 1 and b > 0)"
        assert [f.rule for f in check_shape(c, hand, scratch(server, throwaway)) if f.severity == "error"] == ["shape.check"]
    parsed = contract_from_sql(REFERENCE_SQL.read_text()).shape_dict()["tables"]
    assert parsed == {n: t for n, t in catalog.items() if n in parsed}
    assert hand.tables["Odd Schema Free"].column("flags").type == "integer[]"
    assert hand.tables["child"].primary_key.columns == ["a", "b"]
    assert hand.tables["Odd Schema Free"].foreign_keys[0].on_delete == "SET NULL"
    out = tmp_path / "schema.sql"
    env = server.tool_env(throwaway.database, throwaway.login, "test dump", "pg_dump")
    res = run_tool([pg_tool("pg_dump"), "--schema-only", "-f", str(out)], env)
    assert res.returncode == 0, res.stderr
    dumped = load_contract(out)
    assert dumped.shape_dict()["tables"] == catalog
    assert dumped.tables["Odd Schema Free"].column("Id").default == \
        "nextval('public.\"Odd Schema Free_Id_seq\"'::regclass)"


def test_yaml_round_trip_and_sql_autodetect(tmp_path):
    default = load_contract(None)
    y = tmp_path / "c.yaml"
    y.write_text(dump_contract_yaml(default))
    again = load_contract(y)
    assert again.shape_dict() == default.shape_dict() and again.annotations == default.annotations
    s = tmp_path / "c.sql"
    s.write_text(REFERENCE_SQL.read_text())
    from_file = load_contract(s)
    assert from_file.shape_dict() == default.shape_dict() and from_file.annotations == {}


@pytest.mark.parametrize("text", [
    "just some words\n",
    "shape: 3\n",
    "version: 1\nshape:\n  tables: {}\n",
    "version: 2\nshape:\n  tables: {t: {columns: [{name: a, type: int}]}}\n",
    "shape:\n  tables:\n    t:\n      columns: [{type: int}]\n",
    "CREATE TABLE t (a int, CONSTRAINT x FOREIGN KEY (a) REFERENCES nowhere);\n",
    "CREATE TABLE t (a int;\n",
    "CREATE TABLE t (a int);\nALTER TABLE ONLY t ALTER COLUMN b SET DEFAULT 1;\n",
    "key: [unclosed\n",
])
def test_unreadable_contracts_fail_closed(tmp_path, text):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(Fix7Error) as e:
        load_contract(p)
    assert "could not be read" in e.value.message


def test_missing_file_fails_closed(tmp_path):
    with pytest.raises(Fix7Error):
        load_contract(tmp_path / "nope.yaml")


def test_shape_section_is_plain_yaml():
    data = yaml.safe_load(dump_contract_yaml(load_contract(None)))
    assert set(data) == {"version", "shape", "annotations"}
    cols = data["shape"]["tables"]["directus_sessions"]["columns"]
    assert {"name": "user", "type": "uuid", "nullable": True} in cols


def test_hot_tables_and_production_rows_are_annotations():
    default = load_contract(None)
    assert default.hot_tables == ["birth_registry", "os_proposal_approvals"]
    assert default.production_rows == {}
    data = default.as_dict()
    data["annotations"]["production_rows"] = {"birth_registry": 40_000_000}
    assert contract_from_dict(data).production_rows == {"birth_registry": 40_000_000}


@pytest.mark.parametrize("key, value", [("hot_tables", "birth_registry"), ("hot_tables", [1]),
                                        ("production_rows", {"t": -1}), ("production_rows", {"t": "40M"}),
                                        ("production_rows", ["t"])])
def test_unusable_impact_annotations_fail_closed(key, value):
    data = load_contract(None).as_dict()
    data["annotations"][key] = value
    with pytest.raises(Fix7Error, match=key):
        contract_from_dict(data)
