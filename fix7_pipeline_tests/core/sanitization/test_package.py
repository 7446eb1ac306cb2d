"""The sanitization package's shape and its pure parts: modules of one kind, none over 500 lines; the plan's
type classification; the catalog places; names judged before they are printed; finding counts."""

from __future__ import annotations

from pathlib import Path

from fix7_pipeline.core import sanitization
from fix7_pipeline.core.shared.model import Finding
from fix7_pipeline.core.sanitization import catalog_sql, copy_reader, plan
from fix7_pipeline.core.sanitization.findings import ScanFindings
from fix7_pipeline.core.sanitization.names import judge_printed_names
from fix7_pipeline.core.sanitization.redact import RedactedNames
from fix7_pipeline_tests.e2e_support import rnd

MAX_LINES = 500


def test_no_module_over_500_lines():
    sizes = {p.name: len(p.read_text().splitlines()) for p in Path(sanitization.__file__).parent.glob("*.py")}
    assert len(sizes) >= 15 and {n for n, s in sizes.items() if s > MAX_LINES} == set(), sizes


def test_plan_reads_text_and_bytea_and_skips_what_cannot_hold_text():
    # oid -> (name, typtype, category, elem, base, range subtype), as _TYPES_SQL returns them
    types = {25: ("text", "b", "S", 0, 0, 0), 17: ("bytea", "b", "U", 0, 0, 0), 23: ("int4", "b", "N", 0, 0, 0),
             2950: ("uuid", "b", "U", 0, 0, 0), 1009: ("_text", "b", "A", 25, 0, 0),
             90001: ("email", "d", "S", 0, 25, 0), 90002: ("mood", "e", "E", 0, 0, 0),
             90003: ("textrange", "r", "R", 0, 0, 25), 90004: ("_int4", "b", "A", 23, 0, 0)}
    got = {oid: plan._classify(types, oid) for oid in types}
    assert got == {25: "text", 17: "bytea", 23: None, 2950: None, 1009: "text", 90001: "text", 90002: None,
                   90003: "text", 90004: None}
    assert plan._classify(types, 123456) == "text"  # an unknown type is read: fail closed
    assert plan._render_of(types, 1009) == ("array",) and plan._render_of(types, 25) is None


def test_catalog_places_are_distinct_and_mark_large_values():
    labels = [label for label, _ in catalog_sql.CATALOG_PARTS]
    assert len(labels) == len(set(labels)) >= 14 and set(labels) == set(catalog_sql.CATALOG_BODIES)
    for _label, query in catalog_sql.CATALOG_PARTS:
        assert query.startswith("copy (select classid, objid, subid, field, case when")
        assert catalog_sql.LARGE_MARK in query and str(copy_reader.LARGE_VALUE_BYTES) in query


def test_a_printed_word_that_is_a_secret_is_registered_and_ordinary_words_are_not():
    token = "ghp_" + rnd(36)
    names = judge_printed_names({"reason": f"column {token}.x of table births failed", "n": ["birth_registry"]},
                                RedactedNames())
    whole_and_part = token in names and f"{token}.x" in names  # computed apart: a failure prints no token
    assert whole_and_part and len(names) == 2
    assert "births" not in names and "birth_registry" not in names


def test_counts_name_rules_tables_and_columns():
    fs = ScanFindings([Finding("r1", "m", table="t", column="c"), Finding("r1", "m", table="t", column="d"),
                       Finding("r2", "m")])
    assert fs.counts() == {"total": 3, "by_rule": {"r1": 2, "r2": 1}, "by_table": {"t": 2},
                           "by_column": {"t.c": 1, "t.d": 1}}
