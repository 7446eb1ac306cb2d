"""What a run shows outside the packet (core/evidence/run_view.py): tags and Markdown tables, never a value of a row."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

from fix7_pipeline.core.evidence import run_view
from fix7_pipeline.core.shared.model import STAGES

CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202e]")


def _stages(**status) -> dict:
    return {s: {"status": status.get(s, "skipped"), "reason": f"{s} reason", "duration_s": 0.5} for s in STAGES}


def test_the_reason_is_the_stage_that_stopped_the_run():
    data = {"verdict": "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE", "stages": _stages(intake="passed",
                                                                                      isolation="blocked"),
            "clone": {"sha256": "ab" * 32}, "attestation": {"attested_by": "ops on call"}, "evidence_dir": "/ev"}
    data["stages"]["isolation"]["reason"] = "a foreign server points at db.prod\nsecond line"
    tags = run_view.run_tags(data)
    assert tags == {"fix7": "NO SAFE CLONE at isolation",
                    "fix7/verdict": "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE",
                    "fix7/reason": "isolation: a foreign server points at db.prod\\nsecond line",
                    "fix7/evidence": "/ev"}
    assert sorted(tags)[0] == "fix7"  # the Runs list shows a run's tags in key order: the headline first
    assert run_view.run_facts(data) == {"stopped_at": "isolation", "clone_sha256": "ab" * 32,
                                        "attested_by": "ops on call"}


def test_a_run_that_passed_every_stage_but_breached_a_threshold_says_so():
    data = {"verdict": "REHEARSAL_FAILED", "stages": _stages(**{s: "passed" for s in STAGES}),
            "impact": {"apply": {"thresholds": {"set": True, "results": [
                {"name": "max_lock_s", "limit": 1, "measured": 2, "passed": False,
                 "breaches": [{"message": "apply line 1 held ACCESS EXCLUSIVE for 2.01 s > max_lock_s 1 s"}]}]}}}}
    reason = run_view.verdict_reason(data)
    assert reason.startswith("impact threshold breached: apply line 1"), reason
    assert run_view.run_facts(data)["stopped_at"] == "none" and run_view.run_tags(data)["fix7"] == "FAILED"
    assert run_view.run_facts(data)["clone_sha256"] == run_view.NO_CLONE


def test_a_long_reason_is_one_line_of_bounded_length():
    assert len(run_view.one_line("x" * 5000)) == run_view.REASON_LIMIT
    assert run_view.one_line("a\nb\x1b") == "a\\nb\\x1b"


def test_the_attestation_tag_is_escaped_limited_and_never_a_secret():
    assert run_view.attestation_tag("") == run_view.attestation_tag(None) == "(none)"
    assert run_view.attestation_tag("ops\n# PASSED\x1b") == "ops\\n# PASSED\\x1b"
    assert len(run_view.attestation_tag("o" * 1000)) == run_view.ATTESTATION_LIMIT
    for secret in ("jane AKIAIOSFODNN7EXAMPLQ wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEQ",
                   "ops postgresql://admin:Xk82hQ9vLmPzS3cret@db.corp.internal:5432/app",
                   "jane ghp_1234567890abcdefghijABCDEFGHIJ123456"):
        tag = run_view.attestation_tag(secret)
        assert tag.startswith("[attestation not shown: it matched secret rule "), tag
        assert "S3cret" not in tag and "AKIA" not in tag and "ghp_" not in tag


def test_the_restore_diff_table_has_names_and_counts_never_a_row_value():
    diff = {"empty": False, "tables_compared": 2, "tables_unchanged": 7,
            "tables": [{"table": "public.birth_registry", "added": 2, "removed": 1, "changed": 3,
                        "examples": {"added": ["row-key-4242"], "removed": ["row-key-1717"], "changed": []}},
                       {"table": "evil|name\n# x", "added": 0, "removed": 0, "changed": 5}],
            "schema": [{"object": "column public.birth_registry.note", "change": "changed",
                        "attributes": ["default", "type"]}],
            "sequences": [{"sequence": "public.s", "anchor": 31337, "after": 31999, "severity": "warning"}],
            "large_objects": {"added": ["16400"], "removed": [], "changed": []}}
    text = run_view.restore_diff_table(diff)
    for value in ("row-key-4242", "row-key-1717", "31337", "31999", "16400"):
        assert value not in text
    assert run_view.restore_diff_counts(diff) == {
        "rows_added": 2, "rows_removed": 1, "rows_changed": 8, "tables_differing": 2, "schema_objects_differing": 1,
        "sequences_moved": 1, "large_objects_differing": 1}
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    rows = re.findall(r"<tr>(.*?)</tr>", rendered, re.S)
    assert "<td>public.birth_registry</td>" in rendered and "<h1>" not in rendered
    assert all(len(re.findall(r"<t[dh]", r)) in (3, 4) for r in rows) and len(rows) >= 8
    assert not CONTROL.search(text.replace("\n", ""))
    assert run_view.restore_diff_table(None).startswith("**not measured")
    assert "empty: every row" in run_view.restore_diff_table({"empty": True, "tables": []})


def test_gx_and_finding_tables_count_per_rule():
    gx = {"suite": "sanitization", "evaluated": 2, "failed": 1, "expectations": [
        {"rule": "no_aws", "table": "findings", "expectation": "ExpectColumnValuesToNotBeInSet", "success": True,
         "unexpected_count": 0},
        {"rule": "no_pg_url", "table": "findings", "expectation": "ExpectColumnValuesToNotBeInSet", "success": False,
         "unexpected_count": 3}]}
    text = run_view.gx_table(gx)
    assert "| no\\_pg\\_url | findings | ExpectColumnValuesToNotBeInSet | failed | 3 |" in text
    assert "2 expectation(s), 1 failed" in text
    counts = {"total": 4, "by_rule": {"aws": 1, "pg_url": 3}, "by_column": {"public.t.c": 4}}
    assert run_view.findings_per_rule(counts) == {"aws": 1, "pg_url": 3}
    assert run_view.findings_per_rule(None, [{"rule": "a"}, {"rule": "a"}, {"rule": "b"}]) == {"a": 2, "b": 1}
    assert "| pg\\_url | 3 |" in run_view.finding_counts_table(counts)


def test_the_stage_table_leads_with_the_verdict():
    data = {"verdict": "REHEARSAL_PASSED", "stages": _stages(**{s: "passed" for s in STAGES})}
    text = run_view.stages_table(data)
    assert text.startswith("**REHEARSAL\\_PASSED**")
    assert text.count("| passed |") == len(STAGES)


def test_every_verdict_has_a_short_headline():
    from fix7_pipeline.core.evidence import report

    verdicts = {v for v in vars(report).values() if isinstance(v, str) and v.startswith("REHEARSAL_")}
    verdicts |= {"NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE", "NOT_STARTED"}
    for verdict in verdicts:
        short = run_view.headline({"verdict": verdict, "stages": _stages(**{s: "passed" for s in STAGES})})
        assert short == run_view.SHORT_VERDICT[verdict] and len("fix7: " + short) <= 20, (verdict, short)
