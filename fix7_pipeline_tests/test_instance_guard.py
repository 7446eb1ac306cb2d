"""Issue 21.1, 21.5, 21.6 in the default suite: every launch the UI can make, sent through Dagster's own GraphQL
(the webserver's schema, in process) to an instance with the project's dagster.yaml, is either a whole new run
of fix7_rehearsal in a partition of its own, or refused with one line before anything is stored.

The launches are queued (no daemon runs here), so nothing is rehearsed; what is checked is what the storage
keeps: the runs, the backfills, the rehearsal partitions, and no planted password in any table.
"""

from __future__ import annotations

import secrets

import psycopg
import pytest

from fix7_pipeline.instance_guard import (ADD_PARTITION, ASSETS, BACKFILL, CHECKS, PARTIAL, PASSWORD, RERUN, STEPS,
                                          WRONG_JOB, RehearsalRefused, storage_url)
from fix7_pipeline_tests.e2e_support import DagsterHome

LAUNCH = """
mutation($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId tags { key value } } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""
BACKFILL_MUTATION = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on PythonError { message }
    ... on LaunchBackfillSuccess { backfillId }
  }
}"""
ADD_PARTITION_MUTATION = """
mutation($repositorySelector: RepositorySelector!, $partitionsDefName: String!, $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName,
                      partitionKey: $partitionKey) {
    __typename
    ... on PythonError { message }
    ... on AddDynamicPartitionSuccess { partitionKey }
  }
}"""


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The webserver's GraphQL over the project's code location, loaded in this process, on a fresh instance."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    from fix7_pipeline.core.shared.paths import project_dir
    from fix7_pipeline.launch import LOCATION, MODULE

    home = DagsterHome.create(tmp_path_factory.mktemp("guard_home"), "guard")
    target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=MODULE, working_directory=str(project_dir())), location_name=LOCATION))
    with home.instance() as instance, WorkspaceProcessContext(instance, target) as process:
        yield process.create_request_context(), instance


def _gql(ui, query: str, variables: dict) -> dict:
    from dagster_graphql.test.utils import execute_dagster_graphql

    result = execute_dagster_graphql(ui[0], query, variables)
    assert not result.errors, result.errors
    return next(iter(result.data.values()))


def _selector(ui, job: str, **extra) -> dict:
    from dagster_graphql.test.utils import infer_job_selector

    return {**infer_job_selector(ui[0], job), **extra}


def _launch(ui, job: str = "fix7_rehearsal", *, tags: dict | None = None, run_config: dict | None = None,
            **selector) -> dict:
    return _gql(ui, LAUNCH, {"executionParams": {
        "selector": _selector(ui, job, **selector), "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}}})


def _refused(answer: dict, line: str) -> None:
    assert answer["__typename"] == "PythonError", answer
    first = answer["message"].splitlines()[0]
    assert first.endswith(line), first
    assert "\n" not in line


def _runs(ui) -> list:
    return ui[1].get_runs()


def _all_storage_text(instance) -> str:
    """Every row of every table of the storage database, as text."""
    with psycopg.connect(storage_url(instance).replace("postgresql+psycopg2://", "postgresql://")) as conn:
        tables = [r[0] for r in conn.execute(
            "select quote_ident(table_schema) || '.' || quote_ident(table_name) from information_schema.tables "
            "where table_schema = 'public' and table_type = 'BASE TABLE'")]
        return "\n".join(str(row) for t in tables for row in conn.execute(f"select t::text from {t} t"))


def test_the_guard_knows_the_whole_job():
    from fix7_pipeline.definitions import defs

    job = defs.resolve_job_def("fix7_rehearsal")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == ASSETS
    assert {(k.asset_key.to_user_string(), k.name) for k in job.asset_layer.asset_graph.asset_check_keys} == CHECKS
    assert {n.name for n in job.graph.nodes} == STEPS


def test_materialize_from_the_asset_graph_is_refused_before_anything_is_stored(ui):
    """The UI's Materialize (Lineage, catalog) launches Dagster's implicit __ASSET_JOB: one line, no run."""
    before = len(_runs(ui))
    answer = _launch(ui, "__ASSET_JOB", assetSelection=[{"path": [a]} for a in sorted(ASSETS)])
    _refused(answer, WRONG_JOB.format(job="__ASSET_JOB"))
    assert len(_runs(ui)) == before


def test_a_selection_of_stages_is_refused(ui):
    before = len(_runs(ui))
    _refused(_launch(ui, assetSelection=[{"path": ["evidence_packet"]}]), PARTIAL)
    assert len(_runs(ui)) == before


def test_a_selection_of_every_stage_without_the_gates_is_refused(ui):
    before = len(_runs(ui))
    every_stage = [{"path": [a]} for a in sorted(ASSETS)]
    answer = _launch(ui, assetSelection=every_stage, assetCheckSelection=[])
    # refused before storage, by Dagster (the stages' own checks cannot be left out) or by the guard
    assert answer["__typename"] == "InvalidSubsetError" or answer["message"].splitlines()[0].endswith(PARTIAL), answer
    assert len(_runs(ui)) == before


def test_a_launchpad_launch_gets_a_partition_of_its_own_and_is_never_run_again(ui):
    answer = _launch(ui, assetSelection=[], assetCheckSelection=[])  # what the job's launchpad sends
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    key = ui[1].get_run_by_id(run_id).tags["dagster/partition"]
    assert key.endswith(run_id[:8].replace("-", ""))
    assert ui[1].has_dynamic_partition("fix7_rehearsals", key)
    # the same partition again (the launchpad's partition picker, a re-launch) is refused
    _refused(_launch(ui, tags={"dagster/partition": key}), RERUN.format(key=key))
    # as is a re-execution of the run (the run page's Re-execute)
    again = _gql(ui, LAUNCH, {"executionParams": {
        "selector": _selector(ui, "fix7_rehearsal"), "runConfigData": {},
        "executionMetadata": {"parentRunId": run_id, "rootRunId": run_id,
                              "tags": [{"key": "dagster/partition", "value": key}]}}})
    assert again["__typename"] == "PythonError", again
    assert [r.run_id for r in _runs(ui) if r.tags.get("dagster/partition") == key] == [run_id]


def test_a_partition_is_never_added_without_its_run_and_backfills_are_refused(ui):
    from dagster_graphql.test.utils import infer_repository_selector

    key = f"20261201-added-{secrets.token_hex(3)}"
    answer = _gql(ui, ADD_PARTITION_MUTATION, {"repositorySelector": infer_repository_selector(ui[0]),
                                                "partitionsDefName": "fix7_rehearsals", "partitionKey": key})
    _refused(answer, ADD_PARTITION)
    assert not ui[1].has_dynamic_partition("fix7_rehearsals", key)
    with pytest.raises(RehearsalRefused):
        ui[1].add_dynamic_partitions("fix7_rehearsals", [key])

    old = [k for k in ui[1].get_dynamic_partitions("fix7_rehearsals")]
    assert old, "the launchpad test above left one rehearsal partition"
    answer = _gql(ui, BACKFILL_MUTATION, {"backfillParams": {
        "partitionNames": old, "assetSelection": [{"path": [a]} for a in sorted(ASSETS)]}})
    _refused(answer, BACKFILL)
    assert ui[1].get_backfills() == []


def test_no_launchpad_field_keeps_the_servers_password(ui):
    planted = f"Pw-guard-{secrets.token_hex(8)}"
    before = len(_runs(ui))
    request = {"ops": {"clone_intake": {"config": {
        "server_url": f"postgresql://ops:{planted}@db.example.test:5433/rehearse"}}}}
    _refused(_launch(ui, run_config=request), PASSWORD)
    # the resource takes no config: the launchpad's `resources:` section has no field for it
    answer = _launch(ui, run_config={"resources": {"rehearsal_server": {"config": {"password": planted}}}})
    assert answer["__typename"] == "RunConfigValidationInvalid", answer
    assert len(_runs(ui)) == before
    assert planted not in _all_storage_text(ui[1])


def test_the_projects_instance_is_guarded_and_a_test_instance_is_not(ui):
    import dagster as dg

    from fix7_pipeline.instance_guard import guarded

    assert guarded(ui[1])
    with dg.instance_for_test() as plain:
        assert not guarded(plain)
