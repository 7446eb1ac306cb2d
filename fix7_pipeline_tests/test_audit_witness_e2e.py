"""Issue 15, item 2: every run, whatever its verdict, leaves its packet's witness in Dagster's own storage, and
`fix7 audit --verify` compares the chain, the packet files and that record for every chain entry.

The forger here edits one packet (`attested_by` -> FORGED) and rewrites the chain consistently (its line's
packet_sha256 and, when a later entry exists, that entry's link): the chain alone is then self-consistent
for the newest entry, and only Dagster's record can tell. Real rehearsals (blocked at intake, failed at
apply, passed) through the job in a Dagster instance of their own with a chain of their own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fix7_pipeline.cli.main import main
from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.evidence import audit
from fix7_pipeline.core.evidence.packet_files import REPORT, sha256_file
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, config

SOURCE = "fix7_t_witness_src"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("witness_dagster_home"), "witness")
    h.env["FIX7_AUDIT_CHAIN"] = str(h.path / "audit-chain.jsonl")  # this instance's chain, nobody else's
    mp = pytest.MonkeyPatch()
    mp.setenv("FIX7_AUDIT_CHAIN", h.env["FIX7_AUDIT_CHAIN"])
    yield h
    mp.undo()
    h.drop()


@pytest.fixture(scope="module")
def instance(home):
    with home.instance() as inst:
        yield inst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("witness_inputs")
    builder.build_clone(SOURCE, registry_rows=100, seed=31)
    try:
        dump = builder.dump_clone(SOURCE, "custom", d / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)
    apply_sql, rollback_sql = builder.write_sample_change(d)
    failing = d / "failing_apply.sql"
    failing.write_text("insert into public.system_issues (code, severity, details, opened_at)"
                       " values ('FIX7_W', 'info', '{}', now());\nselect 1/0;\n")
    return {"dump": dump, "apply": apply_sql, "rollback": rollback_sql, "failing": failing, "root": d}


RUNS: dict[str, dict] = {}
VERDICTS = {"blocked": "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE", "failed": "REHEARSAL_FAILED",
            "passed": "REHEARSAL_PASSED"}


def _rehearse(name: str, kind: str, inputs, instance) -> dict:
    apply_sql = inputs["failing"] if kind == "failed" else inputs["apply"]
    cfg = config(inputs["dump"], apply_sql, inputs["rollback"], inputs["root"] / f"ev-{name}",
                 attested_by="" if kind == "blocked" else "witness test operator")
    out = run_rehearsal(cfg, instance=instance, echo=False)
    assert out["verdict"] == VERDICTS[kind], json.dumps(out["packet"]["stages"], indent=1)[:3000]
    RUNS[name] = out
    return out


def _verify(capsys) -> tuple[int, str]:
    """`fix7 audit --verify` in this process (the module's Dagster home is the environment's)."""
    capsys.readouterr()
    code = main(["audit", "--verify"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _forge(out: dict, chain: Path) -> tuple[bytes, str, int]:
    """attested_by -> FORGED in the packet, and its chain line (and the next line's link) rewritten to match."""
    report = Path(out["evidence_dir"]) / REPORT
    original, chain_text = report.read_bytes(), chain.read_text()
    data = json.loads(original)
    data["attestation"]["attested_by"] = "FORGED"
    report.write_text(json.dumps(data, indent=2, default=str) + "\n")
    entries = audit.read_chain(chain)
    i = max(n for n, e in enumerate(entries) if e["run_id"] == out["run_id"])
    entries[i].update(packet_sha256=sha256_file(report), attested_by="FORGED")
    if i + 1 < len(entries):
        entries[i + 1]["previous_packet_sha256"] = entries[i]["packet_sha256"]
    chain.write_text("".join(json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n" for e in entries))
    return original, chain_text, i + 1


def _assert_forgery_named(name: str, home, capsys, *, newest: bool) -> None:
    out, chain = RUNS[name], Path(home.env["FIX7_AUDIT_CHAIN"])
    original, chain_text, seq = _forge(out, chain)
    try:
        assert audit.verify_chain(chain).ok is newest  # the newest entry: nothing later in the chain vouches for it
        code, text = _verify(capsys)
        where = f"run {out['run_id']} (chain entry {seq}, "
        assert code == 1, text
        assert "AUDIT CHAIN BROKEN" in text and "Traceback" not in text
        assert f"{where}" in text and "packet file sha256" in text and "differs from Dagster's record" in text, text
        assert "the chain entry was rewritten to match the edited file" in text, text
        assert "chain entry differs from Dagster's record of it" in text and "the chain line was rewritten" in text
        if not newest:
            assert "packet relinked" in text, text  # the chain's own witness: the next packet names the old hash
    finally:
        (Path(out["evidence_dir"]) / REPORT).write_bytes(original)
        chain.write_text(chain_text)


def test_every_run_records_its_sealed_packet_in_dagster(inputs, instance, home, capsys):
    for name, kind in (("blocked-1", "blocked"), ("passed-1", "passed"), ("failed-1", "failed")):
        _rehearse(name, kind, inputs, instance)
    entries = audit.read_chain(Path(home.env["FIX7_AUDIT_CHAIN"]))
    assert [e["run_id"] for e in entries] == [RUNS[n]["run_id"] for n in ("blocked-1", "passed-1", "failed-1")]
    for seq, (name, entry) in enumerate(zip(("blocked-1", "passed-1", "failed-1"), entries), start=1):
        tags = instance.get_run_by_id(RUNS[name]["run_id"]).tags
        assert tags["fix7/packet_sha256"] == entry["packet_sha256"] == sha256_file(
            Path(RUNS[name]["evidence_dir"]) / REPORT), name
        assert tags["fix7/chain_entry_sha256"] == audit.entry_sha256(entry)
        assert tags["fix7/chain_seq"] == str(seq)
        assert tags["fix7/verdict"] == RUNS[name]["verdict"]
        assert tags["fix7/evidence"] == str(Path(RUNS[name]["evidence_dir"]).resolve())
    r = home.cli("audit", "--verify")  # untouched: the real CLI, exit 0
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 entries matched with Dagster's record" in r.stdout


def test_forged_newest_failed_run_is_caught(instance, home, capsys):
    _assert_forgery_named("failed-1", home, capsys, newest=True)


@pytest.mark.parametrize("name", ["blocked-1", "passed-1"])
def test_forged_earlier_runs_are_caught(name, instance, home, capsys):
    _assert_forgery_named(name, home, capsys, newest=False)


def test_forged_newest_passed_run_and_the_failed_run_before_it_are_caught(inputs, instance, home, capsys):
    _rehearse("passed-2", "passed", inputs, instance)
    _assert_forgery_named("passed-2", home, capsys, newest=True)
    _assert_forgery_named("failed-1", home, capsys, newest=False)


def test_the_issue_forgery_of_the_newest_blocked_run_fails_the_real_cli(inputs, instance, home, capsys):
    out = _rehearse("blocked-2", "blocked", inputs, instance)
    _assert_forgery_named("blocked-2", home, capsys, newest=True)
    chain = Path(home.env["FIX7_AUDIT_CHAIN"])
    original, chain_text, _ = _forge(out, chain)
    try:
        r = home.cli("audit", "--verify")
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"run {out['run_id']} (chain entry 5, " in r.stderr and "differs from Dagster's record" in r.stderr
        listed = home.cli("audit", "--format", "json")
        row = {x["run_id"]: x for x in json.loads(listed.stdout)}[out["run_id"]]
        assert row["attested_by"] == "FORGED" and row["chain"] == "EDITED since Dagster recorded it"
    finally:
        (Path(out["evidence_dir"]) / REPORT).write_bytes(original)
        chain.write_text(chain_text)
    code, text = _verify(capsys)  # every forgery undone: all five witnessed, nothing else to say
    assert code == 0, text
    assert "5 packet(s) re-hashed" in text and "5 entries matched with Dagster's record" in text
