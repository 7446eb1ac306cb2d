"""A rehearsal whose process died (SIGKILL, the machine went down) is closed as failed, never judged.

Dagster leaves such a run STARTED: nothing of it is left to report its end. `close_crashed_runs` finds the
runs of the job whose starting process is gone (core/run/liveness.py, from the pid Dagster recorded with the run's
RUN_START event) and ends each with Dagster's own `report_run_failed`, naming the crash; its journal stays as
it is (nothing is rendered from it, as nothing was judged) and `fix7 audit` lists it as crashed. Called by
the next `fix7 rehearse` before it starts, and every minute by fix7_crashed_run_sensor.
"""

from __future__ import annotations

import socket

import dagster as dg

from fix7_pipeline.core.run.liveness import process_alive
from fix7_pipeline.core.shared.names import JOB

CRASHED = "fix7 crashed"  # how the failure Dagster records for a closed crashed run begins
# The machine the run's process runs on (tagged by the CLI as it creates the run, by intake for the others): a pid
# means nothing on another machine sharing the Dagster storage, so only runs of this machine are ever judged crashed.
HOST_TAG = "fix7/host"


def host_tag() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname()}


# A run STARTING has no process of its own yet (its launcher's pid is no sign of it): never judged crashed.
LIVE = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def started_by(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, float | None]:
    """The pid of the process that runs the run and when it started it (the run's RUN_START event)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    if not records:
        return None, None
    entry = records[0].event_log_entry
    return (entry.dagster_event.pid if entry.dagster_event else None), entry.timestamp


def is_crashed(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """A run Dagster still shows running whose process, on this machine, is provably gone."""
    if run.status not in LIVE or run.tags.get(HOST_TAG) != socket.gethostname():
        return False
    pid, at = started_by(instance, run.run_id)
    return pid is not None and at is not None and not process_alive(pid, at)


def closed_as_crashed(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run's failure is the one close_crashed_runs reported."""
    return any((e.message or "").startswith(CRASHED)
               for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE))


def close_crashed_runs(instance: dg.DagsterInstance) -> list[str]:
    """End every crashed run of the job as failed (Dagster's report_run_failed); returns their run ids."""
    from fix7_pipeline.defs.stages import PACKET_DIR_TAG
    from fix7_pipeline.defs.storage import discard_run_outputs

    closed = []
    for record in instance.get_run_records(filters=dg.RunsFilter(job_name=JOB, statuses=list(LIVE))):
        run = record.dagster_run
        if not is_crashed(instance, run):
            continue
        pid, _ = started_by(instance, run.run_id)
        evidence = run.tags.get(PACKET_DIR_TAG) or "no evidence folder yet"
        instance.report_run_failed(run, message=(
            f"{CRASHED}: the process that ran this rehearsal (pid {pid}) is gone (killed, or the machine went "
            f"down) and nothing reported its end. Not a verdict: the clone and the change were not judged. Its "
            f"journal ({evidence}) is kept as the run left it; the next rehearsal's sweep drops its throwaways."))
        discard_run_outputs(instance, run.run_id)
        closed.append(run.run_id)
    return closed


@dg.sensor(name="fix7_crashed_run_sensor", default_status=dg.DefaultSensorStatus.RUNNING,
           minimum_interval_seconds=60,
           description="Closes as failed every rehearsal run Dagster still shows running whose process is gone "
                       "(SIGKILL, a machine that went down): not a verdict; `fix7 audit` lists it as crashed.")
def fix7_crashed_run_sensor(context: dg.SensorEvaluationContext):
    closed = close_crashed_runs(context.instance)
    return dg.SkipReason(f"closed {len(closed)} crashed run(s) as failed: {', '.join(closed)}" if closed
                         else "no crashed rehearsal run")
