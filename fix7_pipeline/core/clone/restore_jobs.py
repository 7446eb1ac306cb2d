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

ENV = "FIX7_RESTORE_JOBS"
MAX_DEFAULT_JOBS = 8


def default_jobs() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_JOBS))


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
    from .templates import _recreate_empty
    from ..server import throwaway_mark

    try:
        with server.connect(purpose="restore failed: empty the clone database again") as c:
            _recreate_empty(c, tw.database, tw.login.role, throwaway_mark())
    except Exception:  # noqa: BLE001 - the server itself failed (its disk filled): the restore's error says why,
        pass           # and whatever ends the run drops the clone database (or the next run's sweep)
