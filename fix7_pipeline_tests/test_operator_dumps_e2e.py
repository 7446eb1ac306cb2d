"""End to end on a schema that is not the birth surface: every dump an operator hands over.

A pagila-like sample database (range-partitioned payments on a timestamp, a list-partitioned table in
another schema, inheritance, a typed table, a LIKE-made table, identity and generated columns) is built
on the PostgreSQL 18 factory and, when Debian's PostgreSQL 15 is installed, on a 15 factory too; its
pg_dump output of every format is rehearsed. The contract comes from `fix7 contract from-sql` on a
schema-only dump, with no hand edit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, assert_blocked_at_gate

SCHEMA = Path(__file__).parent / "data" / "rental_shop.sql"
MAJORS = [18] + ([15] if builder.system_pg_dump(15) and builder.system_pg_bin(15) else [])

DATA_SQL = """
insert into public.customer (first_name, last_name, email, active)
  select 'First' || g, 'Last' || g, 'c' || g || '@example.test', g % 5 <> 0 from generate_series(1, 12) g;
insert into public.film (title, release_year, rating, rental_rate)
  select 'Film ' || g, 1990 + g, (array['G','PG','PG-13','R','NC-17'])[1 + g % 5]::public.mpaa_rating, 0.99 + g
  from generate_series(1, 6) g;
insert into public.rental (rental_date, customer_id, film_id)
  select timestamptz '2022-01-03 10:00+00' + g * interval '20 hours', 1 + g % 12, 1 + g % 6
  from generate_series(1, 40) g;
insert into public.payment (customer_id, rental_id, amount, payment_date)
  select r.customer_id, r.rental_id, 1.5 + r.rental_id % 4, r.rental_date + interval '1 hour' from public.rental r;
insert into public.payment (customer_id, amount, payment_date) values (3, 2.00, '2023-05-01 00:00+00');
insert into public.staff_log (id, logged_at, note) values (1, '2022-01-01 00:00+00', 'opened');
insert into public.staff_log_archive (id, logged_at, note, archived_by) values (2, '2021-12-01 00:00+00', 'old', 'ops');
insert into public.address values ('1 Main St', 'Springfield', '00001'), ('2 Side St', 'Shelbyville', null);
insert into public.customer_import (customer_id, first_name, last_name) values (100, 'Imp', 'Orted');
insert into store.inventory (store_id, film_id) select 1 + g % 2, 1 + g % 6 from generate_series(1, 10) g;
"""

APPLY = """-- add a refund flag to payments, indexed, and mark the large ones
alter table public.payment add column refunded boolean not null default false;
create index payment_refunded_idx on public.payment (refunded);
"""
ROLLBACK = """drop index public.payment_refunded_idx;
alter table public.payment drop column refunded;
"""
FORGETFUL_ROLLBACK = "alter table public.payment drop column refunded cascade;\n" \
                     "create index payment_refunded_leftover_idx on public.payment (customer_id, amount);\n"


def _factory(database: str, major: int | None, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(**builder.factory_conninfo(database, major=None if major == 18 else major),
                           autocommit=autocommit)


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "opdumps")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def shops():
    """The sample database on each factory major, with data."""
    names = {}
    for major in MAJORS:
        name = f"fix7_t_shop{major}"
        with _factory("postgres", major) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            c.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        with _factory(name, major, autocommit=False) as c:
            c.execute(SCHEMA.read_text())
            c.execute(DATA_SQL)
            c.commit()
        names[major] = name
    yield names
    for major, name in names.items():
        with _factory("postgres", major) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def dumps(shops, tmp_path_factory):
    d = tmp_path_factory.mktemp("shop_dumps")
    out = {}
    for major, name in shops.items():
        m = None if major == 18 else major
        for fmt in ("plain", "custom", "directory", "tar"):
            out[(major, fmt)] = builder.dump_clone(name, fmt, d / f"shop{major}.{fmt}", major=m)
        out[(major, "schema.sql")] = builder.dump_clone(name, "plain", d / f"shop{major}.schema.sql",
                                                        schema_only=True, major=m)
    out["schema-only.custom"] = builder.dump_clone(shops[18], "custom", d / "schema-only.custom", schema_only=True)
    return out


@pytest.fixture(scope="module")
def change(tmp_path_factory):
    d = tmp_path_factory.mktemp("shop_change")
    (d / "apply.sql").write_text(APPLY)
    (d / "rollback.sql").write_text(ROLLBACK)
    (d / "forgetful_rollback.sql").write_text(FORGETFUL_ROLLBACK)
    return d


@pytest.fixture(scope="module")
def contract(dumps, tmp_path_factory):
    """`fix7 contract from-sql` on the PostgreSQL 18 schema-only dump, used as written."""
    out = tmp_path_factory.mktemp("shop_contract") / "contract.yaml"
    r = subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", "contract", "from-sql",
                        str(dumps[(18, "schema.sql")]), "-o", str(out)], capture_output=True, text=True,
                       cwd=str(project_dir()), timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def _config(clone, apply_sql, rollback_sql, evidence_dir, contract) -> dict:
    return {"clone_path": str(clone), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
            "attested_by": "test operator", "contract": str(contract), "evidence_dir": str(evidence_dir),
            "production_hosts": ["*.prod.corp.internal"], "allow_hosts": [], "server_url": "",
            "search_roots": [], "allowed_roots": [], "keep_databases": False}


def _not_passed(packet: dict) -> list:
    return [(s, v["status"], v["reason"]) for s, v in packet["stages"].items() if v["status"] != "passed"]


def test_contract_from_a_schema_only_dump_describes_the_partitions(contract):
    import yaml

    tables = yaml.safe_load(contract.read_text())["shape"]["tables"]
    assert tables["payment"]["partition_by"] == "RANGE (payment_date)"
    assert tables["payment_p2022_02"]["partition_of"] == "payment"
    assert tables["store.inventory_1"]["partition_bound"] == "FOR VALUES IN (1)"
    assert tables["staff_log_archive"]["inherits"] == ["staff_log"]
    assert tables["address"]["of_type"] == "public.address_t"
    assert "annotations" not in yaml.safe_load(contract.read_text())


# One pair of each major end to end in the default run, the other six in `make test-slow`; every pair is
# restored, screened and shape-checked in the default run by the test below this one.
_FAST = {(18, "custom"), (15, "plain")} if 15 in MAJORS else \
    {(18, f) for f in ("plain", "custom", "directory", "tar")}
_PAIRS = [pytest.param(m, f, marks=() if (m, f) in _FAST else pytest.mark.slow)
          for m in MAJORS for f in ("plain", "custom", "directory", "tar")]


@pytest.mark.parametrize("major,fmt", _PAIRS)
def test_every_dump_rehearses_with_the_derived_contract(major, fmt, dumps, contract, change, instance, tmp_path):
    out = run_rehearsal(_config(dumps[(major, fmt)], change / "apply.sql", change / "rollback.sql",
                                tmp_path / "ev", contract), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_PASSED", _not_passed(packet)
    assert packet["clone"]["pg_dump_version"].startswith(f"{major}.")
    shape = packet["stages"]["schema_shape"]
    assert "no data rules declared" in shape["reason"]
    assert not [f for f in shape["findings"] if f["severity"] != "note"]
    assert packet["restore_diff"]["tables"] == [] and packet["restore_diff"]["schema"] == []


@pytest.mark.parametrize("major,fmt", [(m, f) for m in MAJORS for f in ("plain", "custom", "directory", "tar")])
def test_every_dump_restores_screened_and_matches_the_contract(major, fmt, dumps, contract, server):
    """Every pair through intake's inspection and screen, the least-privileged restore and the shape gate."""
    from fix7_pipeline.core.clone import restore
    from fix7_pipeline.core.intake.contract_load import load_contract
    from fix7_pipeline.core.dumps.identify import inspect_dump
    from fix7_pipeline.core.dumps.screening import screen_dump
    from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway
    from fix7_pipeline.core.shape.schema_shape import check_shape

    info = inspect_dump(dumps[(major, fmt)])
    assert info.pg_dump_version.startswith(f"{major}.") and not info.schema_only
    assert not [f for f in screen_dump(info) if f.is_error]
    tw = create_throwaway(server)
    try:
        details = restore.restore(server, tw, info)
        assert details["least_privilege"]["superuser"] is False
        with server.connect(tw.database, tw.login, purpose="test shape") as conn:
            assert [f for f in check_shape(conn, load_contract(contract)) if f.severity != "note"] == []
            assert conn.execute("select count(*) from public.payment_p2022_02").fetchone()[0] > 0
    finally:
        drop_throwaway(server, tw)


def test_schema_sql_as_the_contract_and_a_rollback_residue_is_caught(dumps, change, instance, tmp_path, monkeypatch):
    """--contract names the schema-only SQL itself: PostgreSQL converts it, once, at the first stage with a server,
    and every later stage uses that contract; the forgotten index is named."""
    from fix7_pipeline.core.intake import contract_from_schema as from_sql

    conversions = []
    real = from_sql.contract_from_schema
    monkeypatch.setattr(from_sql, "contract_from_schema", lambda *a, **k: conversions.append(a) or real(*a, **k))
    out = run_rehearsal(_config(dumps[(18, "custom")], change / "apply.sql", change / "forgetful_rollback.sql",
                                tmp_path / "ev", dumps[(18, "schema.sql")]), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_FAILED", _not_passed(packet)
    assert packet["stages"]["isolation"]["contract"]["derived_from_schema"] is True
    assert len(conversions) == 1
    assert packet["stages"]["schema_shape"]["status"] == "passed"
    assert packet["stages"]["restore_diff"]["status"] == "failed"
    objects = json.dumps(packet["restore_diff"]["schema"])
    assert "payment_refunded_leftover_idx" in objects


def test_schema_only_dump_gets_a_shape_only_verdict(dumps, contract, change, instance, tmp_path):
    out = run_rehearsal(_config(dumps["schema-only.custom"], change / "apply.sql", change / "rollback.sql",
                                tmp_path / "ev", contract), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    shape = packet["stages"]["schema_shape"]
    assert shape["status"] == "blocked"
    assert shape["reason"].startswith("schema-only dump: the shape was checked and matches the contract")
    assert "hand over a dump with data" in shape["reason"]
    assert [f["rule"] for f in shape["findings"] if f["severity"] == "error"] == ["schema_only_dump"]
    assert packet["stages"]["apply"]["status"] == "skipped"
    shaped = assert_blocked_at_gate(instance, out["run_id"], "production_shaped")  # no data: not production-shaped
    assert "schema-only dump" in shaped.description


def test_partial_dump_names_what_it_lacks(shops, contract, change, instance, tmp_path):
    """pg_dump -t payment -t film: the restore stops on a missing relation; the verdict names what is missing."""
    dump = tmp_path / "partial.custom"
    info = builder.factory_conninfo(shops[18])
    env = {"PGHOST": info["host"], "PGPORT": str(info["port"]), "PGUSER": "postgres", "PGDATABASE": shops[18]}
    r = subprocess.run([builder.pg_tool("pg_dump"), "-Fc", "-t", "public.payment", "-t", "public.film", "-f",
                        str(dump)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = run_rehearsal(_config(dump, change / "apply.sql", change / "rollback.sql", tmp_path / "ev", contract),
                        instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    iso = packet["stages"]["isolation"]
    assert iso["status"] == "blocked"
    finding = iso["findings"][0]
    assert finding["rule"] == "partial_dump", iso["reason"]
    assert iso["reason"].startswith("The dump is partial")
    # the dependency the restore stopped on, and every contract table the dump does not carry
    assert "public.year" in iso["reason"] or "customer" in iso["reason"]
    for table in ("customer", "rental", "payment_p2022_01", "store.inventory"):
        assert table in finding["extra"]["missing_tables"]
    assert "film" not in finding["extra"]["missing_tables"] and "payment" not in finding["extra"]["missing_tables"]
    # the restore stopped the run: the isolation gate reports it, and nothing after the gates ran
    proven = assert_blocked_at_gate(instance, out["run_id"], "isolation_proven")
    assert "The dump is partial" in proven.description and proven.metadata["findings/partial_dump"].value == 1
