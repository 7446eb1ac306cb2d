"""Issue 28.1 and 28.3: the evidence root in an S3 bucket, tried for real against moto's server mode (a local
S3-compatible server on a free localhost port), and every other URL refused before anything is written.

On S3 the packet keeps the guarantees it has on disk: the journal's first entry and the render claim are created
exclusively (If-None-Match: *), a sealed packet is never overwritten, the audit chain's entries are one object
each, and `fix7 audit --verify` re-hashes the packets in the bucket: an edited object fails it (exit 1).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.core.evidence.packet_files import JOURNAL, PROVENANCE, READABLE, REPORT
from fix7_pipeline_tests.e2e_support import DagsterHome, built_clone, free_port, minimal_plain_dump, tiny_change

ACCESS_KEY, SECRET_KEY = "fix7testaccess", "fix7-test-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3 server in a process of its own, on a free localhost port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("moto's server did not start")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(moto_endpoint, monkeypatch):
    """A fresh bucket, the AWS environment naming it (for this process and the CLI processes it starts)."""
    import boto3

    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "FIX7_AUDIT_CHAIN"):
        monkeypatch.delenv(k, raising=False)
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_ENDPOINT_URL": moto_endpoint, "AWS_REGION": "us-east-1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"fix7-evidence-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("FIX7_EVIDENCE_ROOT", f"s3://{bucket}/rehearsals")
    return client, bucket


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("s3_home"), "s3ev")
    yield h
    h.drop()


def _keys(client, bucket: str, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") or [])


def _usage_error(r) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fix7: "), r.stderr
    return lines[0]


def _rehearse(home, clone, change, *extra):
    return home.cli("rehearse", "--clone", str(clone), "--apply", str(change[0]), "--rollback", str(change[1]),
                    "--attested-by", "e2e test operator", *extra)


def _runs(home) -> int:
    with home.instance() as inst:
        return len(inst.get_runs())


# -- fail closed: a URL fix7 cannot keep evidence at ------------------------------------------------

@pytest.mark.parametrize("url", ["gs://bucket/run1", "https://example.invalid/run1", "S3A://bucket/run1"])
def test_an_unsupported_url_is_refused_and_nothing_is_written(home, tmp_path, url, monkeypatch):
    monkeypatch.delenv("FIX7_EVIDENCE_ROOT", raising=False)
    change = tiny_change(tmp_path / "change")
    runs = _runs(home)
    before = sorted(p.name for p in project_dir().iterdir())
    r = _rehearse(home, tmp_path / "x.dump", change, "--evidence-dir", url)
    line = _usage_error(r)
    assert "URL" in line and "Nothing was written" in line
    assert sorted(p.name for p in project_dir().iterdir()) == before  # no folder named `gs:` or `https:`
    assert _runs(home) == runs

    monkeypatch.setenv("FIX7_EVIDENCE_ROOT", url)
    r = _rehearse(home, tmp_path / "x.dump", change)
    assert "FIX7_EVIDENCE_ROOT" in _usage_error(r)
    assert sorted(p.name for p in project_dir().iterdir()) == before
    assert _runs(home) == runs


def test_credentials_in_an_s3_url_are_refused_without_printing_them(home, tmp_path, monkeypatch):
    monkeypatch.delenv("FIX7_EVIDENCE_ROOT", raising=False)
    r = _rehearse(home, tmp_path / "x.dump", tiny_change(tmp_path / "change"), "--evidence-dir",
                  "s3://AKIAEXAMPLE:hunter2secret@bucket/run1")
    assert "credentials" in _usage_error(r)
    assert "hunter2secret" not in r.stdout + r.stderr and "AKIAEXAMPLE" not in r.stdout + r.stderr


def test_a_missing_bucket_is_refused_before_any_run(home, s3, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", os.environ["AWS_ENDPOINT_URL"].replace("://", "://proxyuser:proxypass@"))
    runs = _runs(home)
    r = _rehearse(home, tmp_path / "x.dump", tiny_change(tmp_path / "change"), "--evidence-dir",
                  "s3://fix7-no-such-bucket/run1")
    assert "no such bucket" in _usage_error(r)
    assert _runs(home) == runs
    assert SECRET_KEY not in r.stdout + r.stderr and "proxypass" not in r.stdout + r.stderr


# -- evidence in the bucket ----------------------------------------------------------------------

def _verify_here(home, monkeypatch, capsys):
    """`fix7 audit --verify` in this process with the module's Dagster home (the real CLI's run is the first)."""
    import types

    from fix7_pipeline.cli.main import main

    with monkeypatch.context() as mp:
        for k, v in home.env.items():
            mp.setenv(k, v)
        capsys.readouterr()
        code = main(["audit", "--verify"])
        captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def test_rehearsals_seal_their_packets_in_the_bucket_and_audit_verifies_them(home, s3, tmp_path, monkeypatch,
                                                                             capsys):
    client, bucket = s3
    dump, apply_sql, rollback_sql = built_clone(tmp_path, "fix7_t_s3_src", seed=28, rows=100)
    passing_url = f"s3://{bucket}/named/pass"
    passed = _rehearse(home, dump, (apply_sql, rollback_sql), "--evidence-dir", passing_url)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"evidence: {passing_url}" in passed.stdout
    blocked = _rehearse(home, tmp_path / "missing.dump", (apply_sql, rollback_sql))  # under FIX7_EVIDENCE_ROOT
    assert blocked.returncode == 3, blocked.stdout + blocked.stderr
    blocked_url = next(ln.split("evidence: ", 1)[1] for ln in blocked.stdout.splitlines() if "evidence: " in ln)
    assert blocked_url.startswith(f"s3://{bucket}/rehearsals/")
    assert not any(project_dir().glob("s3:*")) and not any(Path.cwd().glob("s3:*"))

    for url, verdict in ((passing_url, "REHEARSAL_PASSED"), (blocked_url, "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE")):
        prefix = url.split(f"s3://{bucket}/", 1)[1]
        keys = _keys(client, bucket, prefix + "/")
        for name in (REPORT, PROVENANCE, READABLE):
            assert f"{prefix}/{name}" in keys, keys
        entries = [k for k in keys if k.startswith(f"{prefix}/rehearsal-journal/")]
        assert len(entries) >= 3  # one object per journal entry
        report = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/{REPORT}")["Body"].read())
        assert report["verdict"] == verdict
        store = [c for c in report["connections"] if c["purpose"].startswith("evidence store")]
        assert store and store[0]["database"] == f"s3://{bucket}" and store[0]["port"] == int(
            os.environ["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])
        assert SECRET_KEY not in json.dumps(report) and ACCESS_KEY not in json.dumps(report)
    chain = _keys(client, bucket, "rehearsals/audit-chain/")
    assert chain == ["rehearsals/audit-chain/00000001.json", "rehearsals/audit-chain/00000002.json"]

    verify = home.cli("audit", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "2 packet(s) re-hashed" in verify.stdout and f"s3://{bucket}/rehearsals/audit-chain" in verify.stdout

    # a sealed packet in the bucket is never overwritten: not by a second rehearsal, not by a second render
    sealed = client.get_object(Bucket=bucket, Key=f"named/pass/{REPORT}")["Body"].read()
    again = _rehearse(home, dump, (apply_sql, rollback_sql), "--evidence-dir", passing_url)
    assert "already holds an evidence packet" in _usage_error(again)
    from fix7_pipeline.core.evidence.packet_files import write_evidence
    from fix7_pipeline.core.evidence.report import render
    from fix7_pipeline.core.storage.store import evidence_path

    assert render(passing_url) is None
    with pytest.raises(FileExistsError):
        write_evidence(evidence_path(passing_url) / REPORT, "{}\n")
    assert client.get_object(Bucket=bucket, Key=f"named/pass/{REPORT}")["Body"].read() == sealed
    assert len(_keys(client, bucket, "rehearsals/audit-chain/")) == 2

    # a chain entry rewritten in the bucket disagrees with Dagster's record of it
    entry_key = "rehearsals/audit-chain/00000001.json"
    entry = client.get_object(Bucket=bucket, Key=entry_key)["Body"].read()
    client.put_object(Bucket=bucket, Key=entry_key, Body=entry.replace(b'"seq":1', b'"seq":1,"note":"x"'))
    broken = _verify_here(home, monkeypatch, capsys)
    assert broken.returncode == 1 and "chain entry differs from Dagster's record" in broken.stderr, broken.stderr
    client.put_object(Bucket=bucket, Key=entry_key, Body=entry)
    assert _verify_here(home, monkeypatch, capsys).returncode == 0

    # an object edited behind fix7's back (a plain PUT, no condition) is found by --verify
    client.put_object(Bucket=bucket, Key=f"named/pass/{REPORT}", Body=sealed.replace(b"REHEARSAL_PASSED", b"REHEARSAL_PASSEDX"))
    broken = _verify_here(home, monkeypatch, capsys)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "packet edited" in broken.stderr and passing_url in broken.stderr
    assert SECRET_KEY not in broken.stdout + broken.stderr


def test_the_journal_and_the_claim_are_exclusive_in_the_bucket(s3):
    """Of two runs naming one prefix, one gets it; appends from two holders never overwrite an entry."""
    from fix7_pipeline.core.evidence import journal
    from fix7_pipeline.core.storage.store import evidence_path

    client, bucket = s3
    d = evidence_path(f"s3://{bucket}/exclusive")
    journal.create(d, {"run_id": "a", "stages": {}})
    with pytest.raises(journal.JournalTaken):
        journal.create(d, {"run_id": "b", "stages": {}})
    first, second = journal.Journal(d), journal.Journal(f"s3://{bucket}/exclusive")
    first.set(one=1)
    from fix7_pipeline.core.storage import s3_store

    s3_store._next_entry.pop(str(d), None)  # a second process: it knows nothing of the first's position
    second.set(two=2)
    first.set(three=3)  # the first's next position was taken by the second: it moves on, overwriting nothing
    data = journal.fold(journal.read(d))
    assert (data["run_id"], data["one"], data["two"], data["three"]) == ("a", 1, 2, 3)
    assert len(_keys(client, bucket, "exclusive/rehearsal-journal/")) == 4
    from fix7_pipeline.core.evidence.evidence_dir import evidence_dir_problem

    problem = evidence_dir_problem(f"s3://{bucket}/exclusive")  # a journal alone (a run in progress) holds it
    assert "already holds an evidence packet (rehearsal-journal)" in problem
    assert evidence_dir_problem(f"s3://{bucket}/fresh") is None


# -- issue 28.3: each step in a process and a working directory of its own, sharing no local folder ----------

PARENT_PID_ENV = "FIX7_TEST_SPLIT_PARENT"


def split_process_job():
    """The rehearsal job on the multiprocess executor; a step process (any but the test's) works in a fresh empty
    directory of its own, so nothing a step reads can come from a folder another step wrote there."""
    import tempfile

    from fix7_pipeline_tests.e2e_support import multiprocess_rehearsal_job

    if os.environ.get(PARENT_PID_ENV) and int(os.environ[PARENT_PID_ENV]) != os.getpid():
        os.chdir(tempfile.mkdtemp(prefix="fix7-step-"))
    return multiprocess_rehearsal_job()


def _split_run(home, cfg: dict, monkeypatch):
    import dagster as dg
    from dagster._core.storage.tags import PARTITION_NAME_TAG

    from fix7_pipeline.defs.partitions import add_rehearsal, rehearsal_key

    monkeypatch.setenv(PARENT_PID_ENV, str(os.getpid()))
    with home.instance() as inst:
        key = add_rehearsal(inst, rehearsal_key())
        result = dg.execute_job(dg.reconstructable(split_process_job), instance=inst,
                                run_config={"ops": {"clone_intake": {"config": cfg}}},
                                tags={PARTITION_NAME_TAG: key}, raise_on_error=False)
        tags = dict(inst.get_run_by_id(result.run_id).tags)
        pids = {e.step_key: e.dagster_event.pid for e in inst.all_logs(result.run_id)
                if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
        local_runs = Path(inst.storage_directory()) / "fix7-runs"
    return result, tags, pids, local_runs


@pytest.fixture(scope="module")
def split_dumps(tmp_path_factory):
    from fix7_pipeline.demo import builder
    from fix7_pipeline_tests.e2e_support import planted, rnd, variant

    out = tmp_path_factory.mktemp("split")
    source = "fix7_t_s3_split_src"
    builder.build_clone(source, registry_rows=100, seed=28)
    try:
        clean = builder.dump_clone(source, "custom", out / "clean.dump")
        token = planted("planted deploy key", "ghp_", (rnd(36), True))
        name = variant(source, "fix7_t_s3_split_tok",
                       f"update public.system_issues set details = details || "
                       f"jsonb_build_object('note', 'deploy key {token.value}') where id = 1")
        try:
            leaky = builder.dump_clone(name, "custom", out / "planted.dump")
        finally:
            builder.drop_clone(name)
    finally:
        builder.drop_clone(source)
    return {"clean": clean, "planted": leaky, "change": builder.write_sample_change(out)}


@pytest.fixture
def split_home(tmp_path):
    """A Dagster instance of this test alone: `fix7 audit --verify` compares its runs with this bucket's chain."""
    h = DagsterHome.create(tmp_path / "split_home", "s3split")
    yield h
    h.drop()


@pytest.mark.slow  # two rehearsals, seven step processes each (about two minutes on two cores)
def test_split_process_rehearsals_keep_records_and_evidence_in_the_bucket(split_home, s3, split_dumps, tmp_path,
                                                                          monkeypatch):
    from fix7_pipeline_tests.e2e_support import config

    home = split_home

    client, bucket = s3
    passing_url, blocked_url = f"s3://{bucket}/split/pass", f"s3://{bucket}/split/blocked"
    passed, tags, pids, local_runs = _split_run(home, config(split_dumps["clean"], *split_dumps["change"],
                                                             passing_url), monkeypatch)
    report = json.loads(client.get_object(Bucket=bucket, Key=f"split/pass/{REPORT}")["Body"].read())
    assert passed.success, report["stages"]
    assert tags["fix7/verdict"] == report["verdict"] == "REHEARSAL_PASSED"
    assert len(pids) == 7 and len(set(pids.values())) == 7 and os.getpid() not in pids.values()
    assert not local_runs.exists()  # no stage output went through a folder here
    assert _keys(client, bucket, f"rehearsals/runs/{passed.run_id}/") == []  # removed when the run ended

    blocked, tags, pids, local_runs = _split_run(home, config(split_dumps["planted"], *split_dumps["change"],
                                                              blocked_url), monkeypatch)
    report = json.loads(client.get_object(Bucket=bucket, Key=f"split/blocked/{REPORT}")["Body"].read())
    assert blocked.success  # the run reached its verdict
    assert tags["fix7/verdict"] == report["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert report["stages"]["sanitization"]["status"] == "blocked"
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert not local_runs.exists()
    kept = _keys(client, bucket, f"rehearsals/runs/{blocked.run_id}/")  # a blocked run keeps its outputs
    assert f"rehearsals/runs/{blocked.run_id}/clone_intake.json" in kept
    assert any(k.startswith(f"rehearsals/runs/{blocked.run_id}/changes/apply-") for k in kept)

    verify = home.cli("audit", "--verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    client.put_object(Bucket=bucket, Key=f"split/blocked/{PROVENANCE}", Body=b"{}\n")
    broken = home.cli("audit", "--verify")
    assert broken.returncode == 1 and "packet edited" in broken.stderr, broken.stdout + broken.stderr


def test_rehearsal_yaml_takes_an_s3_evidence_root_and_refuses_other_urls(tmp_path):
    """The schedule's and the sensor's runs: rehearsal.yaml's evidence_root as an S3 prefix, never a folder."""
    from fix7_pipeline.core.run.automation_config import load_automation_config
    from fix7_pipeline.core.shared.errors import Fix7Error

    apply_sql, rollback_sql = tiny_change(tmp_path / "changes")

    def load(root: str):
        path = tmp_path / "rehearsal.yaml"
        path.write_text(f"version: 1\nclone_path: {tmp_path / 'x.dump'}\nevidence_root: {root}\n"
                        f"apply_sql: {apply_sql}\nrollback_sql: {rollback_sql}\nattested_by: ops\n")
        return load_automation_config(path)

    evidence = load("s3://fix7-evidence/nightly").request_config(str(tmp_path / "x.dump"), "sched")["evidence_dir"]
    assert evidence.startswith("s3://fix7-evidence/nightly/") and "-sched-" in evidence
    with pytest.raises(Fix7Error) as refused:
        load("gs://fix7-evidence/nightly")
    assert refused.value.exit_code == 2 and "gs:// URL" in refused.value.message
    assert not (tmp_path / "gs:").exists()


def test_an_unreachable_store_is_a_fault_of_the_storage_not_a_traceback(home, s3, monkeypatch):
    """`fix7 audit --verify` against a chain whose store does not answer: exit 74 (EX_IOERR), one line that
    names the store and its answer, never a credential."""
    _, bucket = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    r = home.cli("audit", "--verify")
    assert r.returncode == 74, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and f"s3://{bucket}/rehearsals/audit-chain" in r.stderr
    assert "EndpointConnectionError" in r.stderr and SECRET_KEY not in r.stdout + r.stderr
