"""Shared fixtures: the real embedded PostgreSQL 18 server, no mocks."""

from __future__ import annotations

import pytest

from fix7_pipeline.core.hosts import HostPolicy
from fix7_pipeline.core.server import RehearsalServer, create_throwaway, drop_throwaway


@pytest.fixture(scope="session")
def server() -> RehearsalServer:
    return RehearsalServer.embedded(HostPolicy())


@pytest.fixture
def throwaway(server):
    tw = create_throwaway(server)
    yield tw
    drop_throwaway(server, tw)
