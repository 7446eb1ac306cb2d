"""One way in: the instance's storage refuses, before anything is stored, every run that is not a whole new
rehearsal of `fix7_rehearsal`, every backfill, and every rehearsal partition added without its run.

Why the storage (dagster.yaml `storage: custom`): every launch path ends in `RunStorage.add_run` — the
launchpad and Materialize (GraphQL), backfills and re-executions, the sensor and schedule daemons, `dagster
job launch`, the CLI (launch.py) — so the one check here covers all of them, in the webserver, the daemon
and the CLI alike. Dagster 1.13 cannot leave assets out of its implicit `__ASSET_JOB`, and the UI's
Materialize picks that job (the first of an asset's jobs, sorted), so those runs are refused here with one
line instead of running outside the job. A run coordinator or run-status sensor sees a run only after its
run config is stored; a check here runs before the row is written, so a refused launch leaves no run, no run
config and no event behind (the GraphQL caller gets the line as its error).

A launch also makes its rehearsal's partition: a run without a `dagster/partition` tag gets a new key
(`<utc-timestamp>-<run8>`), a tagged one its named key, added here just before the run is stored. A key
that already has a run is refused (a rehearsal is never re-run under its old name), and so is adding a
rehearsal partition any other way (the UI's "Add new partition"), so no partition exists without its run.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from dagster._core.storage.dagster_run import RunsFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

from fix7_pipeline.core.shared import names
from fix7_pipeline.core.shared.names import JOB, PARTITIONS

# The whole job (test_instance_guard.py compares them with the definitions): every stage and every gate.
ASSETS = frozenset(names.ASSETS)
STEPS = ASSETS
CHECKS = names.CHECKS

HOW = f"launch a new rehearsal from Jobs → {JOB} → Launchpad, or with fix7 rehearse"
WRONG_JOB = (f"fix7 refused this launch: a rehearsal runs only as the job {JOB}, and this launch asked "
             "for {job} (the asset graph's Materialize runs Dagster's implicit asset job); nothing was stored: "
             f"{HOW}.")
PARTIAL = (f"fix7 refused this launch: a rehearsal runs every stage and gate of {JOB}, never a selection "
           f"or a re-execution of some of them; nothing was stored: {HOW}.")
RERUN = ("fix7 refused this launch: rehearsal partition {key} already has its run, and a rehearsal is never "
         f"re-run under its old name; nothing was stored: {HOW} (with no partition: it gets its own).")
BAD_KEY = ("fix7 refused this launch: {key!r} is not a rehearsal partition key (letters, digits, . _ : + -; at most "
           f"100); nothing was stored: {HOW}.")
PASSWORD = ("fix7 refused this launch: its run config carries a password for the rehearsal server (server_url), "
            "and run config is stored; nothing was stored: give server_url without it and set "
            "FIX7_REHEARSAL_SERVER_PASSWORD where fix7 ui runs.")
RESOURCE_CONFIG = ("fix7 refused this launch: the rehearsal server's settings come from the environment where fix7 "
                   "ui runs (FIX7_REHEARSAL_SERVER, FIX7_REHEARSAL_SERVER_PASSWORD, FIX7_THROWAWAY_KEY), never "
                   "from run config (it is stored); nothing was stored.")
BACKFILL = ("fix7 refused this backfill: every rehearsal is one run in a partition of its own, and a backfill "
            f"would re-run old rehearsals under their old names or none at all; nothing was stored: {HOW}.")
ADD_PARTITION = ("fix7 refused to add a rehearsal partition: a rehearsal's partition is made by its launch, so "
                 f"none exists without its run; launch from Jobs → {JOB} → Launchpad with no partition "
                 "selected and the run gets a partition of its own.")


def storage_url(instance) -> str | None:
    """The PostgreSQL URL of the instance's run storage (behind Dagster's wrapper of a custom storage)."""
    storage = instance.run_storage
    return getattr(storage, "postgres_url", None) or getattr(getattr(storage, "_storage", None), "postgres_url", None)


def guarded(instance) -> bool:
    """Whether the instance stores its runs through this guard (the project's dagster.yaml), which adds each
    launch's partition; another instance (a test's) needs the launcher to add it."""
    storage = instance.run_storage
    return isinstance(storage, RehearsalRunStorage) or isinstance(getattr(storage, "_storage", None), RehearsalStorage)


class RehearsalRefused(Exception):
    """A launch, backfill or partition that is not a new rehearsal of fix7_rehearsal; the message is one line."""


_adding_by_launch: ContextVar[bool] = ContextVar("fix7_adding_by_launch", default=False)


@contextmanager
def partitions_added_by_launch():
    """Inside: this process adds rehearsal partitions for a launch it makes itself (the tests'
    `execute_in_process`, which checks the partition before creating the run)."""
    token = _adding_by_launch.set(True)
    try:
        yield
    finally:
        _adding_by_launch.reset(token)


def refusal(run) -> str | None:
    """Why `run` (a DagsterRun about to be stored) is not a new rehearsal, or None."""
    if run.job_name != JOB:
        return WRONG_JOB.format(job=run.job_name)
    if run.parent_run_id or run.op_selection or run.resolved_op_selection:
        return PARTIAL
    # As Dagster reads a selection: empty asset and check selections (the job's launchpad sends both) are the
    # whole job; a non-empty one selects exactly what it names, and no checks when only assets are named.
    if run.asset_selection or run.asset_check_selection:
        if {k.to_user_string() for k in run.asset_selection or ()} != ASSETS:
            return PARTIAL
        if run.asset_check_selection is not None and \
                {(k.asset_key.to_user_string(), k.name) for k in run.asset_check_selection} != CHECKS:
            return PARTIAL
    if run.step_keys_to_execute is not None and set(run.step_keys_to_execute) != STEPS:
        return PARTIAL
    return config_refusal(run.run_config or {})


def config_refusal(run_config: dict) -> str | None:
    """A password in the request's server_url, or any resource config (the server's comes from the
    environment): refused, never quoted."""
    from fix7_pipeline.core.shared.errors import Fix7Error
    from fix7_pipeline.core.postgres.server_urls import split_server_password

    if any((entry or {}).get("config") for entry in (run_config.get("resources") or {}).values()):
        return RESOURCE_CONFIG
    request = ((run_config.get("ops") or {}).get("clone_intake") or {}).get("config") or {}
    url = request.get("server_url")
    if url:
        try:
            _, password = split_server_password(str(url))
        except Fix7Error as e:
            return f"fix7 refused this launch: {e.message}"
        if password:
            return PASSWORD
    return None


class RehearsalRunStorage(PostgresRunStorage):
    """PostgreSQL run storage that stores only new, whole rehearsals of fix7_rehearsal, each in a new partition."""

    events: PostgresEventLogStorage | None = None

    def add_run(self, dagster_run):
        from fix7_pipeline.defs.partitions import KEY_OK, rehearsal_key

        reason = refusal(dagster_run)
        if reason:
            raise RehearsalRefused(reason)
        key = dagster_run.tags.get(PARTITION_NAME_TAG)
        if not key:
            key = rehearsal_key(dagster_run.run_id[:8])
            dagster_run = dagster_run.with_tags({**dagster_run.tags, PARTITION_NAME_TAG: key})
        if not KEY_OK.fullmatch(key):
            raise RehearsalRefused(BAD_KEY.format(key=key[:120]))
        with self._partition_lock(key):
            if self.get_runs(RunsFilter(tags={PARTITION_NAME_TAG: key}), limit=1):
                raise RehearsalRefused(RERUN.format(key=key))
            if self.events is not None:
                PostgresEventLogStorage.add_dynamic_partitions(self.events, PARTITIONS, [key])
            return super().add_run(dagster_run)

    @contextmanager
    def _partition_lock(self, key: str):
        """Two launches naming one key take turns (a session advisory lock in the storage database)."""
        import sqlalchemy as sa

        with self._engine.connect() as conn:
            lock = sa.text("select pg_catalog.pg_advisory_lock(pg_catalog.hashtext(:k))")
            unlock = sa.text("select pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(:k))")
            conn.execute(lock, {"k": f"fix7 partition {key}"})
            try:
                yield
            finally:
                conn.execute(unlock, {"k": f"fix7 partition {key}"})

    def add_backfill(self, partition_backfill) -> None:
        raise RehearsalRefused(BACKFILL)


class RehearsalEventLogStorage(PostgresEventLogStorage):
    """PostgreSQL event storage where a rehearsal partition is added only by its launch."""

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys) -> None:
        if partitions_def_name == PARTITIONS and not _adding_by_launch.get():
            raise RehearsalRefused(ADD_PARTITION)
        super().add_dynamic_partitions(partitions_def_name, partition_keys)


class RehearsalStorage(DagsterPostgresStorage):
    """dagster.yaml's storage: dagster-postgres, with the guarded run and event storages above."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True, inst_data=None,
                 token_provider=None):
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = RehearsalRunStorage(postgres_url, should_autocreate_tables,
                                                token_provider=token_provider)
        self._event_log_storage = RehearsalEventLogStorage(postgres_url, should_autocreate_tables,
                                                           token_provider=token_provider)
        self._schedule_storage = PostgresScheduleStorage(postgres_url, should_autocreate_tables,
                                                         token_provider=token_provider)
        self._run_storage.events = self._event_log_storage
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))
