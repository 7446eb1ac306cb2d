"""What starts rehearsals without a person at the launchpad: a nightly schedule and a drop-folder sensor.

Both read the operator's rehearsal.yaml on every evaluation, so an edited change or attestation applies
to the next run; the cron, the timezone and whether they start switched on are read when the code loads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg

from fix7_pipeline.core.run.automation_config import (AutomationConfig, DropEntry, config_path, dump_sha256,
                                                      load_automation_config, load_for_definitions, scan_drop_folder)
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.shared.escape import visible
from fix7_pipeline.core.shared.names import JOB
from fix7_pipeline.defs.audit_chain import report_chain_state
from fix7_pipeline.defs.partitions import rehearsal_key
from fix7_pipeline.defs.run_end import end_run

PARTITION_TAG = "dagster/partition"
KEEP_REQUESTED = 500


def _run_config(request: dict) -> dict:
    return {"ops": {"clone_intake": {"config": request}}}


def run_key(clone_sha256: str, apply_sha256: str, rollback_sha256: str) -> str:
    """One run per (clone, change, rollback): the same dump dropped twice, or under two names, runs once."""
    return f"{clone_sha256}+apply-{apply_sha256[:16]}+rollback-{rollback_sha256[:16]}"


# -- schedule -----------------------------------------------------------------------------

def build_schedule(cfg: AutomationConfig | None) -> dg.ScheduleDefinition:
    settings = cfg.schedule if cfg else None
    status = dg.DefaultScheduleStatus.RUNNING if settings and settings.enabled else dg.DefaultScheduleStatus.STOPPED

    @dg.schedule(
        name="nightly_rehearsal", job_name=JOB,
        cron_schedule=settings.cron if settings else "0 2 * * *",
        execution_timezone=settings.timezone if settings else "UTC",
        default_status=status,
        description="Rehearses the clone and change registered in rehearsal.yaml (clone_path, or the newest "
                    "settled dump in drop_folder). Cron and timezone: schedule.cron / schedule.timezone; "
                    "stopped unless schedule.enabled is true or it is switched on here.",
    )
    def nightly_rehearsal(context: dg.ScheduleEvaluationContext):
        cfg_now = load_automation_config()  # a broken file fails the tick with its reason
        if cfg_now is None:
            return _no_config("nothing is registered to rehearse")
        clone = cfg_now.clone_path
        if not clone:
            settled = _settled_entries(cfg_now, time.time())
            if not settled:
                return dg.SkipReason(f"rehearsal.yaml names no clone_path and the drop folder "
                                     f"{cfg_now.drop_folder} holds no settled dump")
            clone = max(settled, key=lambda e: e.mtime_ns).path
        tick = context.scheduled_execution_time
        # The tick's rehearsal partition is named in the tag; the instance's storage adds it with the run.
        key = rehearsal_key("nightly", tick)
        return dg.RunRequest(
            run_config=_run_config(cfg_now.request_config(clone, "nightly")),
            tags={"fix7/source": "schedule", PARTITION_TAG: key},  # few tags: the Runs list shows each
        )

    return nightly_rehearsal


def _settled_entries(cfg: AutomationConfig, now: float) -> list[DropEntry]:
    entries = scan_drop_folder(cfg.drop_folder, cfg.sensor.patterns)
    return [e for e in entries if now - e.mtime_ns / 1e9 >= max(cfg.sensor.settle_seconds, 1)]


# -- sensor -------------------------------------------------------------------------------

def evaluate_drop_folder(cfg: AutomationConfig, cursor: dict, now: float) -> tuple[list[dict], list[str], dict]:
    """Which dumps in the drop folder are ready to rehearse, and the next cursor.

    A dump is ready when its size and mtime are the same as at the previous evaluation and it is at least
    settle_seconds old; then it is hashed (once per size/mtime) and requested once per run key.
    Returns (requests, notes, cursor); a request is {run_key, clone_path, clone_sha256}.
    """
    files_before: dict = cursor.get("files") or {}
    requested: list = list(cursor.get("requested") or [])
    entries = scan_drop_folder(cfg.drop_folder, cfg.sensor.patterns)
    change = cfg.change_sha256()
    files, requests, notes = {}, [], []
    for e in entries:
        name = Path(e.path).name
        before = files_before.get(e.path) or {}
        if before.get("sig") != e.signature:
            files[e.path] = {"sig": e.signature}
            notes.append(f"{name}: {'changed since' if before else 'new at'} this check, waiting for it to settle")
            continue
        if now - e.mtime_ns / 1e9 < cfg.sensor.settle_seconds:
            files[e.path] = before
            notes.append(f"{name}: written less than {cfg.sensor.settle_seconds}s ago, waiting for it to settle")
            continue
        sha = before.get("sha256")
        if not sha:
            try:
                sha = dump_sha256(e)
            except Fix7Error as err:
                files[e.path] = before
                notes.append(f"{name}: cannot be hashed ({err.message})")
                continue
        files[e.path] = {"sig": e.signature, "sha256": sha}
        key = run_key(sha, *change)
        if key in requested:
            notes.append(f"{name}: sha256 {sha[:12]}… with this change already requested")
            continue
        requested.append(key)
        requests.append({"run_key": key, "clone_path": e.path, "clone_sha256": sha})
    return requests, notes, {"files": files, "requested": requested[-KEEP_REQUESTED:]}


def build_sensor(cfg: AutomationConfig | None) -> dg.SensorDefinition:
    settings = cfg.sensor if cfg else None
    status = dg.DefaultSensorStatus.RUNNING if settings and settings.enabled else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name="clone_drop_sensor", job_name=JOB, default_status=status,
        minimum_interval_seconds=settings.interval_seconds if settings else 30,
        description="Watches drop_folder from rehearsal.yaml: a new dump, or a changed sha256 of one already "
                    "there, requests one rehearsal (run key = clone sha256 + the change files' hashes, so the "
                    "same pair never runs twice). A file whose size or mtime is still changing waits.",
    )
    def clone_drop_sensor(context: dg.SensorEvaluationContext):
        cfg_now = load_automation_config()  # a broken file fails the tick with its reason
        if cfg_now is None:
            return _no_config("no drop folder to watch")
        if not cfg_now.drop_folder:
            return dg.SkipReason(f"{cfg_now.source} names no drop_folder")
        try:
            cursor = json.loads(context.cursor) if context.cursor else {}
        except ValueError:
            cursor = {}
        found, notes, next_cursor = evaluate_drop_folder(cfg_now, cursor, time.time())
        keys = [rehearsal_key(r["clone_sha256"][:8]) for r in found]  # one rehearsal partition per request
        runs = [dg.RunRequest(run_key=r["run_key"], run_config=_run_config(
                                  cfg_now.request_config(r["clone_path"], r["clone_sha256"][:8])),
                              # few tags (the Runs list shows each); the instance's storage adds the partition
                              tags={"fix7/source": "sensor", PARTITION_TAG: key})
                for r, key in zip(found, keys)]
        next_json = json.dumps(next_cursor, sort_keys=True)
        if runs:
            return dg.SensorResult(run_requests=runs, cursor=next_json)
        reason = "; ".join(notes) if notes else f"no dump in {cfg_now.drop_folder}"
        return dg.SensorResult(skip_reason=visible(reason)[:2000], cursor=next_json)

    return clone_drop_sensor


def _no_config(what: str) -> dg.SkipReason:
    return dg.SkipReason(f"no rehearsal.yaml at {config_path()}: {what} (copy rehearsal.example.yaml)")


_LOADED = load_for_definitions()
nightly_rehearsal = build_schedule(_LOADED)
clone_drop_sensor = build_sensor(_LOADED)


# -- the verdict as a finished run's last event -----------------------------------------------

@dg.run_status_sensor(
    name="fix7_verdict_sensor", run_status=dg.DagsterRunStatus.FAILURE, monitored_jobs=None,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=5,
    description="When a rehearsal run fails (it reached no verdict: the server, the disk, an interruption or a "
                "crash stopped it), adds its sealed verdict and the operator's "
                "one-line reason as the run's last event, so the run page reads it before Dagster's stack "
                "trace. A run that died before any stage sealed its packet gets it rendered and sealed from "
                "its journal first. Runs the CLI started already carry both. Then reports the audit chain's "
                "check (audit_chain: chain_verifies).",
)
def fix7_verdict_sensor(context: dg.RunStatusSensorContext):
    if context.dagster_run.job_name == JOB:
        end_finished_run(context.instance, context.dagster_run.run_id)


@dg.run_status_sensor(
    name="fix7_judged_run_sensor", run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=None,
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=5,
    description="When a rehearsal run succeeds (it reached a verdict: passed, failed or no safe clone), adds its "
                "verdict and the operator's one-line reason as the run's last event, removes its stage outputs "
                "and reports the audit chain's check. Runs the CLI started already carry the verdict event.",
)
def fix7_judged_run_sensor(context: dg.RunStatusSensorContext):
    if context.dagster_run.job_name == JOB:
        end_finished_run(context.instance, context.dagster_run.run_id)


def end_finished_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """What both run-status sensors do for a finished run: defs/run_end.py end_run, then the audit chain's
    check (audit_chain: chain_verifies) with this run sealed and closed."""
    end_run(instance, run_id)
    report_chain_state(instance)
