"""The GX runner: value-free summaries, failures fail closed, analytics off."""

from __future__ import annotations

import json
import os

import pytest

from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.shape.gx_gates import RESULT_FORMAT, RuleExpectation, _context, import_expectations, run_suite
from fix7_pipeline_tests.pg import as_owner

gxe = import_expectations()

PLANTED = "Zx81-PlantedValue-Qw77"


@pytest.fixture
def table_db(server, throwaway):
    with as_owner(server, throwaway) as c:
        c.execute("create table items (id int primary key, label text, n int)")
        c.execute("insert into items values (1, 'ok', 1), (2, 'ok', 2), (3, %s, 3)", (PLANTED,))
    return server.sqlalchemy_source(throwaway.database, throwaway.login, "gx test")


def test_summary_has_counts_and_no_values(table_db):
    summary = run_suite(table_db, "demo", [
        RuleExpectation("label_ok", "items", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=["ok"])),
        RuleExpectation("label_short", "items", gxe.ExpectColumnValueLengthsToBeBetween(column="label", max_value=5)),
        RuleExpectation("n_positive", "public.items", gxe.ExpectColumnValuesToBeBetween(column="n", min_value=1)),
        RuleExpectation("no_plants", "items", gxe.UnexpectedRowsExpectation(
            unexpected_rows_query="select id from {batch} where label ~ '^Zx'")),
    ])
    rows = {e["rule"]: e for e in summary["expectations"]}
    assert summary["success"] is False and summary["evaluated"] == 4 and summary["failed"] == 3
    assert rows["label_ok"] == {"rule": "label_ok", "table": "items", "expectation": "ExpectColumnValuesToBeInSet",
                                "success": False, "unexpected_count": 1}
    assert rows["n_positive"]["success"] and rows["n_positive"]["unexpected_count"] == 0
    assert rows["no_plants"]["unexpected_count"] == 1
    text = json.dumps(summary)
    assert PLANTED not in text
    assert not [PLANTED[i:i + 8] for i in range(len(PLANTED) - 7) if PLANTED[i:i + 8] in text]


def test_raw_gx_result_in_our_format_carries_no_values(table_db):
    """Not only our summary: GX itself fetches and reports no example values in RESULT_FORMAT."""
    import great_expectations as gx

    ctx = _context()
    assert ctx.config.analytics_enabled is False
    ds = ctx.data_sources.add_postgres(name="t", connection_string=table_db.url, kwargs=table_db.engine_kwargs())
    batch = ds.add_table_asset(name="items", table_name="items", schema_name="public").add_batch_definition_whole_table(name="all")
    suite = ctx.suites.add(gx.ExpectationSuite(name="s"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="label", value_set=["ok"]))
    suite.add_expectation(gxe.ExpectColumnValuesToNotMatchRegex(column="label", regex="Planted"))
    suite.add_expectation(gxe.UnexpectedRowsExpectation(
        unexpected_rows_query="select label from {batch} where label <> 'ok'"))
    result = ctx.validation_definitions.add(gx.ValidationDefinition(name="v", data=batch, suite=suite)).run(
        result_format=RESULT_FORMAT)
    assert not result.success
    assert PLANTED not in json.dumps(result.to_json_dict(), default=str)


def test_errors_fail_closed(table_db):
    summary = run_suite(table_db, "demo", [
        RuleExpectation("ghost_column", "items", gxe.ExpectColumnValuesToNotBeNull(column="nope")),
        RuleExpectation("ghost_table", "nowhere", gxe.ExpectTableRowCountToEqual(value=0)),
    ])
    assert summary["success"] is False
    assert all(not e["success"] and "error" in e for e in summary["expectations"])
    assert run_suite(table_db, "empty", [])["success"] is False


def test_unreachable_clone_is_a_fix7_error(server, throwaway):
    url = server.sqlalchemy_source("fix7_no_such_db", throwaway.login, "gx test")
    with pytest.raises(Fix7Error) as e:
        run_suite(url, "demo", [RuleExpectation("x", "items", gxe.ExpectTableRowCountToEqual(value=0))])
    assert e.value.rule == "gx_demo" and "could not open the clone" in e.value.message


def test_scipy_stats_loads_only_when_used():
    """GX imports scipy.stats for expectations the gates never run; it stays unexecuted until first use, and
    then works (a fresh interpreter, so this test's own imports don't decide it)."""
    import subprocess
    import sys

    probe = (
        "import sys, pandas as pd\n"
        "from fix7_pipeline.core.shape import data_rules, gx_gates\n"
        "from fix7_pipeline.core.shared.model import Finding\n"
        "gxe = gx_gates.import_expectations()\n"
        "s = gx_gates.run_frame_suite('probe', pd.DataFrame({'gate': ['a']}, dtype=object), [gx_gates.RuleExpectation("
        "'none', 'findings', gxe.ExpectColumnValuesToNotBeInSet(column='gate', value_set=['b']))])\n"
        "assert s['success'] and s['evaluated'] == 1, s\n"
        "assert 'great_expectations' in sys.modules\n"
        "print('before', 'scipy.stats._stats_py' in sys.modules)\n"
        "from scipy import stats\n"
        "print('entropy', round(float(stats.entropy([0.5, 0.5])), 4))\n"
        "print('after', 'scipy.stats._stats_py' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:3] == ["before False", "entropy 0.6931", "after True"], out.stdout
