"""Issue 13 "Done when", end to end through the CLI: a change that holds ACCESS EXCLUSIVE on birth_registry
for 2 s and rewrites os_proposal_approvals is named, with measured durations and the rewrite, in the packet,
the report, the JUnit report and the Dagster materializations; `--max-lock-s 1` makes the rehearsal exit 1
naming that statement (the rollback and restore diff still run, so one run shows every breach)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import yaml

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, load_packet, rehearse_args

SOURCE = "fix7_t_e2e_impact_src"
ROWS = 200


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("impact_dagster_home"), "impact")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    builder.build_clone(SOURCE, registry_rows=ROWS, seed=13)
    try:
        yield builder.dump_clone(SOURCE, "custom", tmp_path_factory.mktemp("impact_dump") / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)


def _contract_with_production_rows(path) -> str:
    data = load_contract().as_dict()
    data["annotations"]["production_rows"] = {"birth_registry": 40_000_000, "os_proposal_approvals": 120_000_000}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


APPLY = ("lock table public.birth_registry in access exclusive mode;\n"
         "select pg_sleep(2);\n"
         "alter table public.os_proposal_approvals alter column comment type varchar(2000);\n")
ROLLBACK = "alter table public.os_proposal_approvals alter column comment type text;\n"


def test_a_lock_over_max_lock_s_fails_the_rehearsal_naming_the_statement(home, dump, tmp_path):
    apply_sql, rollback_sql = tmp_path / "apply.sql", tmp_path / "rollback.sql"
    apply_sql.write_text(APPLY)
    rollback_sql.write_text(ROLLBACK)
    ev, junit = tmp_path / "ev", tmp_path / "junit.xml"
    r = home.cli(*rehearse_args(dump, (apply_sql, rollback_sql), ev, "--max-lock-s", "1",
                                "--contract", _contract_with_production_rows(tmp_path / "contract.yaml"),
                                "--junit", str(junit)))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and "verdict: REHEARSAL_FAILED" in r.stdout
    named = "apply line 1 (LOCK TABLE) held ACCESS EXCLUSIVE on public.birth_registry for 2."
    breach_lines = [ln for ln in r.stdout.splitlines() if named in ln]
    assert breach_lines and "> max_lock_s 1 s" in breach_lines[0], r.stdout
    assert f"({ROWS} rows in the clone; production has 40M)" in breach_lines[0]

    packet = load_packet(ev)
    assert packet["verdict"] == "REHEARSAL_FAILED"
    # the change committed and the rollback put everything back: the threshold alone failed the run
    assert {s: packet["stages"][s]["status"] for s in ("apply", "rollback", "restore_diff")} == {
        "apply": "passed", "rollback": "passed", "restore_diff": "passed"}, json.dumps(packet["stages"])[:3000]
    apply = packet["impact"]["apply"]
    lock, sleep, alter = apply["statements"]
    assert (lock["line"], lock["kind"], sleep["line"], alter["line"], alter["kind"]) == (
        1, "LOCK TABLE", 2, 3, "ALTER TABLE")
    assert 2.0 <= sleep["duration_s"] < 2.5
    [held] = [lk for lk in lock["locks"] if lk["relation"] == "public.birth_registry"]
    # held from LOCK TABLE, which first queued behind the traffic probe's long reader (up to 0.5 s)
    assert held["mode"] == "ACCESS EXCLUSIVE" and 2.0 <= held["held_s"] < 3.0
    rewritten = {r["relation"]: r for r in alter["rewrites"]}
    assert rewritten["public.os_proposal_approvals"]["size_after_bytes"] > 0
    assert rewritten["public.os_proposal_approvals"]["size_before_bytes"] > 0
    [result] = apply["thresholds"]["results"]
    assert (result["name"], result["limit"], result["passed"]) == ("max_lock_s", 1.0, False)
    assert result["breaches"][0]["relation"] == "public.birth_registry" and result["breaches"][0]["line"] == 1
    rules = {(w["rule"], w["line"], w["relation"]) for w in apply["warnings"]}
    assert {("hot_table_access_exclusive", 1, "public.birth_registry"),
            ("hot_table_access_exclusive", 3, "public.os_proposal_approvals"),
            ("column_type_change_rewrite", 3, "public.os_proposal_approvals")} <= rules
    assert packet["impact"]["rollback"]["statements"][0]["rewrites"] == []  # varchar -> text: no rewrite
    assert packet["impact"]["rollback"]["thresholds"]["passed"] is True

    report = (ev / "rehearsal-report.md").read_text()
    assert report.startswith("# FIX7 rehearsal — REHEARSAL_FAILED")
    assert "### Impact: apply" in report and "### Impact: rollback" in report
    assert "| 1 | LOCK TABLE | 0." in report and "| 2 | SELECT | 2.0" in report
    assert "public.os\\_proposal\\_approvals" in report and "Top locks" in report
    assert "production has 40M" in report and "**FAILED**" in report

    suite = ET.parse(junit).getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["apply max_lock_s"].find("failure") is not None
    assert named in cases["apply max_lock_s"].find("failure").get("message")
    assert cases["rollback max_lock_s"].find("failure") is None
    assert "impact: " + named in cases["verdict"].find("failure").text

    from dagster import DagsterEventType

    with home.instance() as inst:
        mats = {e.asset_materialization.asset_key.to_user_string(): e.asset_materialization.metadata
                for e in inst.all_logs(packet["run_id"], of_type=DagsterEventType.ASSET_MATERIALIZATION)}
        checks = {(c.asset_key.to_user_string(), c.check_name): c for c in (
            e.dagster_event.event_specific_data
            for e in inst.all_logs(packet["run_id"], of_type=DagsterEventType.ASSET_CHECK_EVALUATION))}
    assert "| 1 | LOCK TABLE |" in mats["apply"]["impact"].value
    assert 2.0 <= mats["apply"]["impact_max_lock_s"].value < 3.0
    assert mats["apply"]["impact_rewrites"].value >= 1 and mats["apply"]["impact_breaches"].value == 1
    assert isinstance(mats["rollback"]["impact_total_s"].value, float)
    assert checks[("apply", "impact_within_thresholds")].passed is False
    assert checks[("rollback", "impact_within_thresholds")].passed is True
    assert checks[("apply", "change_applied")].passed is True


def test_a_negative_threshold_is_a_usage_error(home, tmp_path):
    r = home.cli("rehearse", "--clone", "x.dump", "--apply", "a.sql", "--rollback", "b.sql", "--max-lock-s", "-1")
    assert r.returncode == 2 and "must be a finite number at or above 0" in r.stderr and "Traceback" not in r.stderr
