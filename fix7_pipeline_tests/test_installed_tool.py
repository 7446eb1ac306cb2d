"""Issue 24: the package is the tool. Built as a wheel, installed into a fresh virtual environment with the lock as
constraints, it runs from an empty repository holding only change files: `fix7 demo`, `fix7 rehearse --junit`, a
second rehearsal that extends the same audit chain, and `fix7 audit --verify`, all under one FIX7_HOME. The CI
templates (a composite GitHub Action, a GitLab CI template and docs/CI.md's examples) validate against SchemaStore's
schemas as check-jsonschema vendors them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from fix7_pipeline.core.shared.paths import project_dir

ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(sys.executable).parent / "check-jsonschema"
TEMPLATES = [("vendor.github-actions", "action.yml"), ("vendor.gitlab-ci", "ci/fix7.gitlab-ci.yml"),
             ("vendor.github-workflows", "docs/ci/github-workflow.example.yml"),
             ("vendor.gitlab-ci", "docs/ci/gitlab-ci.example.yml")]


@pytest.mark.parametrize("schema, path", TEMPLATES)
def test_the_ci_templates_validate(schema, path, tmp_path):
    r = subprocess.run([str(CHECK), "--builtin-schema", schema, str(ROOT / path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    broken = tmp_path / Path(path).name  # the validator bites: an unknown top-level key in a job or action
    text = (ROOT / path).read_text()
    broken.write_text(text.replace("runs:", "runz:", 1) if "runs:" in text else text + "\nbad-job:\n  scrip: []\n")
    r = subprocess.run([str(CHECK), "--builtin-schema", schema, str(broken)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0


def test_fix7_home_is_where_state_lives(tmp_path, monkeypatch):
    """FIX7_HOME wins; outside a checkout with none set, the XDG data home; in a checkout, the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FIX7_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FIX7_PROJECT_DIR", raising=False)
    assert project_dir() == tmp_path / "home" and (tmp_path / "home").is_dir()
    monkeypatch.delenv("FIX7_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    from fix7_pipeline.core.shared import paths

    monkeypatch.setattr(paths, "__file__", str(tmp_path / "site-packages" / "fix7_pipeline" / "core" / "paths.py"))
    assert project_dir() == tmp_path / "xdg" / "fix7"
    monkeypatch.chdir(ROOT / "fix7_pipeline")
    assert project_dir() == ROOT


def test_the_version_names_the_locked_set():
    r = subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", "--version"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fix7 0.") and "requirements.lock sha256" in r.stdout and "dagster 1.13" in r.stdout
    assert "this install matches it" in r.stdout, r.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return next(out.glob("fix7_pipeline-*.whl"))


def test_the_wheel_carries_what_a_run_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("dagster.yaml", "requirements.lock", "requirements-extensions.lock", "contracts/birth_surface.yaml",
              "rules/fix7.yml", "demo/fix7_apply.sql", "definitions.py"):
        assert f"fix7_pipeline/{f}" in names, f
    assert not any(n.startswith("fix7_pipeline_tests/") for n in names)


@pytest.mark.slow
def test_installed_from_the_wheel_it_runs_in_an_empty_repository(wheel):
    # not under pytest's basetemp, which another pytest session may prune while the home's server runs
    work = Path(tempfile.mkdtemp(prefix="fix7-installed-"))
    try:
        _install_and_rehearse(wheel, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install_and_rehearse(wheel: Path, work: Path) -> None:
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        str(wheel), "--constraint", str(ROOT / "requirements.lock")], capture_output=True, text=True,
                       timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    repo = work / "app"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for name in ("fix7_apply.sql", "fix7_rollback.sql"):
        (repo / name).write_text((ROOT / "fix7_pipeline" / "demo" / name).read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "FIX7_"))}
    home = work / "fix7-home"
    env["FIX7_HOME"] = str(home)
    fix7 = str(venv / "bin" / "fix7")
    try:
        _rehearse_as_installed(fix7, repo, env, home)
    finally:
        subprocess.run([fix7, "stop"], cwd=repo, env=env, capture_output=True, timeout=300)


def _rehearse_as_installed(fix7: str, repo: Path, env: dict, home: Path) -> None:

    def run(*args):
        return subprocess.run([fix7, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=1800)

    demo = run("demo")
    assert demo.returncode == 0 and "verdict: REHEARSAL_PASSED" in demo.stdout, demo.stdout + demo.stderr
    clone = home / ".fix7" / "demo" / "birth_surface_clone.dump"
    for i in (1, 2):
        out = run("rehearse", "--clone", str(clone), "--apply", "fix7_apply.sql", "--rollback", "fix7_rollback.sql",
                  "--attested-by", "ci", "--junit", f"junit{i}.xml", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1])["verdict"] == "REHEARSAL_PASSED"
        suite = ET.parse(repo / f"junit{i}.xml").getroot()
        suites = [suite] if suite.tag == "testsuite" else suite.findall("testsuite")
        assert suites and all(int(s.get("tests")) > 0 and int(s.get("failures")) == 0 for s in suites)
    assert sorted(p.name for p in repo.iterdir()) == [".git", "fix7_apply.sql", "fix7_rollback.sql", "junit1.xml",
                                                      "junit2.xml"]  # nothing of fix7's state in the repository
    audit = run("audit", "--verify")
    assert audit.returncode == 0 and "3 packet(s) re-hashed" in audit.stdout, audit.stdout + audit.stderr
    version = run("--version")
    assert version.returncode == 0 and "this install matches it" in version.stdout, version.stdout
    stop = run("stop")
    assert stop.returncode == 0 and "pgdata: stopped" in stop.stdout, stop.stdout
