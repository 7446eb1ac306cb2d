"""Test-side connections into throwaways: the attacker's superuser set-up, and our own sessions.

The pipeline itself never connects to a clone as the admin (the server layer refuses it); a test that
plants what only a superuser could plant does so here, outside the guard, as the dump's author would
have on the production side.
"""

from __future__ import annotations

import psycopg

from fix7_pipeline.core.postgres.server import CHANGE, SCRATCH, RehearsalServer
from fix7_pipeline.core.postgres.throwaways import Throwaway, create_database


def superuser(server: RehearsalServer, database: str, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(host=server.host, port=server.port, dbname=database, user=server.admin.role,
                           password=server.admin.password, autocommit=autocommit)


def as_owner(server: RehearsalServer, tw: Throwaway, database: str | None = None, *,
             autocommit: bool = True) -> psycopg.Connection:
    """A writable session of the throwaway's own role (what the dump's code runs as)."""
    return server.connect(database or tw.database, tw.login, purpose="test set-up", autocommit=autocommit,
                          session=CHANGE)


def proof(server: RehearsalServer, tw: Throwaway, database: str | None = None) -> psycopg.Connection:
    """The read-only, pinned session the pipeline's proofs use."""
    return server.connect(database or tw.database, tw.login, purpose="test proof")


def scratch(server: RehearsalServer, tw: Throwaway):
    """Like the pipeline's: an empty database of the run where the contract is deparsed."""
    def open_scratch() -> psycopg.Connection:
        name = f"{tw.database}_scratch"
        if name not in tw.extra_databases:
            tw.extra_databases.append(name)
            create_database(server, name, tw.login)
        return server.connect(name, tw.login, purpose="test scratch", session=SCRATCH)
    return open_scratch


def server_throwaway_names(server: RehearsalServer) -> set[str]:
    """What the server itself holds under the project's prefix (pg_database, pg_roles), never our notes."""
    with superuser(server, server.admin_db) as c:
        dbs = {f"database {r[0]}" for r in c.execute("select datname from pg_database where datname like 'fix7%'")}
        roles = {f"role {r[0]}" for r in c.execute("select rolname from pg_roles where rolname like 'fix7%'")}
    return dbs | roles
