"""The rehearsal server resource: its secrets come from the environment of the process that runs a step, and
it takes no run config, so Dagster keeps none of them (issue 11.2; issues 9 and 21.5: no password in run
storage, no launchpad field that could hold one)."""

from __future__ import annotations

import dagster as dg
from dagster._serdes import serialize_value

from fix7_pipeline.core.run.rehearsal import RehearsalRequest, ServerSource
from fix7_pipeline.core.postgres.server import PASSWORD_ENV, THROWAWAY_KEY_ENV
from fix7_pipeline.defs.resources import RESOURCE_KEY, SERVER_URL_ENV, rehearsal_server_resource


def test_the_resource_reads_the_environment_at_run_time_and_stores_only_names(monkeypatch):
    from fix7_pipeline.definitions import defs

    monkeypatch.setenv(PASSWORD_ENV, "Pw-planted-4c1d9a")
    monkeypatch.setenv(THROWAWAY_KEY_ENV, "Tk-planted-77e0b2")
    monkeypatch.setenv(SERVER_URL_ENV, "postgresql://ops@db.example.test:5433/rehearse")
    with dg.build_resources({RESOURCE_KEY: rehearsal_server_resource()}) as resources:
        source = getattr(resources, RESOURCE_KEY).source()
    assert source == ServerSource(default_url="postgresql://ops@db.example.test:5433/rehearse",
                                  password="Pw-planted-4c1d9a", throwaway_key="Tk-planted-77e0b2")
    server = source.open(RehearsalRequest(clone_path="c", apply_sql="a", rollback_sql="r"))
    assert (server.kind, server.host, server.port, server.admin.password) == \
        ("external", "db.example.test", 5433, "Pw-planted-4c1d9a")
    # what Dagster stores of the job (its snapshot, as in run storage) names the variables, never a value
    job = defs.resolve_job_def("fix7_rehearsal")
    stored = serialize_value(job.get_job_snapshot())
    assert "Pw-planted" not in stored and "Tk-planted" not in stored and "db.example.test" not in stored
    run_config_fields = job.run_config_schema.config_type.fields["resources"].config_type.fields
    resource_fields = run_config_fields[RESOURCE_KEY].config_type.fields
    assert "config" not in resource_fields or not resource_fields["config"].config_type.fields


def test_unset_variables_mean_the_embedded_server_and_no_secret(monkeypatch):
    for name in (PASSWORD_ENV, THROWAWAY_KEY_ENV, SERVER_URL_ENV):
        monkeypatch.setenv(name, "")
    with dg.build_resources({RESOURCE_KEY: rehearsal_server_resource()}) as resources:
        source = getattr(resources, RESOURCE_KEY).source()
    assert source == ServerSource()
    assert source.url_for(RehearsalRequest(clone_path="c", apply_sql="a", rollback_sql="r")) == "embedded"
    assert ServerSource().open(RehearsalRequest(clone_path="c", apply_sql="a", rollback_sql="r")).kind == "embedded"
