"""Issue 27 "Done when", end to end through the CLI: a change that holds ACCESS EXCLUSIVE on a hot table for 3 s
exits 1 with `--max-blocked-ms 1000`, naming the statement and the wait, and the packet shows the probe's waits
and its chart; without the flag it passes; a benign change passes with the flag; a full-table update gets a
production-size estimate that fails `--max-production-estimate-s` set below it; the probe leaves nothing behind."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import yaml

from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.evidence.packet_files import sha256_file
from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.postgres.server import RehearsalServer
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, left_on_server, load_packet, rehearse_args

SOURCE = "fix7_t_e2e_traffic_src"
ROWS = 300
LOCK = "lock table public.birth_registry in access exclusive mode;\nselect pg_sleep(3);\n"
NOTHING = "select 1;\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("traffic_dagster_home"), "traffic")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    builder.build_clone(SOURCE, registry_rows=ROWS, seed=27)
    try:
        yield builder.dump_clone(SOURCE, "custom", tmp_path_factory.mktemp("traffic_dump") / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)


def _run(home, dump, tmp_path, apply: str, rollback: str, *flags: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "apply.sql").write_text(apply)
    (tmp_path / "rollback.sql").write_text(rollback)
    ev = tmp_path / "ev"
    r = home.cli(*rehearse_args(dump, (tmp_path / "apply.sql", tmp_path / "rollback.sql"), ev, *flags))
    return r, r.stdout + r.stderr, ev


def test_a_three_second_lock_on_a_hot_table_fails_max_blocked_ms_naming_the_statement(home, dump, tmp_path):
    junit = tmp_path / "junit.xml"
    with left_on_server(RehearsalServer.embedded(HostPolicy())) as left:
        r, out, ev = _run(home, dump, tmp_path, LOCK, NOTHING, "--max-blocked-ms", "1000", "--junit", str(junit))
    assert not left, left  # the probe's roles are dropped with the run's throwaways
    assert r.returncode == 1 and "Traceback" not in out and "verdict: REHEARSAL_FAILED" in r.stdout, out
    named = [ln for ln in r.stdout.splitlines()
             if "apply line 1 (LOCK TABLE): a probe" in ln and "of public.birth_registry waited" in ln]
    assert named and "ACCESS EXCLUSIVE" in named[0] and "> max_blocked_ms 1000 ms" in named[0], r.stdout

    packet = load_packet(ev)
    assert {s: packet["stages"][s]["status"] for s in ("apply", "rollback", "restore_diff")} == {
        "apply": "passed", "rollback": "passed", "restore_diff": "passed"}  # the probe changed nothing
    traffic = packet["impact"]["apply"]["traffic"]
    registry = next(t for t in traffic["tables"] if t["table"] == "public.birth_registry")
    assert registry["max_blocked_ms"] >= 2500 and registry["worst"]["by"]["line"] == 1
    assert registry["lock_timeout_fired"] >= 1
    assert traffic["chart"] == "traffic-apply.svg"
    svg = ev / "traffic-apply.svg"
    chart = ET.fromstring(svg.read_bytes())
    assert chart.tag == "{http://www.w3.org/2000/svg}svg" and len(chart.findall(".//*[@class='waited']")) >= 1
    assert packet["files"]["traffic-apply.svg"]["sha256"] == sha256_file(svg)  # sealed with the packet
    report = (ev / "rehearsal-report.md").read_text()
    assert "#### Traffic probe: apply" in report and "![probe latency over time, apply](traffic-apply.svg)" in report
    assert "ACCESS EXCLUSIVE from line 1 (LOCK TABLE)" in report

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().find("testsuite").findall("testcase")}
    assert "apply line 1 (LOCK TABLE)" in cases["apply max_blocked_ms"].find("failure").get("message")
    assert cases["rollback max_blocked_ms"].find("failure") is None

    from dagster import DagsterEventType

    with home.instance() as inst:
        mats = {e.asset_materialization.asset_key.to_user_string(): e.asset_materialization.metadata
                for e in inst.all_logs(packet["run_id"], of_type=DagsterEventType.ASSET_MATERIALIZATION)}
    assert mats["apply"]["probe_max_blocked_ms"].value >= 2500
    assert mats["apply"]["probe_queries"].value > 0 and mats["rollback"]["probe_max_blocked_ms"].value < 1000


@pytest.mark.slow
def test_without_the_flag_the_lock_change_passes_and_the_packet_shows_the_waits(home, dump, tmp_path):
    r, out, ev = _run(home, dump, tmp_path, LOCK, NOTHING)
    assert r.returncode == 0 and "verdict: REHEARSAL_PASSED" in r.stdout, out
    packet = load_packet(ev)
    assert packet["impact"]["apply"]["traffic"]["max_blocked_ms"] >= 2500
    assert (ev / "traffic-apply.svg").exists() and (ev / "traffic-rollback.svg").exists()


def _contract(path) -> str:
    data = load_contract().as_dict()
    data["annotations"]["production_rows"] = {"birth_registry": 40_000_000}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.slow  # the core tests (core/change/test_traffic.py) show both in the default suite
def test_a_benign_change_passes_max_blocked_ms_and_a_full_update_is_estimated_at_production_size(
        home, dump, tmp_path):
    small = "update public.birth_registry set row_version = row_version where object_id = 'none';\n"
    r, out, ev = _run(home, dump, tmp_path / "benign", small, NOTHING, "--max-blocked-ms", "1000")
    assert r.returncode == 0 and "verdict: REHEARSAL_PASSED" in r.stdout, out

    full = "update public.birth_registry set updated_at = updated_at;\n"
    r, out, ev = _run(home, dump, tmp_path / "full", full, NOTHING, "--max-production-estimate-s", "0.5",
                      "--contract", _contract(tmp_path / "contract.yaml"))
    assert r.returncode == 1 and "verdict: REHEARSAL_FAILED" in r.stdout, out
    [e] = load_packet(ev)["impact"]["apply"]["estimates"]
    assert (e["table"], e["clone_rows"], e["production_rows"], e["method"]) == (
        "public.birth_registry", ROWS, 40_000_000, "linear in rows")
    assert e["production_s"] > 0.5
    named = [ln for ln in r.stdout.splitlines() if "apply line 1 (UPDATE), UPDATE of many rows of "
                                                   "public.birth_registry" in ln]
    assert named and "> max_production_estimate_s 0.5 s" in named[0], r.stdout
    report = (ev / "rehearsal-report.md").read_text()
    assert "#### At production size: apply" in report and "linear in rows" in report
