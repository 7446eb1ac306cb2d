"""`[tool.dg]` is used for real: `dg check defs`, `dg list defs` and `dg dev` load the project (dagster-dg-cli, pinned)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DG = Path(sys.executable).parent / "dg"


def _env(home: Path) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "DAGSTER_HOME": str(home), "DAGSTER_DISABLE_TELEMETRY": "1"}


def _dg(*args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(DG), *args], cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
                          env=_env(home), stdin=subprocess.DEVNULL)


def test_dg_is_installed_by_make_install():
    assert DG.exists(), "make install installs dagster-dg-cli from requirements.lock"
    pinned = [ln for ln in (PROJECT / "requirements.lock").read_text().splitlines() if ln.startswith("dagster-dg-")]
    assert "dagster-dg-cli==1.13.27" in pinned


def test_dg_check_defs_and_list_defs_load_the_project(tmp_path):
    r = _dg("check", "defs", home=tmp_path / "home")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "All definitions loaded successfully" in r.stdout + r.stderr
    assert "project_and_activated_venv_mismatch" not in r.stdout + r.stderr  # suppressed in pyproject.toml
    r = _dg("list", "defs", "--json", home=tmp_path / "home")
    assert r.returncode == 0, r.stderr[-2000:]
    listed = json.loads(r.stdout)
    assert [j["name"] for j in listed["jobs"]] == ["fix7_rehearsal"]
    assert {"clone_intake", "evidence_packet"} <= {a["asset_key"] for a in listed["assets"]}
    assert {s["name"] for s in listed["schedules"]} == {"nightly_rehearsal"}
    assert {"clone_drop_sensor"} <= {s["name"] for s in listed["sensors"]}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LOCATIONS = ('{"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus '
              'locationOrLoadError { __typename ... on RepositoryLocation { repositories { jobs { name } } } } } } } }"}')


@pytest.mark.slow
def test_dg_dev_serves_the_code_location(tmp_path):
    port = _free_port()
    log = open(tmp_path / "dg-dev.log", "w")
    proc = subprocess.Popen([str(DG), "dev", "-p", str(port)], cwd=PROJECT, env=_env(tmp_path / "home"),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        entries, deadline = None, time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=_LOCATIONS.encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as resp:
                    entries = json.load(resp)["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    break
            except OSError:
                pass
            time.sleep(2)
        assert entries, (tmp_path / "dg-dev.log").read_text()[-3000:]
        [entry] = entries
        assert entry["name"] == "fix7_pipeline" and entry["loadStatus"] == "LOADED"
        jobs = {j["name"] for repo in entry["locationOrLoadError"]["repositories"] for j in repo["jobs"]}
        assert "fix7_rehearsal" in jobs
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
