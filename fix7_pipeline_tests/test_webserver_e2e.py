"""End to end as an operator meets it: `fix7 ui` (webserver + daemon) on a temporary instance whose storage is
its own database on the embedded PostgreSQL; the graph over GraphQL; a rehearsal of a demo clone launched
through GraphQL (queued, dequeued by the daemon) until it succeeds; a dump dropped into the watched folder
starts exactly one run; `fix7 audit` lists both and `--verify` fails after one byte of a packet changes.

The tests run in file order and share the scenario's state."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fix7_pipeline.core.evidence.packet_files import REPORT
from fix7_pipeline.core.postgres.embedded import start_embedded
from fix7_pipeline_tests.e2e_support import built_clone, fix7_ui

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STORAGE_DB = "fix7_dagster_e2e"
STAGE_ASSETS = {"clone_intake", "rehearsal_clone", "snapshot_anchor", "apply", "rollback", "restore_diff",
                "evidence_packet"}
STAGE_CHECKS = {("clone_intake", "intake_safe"), ("rehearsal_clone", "isolation_proven"),
                ("rehearsal_clone", "sanitized"), ("rehearsal_clone", "production_shaped"),
                ("rehearsal_clone", "data_rules"),
                ("snapshot_anchor", "anchor_taken"), ("apply", "change_applied"), ("rollback", "rollback_applied"),
                ("restore_diff", "restore_diff_empty"), ("apply", "impact_within_thresholds"),
                ("rollback", "impact_within_thresholds")}

GRAPH_QUERY = """
{
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        assetNodes {
          assetKey { path }
          description
          groupName
          assetChecksOrError { ... on AssetChecks { checks { name blocking description } } }
        }
        schedules { name cronSchedule scheduleState { status } }
        sensors { name sensorState { status } }
      }
    }
    ... on PythonError { message }
  }
}
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
  }
}
"""

START_SENSOR = """
mutation Start($sel: SensorSelector!) {
  startSensor(sensorSelector: $sel) { __typename ... on Sensor { sensorState { status } } ... on PythonError { message } }
}
"""

SENSOR_RUNS = """
{
  runsOrError(filter: {tags: [{key: "dagster/sensor_name", value: "clone_drop_sensor"}]}) {
    ... on Runs { results { runId status } }
  }
}
"""

RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } ... on PythonError { message } } }
"""

JOB_RUNS = """
{
  pipelineOrError(params: {repositoryLocationName: "fix7_pipeline", repositoryName: "__repository__",
                           pipelineName: "fix7_rehearsal"}) {
    __typename ... on Pipeline { runs(limit: 20) { runId tags { key value } } } ... on PythonError { message }
  }
}
"""

MATERIALIZATION = """
query M($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    ... on Asset { assetMaterializations(limit: 5) { runId metadataEntries { label ... on TextMetadataEntry { text } } } }
  }
}
"""


@pytest.fixture(scope="module")
def demo_clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e_clone")
    dump, apply_sql, rollback_sql = built_clone(root, "fix7_t_e2e_src", seed=3)
    return {"clone": dump, "apply": apply_sql, "rollback": rollback_sql, "root": root}


SCENARIO: dict = {}


@pytest.fixture(scope="module")
def ui(tmp_path_factory, demo_clone):
    """`fix7 ui` on a free loopback port, with DAGSTER_HOME and its storage database of its own, and a
    rehearsal.yaml whose drop folder the sensor watches."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "drop").mkdir()
    (home / "rehearsal.yaml").write_text(json.dumps({
        "drop_folder": str(home / "drop"), "evidence_root": str(home / "evidence"),
        "apply_sql": str(demo_clone["apply"]), "rollback_sql": str(demo_clone["rollback"]),
        "attested_by": "e2e test (synthetic demo clone)", "production_hosts": ["*.prod.invalid-corp.com"],
        "sensor": {"interval_seconds": 5, "settle_seconds": 1}}))
    with fix7_ui(home, STORAGE_DB, GRAPH_QUERY) as (gql, env, data, _port):
        yield {"gql": gql, "env": env, "home": home, "graph": data}


def test_the_ui_serves_the_stage_assets_checks_schedule_and_sensor(ui):
    repo = ui["graph"]["repositoriesOrError"]["nodes"][0]
    assert repo["location"]["name"] == "fix7_pipeline"
    assets = {"/".join(a["assetKey"]["path"]): a for a in repo["assetNodes"]}
    assert set(assets) == STAGE_ASSETS | {"audit_chain"}
    assert [c["name"] for c in assets.pop("audit_chain")["assetChecksOrError"]["checks"]] == ["chain_verifies"]
    assert all(a["description"] and a["groupName"] == "fix7_rehearsal" for a in assets.values())
    checks = {(name, c["name"]) for name, a in assets.items() for c in a["assetChecksOrError"]["checks"]}
    assert checks == STAGE_CHECKS
    # a gate stops the rehearsal by its stage handing nothing on, not as a Dagster blocking check (which fails the
    # run and paints every later stage failed, issue 21.3)
    assert not any(c["blocking"] for a in assets.values() for c in a["assetChecksOrError"]["checks"])
    assert {j["name"] for j in repo["jobs"]} >= {"fix7_rehearsal"}
    assert [(s["name"], s["scheduleState"]["status"]) for s in repo["schedules"]] == [("nightly_rehearsal", "STOPPED")]
    assert {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]} == {
        "clone_drop_sensor": "STOPPED", "fix7_verdict_sensor": "RUNNING", "fix7_judged_run_sensor": "RUNNING",
        "fix7_crashed_run_sensor": "RUNNING",
        "audit_chain_sensor": "RUNNING"}


def test_a_rehearsal_launched_from_the_ui_succeeds(ui, demo_clone):
    gql, evidence = ui["gql"], demo_clone["root"] / "evidence"
    config = {"clone_path": str(demo_clone["clone"]), "apply_sql": str(demo_clone["apply"]),
              "rollback_sql": str(demo_clone["rollback"]), "attested_by": "e2e test (synthetic demo clone)",
              "evidence_dir": str(evidence), "production_hosts": ["*.prod.invalid-corp.com"]}
    params = _launch_params(gql, config, {"fix7/source": "launchpad"})
    launched = gql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = _wait_for_run(gql, run_id)
    packet = json.loads((evidence / REPORT).read_text())
    assert status == "SUCCESS", packet.get("stages")
    assert packet["verdict"] == "REHEARSAL_PASSED" and packet["run_id"] == run_id
    runs = gql(ALL_RUNS)["runsOrError"]["results"]  # queued by the webserver's coordinator, keyed by its server
    tags = {t["key"]: t["value"] for r in runs if r["runId"] == run_id for t in r["tags"]}
    assert tags["fix7/server"] == f"embedded@{socket.gethostname()}"

    mats = gql(MATERIALIZATION, {"key": {"path": ["evidence_packet"]}})["assetOrError"]["assetMaterializations"]
    mine = [m for m in mats if m["runId"] == run_id]
    assert mine and {"label": "verdict", "text": "REHEARSAL_PASSED"} in mine[0]["metadataEntries"]

    SCENARIO["launchpad"] = {"run_id": run_id, "evidence": evidence, "config": config}


BACKFILL = """
mutation B($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on PythonError { message } ... on LaunchBackfillSuccess { backfillId }
  }
}
"""
ALL_RUNS = "{ runsOrError { ... on Runs { results { runId pipelineName tags { key value } } } } }"


def test_every_other_way_in_is_refused_in_one_line_and_nothing_is_stored(ui):
    """Issue 21.1, 21.5, 21.6 over the running webserver: Materialize from the asset graph (Dagster's implicit
    __ASSET_JOB), "Add new partition", a backfill, the launchpad's old partition, a re-execution and a server
    password in run config each get one line, and the storage keeps no run, partition or password of them."""
    import psycopg

    from fix7_pipeline.instance_guard import ADD_PARTITION as ADD_REFUSED
    from fix7_pipeline.instance_guard import BACKFILL as BACKFILL_REFUSED
    from fix7_pipeline.instance_guard import PASSWORD, PARTIAL, RERUN, WRONG_JOB

    assert "launchpad" in SCENARIO, "the launchpad run of the earlier test is needed"
    gql = ui["gql"]
    first = SCENARIO["launchpad"]
    runs_before = gql(ALL_RUNS)["runsOrError"]["results"]
    key = next(t["value"] for r in runs_before if r["runId"] == first["run_id"] for t in r["tags"]
               if t["key"] == "dagster/partition")
    assert key.endswith("-" + first["run_id"][:8])

    def refused(answer: dict, line: str) -> None:
        assert answer["__typename"] == "PythonError", answer
        assert answer["message"].splitlines()[0].endswith(line), answer["message"][:500]

    assets = [{"path": [a]} for a in sorted(STAGE_ASSETS)]
    materialize = {"selector": {**REPO, "jobName": "__ASSET_JOB", "assetSelection": assets},
                   "runConfigData": {"ops": {"clone_intake": {"config": first["config"]}}}}
    refused(gql(LAUNCH, {"params": materialize})["launchRun"], WRONG_JOB.format(job="__ASSET_JOB"))
    added = gql(ADD_PARTITION, {"repo": REPO, "key": "20261201-fix7-never-ran"})["addDynamicPartition"]
    refused(added, ADD_REFUSED)
    refused(gql(BACKFILL, {"params": {"partitionNames": [key], "assetSelection": assets}})["launchPartitionBackfill"],
            BACKFILL_REFUSED)
    again = _launch_params(gql, first["config"], {"dagster/partition": key})
    refused(gql(LAUNCH, {"params": again})["launchRun"], RERUN.format(key=key))
    rerun = {**_launch_params(gql, first["config"]),
             "executionMetadata": {"parentRunId": first["run_id"], "rootRunId": first["run_id"], "tags": []}}
    refused(gql(LAUNCH, {"params": rerun})["launchRun"], PARTIAL)
    password = f"Pw-webserver-{os.urandom(6).hex()}"
    typed = _launch_params(gql, {**first["config"], "server_url": f"postgresql://ops:{password}@db.invalid:5433/r"})
    refused(gql(LAUNCH, {"params": typed})["launchRun"], PASSWORD)

    assert gql(ALL_RUNS)["runsOrError"]["results"] == runs_before
    assert all(r["pipelineName"] == "fix7_rehearsal" for r in runs_before)
    info = start_embedded()
    with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), dbname=STORAGE_DB,
                         user="postgres") as conn:
        partitions = [r[0] for r in conn.execute("select partition from dynamic_partitions")]
        tables = [r[0] for r in conn.execute(
            "select quote_ident(table_name) from information_schema.tables "
            "where table_schema = 'public' and table_type = 'BASE TABLE'")]
        rows = "\n".join(str(r) for t in tables for r in conn.execute(f"select t::text from {t} t"))
    assert "20261201-fix7-never-ran" not in partitions and key in partitions
    assert password not in rows


ADD_PARTITION = """
mutation Add($repo: RepositorySelector!, $key: String!) {
  addDynamicPartition(repositorySelector: $repo, partitionsDefName: "fix7_rehearsals", partitionKey: $key) {
    __typename ... on PythonError { message } ... on UnauthorizedError { message }
  }
}
"""
REPO = {"repositoryLocationName": "fix7_pipeline", "repositoryName": "__repository__"}


def _launch_params(gql, config: dict, tags: dict | None = None) -> dict:
    """What the launchpad of Jobs → fix7_rehearsal sends with no partition selected: the launch makes its own."""
    return {"selector": {**REPO, "jobName": "fix7_rehearsal"},
            "runConfigData": {"ops": {"clone_intake": {"config": config}}},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}


def _wait_for_run(gql, run_id: str, timeout: float = 400) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = gql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(2)


def test_a_cli_rehearsal_shows_up_in_the_ui_with_its_metadata(ui, demo_clone):
    res = subprocess.run([str(BIN / "fix7"), "rehearse", "--clone", str(demo_clone["clone"]),
                          "--apply", str(demo_clone["apply"]), "--rollback", str(demo_clone["rollback"]),
                          "--attested-by", "e2e test (synthetic demo clone)", "--evidence-dir",
                          str(ui["home"] / "cli-evidence"), "--production-host", "*.prod.invalid-corp.com",
                          "--junit", str(ui["home"] / "report.xml"), "--json"],
                         cwd=PROJECT, env=ui["env"], capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    run_id = json.loads(res.stdout.strip().splitlines()[-1])["run_id"]
    assert ui["gql"](RUN_STATUS, {"id": run_id})["runOrError"]["status"] == "SUCCESS"
    job = ui["gql"](JOB_RUNS)["pipelineOrError"]  # the job's Runs tab: runs of the code location's job only
    assert run_id in [r["runId"] for r in job["runs"]], job
    tags = {t["key"]: t["value"] for t in next(r for r in job["runs"] if r["runId"] == run_id)["tags"]}
    assert tags["fix7/verdict"] == "REHEARSAL_PASSED" and tags["fix7/source"] == "cli"
    assert tags["fix7"] == "PASSED" and tags["dagster/partition"]
    mats = ui["gql"](MATERIALIZATION, {"key": {"path": ["clone_intake"]}})["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e.get("text") for m in mats if m["runId"] == run_id for e in m["metadataEntries"]}
    packet = json.loads((ui["home"] / "cli-evidence" / REPORT).read_text())
    assert entries["clone_sha256"] == packet["clone"]["sha256"]
    assert entries["attested_by"] == "e2e test (synthetic demo clone)"
    assert "<testsuite" in (ui["home"] / "report.xml").read_text()


def test_a_dump_dropped_into_the_watched_folder_starts_exactly_one_run(ui, demo_clone):
    gql, home = ui["gql"], ui["home"]
    started = gql(START_SENSOR, {"sel": {"repositoryLocationName": "fix7_pipeline", "repositoryName": "__repository__",
                                         "sensorName": "clone_drop_sensor"}})["startSensor"]
    assert started["__typename"] == "Sensor" and started["sensorState"]["status"] == "RUNNING", started
    part = home / "drop" / "nightly_clone.dump.part"
    part.write_bytes(demo_clone["clone"].read_bytes())
    stamp = time.time() - 60
    os.utime(part, (stamp, stamp))
    part.rename(home / "drop" / "nightly_clone.dump")
    deadline = time.monotonic() + 120
    while not (runs := gql(SENSOR_RUNS)["runsOrError"]["results"]):
        assert time.monotonic() < deadline, "the sensor requested no run:\n" + (home / "ui.log").read_text()[-3000:]
        time.sleep(2)
    assert len(runs) == 1
    run_id = runs[0]["runId"]
    assert _wait_for_run(gql, run_id) == "SUCCESS"
    time.sleep(12)  # two more sensor intervals: the same dump must not run again
    assert [r["runId"] for r in gql(SENSOR_RUNS)["runsOrError"]["results"]] == [run_id]
    SCENARIO["sensor"] = {"run_id": run_id}


def test_audit_lists_both_runs_and_verify_catches_one_changed_byte(ui):
    assert {"launchpad", "sensor"} <= set(SCENARIO), "runs of the earlier tests are needed"

    def fix7(*args):
        return subprocess.run([str(BIN / "fix7"), *args], cwd=PROJECT, env=ui["env"], capture_output=True,
                              text=True, timeout=120)

    listed = fix7("audit", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["run_id"]: r for r in json.loads(listed.stdout)}
    for source in ("launchpad", "sensor"):
        row = rows[SCENARIO[source]["run_id"]]
        assert row["verdict"] == "REHEARSAL_PASSED" and row["source"] == source
        assert row["chain"].startswith("sealed #") and row["packet_sha256"] == row["dagster_packet_sha256"]
        assert row["attested_by"] == "e2e test (synthetic demo clone)" and row["clone_sha256"]
    assert rows[SCENARIO["sensor"]["run_id"]]["evidence_dir"].startswith(str(ui["home"] / "evidence"))
    verified = fix7("audit", "--verify")
    assert verified.returncode == 0, verified.stderr
    assert _chain_check_status(timeout=120, want="SUCCEEDED") == "SUCCEEDED"
    assert "3 packet(s) re-hashed" in verified.stdout
    report = SCENARIO["launchpad"]["evidence"] / REPORT
    data = bytearray(report.read_bytes())
    data[data.index(b"REHEARSAL_PASSED")] = ord("X")
    report.write_bytes(bytes(data))
    broken = fix7("audit", "--verify")
    assert broken.returncode == 1 and "AUDIT CHAIN BROKEN" in broken.stderr and "packet edited" in broken.stderr
    # the UI says so too: audit_chain's check, reported by audit_chain_sensor (issue 21.4)
    assert _chain_check_status(timeout=120, want="FAILED") == "FAILED"


def _chain_check_status(timeout: float, want: str) -> str:
    """The latest result of audit_chain's check chain_verifies in the storage database, once it is `want`."""
    import psycopg

    info = start_embedded()
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), dbname=STORAGE_DB,
                             user="postgres") as conn:
            row = conn.execute("select execution_status from asset_check_executions where check_name = "
                               "'chain_verifies' order by id desc limit 1").fetchone()
        if (row and row[0]) == want or time.monotonic() > deadline:
            return row and row[0]
        time.sleep(3)


TERMINATE = """
mutation T($id: String!) {
  terminateRun(runId: $id) {
    __typename ... on TerminateRunFailure { message } ... on PythonError { message }
  }
}
"""


def test_a_run_terminated_from_the_ui_is_recorded_as_interrupted(ui, demo_clone):
    """Terminate in the UI: the run worker gets SIGINT and Dagster raises DagsterExecutionInterruptedError inside
    the apply step. The run ends CANCELED long before the statement would, the packet says
    REHEARSAL_INTERRUPTED (no judgment), and the server holds none of its throwaways."""
    import psycopg

    gql = ui["gql"]
    sleepy = demo_clone["root"] / "apply_sleeps.sql"
    sleepy.write_text("select pg_sleep(120);\n")
    evidence = demo_clone["root"] / "terminated-evidence"
    config = {"clone_path": str(demo_clone["clone"]), "apply_sql": str(sleepy),
              "rollback_sql": str(demo_clone["rollback"]), "attested_by": "e2e test (synthetic demo clone)",
              "evidence_dir": str(evidence), "production_hosts": ["*.prod.invalid-corp.com"]}
    params = _launch_params(gql, config)
    launched = gql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    info = start_embedded()

    def catalog(query: str, *args) -> list:
        with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), dbname="postgres",
                             user="postgres", autocommit=True) as c:
            return c.execute(query, args).fetchall()

    deadline = time.monotonic() + 300
    while not catalog("select 1 from pg_stat_activity where application_name = 'fix7:apply' and state = 'active'"):
        assert time.monotonic() < deadline, "the apply statement never ran"
        assert gql(RUN_STATUS, {"id": run_id})["runOrError"]["status"] in ("QUEUED", "STARTING", "STARTED")
        time.sleep(0.5)
    terminated = gql(TERMINATE, {"id": run_id})["terminateRun"]
    assert terminated["__typename"] == "TerminateRunSuccess", terminated
    sent = time.monotonic()
    assert _wait_for_run(gql, run_id, timeout=100) == "CANCELED"
    assert time.monotonic() - sent < 60  # pg_sleep(120) did not get to finish

    packet = json.loads((evidence / REPORT).read_text())
    assert packet["verdict"] == "REHEARSAL_INTERRUPTED" and packet["run_id"] == run_id
    assert packet["stages"]["apply"]["status"] == "interrupted"
    assert packet["exact_operator_input_needed"] is None
    created = packet["throwaways"]["created"]
    assert created and set(created) <= set(packet["throwaways"]["dropped"])
    left = {r[0] for r in catalog("select datname from pg_database union all select rolname from pg_roles")}
    assert not left & set(created)
    assert not catalog("select 1 from pg_stat_activity where application_name = 'fix7:apply'")
