"""The rehearsal server as a Dagster resource: what every stage connects with, read from the environment.

It takes no run config at all: its settings are the variables FIX7_REHEARSAL_SERVER,
FIX7_REHEARSAL_SERVER_PASSWORD and FIX7_THROWAWAY_KEY, read when a step opens the resource, in the process
that runs it (the run worker, or each step's own process under the multiprocess executor). So the
launchpad has no field that could hold the admin password or the throwaway key (its `resources:` section
takes nothing, and a value typed there is refused before the run is stored), and neither reaches run
config, run storage, events or tags. The resource builds the core's plain `ServerSource`; the core (no
Dagster import) builds the `RehearsalServer` from it and derives the throwaway roles' passwords from it
(`RehearsalServer.throwaway_login`), so a later step in another process reconnects as the run's role
without any password being passed along.
"""

from __future__ import annotations

import os

import dagster as dg

from fix7_pipeline.core.run.rehearsal import ServerSource
from fix7_pipeline.core.postgres.server import PASSWORD_ENV, THROWAWAY_KEY_ENV

SERVER_URL_ENV = "FIX7_REHEARSAL_SERVER"
RESOURCE_KEY = "rehearsal_server"


class RehearsalServerResource(dg.ConfigurableResource):
    """The rehearsal server (embedded unless FIX7_REHEARSAL_SERVER is set) and the secrets its throwaway
    credentials need (FIX7_REHEARSAL_SERVER_PASSWORD, FIX7_THROWAWAY_KEY), read from the step's environment."""

    def source(self) -> ServerSource:
        return ServerSource(default_url=os.environ.get(SERVER_URL_ENV, ""),
                            password=os.environ.get(PASSWORD_ENV) or None,
                            throwaway_key=os.environ.get(THROWAWAY_KEY_ENV) or None)


def rehearsal_server_resource() -> RehearsalServerResource:
    return RehearsalServerResource()
