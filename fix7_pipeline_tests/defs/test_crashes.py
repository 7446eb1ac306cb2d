"""fix7_crashed_run_sensor and close_crashed_runs on a real Dagster instance (embedded PostgreSQL storage): a run
left STARTED whose process is gone (what SIGKILL leaves in storage: a RUN_START event with the dead pid) is closed
as failed, once, with the crash named; a run whose process is alive is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent

from fix7_pipeline.defs.crashes import (CRASHED, HOST_TAG, close_crashed_runs, closed_as_crashed,
                                        fix7_crashed_run_sensor, host_tag)
from fix7_pipeline_tests.e2e_support import DagsterHome


@pytest.fixture
def instance(tmp_path):
    home = DagsterHome.create(tmp_path / "home", "crashes")
    try:
        with home.instance() as inst:
            yield inst
    finally:
        home.drop()


def _started_run(inst: dg.DagsterInstance, pid: int, host: dict | None = None) -> str:
    run = dg.DagsterRun(job_name="fix7_rehearsal", run_id=str(uuid.uuid4()), tags=host_tag() if host is None else host)
    inst.add_run(run)
    inst.report_dagster_event(DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value,
                                           job_name="fix7_rehearsal", pid=pid), run_id=run.run_id)
    assert inst.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    return run.run_id


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_sensor_closes_a_run_whose_process_is_gone_and_leaves_a_live_one(instance):
    crashed, alive = _started_run(instance, _dead_pid()), _started_run(instance, os.getpid())
    elsewhere = _started_run(instance, _dead_pid(), {HOST_TAG: "another-machine.invalid"})  # its pid means nothing here
    result = fix7_crashed_run_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason) and crashed in result.skip_message
    assert instance.get_run_by_id(crashed).status == dg.DagsterRunStatus.FAILURE
    assert closed_as_crashed(instance, crashed)
    failure = instance.all_logs(crashed, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert len(failure) == 1 and failure[0].message.startswith(f"{CRASHED}: the process that ran this rehearsal")
    assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
    assert not closed_as_crashed(instance, alive)
    assert instance.get_run_by_id(elsewhere).status == dg.DagsterRunStatus.STARTED
    assert close_crashed_runs(instance) == []  # closed once
