"""Issue 15, item 4: the CLI paths no other test runs, end to end as an operator runs them (`python -m
fix7_pipeline.cli`, a Dagster home of its own, the real embedded PostgreSQL, real pg_dump dumps).

Dumps are built once per module; the passing rehearsal with `--allow-host`, `--search-root` and
`--keep-databases` is one run that three tests read.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from psycopg import sql

from fix7_pipeline.core.contract.from_yaml import contract_from_dict
from fix7_pipeline.core.intake.contract_load import load_contract
from fix7_pipeline.core.shared.paths import state_dir
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import (DagsterHome, assert_blocked_at_gate, dumped_variant, findings, load_packet,
                                             rehearse_args)
from fix7_pipeline_tests.pg import superuser

SOURCE = "fix7_t_cli_src"
PARTNER = "hooks.partner-corp.com"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("cli_dagster_home"), "cli")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_dumps")
    builder.build_clone(SOURCE, registry_rows=100, seed=41)
    try:
        out = {"clean": builder.dump_clone(SOURCE, "custom", d / "clean.dump"),
               "schema": builder.dump_clone(SOURCE, "plain", d / "schema.sql", schema_only=True),
               "partner": dumped_variant(SOURCE, "fix7_t_cli_partner",
                                         f"update public.directus_webhooks set url = 'https://{PARTNER}/birth/notify'"
                                         " where id = 1", d / "partner.dump")}
    finally:
        builder.drop_clone(SOURCE)
    out["change"] = builder.write_sample_change(d)
    return out


def _ok(r, code: int = 0) -> str:
    out = r.stdout + r.stderr
    assert r.returncode == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    return r.stdout


# -- fix7 demo ---------------------------------------------------------------------------------

@pytest.fixture
def demo_dir_restored():
    """`fix7 demo` writes .fix7/demo/ of the checkout: put back what was there before."""
    work = state_dir() / "demo"
    saved = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} if work.is_dir() else None
    yield
    if saved is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        for name, data in saved.items():
            (work / name).write_bytes(data)
    builder.drop_clone("fix7_demo_source")


def test_demo_builds_a_clone_and_passes(home, tmp_path, demo_dir_restored):
    ev = tmp_path / "ev"
    stdout = _ok(home.cli("demo", "--rows", "300", "--evidence-dir", str(ev)))
    assert "(300 registry rows)" in stdout and "verdict: REHEARSAL_PASSED" in stdout
    assert f"evidence: {ev}" in stdout
    packet = load_packet(ev)
    assert packet["verdict"] == "REHEARSAL_PASSED"
    assert all(s["status"] == "passed" for s in packet["stages"].values())
    assert packet["attestation"]["attested_by"].startswith("fix7 demo")
    assert packet["request"]["clone_path"] == str(state_dir() / "demo" / "birth_surface_clone.dump")
    assert _line_shapes(stdout) == _line_shapes(_readme_demo_sample())  # the README shows a real run


def _readme_demo_sample() -> str:
    """The run output the README prints under "One rehearsal: `make demo`"."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.search(r"^## One rehearsal.*?^```\n(.*?)^```", readme, re.S | re.M).group(1)


def _line_shapes(output: str) -> list[str]:
    """Each line with what differs between two runs masked (paths, ids, hashes, counts, times): what is left is
    which stages ran, in which order, with which status and reason, and the verdict."""
    shapes = []
    for line in output.strip().splitlines():
        line = re.sub(r"…?/\S+", "PATH", line)
        line = re.sub(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", "UUID", line)
        line = re.sub(r"(fix7_[a-z]+_)[0-9a-f]{10}\b", r"\1HEX", line)  # a throwaway's tag, even all digits
        line = re.sub(r"(?<![0-9A-Za-z])(?=[0-9]*[a-f])[0-9a-f]{6,}(?![0-9A-Za-z])", "HEX", line)  # not a number
        shapes.append(" ".join(re.sub(r"\d+", "N", line).split()))
    return shapes


# -- fix7 contract -----------------------------------------------------------------------------

def test_contract_show_prints_the_default_contract(home, tmp_path):
    shown = contract_from_dict(yaml.safe_load(_ok(home.cli("contract", "show"))), "stdout")
    default = load_contract()
    assert shown.shape_dict() == default.shape_dict() and shown.annotations == default.annotations
    out = tmp_path / "shown.yaml"
    assert f"contract written to {out}" in _ok(home.cli("contract", "show", "-o", str(out)))
    assert load_contract(out).as_dict() == default.as_dict()


def test_contract_from_sql_derives_the_shape_of_a_schema_only_dump(home, dumps, tmp_path):
    derived = contract_from_dict(yaml.safe_load(_ok(home.cli("contract", "from-sql", str(dumps["schema"])))),
                                          "stdout")
    assert derived.shape_dict() == load_contract().shape_dict()  # the factory is production's shape
    out = tmp_path / "derived.yaml"
    assert f"contract written to {out}" in _ok(home.cli("contract", "from-sql", str(dumps["schema"]), "-o", str(out)))
    assert load_contract(out).shape_dict() == derived.shape_dict()
    r = home.cli("contract", "from-sql", str(tmp_path / "missing.sql"))
    assert r.returncode == 2 and "There is no file or directory" in r.stderr and "Traceback" not in r.stderr


# -- fix7 candidates ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def search_root(dumps, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_search")
    (root / "dumps").mkdir()
    shutil.copyfile(dumps["clean"], root / "dumps" / "birth_clone.dump")
    (root / ".pgpass").write_text("prod.corp.internal:5432:*:admin:not-a-real-password\n")
    return root


def test_candidates_lists_table_a_as_a_table_and_as_json(home, search_root):
    table = _ok(home.cli("candidates", "--search-root", str(search_root)))
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["candidate_clone", "source"]
    rows = [ln for ln in lines[2:] if not ln.startswith("    note: ")]
    assert len(rows) == 2 and all(ln.startswith(str(search_root)[:40]) for ln in rows), table
    assert "carries birth_registry, os_proposal_approvals" in table  # the dump, by its table of contents
    assert "PostgreSQL password file" in table and "credential store - MUST NOT be used" in table
    assert "not-a-real-password" not in table
    rows = {Path(r["candidate_clone"]).name: r
            for r in json.loads(_ok(home.cli("candidates", "--search-root", str(search_root), "--format", "json")))}
    assert set(rows) == {"birth_clone.dump", ".pgpass"}
    assert rows["birth_clone.dump"]["production_shaped"] is True
    assert rows["birth_clone.dump"]["allowed"] == "candidate - rehearsal gates decide"
    assert rows[".pgpass"]["allowed"] is False and "not opened" in rows[".pgpass"]["note"]


# -- fix7 rehearse: exit 1, hosts, Table A, kept databases, timeouts -----------------------------

def test_rollback_leaving_a_residue_exits_1(home, dumps, tmp_path):
    apply_sql, rollback_sql = tmp_path / "apply.sql", tmp_path / "rollback.sql"
    apply_sql.write_text("insert into public.system_issues (code, severity, details, opened_at)\n"
                         "  select 'FIX7_CLI', 'info', '{}'::jsonb, now() from generate_series(1, 2);\n")
    rollback_sql.write_text("select 1;\n")
    ev = tmp_path / "ev"
    stdout = _ok(home.cli(*rehearse_args(dumps["clean"], (apply_sql, rollback_sql), ev)), 1)
    assert "verdict: REHEARSAL_FAILED" in stdout
    packet = load_packet(ev)
    assert packet["verdict"] == "REHEARSAL_FAILED" and packet["stages"]["restore_diff"]["status"] == "failed"
    assert [(t["table"], t["added"]) for t in packet["restore_diff"]["tables"]] == [("public.system_issues", 2)]


def test_a_webhook_to_an_unlisted_host_blocks_isolation(home, dumps, tmp_path):
    ev = tmp_path / "ev"
    stdout = _ok(home.cli(*rehearse_args(dumps["partner"], dumps["change"], ev)), 3)
    assert "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" in stdout
    packet = load_packet(ev)
    assert packet["stages"]["isolation"]["status"] == "blocked" and packet["isolation_proven"] is False
    assert any(f["rule"] == "outward_pointer" and f["extra"]["host"] == PARTNER and "neither local, reserved nor "
               "allowed" in f["message"] for f in findings(packet, "isolation")), findings(packet, "isolation")
    # one line per stage that ran, the isolation line from the failed isolation_proven gate, then the verdict
    lines = [ln.split()[:2] for ln in stdout.splitlines() if ln.startswith("  ")]
    assert lines == [["intake", "passed"], ["isolation", "blocked"]], stdout
    with home.instance() as inst:
        assert_blocked_at_gate(inst, packet["run_id"], "isolation_proven")


@pytest.fixture(scope="module")
def allowed_run(home, dumps, search_root, tmp_path_factory, server):
    """One passing rehearsal of the partner dump with --allow-host, --search-root and --keep-databases."""
    ev = tmp_path_factory.mktemp("cli_allowed") / "ev"
    r = home.cli(*rehearse_args(dumps["partner"], dumps["change"], ev, "--allow-host", PARTNER,
                                "--search-root", str(search_root), "--keep-databases"))
    packet = load_packet(ev)
    yield {"r": r, "packet": packet, "ev": ev}
    role = (packet.get("restoring_role") or {}).get("role")
    with superuser(server, server.admin_db) as c:  # kept for inspection means the operator drops them
        for db in packet["throwaways"].get("kept", []):
            c.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(db)))
        if role:
            c.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def test_allow_host_lets_the_partner_webhook_pass_isolation(allowed_run):
    assert "verdict: REHEARSAL_PASSED" in _ok(allowed_run["r"])
    packet = allowed_run["packet"]
    assert packet["isolation_proven"] is True and packet["request"]["allow_hosts"] == [PARTNER]
    notes = [f for f in findings(packet, "isolation", errors_only=False) if f["rule"] == "outward_pointer"
             and f["extra"]["host"] == PARTNER]
    assert notes and all(f["severity"] == "note" and "an isolated host" in f["message"] for f in notes)


def test_search_root_puts_the_candidates_in_table_a(allowed_run, search_root):
    prov = json.loads((allowed_run["ev"] / "clone-provenance.json").read_text())
    names = [Path(r["candidate_clone"]).name for r in prov["table_A_clone_provenance"]]
    assert names[0] == "operator-provided production-shaped DB dump clone"
    assert {"birth_clone.dump", ".pgpass"} <= set(names[1:-1])
    assert prov["table_A_clone_provenance"][-1]["candidate_clone"] == "live production PG / Directus / VPS"


def test_keep_databases_leaves_clone_anchor_and_role_marked_as_kept(allowed_run, server):
    packet = allowed_run["packet"]
    kept = packet["throwaways"]["kept"]
    role = packet["restoring_role"]["role"]
    # only the traffic probe's logins go: each stage's is revoked and dropped when its stage ends
    dropped = packet["throwaways"]["dropped"]
    assert any(db.startswith("fix7_anchor_") for db in kept) and all(d.startswith("fix7_probe_") for d in dropped)
    with superuser(server, server.admin_db) as c:
        dbs = dict(c.execute("select datname, shobj_description(oid, 'pg_database') from pg_database "
                             "where datname = any(%s)", (kept,)).fetchall())
        roles = dict(c.execute("select rolname, shobj_description(oid, 'pg_authid') from pg_roles "
                               "where rolname = %s", (role,)).fetchall())
    assert set(dbs) == set(kept) and set(roles) == {role}
    assert all(note.startswith("fix7-kept for inspection") for note in [*dbs.values(), *roles.values()])


def test_statement_timeout_flag_stops_a_slow_apply(home, dumps, tmp_path):
    apply_sql = tmp_path / "apply.sql"
    apply_sql.write_text("select pg_sleep(5);\n")
    ev = tmp_path / "ev"
    stdout = _ok(home.cli(*rehearse_args(dumps["clean"], (apply_sql, dumps["change"][1]), ev,
                                         "--statement-timeout-s", "1", "--lock-timeout-s", "2")), 1)
    assert "verdict: REHEARSAL_FAILED" in stdout
    apply = load_packet(ev)["stages"]["apply"]
    assert apply["status"] == "failed" and "statement timeout" in apply["reason"], apply
    assert (apply["statement_timeout_s"], apply["lock_timeout_s"]) == (1, 2)
    assert apply["duration_s"] < 4


def test_a_reader_that_goes_away_is_no_internal_error(tmp_path):
    """`fix7 rules | head -1`: the closed pipe ends the command quietly with 141, as a shell reports SIGPIPE.
    The JSON listing is over twice a pipe's 64 KB buffer, so the reader is always gone before it is written."""
    import os
    import subprocess
    import sys

    fix7 = Path(sys.executable).with_name("fix7")
    r = subprocess.run(f"'{fix7}' rules --format json | head -c 100; echo \"exit=${{PIPESTATUS[0]}}\"", shell=True, executable="/bin/bash",
                       capture_output=True, text=True, timeout=120, env={**os.environ, "FIX7_DEBUG": ""})
    assert r.stdout.lstrip().startswith(("[", "{")) and r.stdout.rstrip().endswith("exit=141"), r.stdout[-500:]
    assert "internal error" not in r.stderr and "Traceback" not in r.stderr and "Exception" not in r.stderr, r.stderr


def test_a_custom_archive_cut_short_or_damaged_in_its_data_is_no_safe_clone_and_nothing_is_kept(home, dumps, server,
                                                                                                 tmp_path):
    """Intake hashes and lists a custom archive; the restore reads its data blocks (core/run/intake_vouch.py). A
    block cut short or damaged stops the restore as the dump's fault: exit 3, the fix named, nothing left."""
    from fix7_pipeline_tests.e2e_support import left_on_server

    raw = dumps["clean"].read_bytes()
    at = int(len(raw) * 0.97)  # in the last data block, past the table of contents
    cases = {"cut": raw[:int(len(raw) * 0.8)], "damaged": raw[:at] + bytes(b ^ 0x5A for b in raw[at:at + 512]) + raw[at + 512:]}
    for name, data in cases.items():
        dump, ev = tmp_path / f"{name}.dump", tmp_path / f"ev-{name}"
        dump.write_bytes(data)
        with left_on_server(server) as left:
            stdout = _ok(home.cli(*rehearse_args(dump, dumps["change"], ev)), 3)
        assert "verdict: NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" in stdout, stdout
        packet = load_packet(ev)
        assert packet["stages"]["intake"]["status"] == "passed"
        assert packet["clone"]["data"]["read_by"] == "restore" and packet["clone"]["data"]["read_through"] is False
        (f,) = findings(packet, "isolation")
        assert f["rule"] == "dump_truncated" and "Supply the complete archive" in f["message"], f
        assert packet["stages"]["sanitization"]["status"] != "passed"
        assert left == set()
