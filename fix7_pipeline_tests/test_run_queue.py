"""Issue 28.2: runs queued per rehearsal server. The shipped dagster.yaml's coordinator tags each run submitted to
the queue with its server (`fix7/server`, host:port, never a login) and limits the runs per server; the limits
are checked with Dagster's own counter, the one the daemon's dequeuer applies."""

from __future__ import annotations

import socket

import dagster as dg
import pytest
from dagster._core.run_coordinator import SubmitRunContext
from dagster._utils.tags import TagConcurrencyLimitsCounter

from fix7_pipeline.run_queue import SERVER_TAG, ServerQueuedRunCoordinator, server_key
from fix7_pipeline_tests.e2e_support import DagsterHome


def test_server_key_names_host_and_port_never_a_login(monkeypatch):
    monkeypatch.delenv("FIX7_REHEARSAL_SERVER", raising=False)
    assert server_key("postgresql://admin:hunter2@db.rehearsal.internal:6543/postgres") == "db.rehearsal.internal:6543"
    assert server_key("postgresql://admin@/postgres?host=/run/pg&port=5433") == "/run/pg:5433"
    assert server_key("postgresql://admin@pg2/postgres") == "pg2:5432"
    assert server_key("") == f"embedded@{socket.gethostname()}"
    monkeypatch.setenv("FIX7_REHEARSAL_SERVER", "postgresql://ops@shared-pg:5432/postgres")
    assert server_key("") == "shared-pg:5432"  # the resource's default server, when the run names none


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("queue_home"), "queue", guarded=False)
    yield h
    h.drop()


@dg.op(name="clone_intake", config_schema={"server_url": str})
def _clone_intake():
    return None


@dg.job(name="fix7_rehearsal")
def _stand_in():
    """The rehearsal job's shape as the coordinator reads it (clone_intake's server_url), without its stages."""
    _clone_intake()


def _submitted(inst, server_url: str):
    from dagster._core.remote_origin import (InProcessCodeLocationOrigin, LoadableTargetOrigin, RemoteJobOrigin,
                                             RemoteRepositoryOrigin)

    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=__file__, attribute="_stand_in"))
    origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), "fix7_rehearsal")
    run = inst.create_run_for_job(_stand_in, remote_job_origin=origin,
                                  run_config={"ops": {"clone_intake": {"config": {"server_url": server_url}}}})
    # what instance.submit_run hands the coordinator once the launchpad, a schedule or a sensor made the run
    return inst.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))


def test_queued_runs_are_tagged_and_limited_per_server(home):
    with home.instance() as inst:
        coordinator = inst.run_coordinator
        assert isinstance(coordinator, ServerQueuedRunCoordinator)
        limits = coordinator.get_run_queue_config().tag_concurrency_limits
        assert {"key": SERVER_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 2} in limits

        a1, a2, a3 = (_submitted(inst, "postgresql://ops:pw@pg-a:5432/postgres") for _ in range(3))
        b1 = _submitted(inst, "postgresql://ops@pg-b:5432/postgres")
        for run in (a1, a2, a3, b1):
            stored = inst.get_run_by_id(run.run_id)
            assert stored.status == dg.DagsterRunStatus.QUEUED
            assert "pw" not in stored.tags[SERVER_TAG]
        assert inst.get_run_by_id(a1.run_id).tags[SERVER_TAG] == "pg-a:5432"
        assert inst.get_run_by_id(b1.run_id).tags[SERVER_TAG] == "pg-b:5432"

        running = [inst.get_run_by_id(a1.run_id), inst.get_run_by_id(a2.run_id)]  # two on pg-a in progress
        counter = TagConcurrencyLimitsCounter(limits, running)
        assert counter.is_blocked(inst.get_run_by_id(a3.run_id))  # a third waits for pg-a
        assert not counter.is_blocked(inst.get_run_by_id(b1.run_id))  # pg-b is free
