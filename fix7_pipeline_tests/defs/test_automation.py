"""The nightly schedule and the drop-folder sensor, evaluated directly on real dumps made with the wheel's pg_dump."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from fix7_pipeline.core.dumps.identify import inspect_dump
from fix7_pipeline.core.run.automation_config import load_automation_config
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.postgres.server import pg_tool
from fix7_pipeline.core.postgres.pg_tools import run_tool
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway
from fix7_pipeline.defs.automation import build_schedule, build_sensor, clone_drop_sensor, nightly_rehearsal
from fix7_pipeline_tests.pg import as_owner

YAML = """\
version: 1
drop_folder: drop
apply_sql: change/apply.sql
rollback_sql: change/rollback.sql
attested_by: "test operator"
production_hosts: ["*.prod.example.com"]
sensor:
  settle_seconds: {settle}
"""


def _pg_dump(server, tw, out: Path, fmt: str = "c") -> Path:
    env = server.tool_env(tw.database, tw.login, "test dump", "pg_dump")
    res = run_tool([pg_tool("pg_dump"), f"-F{fmt}", "-f", str(out), tw.database], env)
    assert res.returncode == 0, res.stderr
    return out


@pytest.fixture(scope="module")
def dumps_made(server, tmp_path_factory) -> dict:
    """Two custom-format dumps of the same small database that differ by one row, and a directory dump."""
    out = tmp_path_factory.mktemp("dumps")
    tw = create_throwaway(server)
    try:
        with as_owner(server, tw) as c:
            c.execute("create table birth_registry (id int primary key, status text not null)")
            c.execute("insert into birth_registry values (1, 'born'), (2, 'pending')")
        first = _pg_dump(server, tw, out / "first.dump")
        directory = _pg_dump(server, tw, out / "first_dir", fmt="d")
        with as_owner(server, tw) as c:
            c.execute("insert into birth_registry values (3, 'born')")
        second = _pg_dump(server, tw, out / "second.dump")
    finally:
        drop_throwaway(server, tw)
    return {"first": first, "second": second, "directory": directory}


@pytest.fixture
def operator(tmp_path, monkeypatch):
    """An operator's project: rehearsal.yaml, the change files, an empty drop folder."""
    (tmp_path / "drop").mkdir()
    (tmp_path / "change").mkdir()
    (tmp_path / "change" / "apply.sql").write_text("alter table birth_registry add column note text;\n")
    (tmp_path / "change" / "rollback.sql").write_text("alter table birth_registry drop column note;\n")
    monkeypatch.setenv("FIX7_REHEARSAL_CONFIG", str(tmp_path / "rehearsal.yaml"))

    def configure(settle: int = 0, text: str | None = None) -> Path:
        (tmp_path / "rehearsal.yaml").write_text(text if text is not None else YAML.format(settle=settle))
        return tmp_path

    configure()
    return configure


class Sensor:
    """Evaluates the sensor the way the daemon does: each tick hands on the previous tick's cursor."""

    def __init__(self, sensor_def=clone_drop_sensor):
        self.sensor_def = sensor_def
        self.cursor = None

    def tick(self):
        data = self.sensor_def.evaluate_tick(dg.build_sensor_context(cursor=self.cursor, repository_def=_repo(),
                                                                     instance=_INSTANCE["it"]))
        self.cursor = data.cursor
        return data


_INSTANCE: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _test_instance():
    """A persistent test instance: the sensor resolves its partitioned run requests against it."""
    with dg.instance_for_test() as instance:
        _INSTANCE["it"] = instance
        yield instance


def _repo():
    """The code location's repository: partitioned run requests are resolved against it."""
    from fix7_pipeline.definitions import defs

    return defs.get_repository_def()


def _drop(src: Path, folder: Path, name: str, age_s: float = 120) -> Path:
    dst = folder / name
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    stamp = time.time() - age_s
    os.utime(dst, (stamp, stamp))
    return dst


def _sha(path: Path) -> str:
    return inspect_dump(path).sha256


def test_a_new_dump_requests_exactly_one_run(operator, dumps_made):
    root = operator()
    sensor = Sensor()
    assert sensor.tick().skip_message == f"no dump in {root / 'drop'}"
    dump = _drop(dumps_made["first"], root / "drop", "birth_surface.dump")
    first = sensor.tick()
    assert first.run_requests == [] and "waiting for it to settle" in first.skip_message
    second = sensor.tick()
    assert len(second.run_requests) == 1
    run = second.run_requests[0]
    sha = _sha(dump)
    assert run.run_key.startswith(sha + "+apply-")
    config = run.run_config["ops"]["clone_intake"]["config"]
    assert config["clone_path"] == str(dump)
    assert config["apply_sql"] == str(root / "change" / "apply.sql")
    assert config["attested_by"] == "test operator"
    assert "evidence_dir" not in config
    assert run.tags["fix7/source"] == "sensor"
    # one rehearsal partition per request, named in its tag: the instance's storage adds it with the run
    assert run.tags["dagster/partition"].endswith("-" + sha[:8])
    assert run.partition_key is None and not second.dynamic_partitions_requests
    job = __import__("fix7_pipeline.definitions", fromlist=["defs"]).defs.resolve_job_def("fix7_rehearsal")
    assert dg.validate_run_config(job, run.run_config)


def test_the_same_sha_never_runs_twice(operator, dumps_made):
    root = operator()
    sensor = Sensor()
    _drop(dumps_made["first"], root / "drop", "a.dump")
    sensor.tick()
    assert len(sensor.tick().run_requests) == 1
    third = sensor.tick()
    assert third.run_requests == [] and "already requested" in third.skip_message
    _drop(dumps_made["first"], root / "drop", "a_copy.dump")
    assert sensor.tick().run_requests == []
    assert sensor.tick().run_requests == []


def test_a_half_written_file_is_not_picked_up(operator, dumps_made):
    root = operator()
    sensor = Sensor()
    data = dumps_made["first"].read_bytes()
    target = root / "drop" / "growing.dump"
    target.write_bytes(data[: len(data) // 3])
    assert sensor.tick().run_requests == []
    with open(target, "ab") as f:
        f.write(data[len(data) // 3: 2 * len(data) // 3])
    assert sensor.tick().run_requests == []
    with open(target, "ab") as f:
        f.write(data[2 * len(data) // 3:])
    assert sensor.tick().run_requests == []
    done = sensor.tick()
    assert len(done.run_requests) == 1 and done.run_requests[0].run_key.startswith(_sha(target))
    (root / "drop" / "upload.dump.part").write_bytes(data)
    sensor.tick()
    assert sensor.tick().run_requests == []


def test_a_fresh_dump_waits_for_settle_seconds(operator, dumps_made):
    root = operator(settle=3600)
    sensor = Sensor()
    _drop(dumps_made["first"], root / "drop", "fresh.dump", age_s=0)
    sensor.tick()
    later = sensor.tick()
    assert later.run_requests == [] and "less than 3600s ago" in later.skip_message


def test_a_changed_sha_requests_a_new_run(operator, dumps_made):
    root = operator()
    sensor = Sensor()
    dump = _drop(dumps_made["first"], root / "drop", "birth_surface.dump")
    sensor.tick()
    first_key = sensor.tick().run_requests[0].run_key
    shutil.copyfile(dumps_made["second"], dump)
    assert sensor.tick().run_requests == []
    again = sensor.tick()
    assert len(again.run_requests) == 1
    assert again.run_requests[0].run_key != first_key
    assert again.run_requests[0].run_key.startswith(_sha(dumps_made["second"]))


def test_a_changed_change_file_rehearses_the_same_clone_again(operator, dumps_made):
    root = operator()
    sensor = Sensor()
    _drop(dumps_made["first"], root / "drop", "birth_surface.dump")
    sensor.tick()
    first_key = sensor.tick().run_requests[0].run_key
    (root / "change" / "apply.sql").write_text("alter table birth_registry add column note2 text;\n")
    again = sensor.tick()
    assert len(again.run_requests) == 1 and again.run_requests[0].run_key != first_key
    assert first_key.split("+")[0] == again.run_requests[0].run_key.split("+")[0]


def test_a_directory_dump_is_keyed_by_the_sha256_intake_records(operator, dumps_made):
    root = operator()
    sensor = Sensor()
    dump = _drop(dumps_made["directory"], root / "drop", "birth_surface_dir")
    sensor.tick()
    runs = sensor.tick().run_requests
    assert len(runs) == 1 and runs[0].run_key.startswith(_sha(dump) + "+")


def test_without_rehearsal_yaml_both_skip(tmp_path, monkeypatch):
    monkeypatch.setenv("FIX7_REHEARSAL_CONFIG", str(tmp_path / "absent.yaml"))
    assert "no rehearsal.yaml" in Sensor().tick().skip_message
    data = nightly_rehearsal.evaluate_tick(dg.build_schedule_context())
    assert data.run_requests == [] and "no rehearsal.yaml" in data.skip_message


def test_a_broken_rehearsal_yaml_fails_the_tick_with_its_reason(operator):
    operator(text="drop_folder: drop\napply_sql: change/apply.sql\nrollback_sql: change/rollback.sql\n"
                  "atested_by: typo\n")
    for evaluate in (lambda: Sensor().tick(), lambda: nightly_rehearsal.evaluate_tick(dg.build_schedule_context())):
        with pytest.raises(Exception) as failed:
            evaluate()
        causes, e = [], failed.value
        while e is not None:
            causes.append(e)
            e = e.__cause__
        assert any(isinstance(c, Fix7Error) and "unknown setting(s) atested_by" in c.message for c in causes)


def test_schedule_rehearses_the_registered_clone(operator, dumps_made):
    root = operator(text=YAML.format(settle=0) + "clone_path: clones/registered.dump\nevidence_root: evidence\n")
    (root / "clones").mkdir()
    shutil.copyfile(dumps_made["first"], root / "clones" / "registered.dump")
    when = dt.datetime(2025, 6, 1, 2, 0, tzinfo=dt.timezone.utc)
    with dg.instance_for_test() as instance:
        data = nightly_rehearsal.evaluate_tick(dg.build_schedule_context(
            scheduled_execution_time=when, instance=instance, repository_def=_repo()))
        assert len(data.run_requests) == 1
        run = data.run_requests[0]
        # its own rehearsal partition, named in its tag: the instance's storage adds it with the run
        assert run.tags["dagster/partition"] == "20250601T020000Z-nightly"
        assert instance.get_dynamic_partitions("fix7_rehearsals") == []
    config = run.run_config["ops"]["clone_intake"]["config"]
    assert config["clone_path"] == str(root / "clones" / "registered.dump")
    assert Path(config["evidence_dir"]).parent == root / "evidence" and re.search(r"Z-nightly-[0-9a-f]{8}$", config["evidence_dir"])
    assert run.tags["fix7/source"] == "schedule" and {k for k in run.tags if k.startswith("fix7")} == {"fix7/source"}


def test_schedule_without_clone_path_takes_the_newest_settled_drop(operator, dumps_made):
    root = operator()
    with dg.instance_for_test() as instance:
        tick = dg.build_schedule_context(scheduled_execution_time=dt.datetime.now(dt.timezone.utc),
                                         instance=instance, repository_def=_repo())
        data = nightly_rehearsal.evaluate_tick(tick)
        assert data.run_requests == [] and "holds no settled dump" in data.skip_message
        _drop(dumps_made["first"], root / "drop", "old.dump", age_s=7200)
        newest = _drop(dumps_made["second"], root / "drop", "new.dump", age_s=600)
        data = nightly_rehearsal.evaluate_tick(tick)
    assert data.run_requests[0].run_config["ops"]["clone_intake"]["config"]["clone_path"] == str(newest)


def test_stopped_by_default_and_configurable(operator):
    assert build_schedule(None).default_status == dg.DefaultScheduleStatus.STOPPED
    assert build_schedule(None).cron_schedule == "0 2 * * *"
    assert build_sensor(None).default_status == dg.DefaultSensorStatus.STOPPED
    root = operator(text=YAML.format(settle=5) + "schedule:\n  cron: '30 3 * * 1-5'\n  timezone: Europe/Berlin\n"
                                                 "  enabled: true\n")
    cfg = load_automation_config(root / "rehearsal.yaml")
    schedule = build_schedule(cfg)
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 3 * * 1-5", "Europe/Berlin")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert build_sensor(cfg).default_status == dg.DefaultSensorStatus.STOPPED


@pytest.mark.parametrize("extra, message", [
    ("evidence_dir: /tmp/x\n", "evidence_dir"),
    ("attested_by: [a, b]\n", "`attested_by` must be text"),
    ("schedule:\n  cron: every night\n", "five-field cron"),
    ("sensor:\n  settle: 3\n", "under `sensor`"),
    ("max_lock_s: -1\n", "`max_lock_s` must be a number at or above 0"),
    ("max_total_s: soon\n", "`max_total_s` must be a number"),
    ("no_rewrite_tables: birth_registry\n", "`no_rewrite_tables` must be a list of text"),
])
def test_rehearsal_yaml_refuses_what_it_does_not_understand(operator, extra, message):
    root = operator(text="drop_folder: drop\napply_sql: change/apply.sql\nrollback_sql: change/rollback.sql\n"
                         + extra)
    with pytest.raises(Fix7Error, match=message):
        load_automation_config(root / "rehearsal.yaml")


def test_rehearsal_yaml_needs_the_change_and_a_clone_source(operator):
    root = operator(text="drop_folder: drop\napply_sql: change/apply.sql\n")
    with pytest.raises(Fix7Error, match="rollback_sql"):
        load_automation_config(root / "rehearsal.yaml")
    operator(text="apply_sql: change/apply.sql\nrollback_sql: change/rollback.sql\n")
    with pytest.raises(Fix7Error, match="clone_path"):
        load_automation_config(root / "rehearsal.yaml")


def test_the_committed_example_is_valid():
    example = Path(__file__).resolve().parents[2] / "rehearsal.example.yaml"
    cfg = load_automation_config(example)
    assert cfg.request["attested_by"] and cfg.drop_folder and cfg.clone_path
    assert cfg.schedule.enabled is False and cfg.sensor.enabled is False


def test_impact_thresholds_in_rehearsal_yaml_reach_the_run_config(operator):
    root = operator(text="drop_folder: drop\napply_sql: change/apply.sql\nrollback_sql: change/rollback.sql\n"
                         "max_lock_s: 1\nmax_access_exclusive_s: 0.5\nno_rewrite_tables: [birth_registry]\n"
                         "index_warn_rows: 500\nmax_blocked_ms: 250\nmax_production_estimate_s: 30\n"
                         "probe_sessions: 2\n")
    request = load_automation_config(root / "rehearsal.yaml").request_config("/x.dump", "t")
    assert (request["max_lock_s"], request["max_access_exclusive_s"]) == (1.0, 0.5)
    assert request["no_rewrite_tables"] == ["birth_registry"] and request["index_warn_rows"] == 500
    assert (request["max_blocked_ms"], request["max_production_estimate_s"], request["probe_sessions"]) == (
        250.0, 30.0, 2)
    assert "max_statement_s" not in request  # unset: not gated
    from fix7_pipeline.defs.intake import RehearsalRequestConfig

    assert RehearsalRequestConfig(**request).to_request().max_lock_s == 1.0
