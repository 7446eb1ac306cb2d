"""How many parallel jobs pg_restore restores an archive with (issue 25 item 2).

Custom and directory archives restore their data and indexes with `pg_restore -j N`, N from the cores this process
may use (FIX7_RESTORE_JOBS overrides, 1 turns it off). The same least-privileged role, options and filtered table of
contents as the single-stream restore (core/restore.py); only `--single-transaction`, which pg_restore cannot
combine with -j, is left out: a restore that fails is still never used, since the run stops and its throwaway
database is dropped. Plain and tar dumps stay single-stream (psql reads one stream; pg_restore cannot run a tar
archive in parallel), and so do servers older than PostgreSQL 17, whose restore goes through psql as a script
(`pg_restore -f -`, which -j cannot write); so does a schema-only restore (a contract's shape: nothing to share).
"""

from __future__ import annotations

import os

from psycopg import sql

from ..postgres.throwaways import throwaway_mark
from ..shared.cores import usable_cores

ENV = "FIX7_RESTORE_JOBS"
MAX_DEFAULT_JOBS = 8


def default_jobs() -> int:
    return min(usable_cores(), MAX_DEFAULT_JOBS)


def restore_jobs(fmt: str, schema_only: bool = False) -> int:
    """The -j for an archive of format `fmt` ("custom", "directory", "tar") restored straight into the server."""
    if schema_only or fmt not in ("custom", "directory"):
        return 1
    wanted = os.environ.get(ENV, "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            return 1
    return default_jobs()


def empty_again(server, tw) -> None:
    """After a parallel restore that failed: the clone database as it was before it, empty, so that, as with one
    transaction, nothing of a failed restore is kept."""
    try:
        with server.connect(purpose="restore failed: empty the clone database again") as c:
            recreate_empty(c, tw.database, tw.login.role, throwaway_mark())
    except Exception:  # noqa: BLE001 - the server itself failed (its disk filled): the restore's error says why,
        pass           # and whatever ends the run drops the clone database (or the next run's sweep)


def recreate_empty(c, database: str, role: str, mark: str) -> None:
    """The clone database dropped and created again empty, owned by `role`, marked as a throwaway."""
    c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))
    c.execute(sql.SQL("create database {} owner {} template template0 encoding 'UTF8'").format(
        sql.Identifier(database), sql.Identifier(role)))
    c.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(database), sql.Literal(mark)))
    c.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(database)))
