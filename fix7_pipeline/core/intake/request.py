"""The rehearsal request: the one schema the Dagster run config, `fix7 rehearse` and rehearsal.yaml are made from.

`RehearsalRequest` is a pydantic dataclass: every field has its type, its default (the launchpad's
pre-filled value) and its description, in pipeline order (intake, isolation, the change, its
impact, the evidence). Each field also says how the other two surfaces spell it:

- `Flag` — its `fix7 rehearse` option (name, metavar, repeatable, parser, how a path is made absolute);
- `Yaml` — whether `rehearsal.yaml` may set it and whether it holds paths (relative to the file).

Each surface is derived from `request_fields()` where it lives: the Dagster `Config` in
`defs/intake.py`, the flags and their run config in `cli/flags.py`, the rehearsal.yaml settings in
`core/run/automation_config.py`. A new field is written once, here. Nothing here imports Dagster.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.fields import FieldInfo

from ..postgres.hosts import HostPolicy
from ..postgres.server import PASSWORD_ENV
from ..shared.paths import project_dir
from ..storage.store import scheme

DEMO_DIR = ".fix7/demo"
# Relative paths (launchpad defaults, run config written by hand) are relative to the project directory.
PROJECT_RELATIVE = ("clone_path", "apply_sql", "rollback_sql", "contract", "evidence_dir")


def seconds(text: str) -> int:
    """A whole number of seconds, at least 1: PostgreSQL reads 0 as no timeout at all."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1 second (0 would mean no timeout)")
    return value


def non_negative(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number at or above 0")
        return value
    return parse


@dataclass(frozen=True)
class Flag:
    """How `fix7 rehearse` spells one field."""

    name: str                           # "--clone"
    help: str
    metavar: str | None = None
    required: bool = False
    repeat: bool = False                # action="append": the option may be given again
    switch: bool = False                # action="store_true"
    parse: Callable[[str], Any] | None = None
    path: str | None = None             # "absolute" | "resolve" | "expand": how a given path is made
    group: str | None = None            # "impact": listed under the impact thresholds

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Yaml:
    """Whether rehearsal.yaml may set the field, and whether it holds a path (or paths) relative to the file."""

    path: bool = False


IMPACT = "impact"


@pydantic_dataclass
class RehearsalRequest:
    """What the operator asks for: a dump, a change and its rollback, who attests the dump, and the limits."""

    # -- intake --------------------------------------------------------------------------------
    clone_path: Annotated[str, Flag("--clone", "the operator's pg_dump (any format)", "PATH", required=True,
                                    path="absolute")] = Field(
        default=f"{DEMO_DIR}/birth_surface_clone.dump",
        description="Path of the operator's pg_dump (plain, plain.gz, custom, directory or tar).")
    apply_sql: Annotated[str, Flag("--apply", "the FIX7 change (SQL)", "FILE", required=True, path="absolute"),
                         Yaml(path=True)] = Field(
        default=f"{DEMO_DIR}/fix7_apply.sql", description="The FIX7 change, plain SQL.")
    rollback_sql: Annotated[str, Flag("--rollback", "its rollback (SQL)", "FILE", required=True, path="absolute"),
                            Yaml(path=True)] = Field(
        default=f"{DEMO_DIR}/fix7_rollback.sql", description="Its rollback, plain SQL.")
    attested_by: Annotated[str, Flag("--attested-by", "who attests the dump is a sanitized non-production copy",
                                     "NAME"), Yaml()] = Field(
        default="", description="Who attests the dump is a sanitized, non-production copy. "
                                "Empty = no attestation = blocked.")
    contract: Annotated[str, Flag("--contract", "contract YAML or schema-only SQL (default: birth surface)", "FILE",
                                  path="absolute"), Yaml(path=True)] = Field(
        default="", description="Contract YAML or schema-only SQL; empty = the birth surface.")
    search_roots: Annotated[list[str], Flag("--search-root", "list candidates under DIR in Table A", "DIR",
                                            repeat=True, path="expand"), Yaml(path=True)] = Field(
        default_factory=list, description="Folders to list in Table A as candidates.")
    allowed_roots: Annotated[list[str], Flag("--allowed-root", "the dump must lie under DIR", "DIR", repeat=True,
                                             path="expand"), Yaml(path=True)] = Field(
        default_factory=list, description="If set, the dump must lie under one of these.")
    # -- isolation -----------------------------------------------------------------------------
    production_hosts: Annotated[list[str], Flag("--production-host", "glob of production hosts", "PATTERN",
                                                repeat=True), Yaml()] = Field(
        default_factory=list, description="Glob patterns of production hosts.")
    allow_hosts: Annotated[list[str], Flag("--allow-host", "glob of hosts known to be isolated", "PATTERN",
                                           repeat=True), Yaml()] = Field(
        default_factory=list, description="Glob patterns of hosts known to be isolated.")
    server_url: Annotated[str, Flag("--server", "external rehearsal server (default: FIX7_REHEARSAL_SERVER or the "
                                                "embedded PostgreSQL 18)", "URL"), Yaml()] = Field(
        default="", description="External rehearsal server URL, postgresql://USER@HOST:PORT/DB WITHOUT a password "
                                f"(run config is stored; a password here is refused): set {PASSWORD_ENV} for the "
                                "webserver and daemon. Empty = FIX7_REHEARSAL_SERVER or the embedded server.")
    keep_databases: Annotated[bool, Flag("--keep-databases", "keep the throwaway databases for inspection",
                                         switch=True), Yaml()] = Field(
        default=False, description="Keep the throwaway databases for inspection.")
    fresh_clone: Annotated[bool, Flag("--fresh-clone", "restore and gate the dump again even if a verified clone "
                                      "template of it exists (core/run/clone_templates.py)", switch=True), Yaml()] = Field(
        default=False, description="Restore and gate the dump again even if a verified clone template of it exists.")
    # -- apply and rollback --------------------------------------------------------------------
    statement_timeout_s: Annotated[int, Flag("--statement-timeout-s", "statement timeout of apply and rollback, "
                                             "seconds (default 600)", "N", parse=seconds), Yaml()] = Field(
        default=600, description="Statement timeout for apply and rollback.")
    lock_timeout_s: Annotated[int, Flag("--lock-timeout-s", "lock timeout of apply and rollback, seconds "
                                        "(default 15)", "N", parse=seconds), Yaml()] = Field(
        default=15, description="Lock timeout for apply and rollback.")
    # -- what production will feel (core/change/impact.py): thresholds that gate (None = not set), warning sizes
    max_statement_s: Annotated[float | None, Flag("--max-statement-s", "longest one statement may run", "S",
                                                  parse=non_negative(float), group=IMPACT), Yaml()] = Field(
        default=None, description="Impact threshold: the longest one statement of apply or rollback may run, in "
                                  "seconds. Empty = not gated.")
    max_lock_s: Annotated[float | None, Flag("--max-lock-s", "longest any lock (any mode) on an existing table or "
                                             "index may be held", "S", parse=non_negative(float), group=IMPACT),
                          Yaml()] = Field(
        default=None, description="Impact threshold: the longest any lock (any mode) on an existing table or index "
                                  "may be held, in seconds. Empty = not gated.")
    max_access_exclusive_s: Annotated[float | None, Flag("--max-access-exclusive-s", "longest an ACCESS EXCLUSIVE "
                                                         "lock on an existing table or index may be held", "S",
                                                         parse=non_negative(float), group=IMPACT), Yaml()] = Field(
        default=None, description="Impact threshold: the longest an ACCESS EXCLUSIVE lock on an existing table or "
                                  "index may be held, in seconds. Empty = not gated.")
    max_total_s: Annotated[float | None, Flag("--max-total-s", "longest the whole file may take", "S",
                                              parse=non_negative(float), group=IMPACT), Yaml()] = Field(
        default=None, description="Impact threshold: the longest the whole apply or rollback file (statements and "
                                  "COMMIT) may take. Empty = not gated.")
    no_rewrite_tables: Annotated[list[str], Flag("--no-rewrite-table", "a table (schema.table, or table for public) "
                                                 "the change must not rewrite; repeatable", "TABLE", repeat=True,
                                                 group=IMPACT), Yaml()] = Field(
        default_factory=list, description="Impact threshold: tables (schema.table, or table for public) apply and "
                                          "rollback must not rewrite.")
    index_warn_mb: Annotated[float, Flag("--index-warn-mb", "warn on CREATE INDEX without CONCURRENTLY on a table "
                                         "this large (default 10)", "MB", parse=non_negative(float), group=IMPACT),
                             Yaml()] = Field(
        default=10.0, description="Warn on CREATE INDEX without CONCURRENTLY on a table at least this large (MB) in "
                                  "the clone.")
    index_warn_rows: Annotated[int, Flag("--index-warn-rows", "... or with this many rows, in the clone or in "
                                         "production (default 100000)", "N", parse=non_negative(int), group=IMPACT),
                               Yaml()] = Field(
        default=100_000, description="... or with at least this many rows in the clone or (contract "
                                     "production_rows) in production.")
    # -- what production traffic will feel (core/change/probe.py, traffic.py, estimates.py) ------------
    max_blocked_ms: Annotated[float | None, Flag("--max-blocked-ms", "longest any traffic probe query on a hot table "
                                                 "may wait", "MS", parse=non_negative(float), group=IMPACT),
                              Yaml()] = Field(
        default=None, description="Impact threshold: the longest any query of the traffic probe (point reads and "
                                  "writes on the contract's hot tables) may wait while apply or rollback runs, in "
                                  "milliseconds. Empty = not gated.")
    max_production_estimate_s: Annotated[float | None, Flag("--max-production-estimate-s", "longest a statement may "
                                                            "take at production size (contract production_rows)",
                                                            "S", parse=non_negative(float), group=IMPACT),
                                         Yaml()] = Field(
        default=None, description="Impact threshold: the longest a statement whose time grows with rows may take "
                                  "when its measured time is scaled to the contract's production_rows, in seconds. "
                                  "Empty = not gated.")
    no_traffic_probe: Annotated[bool, Flag("--no-traffic-probe", "run apply and rollback without the synthetic "
                                           "traffic on the hot tables", switch=True, group=IMPACT), Yaml()] = Field(
        default=False, description="Run apply and rollback without the traffic probe (on by default).")
    probe_sessions: Annotated[int, Flag("--probe-sessions", "sessions of the traffic probe (default 4)", "N",
                                        parse=non_negative(int), group=IMPACT), Yaml()] = Field(
        default=4, description="Sessions of the traffic probe, each reading and writing the hot tables by primary "
                               "key.")
    probe_rate: Annotated[float, Flag("--probe-rate", "queries a second of each probe session (default 20)", "Q",
                                      parse=non_negative(float), group=IMPACT), Yaml()] = Field(
        default=20.0, description="Queries a second of each traffic probe session.")
    probe_reader_hold_s: Annotated[float, Flag("--probe-reader-hold-s", "how long the probe's long reader holds "
                                               "ACCESS SHARE after the change starts (default 0.5)", "S",
                                               parse=non_negative(float), group=IMPACT), Yaml()] = Field(
        default=0.5, description="How long the probe's long-running reader holds ACCESS SHARE on the hot tables "
                                 "after the change starts, so the lock queue behind it shows; 0 = no reader.")
    probe_lock_timeout_ms: Annotated[float, Flag("--probe-lock-timeout-ms", "the application's lock_timeout: the "
                                                 "report says where it would have fired (default 1000)", "MS",
                                                 parse=non_negative(float), group=IMPACT), Yaml()] = Field(
        default=1000.0, description="The application's lock_timeout, in milliseconds: the report says which probe "
                                    "waits would have hit it.")
    # -- evidence ------------------------------------------------------------------------------
    evidence_dir: Annotated[str, Flag("--evidence-dir", "default: evidence/<utc-timestamp>-<sha8>-<run8>/", "DIR",
                                      path="resolve")] = Field(
        default="", description="Where the evidence packet goes; empty = evidence/<utc-timestamp>-<sha8>-<run8>/.")

    def __post_init__(self):
        """Relative paths (launchpad defaults, rehearsal.yaml) are relative to the project directory."""
        for name in PROJECT_RELATIVE:
            value = getattr(self, name)
            if value and not scheme(value) and not Path(value).expanduser().is_absolute():
                setattr(self, name, str(project_dir() / value))

    def policy(self) -> HostPolicy:
        return HostPolicy(tuple(self.production_hosts), tuple(self.allow_hosts))


# -- the fields, as the other surfaces read them ------------------------------------------------

@dataclass(frozen=True)
class RequestField:
    """One field of the schema: its pydantic FieldInfo (default, description), type and surface spellings."""

    name: str
    info: FieldInfo
    annotation: Any
    flag: Flag | None = None
    yaml: Yaml | None = None

    @property
    def default(self) -> Any:
        """The default as a fresh value (a new list for list fields)."""
        return self.info.get_default(call_default_factory=True)

    @property
    def kind(self) -> type:
        """bool, int, float, str or list: what rehearsal.yaml must hold for it."""
        t = self.annotation
        if typing.get_origin(t) in (typing.Union, types.UnionType):  # float | None
            t = next(a for a in typing.get_args(t) if a is not type(None))
        t = typing.get_origin(t) or t
        return t if t in (bool, int, float, str, list) else str


def request_fields() -> list[RequestField]:
    """Every field of `RehearsalRequest` in pipeline order, with its CLI and rehearsal.yaml spellings."""
    out = []
    for name, info in RehearsalRequest.__pydantic_fields__.items():
        meta = list(info.metadata)
        out.append(RequestField(name, info, info.annotation, next((m for m in meta if isinstance(m, Flag)), None),
                                next((m for m in meta if isinstance(m, Yaml)), None)))
    return out
