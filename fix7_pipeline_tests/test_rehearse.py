"""End to end: the fix7_rehearsal job through a real Dagster instance on real PostgreSQL, real dumps."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.evidence.audit import verify_chain
from fix7_pipeline.core.shared.model import STAGES
from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.postgres.server import RehearsalServer
from fix7_pipeline.demo import builder
from fix7_pipeline.instance_guard import storage_url
from fix7_pipeline_tests.e2e_support import DagsterHome, left_on_server, verdict_facts

DATA = Path(__file__).parent / "data"
SEED = json.loads((DATA / "seed-clone-provenance.json").read_text())


@pytest.fixture(scope="session")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "rehearse")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="session")
def source_db():
    name = "fix7_t_rehearse_src"
    builder.build_clone(name, registry_rows=400, seed=11)
    yield name
    builder.drop_clone(name)


@pytest.fixture(scope="session")
def dumps(source_db, tmp_path_factory):
    d = tmp_path_factory.mktemp("dumps")
    return {fmt: builder.dump_clone(source_db, fmt, d / f"clone.{fmt}") for fmt in ("custom", "plain")}


@pytest.fixture(scope="session")
def change(tmp_path_factory):
    return builder.write_sample_change(tmp_path_factory.mktemp("change"))


def _config(clone, apply_sql, rollback_sql, evidence_dir, **kw) -> dict:
    cfg = {"clone_path": str(clone), "apply_sql": str(apply_sql), "rollback_sql": str(rollback_sql),
           "attested_by": "test operator", "contract": "", "evidence_dir": str(evidence_dir),
           "production_hosts": ["*.prod.corp.internal"], "allow_hosts": [], "server_url": "",
           "search_roots": [], "allowed_roots": [], "keep_databases": False}
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize("fmt", ["custom", "plain"])
def test_correct_change_and_rollback_pass_every_stage(fmt, dumps, change, instance, tmp_path, server):
    with left_on_server(server) as left:
        out = run_rehearsal(_config(dumps[fmt], *change, tmp_path / "ev"), instance=instance, echo=False)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_PASSED", json.dumps(packet["stages"], indent=1)[:3000]
    assert {s: packet["stages"][s]["status"] for s in STAGES} == {s: "passed" for s in STAGES}
    assert set(packet["stages"]) == set(STAGES)
    assert packet["anchor_id"] and packet["restore_diff"]["tables"] == [] and packet["restore_diff"]["schema"] == []
    assert packet["isolation_proven"] is True
    assert packet["restoring_role"]["superuser"] is False and packet["restoring_role"]["server_file_privileges"] == []
    # every connection went to the rehearsal server's socket, and none was left behind
    hosts = {c["host"] for c in packet["connections"]}
    assert hosts == {server.host}
    assert any(c["role"].startswith("fix7_restorer_") for c in packet["connections"])
    storage = [c for c in packet["connections"] if c["purpose"] == "dagster storage"]
    assert [(c["role"], c["database"]) for c in storage] == [
        ("dagster_storage", storage_url(instance).split("?")[0].rsplit("/", 1)[1])]
    assert left == set()
    prov = json.loads((tmp_path / "ev" / "clone-provenance.json").read_text())
    assert prov["verdict"] == "SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert prov["clone"]["format"] == fmt and len(prov["clone"]["sha256"]) == 64
    report = (tmp_path / "ev" / "rehearsal-report.md").read_text()
    assert report.startswith("# FIX7 rehearsal — REHEARSAL_PASSED")
    assert out["run_id"] == packet["run_id"] and instance.get_run_by_id(out["run_id"]) is not None
    # the demo change's impact: reported per statement, warned about, gating nothing (no threshold set)
    apply = packet["impact"]["apply"]
    assert [s["line"] for s in apply["statements"]] == [8, 17, 19, 21, 32, 50, 57]
    update = next(s for s in apply["statements"] if s["line"] == 21)
    assert update["kind"] == "UPDATE" and update["rows"] > 0 and update["wal_bytes"] > 0
    assert apply["thresholds"] == packet["impact"]["rollback"]["thresholds"] == {
        "set": False, "passed": True, "results": []}
    assert [(w["rule"], w["line"], w["relation"]) for w in apply["warnings"]] == [
        ("hot_table_access_exclusive", 19, "public.birth_registry")]
    assert [(w["rule"], w["line"], w["relation"]) for w in packet["impact"]["rollback"]["warnings"]] == [
        ("hot_table_access_exclusive", 31, "public.birth_registry")]
    assert "### Impact: apply" in report and "### Impact: rollback" in report
    assert "| 21 | UPDATE |" in report and "No thresholds set: the impact is reported and gates nothing." in report
    # what Dagster shows of it: Markdown tables and integers it can plot, the report on the packet asset
    from dagster import DagsterEventType, MarkdownMetadataValue

    mats = {e.asset_materialization.asset_key.to_user_string(): e.asset_materialization.metadata
            for e in instance.all_logs(out["run_id"], of_type=DagsterEventType.ASSET_MATERIALIZATION)}
    diff = mats["restore_diff"]
    assert isinstance(diff["restore_diff"], MarkdownMetadataValue)
    assert diff["restore_diff"].value.startswith("**empty: every row and schema object is back as anchored**")
    assert "| table | added | removed | changed |" in diff["restore_diff"].value
    assert {k: diff[k].value for k in ("rows_added", "rows_removed", "rows_changed", "tables_differing")} == {
        "rows_added": 0, "rows_removed": 0, "rows_changed": 0, "tables_differing": 0}
    assert diff["sequences_moved"].value == len(packet["restore_diff"]["sequences"]) > 0
    for value in (str(s["after"]) for s in packet["restore_diff"]["sequences"]):  # positions stay in the packet
        assert f"| {value} |" not in diff["restore_diff"].value
    gates = {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
             for e in instance.all_logs(out["run_id"], of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
             if e.dagster_event.event_specific_data.asset_key.to_user_string() == "rehearsal_clone"}
    assert sorted(gates) == sorted(["isolation_proven", "sanitized", "production_shaped", "data_rules"])
    assert all(g.passed for g in gates.values())
    for name, suite in (("data_rules", "data_rules"), ("sanitized", "sanitization")):  # each gate's own suite
        md = gates[name].metadata
        assert md["suite"].value == suite and isinstance(md["expectations"], MarkdownMetadataValue)
        assert "| rule | table | expectation | result | unexpected |" in md["expectations"].value
        assert md["failed"].value == 0 and md["evaluated"].value > 0
    assert "suite" not in gates["production_shaped"].metadata  # the catalog proof, no GX suite
    packet_md = mats["evidence_packet"]
    assert packet_md["verdict"].value == "REHEARSAL_PASSED"
    assert packet_md["rehearsal_report"].value == report
    assert packet_md["stages"].value.count("| passed |") == len(STAGES)
    tags = instance.get_run_by_id(out["run_id"]).tags
    assert tags["fix7/verdict"] == "REHEARSAL_PASSED" and tags["fix7"] == "PASSED"
    facts = verdict_facts(instance, out["run_id"])
    assert facts["stopped_at"] == "none"
    assert facts["clone_sha256"] == prov["clone"]["sha256"] and facts["attested_by"] == "test operator"


def test_contract_without_data_rules_runs_the_shape_gate_alone(dumps, change, instance, tmp_path):
    import yaml

    from fix7_pipeline.core.contract.from_yaml import dump_contract_yaml
    from fix7_pipeline.core.intake.contract_load import load_contract

    data = yaml.safe_load(dump_contract_yaml(load_contract(None)))
    del data["annotations"]["data_rules"]
    contract = tmp_path / "no-rules.yaml"
    contract.write_text(yaml.safe_dump(data))
    out = run_rehearsal(_config(dumps["custom"], *change, tmp_path / "ev", contract=str(contract)),
                        instance=instance, echo=False)
    shape = out["packet"]["stages"]["schema_shape"]
    assert out["verdict"] == "REHEARSAL_PASSED", [(s, v["status"], v["reason"]) for s, v in out["packet"]["stages"].items()
                                                  if v["status"] != "passed"]
    assert shape["status"] == "passed" and "no data rules declared" in shape["reason"]
    assert [f["rule"] for f in shape["notes"] if f["rule"].startswith("data_rules")] == ["data_rules.none_declared"]
    assert "gx" not in shape
    from dagster import DagsterEventType

    gate = next(e.dagster_event.event_specific_data for e in instance.all_logs(
        out["run_id"], of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == "data_rules")
    assert gate.passed and gate.description.startswith("no data rules declared") and gate.metadata["evaluated"].value == 0
    # issue 21: what a passing gate notes (isolated hosts the clone's pointers name) is not counted as findings
    iso = next(e.dagster_event.event_specific_data for e in instance.all_logs(
        out["run_id"], of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event.event_specific_data.check_name == "isolation_proven")
    notes = out["packet"]["stages"]["isolation"].get("notes") or []
    assert iso.passed and iso.metadata["finding_count"].value == 0 and out["packet"]["stages"]["isolation"]["findings"] == []
    assert notes and iso.metadata["note_count"].value == len(notes), notes


def test_packet_keys_honour_the_seed(dumps, change, instance, tmp_path):
    out = run_rehearsal(_config(dumps["custom"], *change, tmp_path / "ev", attested_by=""), instance=instance,
                        echo=False)
    prov = json.loads((tmp_path / "ev" / "clone-provenance.json").read_text())
    assert set(SEED) <= set(prov)
    row_keys = set(SEED["table_A_clone_provenance"][0])
    assert all(set(r) == row_keys for r in prov["table_A_clone_provenance"])
    assert set(SEED["exact_operator_input_needed"]) <= set(prov["exact_operator_input_needed"])
    assert prov["live_production_contact"] is False and prov["production_mutation"] is False
    assert prov["table_A_clone_provenance"][-1]["candidate_clone"].startswith("live production")
    assert out["verdict"] == prov["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert any("attestation" in p for p in prov["exact_operator_input_needed"]["problems"])
    assert out["packet"]["stages"]["intake"]["status"] == "blocked"
    assert out["packet"]["stages"]["isolation"]["status"] == "skipped"


def test_rollback_residue_is_counted_exactly(dumps, instance, tmp_path, server):
    apply_sql = tmp_path / "apply.sql"
    apply_sql.write_text(
        "alter table public.birth_registry add column fix7_flag boolean;\n"
        "insert into public.system_issues (code, severity, details, opened_at)\n"
        "  select 'FIX7_T', 'info', '{}'::jsonb, now() from generate_series(1, 3);\n"
        "update public.birth_registry set row_version = row_version + 1\n"
        "  where id in (select id from public.birth_registry order by id limit 2);\n"
        "create index fix7_t_idx on public.system_issues (code);\n")
    rollback_sql = tmp_path / "rollback.sql"
    rollback_sql.write_text("alter table public.birth_registry drop column fix7_flag;\n")
    with left_on_server(server) as left:
        out = run_rehearsal(_config(dumps["custom"], apply_sql, rollback_sql, tmp_path / "ev"), instance=instance,
                        echo=False)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_FAILED"
    assert packet["stages"]["restore_diff"]["status"] == "failed"
    tables = {t["table"].split(".")[-1]: t for t in packet["restore_diff"]["tables"]}
    assert set(tables) == {"system_issues", "birth_registry"}
    assert (tables["system_issues"]["added"], tables["system_issues"]["removed"],
            tables["system_issues"]["changed"]) == (3, 0, 0)
    assert (tables["birth_registry"]["added"], tables["birth_registry"]["removed"],
            tables["birth_registry"]["changed"]) == (0, 0, 2)
    assert any("fix7_t_idx" in o["object"] for o in packet["restore_diff"]["schema"])
    assert any(s["severity"] == "warning" for s in packet["restore_diff"]["sequences"])
    proof = packet["stages"]["restore_diff"]["anchor_restore_path"]
    assert proof["proven"] is True and proof["differs"] == [], proof
    assert "restored again" in proof["method"] and proof["restored_fingerprint_id"] == packet["anchor_id"]
    rerestored = proof["restore"]["database"]
    assert rerestored.startswith("fix7_rerestore_") and proof["restore"]["role"] == packet["restoring_role"]["role"]
    assert rerestored in packet["throwaways"]["created"] and rerestored in packet["throwaways"]["dropped"]
    assert left == set()


def _residue_change(tmp_path: Path) -> tuple[Path, Path]:
    """An apply that adds one system_issues row and a rollback that forgets it: the residue case."""
    apply_sql, rollback_sql = tmp_path / "apply.sql", tmp_path / "rollback.sql"
    apply_sql.write_text("insert into public.system_issues (code, severity, details, opened_at)\n"
                         "  values ('FIX7_T', 'info', '{}'::jsonb, now());\n")
    rollback_sql.write_text("update public.system_issues set severity = severity where code = 'NONE';\n")
    return apply_sql, rollback_sql


def _tampered_rehearsal(dumps, instance, tmp_path, server, after_stage: str, prefix: str, statements: list[str]):
    """The residue rehearsal, with a superuser (outside the guard) running `statements` in the run's database
    named `prefix…` as soon as `after_stage` ends (its materialization is in the run's event log); returns the
    run and the databases it tampered with."""
    from fix7_pipeline.core.evidence.report import EvidencePacket
    from fix7_pipeline_tests.pg import superuser

    apply_sql, rollback_sql = _residue_change(tmp_path)
    tampered: list[str] = []

    def tamper(stage, metadata, evidence_dir):
        if stage != after_stage:
            return
        target = next(x for x in EvidencePacket.load(Path(evidence_dir)).data["throwaways"]["created"]
                      if x.startswith(prefix))
        with superuser(server, target) as c:
            for statement in statements:
                c.execute(statement)
        tampered.append(target)

    out = run_rehearsal(_config(dumps["custom"], apply_sql, rollback_sql, tmp_path / "ev"),
                        instance=instance, echo=False, on_stage=tamper)
    return out, tampered


def test_restore_proof_fails_when_the_anchor_is_not_what_the_dump_restores(dumps, instance, tmp_path, server):
    """The clone is changed behind the pipeline's back after the gates and before the anchor (a superuser, outside
    the guard): the anchor then records a state the dump does not give back, and the proof says so by name."""
    with left_on_server(server) as left:
        out, tampered = _tampered_rehearsal(
            dumps, instance, tmp_path, server, "schema_shape", "fix7_clone_",
            ["update public.birth_registry set row_version = row_version + 1 "
             "where id = (select min(id::text)::uuid from public.birth_registry)",
             "select setval('public.system_issues_id_seq', 900000)"])
    packet = out["packet"]
    assert tampered and out["verdict"] == "REHEARSAL_FAILED"
    stage = packet["stages"]["restore_diff"]
    assert stage["status"] == "failed"
    assert [t["table"] for t in packet["restore_diff"]["tables"]] == ["public.system_issues"]  # the residue
    proof = stage["anchor_restore_path"]
    assert proof["proven"] is False and "error" not in proof, proof
    assert proof["differs"] == [
        {"section": "sequences", "object": "public.system_issues_id_seq", "change": "changed",
         "fields": ["last_value"]},
        {"section": "tables", "object": "public.birth_registry", "change": "changed", "fields": ["hash"]},
    ], proof["differs"]
    assert proof["restored_fingerprint_id"] != packet["anchor_id"]
    assert proof["restore"]["database"] in packet["throwaways"]["dropped"]
    assert left == set()


def test_change_failing_half_way_fails_apply(dumps, change, instance, tmp_path):
    apply_sql = tmp_path / "apply.sql"
    apply_sql.write_text("insert into public.system_issues (code, severity, details, opened_at)"
                         " values ('FIX7_T', 'info', '{}', now());\nselect 1/0;\n")
    out = run_rehearsal(_config(dumps["custom"], apply_sql, change[1], tmp_path / "ev"), instance=instance,
                        echo=False)
    st = out["packet"]["stages"]
    assert out["verdict"] == "REHEARSAL_FAILED"
    assert st["apply"]["status"] == "failed" and "division by zero" in st["apply"]["reason"]
    assert "line 2" in st["apply"]["reason"]
    assert st["rollback"]["status"] == "skipped" and st["restore_diff"]["status"] == "skipped"


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fix7_pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_missing_clone_exits_3_naming_operator_input(change, tmp_path):
    ev = tmp_path / "ev"
    r = _cli("rehearse", "--clone", str(tmp_path / "nope.dump"), "--apply", str(change[0]), "--rollback",
             str(change[1]), "--attested-by", "ops", "--evidence-dir", str(ev))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE" in r.stdout
    prov = json.loads((ev / "clone-provenance.json").read_text())
    need = prov["exact_operator_input_needed"]
    assert prov["isolation_proven"] == "N/A_NO_CLONE_TO_PROVE"
    assert any("nope.dump" in p for p in need["problems"])
    assert prov["table_A_clone_provenance"][0]["present"] is False


def test_usage_errors_exit_2_without_traceback(tmp_path):
    empty = tmp_path / "empty.sql"
    empty.write_text("-- nothing\n")
    r = _cli("rehearse", "--clone", "x.dump")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = _cli("rehearse", "--clone", "x.dump", "--apply", str(empty), "--rollback", str(empty), "--attested-by", "a")
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr
    latin = tmp_path / "latin.sql"
    latin.write_bytes("select 'caf\xe9';".encode("latin-1"))
    r = _cli("rehearse", "--clone", "x.dump", "--apply", str(latin), "--rollback", str(latin), "--attested-by", "a")
    assert r.returncode == 2 and "UTF-8" in r.stderr


def test_check_constraint_that_writes_a_server_file_is_contained(change, instance, tmp_path, server):
    marker = f"/tmp/fix7-marker-{uuid.uuid4().hex}"
    name = "fix7_t_hostile_check"
    builder.build_clone(name, registry_rows=50, seed=3)
    try:
        builder.run_sql(name, f"""
            create function public.touch_marker(t text) returns boolean language plpgsql as $$
            begin execute format('copy (select 1) to %L', '{marker}'); return true; end $$;
            alter table public.system_issues add constraint system_issues_marker check (public.touch_marker(code));
        """)
        dump = builder.dump_clone(name, "custom", tmp_path / "hostile.dump")
    finally:
        builder.drop_clone(name)
    Path(marker).unlink(missing_ok=True)  # building it on the factory ran the check once
    with left_on_server(server) as left:
        out = run_rehearsal(_config(dump, *change, tmp_path / "ev"), instance=instance, echo=False)
    assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert out["packet"]["stages"]["isolation"]["status"] == "blocked"
    assert out["packet"]["isolation_proven"] is False
    assert not Path(marker).exists()
    chain = verify_chain()  # the packet was not touched after it was sealed
    assert not [p for p in chain.problems if str(tmp_path) in p], chain.problems
    assert left == set()


def test_external_rehearsal_server_is_used_for_everything(dumps, change, instance, tmp_path, server):
    """--server points the rehearsal at another server we own; nothing touches the embedded one."""
    info = builder.factory_conninfo()
    url = f"postgresql://{info['user']}@/postgres?host={info['host']}&port={info['port']}"
    external = RehearsalServer.from_url(url, HostPolicy())
    with left_on_server(external) as left, left_on_server(server) as left_on_embedded:
        out = run_rehearsal(_config(dumps["custom"], *change, tmp_path / "ev", server_url=url), instance=instance,
                            echo=False)
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_PASSED", json.dumps(packet["stages"], indent=1)[:2000]
    rehearsal = [c for c in packet["connections"] if c["purpose"] != "dagster storage"]
    assert rehearsal and {c["host"] for c in rehearsal} == {str(info["host"])}
    # Dagster's own storage (on the embedded server) is in the ledger too, so the packet names every connection
    storage = [c for c in packet["connections"] if c["purpose"] == "dagster storage"]
    assert len(storage) == 1 and storage[0]["role"] == "dagster_storage"
    assert packet["request"]["server"]["kind"] == "external"
    with psycopg.connect(**info) as c:
        assert not c.execute("select datname from pg_database where datname = any(%s)",
                             (packet["throwaways"]["created"],)).fetchall()
    assert left == set() and left_on_embedded == set()


def test_restore_proof_fails_when_the_physical_anchor_changed_after_it_was_taken(dumps, instance, tmp_path, server):
    """The anchor copy is altered after snapshot_anchor (a superuser, outside the guard): the proof says so."""
    out, tampered = _tampered_rehearsal(
        dumps, instance, tmp_path, server, "snapshot_anchor", "fix7_anchor_",
        ["set default_transaction_read_only = off",
         "update public.birth_registry set row_version = row_version + 1 "
         "where id = (select min(id::text)::uuid from public.birth_registry)"])
    proof = out["packet"]["stages"]["restore_diff"]["anchor_restore_path"]
    assert tampered and proof["proven"] is False and proof["differs"] == [], proof
    assert proof["anchor_changed"] == [{"section": "tables", "object": "public.birth_registry", "change": "changed",
                                        "fields": ["hash"]}], proof


def test_the_cli_follows_the_run_through_its_events_and_tags(dumps, change, instance, tmp_path, capsys):
    """Each stage line is printed from that stage's materialization event; the packet folder and the verdict
    are the run's tags. Replaying the stored event log prints the same lines, so they come from the run."""
    from fix7_pipeline.cli.rehearse import Progress, RunFollower

    recorded_at_line = []  # each line comes when its stage ends: the next stage has not been recorded yet

    def journal_so_far(stage, metadata, evidence_dir):
        from fix7_pipeline.core.evidence.report import EvidencePacket

        stages = EvidencePacket.load(Path(evidence_dir)).data["stages"]
        recorded_at_line.append([s for s in STAGES if stages[s]["status"] != "skipped"])

    out = run_rehearsal(_config(dumps["custom"], *change, tmp_path / "ev"), instance=instance, echo=True,
                        on_stage=journal_so_far)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == list(STAGES)
    assert recorded_at_line == [list(STAGES[:n]) for n in range(1, len(STAGES) + 1)]
    assert all(line.split()[1] == "passed" for line in printed)
    tags = instance.get_run_by_id(out["run_id"]).tags
    assert tags["fix7/verdict"] == out["verdict"] == out["packet"]["verdict"] == "REHEARSAL_PASSED"
    assert tags["fix7/evidence"] == out["evidence_dir"] == str(tmp_path / "ev")
    follower = RunFollower(echo=True, progress=Progress())
    for entry in instance.all_logs(out["run_id"]):
        follower(entry)
    assert capsys.readouterr().out.splitlines() == printed
    assert follower.stages == list(STAGES) and follower.progress.evidence_dir == out["evidence_dir"]


def test_a_verdict_tag_that_disagrees_with_the_sealed_packet_fails_closed():
    from fix7_pipeline.cli.rehearse import _tagged_verdict
    from fix7_pipeline.core.shared.errors import Fix7Error

    assert _tagged_verdict({"fix7/verdict": "REHEARSAL_PASSED"}, {"verdict": "REHEARSAL_PASSED"}) == "REHEARSAL_PASSED"
    assert _tagged_verdict({}, {"verdict": "REHEARSAL_PASSED"}) is None  # not recorded (yet): the caller decides
    with pytest.raises(Fix7Error) as e:
        _tagged_verdict({"fix7/verdict": "REHEARSAL_PASSED"}, {"verdict": "REHEARSAL_FAILED"})
    assert e.value.rule == "verdict_mismatch" and e.value.exit_code == 3
