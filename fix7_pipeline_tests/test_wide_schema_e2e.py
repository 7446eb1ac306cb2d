"""Issue 22 "Done when": a clone with 5,000 small keyed tables rehearses on the embedded server.

The restore is one transaction holding a lock on every table, primary-key index and TOAST table it creates
(some 20,000 locks); on PostgreSQL's default max_locks_per_transaction that stopped with "out of shared
memory". Slow: building, dumping, restoring and scanning 5,000 tables takes minutes on two cores.
"""

from __future__ import annotations

import pytest

from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, load_packet, rehearse_args, tiny_change

pytestmark = pytest.mark.slow

SOURCE = "fix7_t_e2e_wide_src"
TABLES = 5000


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("wide_home"), "wide")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    builder.build_clone(SOURCE, registry_rows=50, seed=22)
    try:
        for start in range(0, TABLES, 500):  # the factory runs PostgreSQL's defaults: 500 tables a transaction
            builder.run_sql(SOURCE, "create schema if not exists wide;\n" + "".join(
                f"create table wide.t{i:05d} (id integer primary key, label text not null);\n"
                f"insert into wide.t{i:05d} values (1, 'row {i}');\n" for i in range(start, start + 500)))
        yield builder.dump_clone(SOURCE, "custom", tmp_path_factory.mktemp("wide_dump") / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)


def test_a_clone_with_5000_keyed_tables_rehearses_on_the_embedded_server(home, dump, tmp_path):
    ev = tmp_path / "ev"
    r = home.cli(*rehearse_args(dump, tiny_change(tmp_path / "change"), ev), timeout=1800)
    out = r.stdout + r.stderr
    packet = load_packet(ev)
    assert r.returncode == 0, out
    assert packet["verdict"] == "REHEARSAL_PASSED"
    restored = packet["stages"]["isolation"]["restore"]
    assert restored["entries_restored"] > 3 * TABLES  # each table, its row data and its primary key
    assert "out of shared memory" not in out
