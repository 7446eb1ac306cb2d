"""Great Expectations suites run inside PostgreSQL, summarised without values.

An ephemeral GX context (analytics and progress bars off) gets one PostgreSQL data source per run,
one table asset and whole-table batch per table, and one suite per table. Expectations execute as
SQL in the server. The result format is BASIC with `partial_unexpected_count: 0`, so GX fetches no
example values, and the summary keeps only rule, table, expectation type, success and counts.
"""

from __future__ import annotations

import importlib.util
import numbers
import sys
from dataclasses import dataclass
from typing import Any

from ..shared.environment import set_environment
from ..shared.errors import Fix7Error

# GX imports these at start-up for expectations the gates never use (KS tests, KL divergence); loading
# them on first use instead keeps ~55 MB of SciPy out of every rehearsal process.
DEFERRED_MODULES = ("scipy.stats",)

RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0, "include_unexpected_rows": False}


@dataclass(frozen=True)
class RuleExpectation:
    """A GX expectation with the operator's rule name and the table it runs on."""

    rule: str
    table: str
    expectation: Any  # great_expectations.expectations.Expectation


def _defer(name: str) -> None:
    """Put `name` in sys.modules as a module that executes on first attribute access (importlib's LazyLoader)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def import_gx():
    """`great_expectations`, imported with DEFERRED_MODULES deferred. Every GX import goes through here."""
    if "great_expectations" not in sys.modules:
        set_environment(defaults={"GX_ANALYTICS_ENABLED": "false"})
        for name in DEFERRED_MODULES:
            _defer(name)
    import great_expectations

    return great_expectations


def import_expectations():
    """`great_expectations.expectations` (see `import_gx`)."""
    import_gx()
    import great_expectations.expectations as gxe

    return gxe


def _context():
    gx = import_gx()
    from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                            ProgressBarsConfig)

    config = DataContextConfig(analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
                               store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False))
    return gx.get_context(mode="ephemeral", project_config=config)


def _split(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name


def _count(result: dict) -> int | None:
    for key in ("unexpected_count", "observed_value"):
        v = (result or {}).get(key)
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):  # numpy's too: a frame's max
            return int(v)
    return None


def _raised(info: object) -> bool:
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    return any(_raised(v) for v in info.values())


def _row(r: RuleExpectation, table: str, res) -> dict:
    """One expectation's value-free result row: success, unexpected count, and whether GX raised."""
    row: dict = {"rule": r.rule, "table": table, "expectation": type(r.expectation).__name__}
    if res is None:
        row.update(success=False, error="no result")
        return row
    raised = _raised(res.exception_info)
    row["success"] = bool(res.success) and not raised
    count = _count(res.result)
    if count is not None:
        row["unexpected_count"] = count
    if raised:
        row["error"] = "the expectation raised an error in GX"
    return row


def run_suite(source, suite_name: str, expectations: list[RuleExpectation]) -> dict:
    """Run `expectations` against the database of `source` (server.SqlAlchemySource); a value-free summary.

    Every connection GX's engines open comes from the source's creator, through the server's guard and into
    its ledger; the URL GX keeps in its config names no server and holds no password.
    Returns {"suite", "success", "evaluated", "failed", "expectations": [{"rule", "table", "expectation",
    "success", "unexpected_count"?, "error"?}]}. Any GX error on an expectation counts as a failure.
    """
    gx = import_gx()

    summary: list[dict] = []
    try:
        context = _context()
        data_source = context.data_sources.add_postgres(name="clone", connection_string=source.url,
                                                        kwargs=source.engine_kwargs())
    except Exception as e:  # GX raises assorted types for a bad URL or driver
        raise Fix7Error(f"Great Expectations could not open the clone for suite {suite_name} "
                        f"({type(e).__name__}).", rule=f"gx_{suite_name}") from None
    by_table: dict[str, list[RuleExpectation]] = {}
    for r in expectations:
        by_table.setdefault(r.table, []).append(r)
    for n, (table, items) in enumerate(by_table.items()):
        schema, name = _split(table)
        try:
            asset = data_source.add_table_asset(name=f"t{n}_{name}"[:60], table_name=name, schema_name=schema)
            batch = asset.add_batch_definition_whole_table(name="whole table")
            suite = context.suites.add(gx.ExpectationSuite(name=f"{suite_name}.{n}"))
            for r in items:
                r.expectation.meta = {**(r.expectation.meta or {}), "rule": r.rule}
                suite.add_expectation(r.expectation)
            vd = context.validation_definitions.add(
                gx.ValidationDefinition(name=f"{suite_name}.{n}", data=batch, suite=suite))
            result = vd.run(result_format=RESULT_FORMAT)
            results = list(result.results)
        except Exception as e:
            summary.extend({"rule": r.rule, "table": table, "expectation": type(r.expectation).__name__,
                            "success": False, "error": f"{type(e).__name__} while validating the table"}
                           for r in items)
            continue
        by_rule = {(res.expectation_config.meta or {}).get("rule"): res for res in results}
        summary.extend(_row(r, table, by_rule.get(r.rule)) for r in items)
    failed = [s for s in summary if not s["success"]]
    return {"suite": suite_name, "success": bool(summary) and not failed, "evaluated": len(summary),
            "failed": len(failed), "expectations": summary}


FRAME_TABLE = "sanitization findings"


def run_frame_suite(suite_name: str, frame, expectations: list[RuleExpectation]) -> dict:
    """Run `expectations` on an in-memory pandas batch (`frame`); the same value-free summary as `run_suite`.

    The sanitization suite gates the secret scan's findings this way: the clone's data is read once, by the
    scan, and the suite validates what it found (one row per finding, no value in any row).
    """
    gx = import_gx()

    summary: list[dict] = []
    try:
        context = _context()
        asset = context.data_sources.add_pandas(name="findings").add_dataframe_asset(name="findings")
        batch = asset.add_batch_definition_whole_dataframe(name="all findings")
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        for r in expectations:
            r.expectation.meta = {**(r.expectation.meta or {}), "rule": r.rule}
            suite.add_expectation(r.expectation)
        vd = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
        results = list(vd.run(batch_parameters={"dataframe": frame}, result_format=RESULT_FORMAT).results)
    except Exception as e:  # GX raises assorted types; every expectation then fails
        summary = [{"rule": r.rule, "table": r.table, "expectation": type(r.expectation).__name__, "success": False,
                    "error": f"{type(e).__name__} while validating the findings"} for r in expectations]
        results = []
    by_rule = {(res.expectation_config.meta or {}).get("rule"): res for res in results}
    summary.extend(_row(r, r.table, by_rule.get(r.rule)) for r in (expectations if results else []))
    failed = [s for s in summary if not s["success"]]
    return {"suite": suite_name, "success": bool(summary) and not failed, "evaluated": len(summary),
            "failed": len(failed), "expectations": summary}
