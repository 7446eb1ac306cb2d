"""The JUnit report: one test case per stage, failures for failed/blocked, skipped for skipped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fix7_pipeline.core.junit import write_junit
from fix7_pipeline.core.model import STAGES


def _packet(statuses: dict, verdict: str | None) -> dict:
    stages = {s: {"status": statuses.get(s, "passed"), "reason": f"{s} reason", "duration_s": 1.5,
                  "findings": [{"rule": "r1", "message": f"{s} finding", "severity": "error"}]
                  if statuses.get(s) in ("failed", "blocked") else []} for s in STAGES}
    return {"verdict": verdict, "run_id": "run-1", "clone": {"sha256": "ab" * 32}, "anchor_id": "anc", "stages": stages}


def _cases(path) -> tuple[ET.Element, dict]:
    suite = ET.parse(path).getroot().find("testsuite")
    return suite, {c.get("name"): c for c in suite.findall("testcase")}


def test_passed_rehearsal_has_one_passing_case_per_stage(tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, _packet({}, "REHEARSAL_PASSED"))
    suite, cases = _cases(path)
    assert list(cases) == [*STAGES, "verdict"]
    assert all(len(c) == 1 and c[0].tag == "system-out" for n, c in cases.items() if n != "verdict")
    assert len(cases["verdict"]) == 0
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (str(len(STAGES) + 1), "0", "0")
    assert cases["apply"].get("time") == "1.500"
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "REHEARSAL_PASSED" and props["clone_sha256"] == "ab" * 32


def test_blocked_gate_is_a_failure_and_later_stages_are_skipped(tmp_path):
    path = tmp_path / "report.xml"
    statuses = {"sanitization": "blocked", **{s: "skipped" for s in STAGES[3:]}}
    write_junit(path, _packet(statuses, "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"))
    suite, cases = _cases(path)
    failure = cases["sanitization"].find("failure")
    assert failure.get("type") == "blocked" and "sanitization finding" in failure.text
    assert all(cases[s].find("skipped") is not None for s in STAGES[3:])
    assert cases["intake"].find("failure") is None
    verdict = cases["verdict"].find("failure")
    assert "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" in verdict.get("message")
    assert "sanitization: sanitization reason" in verdict.text
    assert (suite.get("failures"), suite.get("skipped")) == ("2", str(len(STAGES) - 3))


def test_unfinished_run_never_reads_as_a_pass(tmp_path):
    path = tmp_path / "report.xml"
    write_junit(path, _packet({s: "skipped" for s in STAGES}, None))
    suite, cases = _cases(path)
    assert suite.get("failures") == "1"
    assert "did not finish" in cases["verdict"].find("failure").get("message")


def test_one_case_per_impact_threshold_and_a_breach_fails_the_verdict_case(tmp_path):
    path = tmp_path / "report.xml"
    packet = _packet({}, "REHEARSAL_FAILED")
    message = "apply line 1 (LOCK TABLE) held ACCESS EXCLUSIVE on public.t for 2.00 s > max_lock_s 1 s"
    packet["impact"] = {"apply": {"thresholds": {"set": True, "passed": False, "results": [
        {"name": "max_lock_s", "limit": 1.0, "measured": 2.0, "passed": False, "breaches": [{"message": message}]},
        {"name": "max_total_s", "limit": 9.0, "measured": 2.1, "passed": True, "breaches": []}]}},
        "rollback": None}
    write_junit(path, packet)
    suite, cases = _cases(path)
    assert list(cases) == [*STAGES, "apply max_lock_s", "apply max_total_s", "verdict"]
    assert cases["apply max_lock_s"].find("failure").get("message") == message
    assert cases["apply max_total_s"].find("failure") is None
    assert cases["apply max_total_s"].find("system-out").text == "measured 2.1 within 9.0"
    assert f"impact: {message}" in cases["verdict"].find("failure").text
    assert (suite.get("tests"), suite.get("failures")) == (str(len(STAGES) + 3), "2")
