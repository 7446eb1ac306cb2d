"""Shared fixtures: the real embedded PostgreSQL 18 server, no mocks."""

from __future__ import annotations

import pytest

from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.postgres.server import RehearsalServer
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway


@pytest.fixture(scope="session")
def server() -> RehearsalServer:
    return RehearsalServer.embedded(HostPolicy())


@pytest.fixture
def throwaway(server):
    tw = create_throwaway(server)
    yield tw
    drop_throwaway(server, tw)


@pytest.fixture(scope="session", autouse=True)
def isolated_instance_env(tmp_path_factory):
    """Tests never write into the project's own Dagster history, audit chain or evidence folder, in-process or in
    subprocesses."""
    import os

    from fix7_pipeline.core.postgres.embedded import embedded_dagster_url

    home = tmp_path_factory.mktemp("session_dagster_home")
    keys = ("DAGSTER_HOME", "FIX7_DAGSTER_PG_URL", "FIX7_DAGSTER_ARTIFACTS", "FIX7_DAGSTER_COMPUTE_LOGS",
            "FIX7_AUDIT_CHAIN")
    keys += ("FIX7_CLONE_TEMPLATES", "FIX7_EVIDENCE_ROOT")
    saved = {k: os.environ.get(k) for k in keys}
    # Clone templates (core/run/clone_templates.py) would carry one test's gated clone into the next test of the same
    # dump: off, except in the tests of templates themselves (test_clone_templates_e2e.py).
    os.environ.update(DAGSTER_HOME=str(home), FIX7_DAGSTER_PG_URL=embedded_dagster_url("dagster_tests"),
                      FIX7_AUDIT_CHAIN=str(home / "audit-chain.jsonl"), FIX7_CLONE_TEMPLATES="off",
                      FIX7_EVIDENCE_ROOT=str(home / "evidence"))  # a refused run's packet, never the project's evidence/
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
