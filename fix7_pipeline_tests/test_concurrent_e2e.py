"""Rehearsals started at the same moment on one checkout stay apart: state, evidence, throwaways, audit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DAGSTER_ENV, PRODUCTION, DagsterHome, load_packet, rnd, variant
from fix7_pipeline_tests.pg import server_throwaway_names

SOURCE = "fix7_t_concurrent_src"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "concurrent")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    out = tmp_path_factory.mktemp("concurrent")
    builder.build_clone(SOURCE, registry_rows=200, seed=9)
    try:
        clean = builder.dump_clone(SOURCE, "custom", out / "clean.dump")
        token = "ghp_" + rnd(36)
        name = variant(SOURCE, "fix7_t_concurrent_tok",
                       f"update public.system_issues set details = details || "
                       f"jsonb_build_object('note', 'deploy key {token}') where id = 1")
        try:
            planted = builder.dump_clone(name, "custom", out / "planted.dump")
        finally:
            builder.drop_clone(name)
    finally:
        builder.drop_clone(SOURCE)
    apply_sql, rollback_sql = builder.write_sample_change(out)
    return {"clean": clean, "planted": planted, "apply": apply_sql, "rollback": rollback_sql}


def _start(home: DagsterHome, dumps: dict, which: str, attester: str, evidence_root) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in DAGSTER_ENV and k != "FIX7_DEBUG"}
    env.update(home.env, FIX7_EVIDENCE_ROOT=str(evidence_root))
    args = ["rehearse", "--clone", str(dumps[which]), "--apply", str(dumps["apply"]), "--rollback",
            str(dumps["rollback"]), "--attested-by", attester, "--production-host", PRODUCTION, "--json"]
    return subprocess.Popen([sys.executable, "-m", "fix7_pipeline.cli", *args], cwd=str(project_dir()), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("round_no", [1, *(pytest.param(n, marks=pytest.mark.slow) for n in (2, 3))])  # 2, 3: test-slow
def test_two_rehearsals_at_the_same_moment_keep_their_own_facts(round_no, home, dumps, server, tmp_path):
    before = server_throwaway_names(server)
    procs = {"clean": _start(home, dumps, "clean", f"alice-{round_no}", tmp_path),
             "planted": _start(home, dumps, "planted", f"bob-{round_no}", tmp_path)}
    results = {k: p.communicate(timeout=300) for k, p in procs.items()}
    assert procs["clean"].returncode == 0, results["clean"]
    assert procs["planted"].returncode == 3, results["planted"]
    outs = {k: json.loads(results[k][0].strip().splitlines()[-1]) for k in procs}
    assert outs["clean"]["evidence_dir"] != outs["planted"]["evidence_dir"]
    assert outs["clean"]["run_id"] != outs["planted"]["run_id"]
    for which, attester in (("clean", f"alice-{round_no}"), ("planted", f"bob-{round_no}")):
        packet = load_packet(outs[which]["evidence_dir"])
        assert packet["run_id"] == outs[which]["run_id"]
        assert packet["clone"]["sha256"] == _sha256(dumps[which])
        assert packet["attestation"]["attested_by"] == attester
        assert packet["request"]["clone_path"] == str(dumps[which])
    clean, planted = (load_packet(outs[k]["evidence_dir"]) for k in ("clean", "planted"))
    assert clean["verdict"] == "REHEARSAL_PASSED" and clean["stages"]["sanitization"]["findings"] == []
    rules = {f["rule"] for f in planted["stages"]["sanitization"]["findings"]}
    assert planted["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" and "betterleaks.github-pat" in rules, rules
    assert {f.get("table") for f in planted["stages"]["sanitization"]["findings"]} - {None} == {"system_issues"}
    # the server itself, not our notes: nothing of either run is left
    assert server_throwaway_names(server) == before
