"""A rehearsal started outside the webserver (CLI, `make demo`, CI) as a run of the code location's job.

`JobDefinition.execute_in_process` makes a run with no code-location origin: the UI then leaves it out of
the job's Runs tab and the Overview, which list runs by the `.dagster/repository` tag that only a run
created from a remote job gets. Here the run is created the way the webserver's launchpad and `dagster
job launch` create one: the workspace's location (`fix7_pipeline`, as in workspace.yaml) is loaded in this
process, the run is created from its remote job (remote origin, job and execution-plan snapshots, the
rehearsal's dynamic partition) and then executed here, synchronously, with `execute_run`, so the stage
lines, Ctrl-C and SIGTERM behave as before.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from fix7_pipeline.core.shared.names import JOB

LOCATION = "fix7_pipeline"  # workspace.yaml's location_name
MODULE = "fix7_pipeline.definitions"


@contextmanager
def code_location(instance):
    """The workspace's code location, loaded in this process under its workspace name."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    from fix7_pipeline.core.shared.paths import project_dir

    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(executable_path=sys.executable, module_name=MODULE,
                                                    working_directory=str(project_dir())),
        location_name=LOCATION)
    with origin.create_location(instance) as location:
        yield location


def create_job_run(instance, location, run_config: dict, tags: dict, *, run_id: str | None = None):
    """A NOT_STARTED run of the location's job, with its remote origin (what the UI lists by)."""
    from dagster._core.definitions.selector import JobSubsetSelector

    repo = location.get_repository(next(iter(location.get_repositories())))
    selector = JobSubsetSelector(location_name=location.name, repository_name=repo.name, job_name=JOB,
                                 op_selection=None)
    remote_job = location.get_job(selector)
    plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None, known_state=None,
                                       instance=instance)
    return instance.create_run(
        job_name=JOB, run_id=run_id, run_config=run_config, resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute, op_selection=None,
        status=None, root_run_id=None, parent_run_id=None, tags={**remote_job.tags, **tags},
        job_snapshot=remote_job.job_snapshot, execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot, remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(), asset_selection=None, asset_check_selection=None,
        asset_graph=repo.asset_graph)


def run_job_here(instance, run_config: dict, tags: dict, *, partition_key: str | None = None,
                 run_id: str | None = None):
    """Create the run of the code location's job and execute it in this process; returns the
    JobExecutionResult (run_id, success). `partition_key` is tagged on the run, and the instance's storage adds
    it to the rehearsals' partitions with the run (instance_guard.py; on an instance without that storage it
    is added here first); `run_id` is the run's id when the caller follows it already."""
    from dagster._core.execution.api import execute_run
    from dagster._core.storage.tags import PARTITION_NAME_TAG
    from dagster._utils.hosted_user_process import recon_job_from_origin

    from fix7_pipeline.defs.partitions import add_rehearsal
    from fix7_pipeline.instance_guard import guarded

    if partition_key:
        if not guarded(instance):  # the project's storage adds it with the run
            add_rehearsal(instance, partition_key)
        tags = {**tags, PARTITION_NAME_TAG: partition_key}
    with code_location(instance) as location:
        run = create_job_run(instance, location, run_config, tags, run_id=run_id)
    return execute_run(recon_job_from_origin(run.job_code_origin), run, instance, raise_on_error=False)
