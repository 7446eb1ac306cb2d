"""The contract: YAML as written, or read from PostgreSQL's catalog after a screened restore of the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fix7_pipeline.core.intake.contract_from_schema import contract_from_schema
from fix7_pipeline.core.contract.from_yaml import contract_from_dict, dump_contract_yaml
from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.postgres.server import pg_tool
from fix7_pipeline.core.postgres.pg_tools import run_tool
from fix7_pipeline.core.postgres.throwaways import leftovers
from fix7_pipeline.core.shape.schema_shape import check_shape, compare_shapes, read_catalog_shape
from fix7_pipeline_tests.core.test_shape import REFERENCE_SQL
from fix7_pipeline_tests.pg import as_owner, scratch

RENTAL_SHOP = Path(__file__).parents[1] / "data" / "rental_shop.sql"


def test_default_contract_shape_equals_reference_sql(server):
    """The shipped YAML is what `fix7 contract from-sql` derives from the reference SQL, and nothing else."""
    default = load_contract(None)
    derived = contract_from_schema(server, REFERENCE_SQL)
    assert derived.shape_dict() == default.shape_dict()
    assert derived.annotations == {}  # annotations are the YAML's own: PostgreSQL knows no secrets
    assert default.tables["birth_registry"].column("content_hash").type == "character(64)"
    assert default.tables["directus_sessions"].foreign_keys[0].on_delete == "CASCADE"
    assert default.must_be_empty == ["directus_sessions"]
    assert default.must_be_null["directus_users"] == ["password", "token", "tfa_secret", "auth_data"]
    assert default.hash_columns == {"birth_registry": ["content_hash", "birth_certificate_hash"],
                                    "os_proposal_approvals": ["approval_hash"]}
    assert {(p["table"], p["column"]) for p in default.pointers} == {
        ("directus_webhooks", "url"), ("directus_operations", "options"), ("directus_settings", "project_url")}
    assert all(t.required for t in default.tables.values())


def test_schema_kinds_postgresql_accepts(server, throwaway, tmp_path):
    """Partitions, inheritance, typed, LIKE-made tables, identity and generated columns: read from the catalog."""
    before = set(leftovers(server))
    c = contract_from_schema(server, RENTAL_SHOP)
    assert set(leftovers(server)) == before  # the throwaway the schema was restored into is gone
    t = c.tables
    assert t["payment"].partition_by == "RANGE (payment_date)" and t["payment"].partition_of is None
    assert t["payment_p2022_01"].partition_of == "payment"
    assert t["payment_p2022_01"].partition_bound == \
        "FOR VALUES FROM ('2022-01-01 00:00:00+00') TO ('2022-02-01 00:00:00+00')"
    assert t["payment_default"].partition_bound == "DEFAULT"
    assert t["store.inventory"].partition_by == "LIST (store_id)"
    assert t["store.inventory_2"].partition_of == "store.inventory"
    assert t["store.inventory_2"].partition_bound == "FOR VALUES IN (2)"
    assert t["staff_log_archive"].inherits == ["staff_log"] and [x.name for x in t["staff_log_archive"].columns] == [
        "id", "logged_at", "note", "archived_by"]
    assert t["address"].of_type == "public.address_t" and t["address"].primary_key.columns == ["street", "city"]
    assert t["customer_import"].inherits == [] and t["customer_import"].column("customer_id").identity is None
    assert t["customer"].column("customer_id").identity == "always"
    assert t["rental"].column("rental_id").identity == "by default"
    full_name = t["customer"].column("full_name")
    assert full_name.generated == "((first_name || ' '::text) || last_name)" and full_name.generated_kind == "stored"
    assert full_name.default is None
    assert t["film"].column("film_id").default == "nextval('public.film_film_id_seq'::regclass)"
    assert "customer_list" not in t  # a view is not a table
    # YAML round trip, and the schema itself matches its own contract with no difference at all
    again = contract_from_dict(yaml.safe_load(dump_contract_yaml(c)), "again")
    assert again.shape_dict() == c.shape_dict()
    with as_owner(server, throwaway) as conn:
        conn.execute(RENTAL_SHOP.read_text())
        assert check_shape(conn, again, scratch(server, throwaway)) == []
        actual = read_catalog_shape(conn)
    # each kind, changed, is an error naming it
    changed = contract_from_dict(yaml.safe_load(dump_contract_yaml(c)), "changed")
    changed.tables["payment"].partition_by = "RANGE (payment_id)"
    changed.tables["payment_p2022_02"].partition_bound = "FOR VALUES FROM ('2022-02-01') TO ('2022-04-01')"
    changed.tables["staff_log_archive"].inherits = []
    changed.tables["address"].of_type = None
    changed.tables["customer"].column("customer_id").identity = "by default"
    changed.tables["film"].column("rental_rate_cents").generated = "(rental_rate)::integer"
    errors = {(f.rule, f.table) for f in compare_shapes(changed, actual) if f.is_error}
    assert errors == {("shape.partitioning", "payment"), ("shape.partitioning", "payment_p2022_02"),
                      ("shape.inheritance", "staff_log_archive"), ("shape.typed_table", "address"),
                      ("shape.identity", "customer"), ("shape.generated", "film")}


def test_pg_dump_schema_only_of_every_format_gives_the_same_contract(server, throwaway, tmp_path):
    """from-sql on the plain schema-only dump and from-dump on each archive: one contract, the catalog's."""
    with as_owner(server, throwaway) as conn:
        conn.execute(RENTAL_SHOP.read_text())
        conn.execute(REFERENCE_SQL.read_text())
        catalog = {n: t.as_dict() for n, t in read_catalog_shape(conn).items()}
    env = server.tool_env(throwaway.database, throwaway.login, "test dump", "pg_dump")
    shapes = {}
    for fmt in ("p", "c", "d", "t"):
        out = tmp_path / f"schema.{fmt}"
        res = run_tool([pg_tool("pg_dump"), "--schema-only", "-F", fmt, "-f", str(out)], env)
        assert res.returncode == 0, res.stderr
        shapes[fmt] = contract_from_schema(server, out).shape_dict()["tables"]
    assert shapes["p"] == catalog
    assert shapes["c"] == shapes["d"] == shapes["t"] == catalog
    assert load_contract(tmp_path / "schema.c", server=server).shape_dict()["tables"] == catalog


def test_a_schema_postgresql_refuses_or_the_screen_refuses_is_not_a_contract(server, tmp_path):
    bad = tmp_path / "bad.sql"
    bad.write_text("CREATE TABLE t (a int);\nCREATE EXTENSION postgres_fdw;\n")
    with pytest.raises(Fix7Error) as e:
        contract_from_schema(server, bad)
    assert "postgres_fdw" in e.value.message and e.value.rule == "contract"
    with pytest.raises(Fix7Error) as e:
        load_contract(RENTAL_SHOP)  # schema SQL needs PostgreSQL to read it
    assert "no rehearsal server" in e.value.message


def test_yaml_round_trip_and_sql_autodetect(tmp_path, server):
    default = load_contract(None)
    y = tmp_path / "c.yaml"
    y.write_text(dump_contract_yaml(default))
    again = load_contract(y)
    assert again.shape_dict() == default.shape_dict() and again.annotations == default.annotations
    s = tmp_path / "c.sql"
    s.write_text(REFERENCE_SQL.read_text())
    from_file = load_contract(s, server=server)
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
def test_unreadable_contracts_fail_closed(tmp_path, text, server):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(Fix7Error) as e:
        load_contract(p, server=server)
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
