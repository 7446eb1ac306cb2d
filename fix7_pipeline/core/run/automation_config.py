"""rehearsal.yaml: what the nightly schedule and the drop-folder sensor rehearse, kept by the operator.

The file lives beside the project (or at FIX7_REHEARSAL_CONFIG). Relative paths in it are relative to
the file. It names the change (apply/rollback), the attestation, the host patterns, and either a fixed
clone for the schedule, a drop folder for the sensor, or both. See rehearsal.example.yaml.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..dumps.formats import DIRECTORY
from ..dumps.streams import hash_dump
from ..evidence.packet_files import sha256_file
from ..intake.request import RequestField, request_fields
from ..postgres.server_urls import config_server_url
from ..shared.errors import Fix7Error
from ..shared.paths import project_dir
from ..storage.store import evidence_path, scheme, unsupported_problem

CONFIG_FILE = "rehearsal.yaml"
DEFAULT_CRON = "0 2 * * *"
DEFAULT_PATTERNS = ("*.dump", "*.pgdump", "*.backup", "*.custom", "*.sql", "*.sql.gz", "*.tar")
IN_FLIGHT_SUFFIXES = (".part", ".partial", ".tmp", ".filepart", ".crdownload", ".uploading")
TOP_KEYS = {"version", "clone_path", "drop_folder", "evidence_root", "schedule", "sensor"}
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?LW#]+$")


def _bad(path: Path, what: str) -> Fix7Error:
    return Fix7Error(f"{path}: {what}. Fix the file (see rehearsal.example.yaml); nothing is rehearsed from it "
                     "until it is valid.", 2, rule="rehearsal_yaml")


@dataclass(frozen=True)
class ScheduleSettings:
    cron: str = DEFAULT_CRON
    timezone: str = "UTC"
    enabled: bool = False


@dataclass(frozen=True)
class SensorSettings:
    enabled: bool = False
    interval_seconds: int = 30
    settle_seconds: int = 10
    patterns: tuple[str, ...] = DEFAULT_PATTERNS


@dataclass(frozen=True)
class AutomationConfig:
    """A validated rehearsal.yaml."""

    source: Path
    request: dict
    clone_path: str = ""
    drop_folder: str = ""
    evidence_root: str = ""
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    sensor: SensorSettings = field(default_factory=SensorSettings)

    def request_config(self, clone_path: str, label: str) -> dict:
        """The clone_intake run config (RehearsalRequestConfig fields) for one clone.

        With evidence_root set, each run's packet goes to <evidence_root>/<utc-timestamp>-<label>-<random8>/
        (two requests in one second never share a folder); otherwise to the project's evidence/ folder.
        """
        config = {**self.request, "clone_path": str(clone_path)}
        if self.evidence_root:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            config["evidence_dir"] = str(evidence_path(self.evidence_root) / f"{stamp}-{label}-{secrets.token_hex(4)}")
        return config

    def change_sha256(self) -> tuple[str, str]:
        """sha256 of the apply and rollback files: part of every run key, so a changed change runs again."""
        out = []
        for key in ("apply_sql", "rollback_sql"):
            p = Path(self.request[key])
            if not p.is_file():
                raise _bad(self.source, f"{key} {p} does not exist or is not a file")
            out.append(sha256_file(p))
        return out[0], out[1]


def config_path() -> Path:
    env = os.environ.get("FIX7_REHEARSAL_CONFIG")
    return Path(env).expanduser() if env else project_dir() / CONFIG_FILE


def _resolve(base: Path, value: str) -> str:
    p = Path(os.path.expandvars(str(value))).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _typed(path: Path, key: str, value, kind):
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf"):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    raise _bad(path, f"`{key}` must be {dict([(bool, 'true or false'), (int, 'a whole number'), (float, 'a number at or above 0'), (str, 'text'), (list, 'a list of text')])[kind]}")


def yaml_settings() -> dict[str, RequestField]:
    """The request settings rehearsal.yaml may carry, in pipeline order."""
    return {f.name: f for f in request_fields() if f.yaml is not None}


def valid_cron(expr: str) -> bool:
    fields = expr.split()
    return len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)


def load_automation_config(path: Path | None = None) -> AutomationConfig | None:
    """The operator's rehearsal.yaml, validated; None when there is none. Anything unknown is an error."""
    path = Path(path or config_path())
    if not path.exists():
        return None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise _bad(path, f"it cannot be read as YAML ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise _bad(path, "it must be a mapping of settings")
    kinds = yaml_settings()
    unknown = sorted(set(raw) - TOP_KEYS - set(kinds))
    if "evidence_dir" in unknown:
        raise _bad(path, "`evidence_dir` cannot be fixed for repeated runs: each run writes its own "
                         "evidence/<utc-timestamp>-<sha8>-<run8>/")
    if unknown:
        raise _bad(path, f"unknown setting(s) {', '.join(unknown)}")
    if raw.get("version", 1) != 1:
        raise _bad(path, f"version {raw.get('version')!r} is not supported (use 1)")
    base = path.parent.resolve()
    request: dict = {}
    for key, f in kinds.items():
        if key in raw and raw[key] is not None:
            value = _typed(path, key, raw[key], f.kind)
            if f.yaml.path and isinstance(value, list):
                value = [_resolve(base, v) for v in value]
            elif f.yaml.path and value:
                value = _resolve(base, value)
            request[key] = value
    if request.get("server_url"):
        _, refusal = config_server_url(request["server_url"])
        if refusal is not None:  # its message names FIX7_REHEARSAL_SERVER_PASSWORD and never quotes the URL
            raise _bad(path, f"`server_url`: {refusal.message.rstrip('.')}")
    for key in ("apply_sql", "rollback_sql"):
        if not request.get(key):
            raise _bad(path, f"`{key}` is required: the change to rehearse and its rollback")
    clone = _resolve(base, _typed(path, "clone_path", raw["clone_path"], str)) if raw.get("clone_path") else ""
    drop = _resolve(base, _typed(path, "drop_folder", raw["drop_folder"], str)) if raw.get("drop_folder") else ""
    evidence = _typed(path, "evidence_root", raw["evidence_root"], str) if raw.get("evidence_root") else ""
    if scheme(evidence):  # s3://bucket/prefix is kept as written; any other URL is refused
        problem = unsupported_problem(evidence, "evidence_root")
        if problem:
            raise _bad(path, f"`evidence_root`: {problem.rstrip('.')}")
    elif evidence:
        evidence = _resolve(base, evidence)
    if not clone and not drop:
        raise _bad(path, "name `clone_path` (for the schedule), `drop_folder` (for the sensor), or both")
    return AutomationConfig(source=path.resolve(), request=request, clone_path=clone, drop_folder=drop,
                            evidence_root=evidence,
                            schedule=_schedule(path, raw.get("schedule")), sensor=_sensor(path, raw.get("sensor")))


def _section(path: Path, name: str, raw, allowed: set) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad(path, f"`{name}` must be a mapping")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _bad(path, f"unknown setting(s) under `{name}`: {', '.join(unknown)}")
    return raw


def _schedule(path: Path, raw) -> ScheduleSettings:
    raw = _section(path, "schedule", raw, {"cron", "timezone", "enabled"})
    cron = _typed(path, "schedule.cron", raw.get("cron", DEFAULT_CRON), str)
    if not valid_cron(cron):
        raise _bad(path, f"`schedule.cron` {cron!r} is not a five-field cron expression")
    return ScheduleSettings(cron=cron, timezone=_typed(path, "schedule.timezone", raw.get("timezone", "UTC"), str),
                            enabled=_typed(path, "schedule.enabled", raw.get("enabled", False), bool))


def _sensor(path: Path, raw) -> SensorSettings:
    raw = _section(path, "sensor", raw, {"enabled", "interval_seconds", "settle_seconds", "patterns"})
    patterns = tuple(_typed(path, "sensor.patterns", raw.get("patterns", list(DEFAULT_PATTERNS)), list))
    if not patterns:
        raise _bad(path, "`sensor.patterns` must name at least one file pattern")
    interval = _typed(path, "sensor.interval_seconds", raw.get("interval_seconds", 30), int)
    return SensorSettings(enabled=_typed(path, "sensor.enabled", raw.get("enabled", False), bool),
                          interval_seconds=max(5, interval),
                          settle_seconds=_typed(path, "sensor.settle_seconds", raw.get("settle_seconds", 10), int),
                          patterns=patterns)


def load_for_definitions(path: Path | None = None) -> AutomationConfig | None:
    """Lenient load for building Definitions: a broken file must not take the whole UI down; the schedule
    and sensor report it on their next evaluation instead."""
    try:
        return load_automation_config(path)
    except Fix7Error:
        return None


# -- the drop folder ---------------------------------------------------------------------

@dataclass(frozen=True)
class DropEntry:
    """One candidate dump in the drop folder as seen now: enough to tell whether it is still being written."""

    path: str
    size: int
    mtime_ns: int
    is_dir: bool

    @property
    def signature(self) -> list:
        return [self.size, self.mtime_ns]


def _in_flight(name: str) -> bool:
    return name.startswith((".", "~")) or name.lower().endswith(IN_FLIGHT_SUFFIXES)


def scan_drop_folder(folder: str | Path, patterns=DEFAULT_PATTERNS) -> list[DropEntry]:
    """Dump files matching the patterns, plus directory-format dumps (a folder holding toc.dat).

    Hidden and in-flight names (.part, .tmp, …) are ignored: uploaders that write under a temporary name
    and rename at the end are picked up only once renamed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise Fix7Error(f"The drop folder {folder} does not exist or is not a folder. Create it or fix "
                        "`drop_folder` in rehearsal.yaml.", 2, rule="drop_folder_missing")
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _in_flight(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and any(fnmatch.fnmatch(entry.name, p) for p in patterns):
            out.append(DropEntry(entry.path, st.st_size, st.st_mtime_ns, False))
        elif stat.S_ISDIR(st.st_mode) and os.path.isfile(os.path.join(entry.path, "toc.dat")):
            size, mtime = 0, st.st_mtime_ns
            for member in os.scandir(entry.path):
                mst = member.stat(follow_symlinks=False)
                size += mst.st_size
                mtime = max(mtime, mst.st_mtime_ns)
            out.append(DropEntry(entry.path, size, mtime, True))
    return out


def dump_sha256(entry: DropEntry) -> str:
    """The clone's sha256 exactly as the intake stage records it."""
    return hash_dump(Path(entry.path), DIRECTORY if entry.is_dir else "file")
