"""The rehearsal server as a Dagster resource: what every stage connects with, read from the environment.

Its fields are `dg.EnvVar`s, so Dagster resolves them in the process that runs each step (the run worker,
or each step's own process under the multiprocess executor) and stores only the variables' names: the
admin password and the throwaway key never reach run config, run storage, events or tags. The resource
builds the core's plain `ServerSource`; the core (no Dagster import) builds the `RehearsalServer` from it
and derives the throwaway roles' passwords from it (`RehearsalServer.throwaway_login`), so a later step in
another process reconnects as the run's role without any password being passed along.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from fix7_pipeline.core.rehearsal import ServerSource
from fix7_pipeline.core.server import PASSWORD_ENV, THROWAWAY_KEY_ENV

SERVER_URL_ENV = "FIX7_REHEARSAL_SERVER"
RESOURCE_KEY = "rehearsal_server"


class RehearsalServerResource(dg.ConfigurableResource):
    """The rehearsal server (embedded unless a URL is set) and the secrets its throwaway credentials need."""

    default_url: str = Field(default="", description=f"Server used when the request names none ({SERVER_URL_ENV}); "
                                                     "empty = the embedded PostgreSQL 18. No password in it.")
    password: str = Field(default="", description=f"The external server's admin password ({PASSWORD_ENV}).")
    throwaway_key: str = Field(default="", description="Secret the throwaway roles' passwords are derived from "
                                                       f"({THROWAWAY_KEY_ENV}); empty = the admin password.")

    def source(self) -> ServerSource:
        return ServerSource(default_url=self.default_url, password=self.password or None,
                            throwaway_key=self.throwaway_key or None)


def _env(name: str) -> dg.EnvVar:
    """`dg.EnvVar(name)`, with an unset variable read as empty (Dagster refuses an unset one outright).

    The empty default goes into this process's environment, which every step process inherits; a value
    set by the operator, or by `fix7 rehearse` (the password of --server), is never overwritten.
    """
    os.environ.setdefault(name, "")
    return dg.EnvVar(name)


def rehearsal_server_resource() -> RehearsalServerResource:
    return RehearsalServerResource(default_url=_env(SERVER_URL_ENV), password=_env(PASSWORD_ENV),
                                   throwaway_key=_env(THROWAWAY_KEY_ENV))
