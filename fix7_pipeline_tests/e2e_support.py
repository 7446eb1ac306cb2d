"""Shared by the end-to-end hostile and no-leak tests: a fresh Dagster home per module or run, the CLI as
an operator runs it, factory variants of one built source, and a search of everything a run wrote.

No fixtures live here (pytest would register them twice); the test modules wrap these helpers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.instance import INSTANCE_CONFIG
from fix7_pipeline.core.evidence.packet_files import REPORT
from fix7_pipeline.core.postgres.embedded import embedded_dagster_url, start_embedded
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.pg import server_throwaway_names

PRODUCTION = "*.prod.corp.internal"
DAGSTER_ENV = ("DAGSTER_HOME", "FIX7_DAGSTER_PG_URL", "FIX7_DAGSTER_ARTIFACTS", "FIX7_DAGSTER_COMPUTE_LOGS")


def built_clone(root: Path, source: str, seed: int, rows: int = 300) -> tuple[Path, Path, Path]:
    """A custom dump of a freshly built factory clone and the sample change beside it: (dump, apply, rollback)."""
    builder.build_clone(source, registry_rows=rows, seed=seed)
    try:
        dump = builder.dump_clone(source, "custom", root / "birth_surface_clone.dump")
    finally:
        builder.drop_clone(source)
    return (dump, *builder.write_sample_change(root))


# -- `fix7 ui` as an operator starts it -------------------------------------------------------

class GraphQL:
    """The webserver's GraphQL endpoint; an answer with errors fails the test."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out = json.loads(resp.read())
        except urllib.error.HTTPError as e:  # the webserver answers 500 when the answer holds a PythonError
            body = e.read()
            try:
                out = json.loads(body)
            except ValueError:
                raise AssertionError(f"HTTP {e.code}: {body[:3000]!r}") from None
        assert not out.get("errors"), out["errors"]
        return out["data"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drop_storage_db(name: str) -> None:
    info = start_embedded()
    with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), dbname="postgres", user="postgres",
                         autocommit=True) as c:
        c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@contextmanager
def fix7_ui(home: Path, storage_db: str, ready_query: str, extra_env: dict | None = None):
    """`fix7 ui` on a free loopback port with this DAGSTER_HOME and a storage database of its own, up once
    `ready_query` lists a repository; yields (GraphQL, env, that answer, port). Stopped and its storage
    dropped afterwards."""
    drop_storage_db(storage_db)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FIX7_"))}
    env.update(DAGSTER_HOME=str(home), FIX7_DAGSTER_PG_URL=embedded_dagster_url(storage_db),
               FIX7_DAGSTER_ARTIFACTS=str(home / "storage"), FIX7_DAGSTER_COMPUTE_LOGS=str(home / "compute_logs"),
               FIX7_PROJECT_DIR=str(project_dir()), FIX7_REHEARSAL_CONFIG=str(home / "rehearsal.yaml"),
               DAGSTER_DISABLE_TELEMETRY="1", GX_ANALYTICS_ENABLED="False", **(extra_env or {}))
    port = free_port()
    log_path = home / "ui.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "fix7"), "ui", "--port", str(port), "--host",
                             "127.0.0.1"], cwd=project_dir(), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    gql = GraphQL(port)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                data = gql(ready_query)
                if data["repositoriesOrError"]["__typename"] == "RepositoryConnection" and \
                        data["repositoriesOrError"]["nodes"]:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the webserver did not come up:\n" + log_path.read_text()[-3000:]
            time.sleep(1)
        yield gql, env, data, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fix7 ui shuts dagster dev down, escalating by itself
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        drop_storage_db(storage_db)


# -- a Dagster home of its own --------------------------------------------------------------

@dataclass
class DagsterHome:
    """A temporary DAGSTER_HOME with its own storage database on the embedded server."""

    path: Path
    storage_db: str
    env: dict

    @classmethod
    def create(cls, path: Path, tag: str, *, guarded: bool = True) -> DagsterHome:
        """`guarded=False`: Dagster's plain PostgreSQL storage instead of fix7's (instance_guard.py), for a test
        that stands in for a run the guard never lets start (e.g. one stage alone, as a run that died after it)."""
        path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(INSTANCE_CONFIG, path / "dagster.yaml")
        if not guarded:
            text = (path / "dagster.yaml").read_text()
            plain = text.replace("  custom:\n    module: fix7_pipeline.instance_guard\n    class: RehearsalStorage\n"
                                 "    config:\n      postgres_url:\n        env: FIX7_DAGSTER_PG_URL",
                                 "  postgres:\n    postgres_url:\n      env: FIX7_DAGSTER_PG_URL")
            assert plain != text
            (path / "dagster.yaml").write_text(plain)
        storage_db = f"dagster_e2e_{tag}_{secrets.token_hex(3)}"
        env = {"DAGSTER_HOME": str(path), "FIX7_DAGSTER_PG_URL": embedded_dagster_url(storage_db),
               "FIX7_DAGSTER_ARTIFACTS": str(path / "storage"),
               "FIX7_DAGSTER_COMPUTE_LOGS": str(path / "compute_logs")}
        return cls(path, storage_db, env)

    @contextmanager
    def instance(self):
        """The instance of this home, in this process (the environment is restored afterwards)."""
        from dagster import DagsterInstance

        saved = {k: os.environ.get(k) for k in DAGSTER_ENV}
        os.environ.update(self.env)
        inst = DagsterInstance.from_config(str(self.path))
        try:
            yield inst
        finally:
            inst.dispose()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """`python -m fix7_pipeline.cli ...` with only this home's Dagster settings."""
        env = {k: v for k, v in os.environ.items() if k not in DAGSTER_ENV and k != "FIX7_DEBUG"}
        env.update(self.env)
        return subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", *args], capture_output=True, text=True,
                              cwd=str(project_dir()), env=env, timeout=timeout)

    def storage_rows(self) -> bytes:
        """Every row of every table of the storage database, as text."""
        info = start_embedded()
        out = []
        with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), user="postgres",
                             dbname=self.storage_db, autocommit=True) as c:
            tables = c.execute("select schemaname, tablename from pg_tables "
                               "where schemaname not in ('pg_catalog', 'information_schema')").fetchall()
            for schema, table in tables:
                for (row,) in c.execute(sql.SQL("select t::text from {} t").format(sql.Identifier(schema, table))):
                    out.append(row)
        return "\n".join(out).encode()

    def drop(self) -> None:
        info = start_embedded()
        with psycopg.connect(host=str(info["socket_dir"]), port=int(info["port"]), user="postgres",
                             dbname="postgres", autocommit=True) as c:
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self.storage_db)))


def rehearse_args(clone: Path, change: tuple[Path, Path], evidence_dir: Path, *extra: str) -> list[str]:
    return ["rehearse", "--clone", str(clone), "--apply", str(change[0]), "--rollback", str(change[1]),
            "--attested-by", "e2e test operator", "--evidence-dir", str(evidence_dir),
            "--production-host", PRODUCTION, *extra]


def config(clone, apply_sql, rollback_sql, evidence_dir, **kw) -> dict:
    """The job's run config, as test_rehearse builds it."""
    cfg = {"clone_path": str(clone), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
           "attested_by": "e2e test operator", "contract": "", "evidence_dir": str(evidence_dir),
           "production_hosts": [PRODUCTION], "allow_hosts": [], "server_url": "",
           "search_roots": [], "allowed_roots": [], "keep_databases": False}
    cfg.update(kw)
    return cfg


def load_packet(evidence_dir: Path) -> dict:
    """The sealed packet; for a run that left only its journal (kill -9), the journal's view (verdict None)."""
    if (Path(evidence_dir) / REPORT).exists():
        return json.loads((Path(evidence_dir) / REPORT).read_text())
    from fix7_pipeline.core.evidence.report import EvidencePacket

    return EvidencePacket.load(Path(evidence_dir)).data


@contextmanager
def left_on_server(server):
    """What the block left on the rehearsal server: the server's own database and role names under the
    project's prefix (pg_database, pg_roles) after the block, less those before it. Never the packet's notes,
    so a throwaway the run forgot to record is caught as well as one it forgot to drop.

    Tests are serial and fixtures only hold throwaways across a block, never create one inside it, so
    whatever is new afterwards was made by the block.

        with left_on_server(server) as left:
            run...
        assert left == set()
    """
    left: set[str] = set()
    before = server_throwaway_names(server)
    yield left
    left.update(server_throwaway_names(server) - before)


def findings(packet: dict, stage: str, *, errors_only: bool = True) -> list[dict]:
    """A stage's findings; with errors_only=False its warnings and notes (kept apart in the packet) too."""
    st = packet["stages"][stage]
    return [f for f in [*st.get("findings", []), *(st.get("notes", []) if not errors_only else [])]
            if not errors_only or f.get("severity", "error") == "error"]


# -- factory variants ------------------------------------------------------------------------

def variant(source: str, name: str, sql_text: str = "", *, major: int | None = None) -> str:
    """A copy of a built factory database (CREATE DATABASE ... TEMPLATE) with `sql_text` run in it."""
    builder.drop_clone(name, major=major)
    with psycopg.connect(**builder.factory_conninfo(major=major), autocommit=True) as c:
        c.execute(sql.SQL("create database {} template {}").format(sql.Identifier(name), sql.Identifier(source)))
    if sql_text:
        builder.run_sql(name, sql_text, major=major)
    return name


def dumped_variant(source: str, name: str, sql_text: str, out: Path, fmt: str = "custom") -> Path:
    variant(source, name, sql_text)
    try:
        return builder.dump_clone(name, fmt, out)
    finally:
        builder.drop_clone(name)


# -- planted values and the search for them -------------------------------------------------

def rnd(n: int, alphabet: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@dataclass(frozen=True)
class Planted:
    """A fake secret made of format syntax (fixed) and random material; `parts` is [(text, random?)]."""

    label: str
    parts: tuple[tuple[str, bool], ...]

    @property
    def value(self) -> str:
        return "".join(p for p, _ in self.parts)

    def windows(self, size: int = 8) -> set[str]:
        """Every `size`-character substring holding at least one random character.

        Windows made only of format syntax (`postgresql://`, `-----BEGIN`) are the same in every such value,
        so the tool may print them (rule descriptions, its own URLs) without leaking anything. Keep fixed
        parts next to random ones distinctive (no `.example.test`), or a chance match becomes a false alarm.
        """
        value = self.value
        mask = [r for p, r in self.parts for _ in p]
        return {value[i:i + size] for i in range(len(value) - size + 1) if any(mask[i:i + size])}


def planted(label: str, *parts) -> Planted:
    """planted('x', 'fixed', ('random', True), ...): plain strings are fixed, (text, True) is random."""
    return Planted(label, tuple((p, False) if isinstance(p, str) else (p[0], True) for p in parts))


def find_leaks(blobs: dict[str, bytes], values: list[Planted]) -> list[str]:
    """Where any planted value, or any 8-character window of it, occurs: ['<blob>: <label> <how>']."""
    out = []
    for name, blob in blobs.items():
        for p in values:
            if p.value.encode() in blob:
                out.append(f"{name}: {p.label} whole value")
                continue
            hit = next((w for w in sorted(p.windows()) if w.encode() in blob), None)
            if hit is not None:
                at = blob.index(hit.encode())
                out.append(f"{name}: {p.label} 8-char window {hit!r} (offset {p.value.index(hit)}) in "
                           f"{blob[max(0, at - 30):at + 38]!r}")
    return out


def files_under(root: Path, prefix: str) -> dict[str, bytes]:
    out = {}
    root = Path(root)
    if root.exists():
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.is_symlink():
                out[f"{prefix}/{f.relative_to(root)}"] = f.read_bytes()
    return out


def event_log_blobs(inst, run_id: str) -> dict[str, bytes]:
    """The run and all its events read back through the instance, serialized."""
    from dagster._serdes import serialize_value

    events = inst.all_logs(run_id)
    assert events, f"no events in the Dagster event log for run {run_id}"
    blob = "\n".join(serialize_value(e) for e in events)
    run = inst.get_run_by_id(run_id)
    assert run is not None
    return {"dagster event log": blob.encode(), "dagster run record": serialize_value(run).encode(),
            "dagster run config": json.dumps(run.run_config, default=str).encode()}


class ServerLogTail:
    """What the embedded PostgreSQL server logged from now on (its log is one shared file)."""

    def __init__(self):
        self.path = Path(start_embedded()["pgdata"]) / "log"
        self.start = self.path.stat().st_size if self.path.is_file() else 0

    def read(self) -> bytes:
        if not self.path.is_file():
            return b""
        with open(self.path, "rb") as f:
            f.seek(self.start)
            return f.read()


def everything_written(home: DagsterHome, run_id: str | None, evidence_dir: Path,
                       proc: subprocess.CompletedProcess | None = None, server_log: ServerLogTail | None = None
                       ) -> dict[str, bytes]:
    """stdout, stderr, evidence files, Dagster home files, event log, storage rows, server log."""
    blobs: dict[str, bytes] = {}
    if proc is not None:
        blobs["stdout"] = proc.stdout.encode()
        blobs["stderr"] = proc.stderr.encode()
    blobs.update(files_under(evidence_dir, "evidence"))
    blobs.update(files_under(home.path, "dagster_home"))
    if run_id:
        with home.instance() as inst:
            blobs.update(event_log_blobs(inst, run_id))
    blobs["dagster storage rows"] = home.storage_rows()
    if server_log is not None:
        blobs["postgresql server log"] = server_log.read()
    return blobs


def run_id_of(evidence_dir: Path) -> str:
    return load_packet(evidence_dir)["run_id"]


# -- dumps that stop early -------------------------------------------------------------------

MINIMAL_PLAIN_DUMP = """--
-- PostgreSQL database dump
--

-- Dumped from database version 18.0
-- Dumped by pg_dump version 18.0

SET statement_timeout = 0;

--
-- PostgreSQL database dump complete
--

"""


def minimal_plain_dump(path: Path) -> Path:
    """A plain dump that intake accepts (header and trailer of pg_dump 18, no objects): a run that uses it
    gets past the dump checks at once, so what is tested happens within seconds."""
    Path(path).write_text(MINIMAL_PLAIN_DUMP)
    return Path(path)


def tiny_change(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    apply_sql, rollback_sql = directory / "apply.sql", directory / "rollback.sql"
    apply_sql.write_text("select 1;\n")
    rollback_sql.write_text("select 1;\n")
    return apply_sql, rollback_sql


def files_below(root: Path, prefix: str, since: float | None = None) -> dict[str, bytes]:
    """Like files_under, for a tree other processes may be writing (the embedded server's data directory).

    `since` (a time.time()): only files written at or after it. A value first made after that moment can be in no
    other file, and the server's data directory holds every earlier test's databases (hundreds of MB to search)."""
    out = {}
    for f in sorted(Path(root).rglob("*")):
        try:
            if f.is_file() and not f.is_symlink() and (since is None or f.stat().st_mtime >= since):
                out[f"{prefix}/{f.relative_to(root)}"] = f.read_bytes()
        except OSError:  # removed or rotated while we read
            continue
    return out


# -- the job under Dagster's multiprocess executor -------------------------------------------------

def multiprocess_rehearsal_job():
    """The rehearsal job on `dg.multiprocess_executor`, for `dg.reconstructable`: each step process imports
    this module and calls it again, so it must build everything from importable definitions."""
    import dagster as dg

    from fix7_pipeline.definitions import REHEARSAL_ASSETS, RESOURCES, rehearsal_job

    return dg.Definitions(assets=REHEARSAL_ASSETS, jobs=[rehearsal_job(dg.multiprocess_executor)],
                          resources=RESOURCES).resolve_job_def("fix7_rehearsal")


GATE_NAMES = ("isolation_proven", "sanitized", "production_shaped", "data_rules")
AFTER_THE_GATES = ("snapshot_anchor", "apply", "rollback", "restore_diff", "evidence_packet")


def assert_blocked_at_gate(inst, run_id: str, gate: str):
    """The run stopped at the gate `gate` of rehearsal_clone and reads true in the catalog (issue 21.3): the gates
    before it passed, it failed with the verdict first and names the gates after it, which have no result (Dagster
    shows them Skipped); the clone was not handed on, every stage after it was skipped, nothing after intake was
    materialized, and the run succeeded (it reached its verdict), so no stage it never reached reads failed.
    Returns the failed gate's evaluation."""
    from dagster import DagsterEventType, DagsterRunStatus

    logs = inst.all_logs(run_id)
    evals = {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data for e in logs
             if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
             and e.dagster_event.event_specific_data.asset_key.to_user_string() == "rehearsal_clone"}
    at = GATE_NAMES.index(gate)
    assert sorted(evals) == sorted(GATE_NAMES[:at + 1]), sorted(evals)  # the later gates never ran
    assert [evals[g].passed for g in GATE_NAMES[:at]] == [True] * at, {g: evals[g].description for g in evals}
    failed = evals[gate]
    assert not failed.passed and failed.severity.value == "ERROR"
    assert failed.description.startswith("NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE: "), failed.description
    assert failed.metadata["gate_status"].value == "failed"
    assert failed.metadata["gates_not_evaluated"].value == list(GATE_NAMES[at + 1:])
    if at + 1 < len(GATE_NAMES):
        assert failed.description.endswith(f"not evaluated after it: {', '.join(GATE_NAMES[at + 1:])}")
    kinds = {(e.step_key, e.dagster_event.event_type_value) for e in logs if e.dagster_event and e.step_key}
    started = {k for k, t in kinds if t == "STEP_START"}
    assert started == {"clone_intake", "rehearsal_clone"}, started
    assert {k for k, t in kinds if t == "STEP_SKIPPED"} == set(AFTER_THE_GATES)
    assert not {k for k, t in kinds if t == "STEP_FAILURE"}
    made = {e.asset_materialization.asset_key.to_user_string()
            for e in inst.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)}
    assert made == {"clone_intake"}, made
    run = inst.get_run_by_id(run_id)
    assert run.status == DagsterRunStatus.SUCCESS and run.tags["fix7/verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    from fix7_pipeline.core.evidence.audit import read_chain

    assert len([e for e in read_chain() if e.get("run_id") == run_id]) == 1  # the packet was sealed once
    return failed


def verdict_facts(inst, run_id: str) -> dict:
    """The metadata of the run's verdict event (defs/run_end.py report_verdict): what is no longer a tag."""
    from dagster import DagsterEventType

    from fix7_pipeline.defs.run_end import VERDICT_EVENT

    event = next(e for e in inst.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
                 if (e.message or "").startswith(VERDICT_EVENT))
    return {k: getattr(v, "value", v) for k, v in event.dagster_event.engine_event_data.metadata.items()}


# -- a disk that fills ------------------------------------------------------------------------------

@contextmanager
def small_disk(path: Path, size: str):
    """A real tmpfs of `size` (e.g. "8m") mounted at `path`; the calling test skips, saying why, where mounting
    one is not possible (it needs root)."""
    import pytest

    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a full disk is a real small tmpfs here, and mounting one needs root")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill_disk(directory: Path) -> Path:
    """Write until the file system says ENOSPC: what another process filling the disk does."""
    filler = directory / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        size = 64 << 10
        while size:  # smaller and smaller writes, down to one byte: not a byte is left
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == 28, e  # ENOSPC
            size //= 2
    return filler


def fifo_reader(path: Path):
    """A thread reading the FIFO at `path` to its end: (the thread, {"data": what it read})."""
    import threading

    got: dict = {}

    def read():
        with open(path, "rb") as f:
            got["data"] = f.read()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got
