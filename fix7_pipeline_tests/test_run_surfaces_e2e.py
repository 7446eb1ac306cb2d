"""Issue 11.6: what the operator and the auditor see of a run outside the packet, on a real instance
(storage in its own database on the embedded PostgreSQL).

A CLI run is a run of the code location's job (remote origin, the `.dagster/repository` tag the job's Runs
tab and the Overview filter by), in a rehearsal partition of its own added before it was launched; it
carries the verdict, the reason, the dump's sha256, the attestation and the evidence as tags, and ends with
the verdict as its last event. A run launched outside the rehearsal partitions is refused before anything
runs; one launched without a partition gets one of its own from its launch (instance_guard.py). Blocked
runs are used: they decide at intake, within seconds.
"""

from __future__ import annotations

from contextlib import contextmanager

from pathlib import Path

import dagster as dg
import pytest

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.defs.intake import NO_PARTITION
from fix7_pipeline.defs.run_end import VERDICT_EVENT
from fix7_pipeline.defs.storage import run_folder
from fix7_pipeline_tests.e2e_support import DagsterHome, config, minimal_plain_dump, tiny_change, verdict_facts

NO_SAFE = "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.setenv("FIX7_AUDIT_CHAIN", str(tmp_path / "audit-chain.jsonl"))


@contextmanager
def _dropped(home):
    try:
        yield
    finally:
        home.drop()


@pytest.fixture
def home(tmp_path):
    h = DagsterHome.create(tmp_path / "home", "surfaces")
    try:
        yield h
    finally:
        h.drop()


def test_a_cli_run_is_a_run_of_the_code_locations_job_with_its_verdict_first(home, tmp_path, chain):
    change = tiny_change(tmp_path / "change")
    with home.instance() as inst:
        out = run_rehearsal(config(tmp_path / "no-such.dump", *change, tmp_path / "ev"), instance=inst, echo=False)
        assert out["verdict"] == NO_SAFE
        run = inst.get_run_by_id(out["run_id"])
        # what the UI lists a job's runs by: the remote origin of the workspace's location
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "fix7_pipeline"
        listed = inst.get_runs(dg.RunsFilter(job_name="fix7_rehearsal",
                                             tags={".dagster/repository": "__repository__@fix7_pipeline"}))
        assert [r.run_id for r in listed] == [out["run_id"]]
        # its own rehearsal partition, registered before the run
        key = run.tags["dagster/partition"]
        assert inst.get_dynamic_partitions("fix7_rehearsals") == [key]
        # the verdict and the operator's reason on the run
        assert run.tags["fix7/verdict"] == NO_SAFE and run.tags["fix7"] == "NO SAFE CLONE at intake"
        assert run.tags["fix7/reason"].startswith("intake: The dump at ") and "\n" not in run.tags["fix7/reason"]
        assert run.tags["fix7/evidence"] == out["evidence_dir"]
        # few, short tags; the rest is the verdict event's metadata (issue 21.4)
        assert sorted(k for k in run.tags if k.startswith("fix7")) == [
            "fix7", "fix7/chain_entry_sha256", "fix7/chain_seq", "fix7/evidence", "fix7/host", "fix7/packet_sha256",
            "fix7/reason", "fix7/server", "fix7/source", "fix7/verdict"]
        facts = verdict_facts(inst, out["run_id"])
        assert facts["stopped_at"] == "intake" and facts["clone_sha256"] == "none"
        assert facts["attested_by"] == "e2e test operator"
        # ... and as its last event, which is where the run page opens
        last = inst.all_logs(out["run_id"])[-1]
        assert last.message.startswith(f"{VERDICT_EVENT} {NO_SAFE}: intake: The dump at ")
        # the failed gate says the verdict first
        checks = [e.dagster_event.event_specific_data for e in inst.all_logs(
            out["run_id"], of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
        intake_safe = next(c for c in checks if c.check_name == "intake_safe")
        assert not intake_safe.passed and intake_safe.description.startswith(f"{NO_SAFE}: The dump at ")
        mats = {e.asset_materialization.asset_key.to_user_string(): e.asset_materialization for e in inst.all_logs(
            out["run_id"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}
        assert mats == {}  # a stage that ended the rehearsal hands nothing on: its failed gate carries it
        assert inst.get_run_by_id(out["run_id"]).status == dg.DagsterRunStatus.SUCCESS  # judged (issue 21.3)
        skipped = {e.step_key for e in inst.all_logs(out["run_id"], of_type=dg.DagsterEventType.STEP_SKIPPED)}
        assert skipped == {"rehearsal_clone", "snapshot_anchor", "apply", "rollback", "restore_diff",
                           "evidence_packet"}
        md = intake_safe.metadata
        assert md["verdict"].value == NO_SAFE and md["findings/dump_missing"].value == 1
        assert md["rehearsal_report"].value.startswith(f"# FIX7 rehearsal — {NO_SAFE}")
        assert "| intake | blocked |" in md["stages"].value
        assert not run_folder(inst, out["run_id"]).exists()  # the blocked run's stage outputs are gone


def test_a_second_blocked_rehearsal_is_a_partition_of_its_own(home, tmp_path, chain):
    change = tiny_change(tmp_path / "change")
    clone = minimal_plain_dump(tmp_path / "clone.sql")
    with home.instance() as inst:
        first = run_rehearsal(config(clone, *change, tmp_path / "ev1", attested_by=""), instance=inst, echo=False)
        second = run_rehearsal(config(clone, *change, tmp_path / "ev2", attested_by=""), instance=inst, echo=False)
        keys = [inst.get_run_by_id(o["run_id"]).tags["dagster/partition"] for o in (first, second)]
        assert keys[0] != keys[1] and sorted(inst.get_dynamic_partitions("fix7_rehearsals")) == sorted(keys)
        tags = inst.get_run_by_id(second["run_id"]).tags
        assert tags["fix7/reason"].startswith("intake: no operator attestation")
        facts = verdict_facts(inst, second["run_id"])
        assert facts["attested_by"] == "(none)" and len(facts["clone_sha256"]) == 64


def test_a_run_launched_without_a_partition_gets_one_of_its_own(home, tmp_path, chain):
    """Issue 21.6: the launch makes the rehearsal's partition (instance_guard.py): `<utc-timestamp>-<run8>`."""
    from fix7_pipeline.definitions import defs

    change = tiny_change(tmp_path / "change")
    with home.instance() as inst:
        result = defs.resolve_job_def("fix7_rehearsal").execute_in_process(
            run_config={"ops": {"clone_intake": {"config": config(tmp_path / "x.dump", *change, tmp_path / "ev")}}},
            instance=inst, raise_on_error=False)
        run = inst.get_run_by_id(result.run_id)
        key = run.tags["dagster/partition"]
        assert key.endswith("-" + result.run_id[:8]) and inst.get_dynamic_partitions("fix7_rehearsals") == [key]
        assert run.tags["fix7/verdict"] == NO_SAFE  # judged: the dump is missing


def test_a_run_outside_the_rehearsal_partitions_is_refused_before_anything_runs(tmp_path, chain):
    """Where no storage gives it a partition (Dagster's plain storage), intake refuses the run unjudged."""
    from fix7_pipeline.definitions import defs

    change = tiny_change(tmp_path / "change")
    home = DagsterHome.create(tmp_path / "plain_home", "nopart", guarded=False)
    with home.instance() as inst, _dropped(home):
        result = defs.resolve_job_def("fix7_rehearsal").execute_in_process(
            run_config={"ops": {"clone_intake": {"config": config(tmp_path / "x.dump", *change, tmp_path / "ev")}}},
            instance=inst, raise_on_error=False)
        assert not result.success
        run = inst.get_run_by_id(result.run_id)
        assert run.tags["fix7/verdict"] == "NOT_STARTED" and run.tags["fix7/reason"] == NO_PARTITION
        failure = next(e for e in inst.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_FAILURE))
        assert NO_PARTITION in failure.dagster_event.step_failure_data.user_failure_data.description
    assert not (tmp_path / "ev").exists()  # nothing was written: nothing was judged


def test_a_run_that_died_after_intake_is_sealed_from_its_journal_by_the_failure_hook(tmp_path, chain):
    """A run whose process died between stages leaves only its journal; fix7_verdict_sensor's hook renders and
    seals it once, tags the run with the seal's witness and reports the verdict as its last event. (The run of
    intake alone stands in for the dead process; fix7's storage refuses such a run, so this one is stored by
    Dagster's plain PostgreSQL storage.)"""
    import json

    from fix7_pipeline.core.evidence.audit import chain_by_run
    from fix7_pipeline.core.evidence.packet_files import JOURNAL, REPORT
    from fix7_pipeline.defs.automation import end_finished_run
    from fix7_pipeline.definitions import defs

    change = tiny_change(tmp_path / "change")
    clone = minimal_plain_dump(tmp_path / "clone.sql")
    evidence = tmp_path / "ev"
    home = DagsterHome.create(tmp_path / "plain_home", "died", guarded=False)
    with home.instance() as inst, _dropped(home):
        inst.add_dynamic_partitions("fix7_rehearsals", ["died-after-intake"])
        result = defs.resolve_job_def("fix7_rehearsal").execute_in_process(  # intake alone: nothing after it ran
            run_config={"ops": {"clone_intake": {"config": config(clone, *change, evidence)}}}, instance=inst,
            partition_key="died-after-intake", asset_selection=[dg.AssetKey("clone_intake")], raise_on_error=False)
        assert result.success and (evidence / JOURNAL).exists() and not (evidence / REPORT).exists()
        assert "fix7/verdict" not in inst.get_run_by_id(result.run_id).tags

        assert run_folder(inst, result.run_id).exists()
        end_finished_run(inst, result.run_id)
        assert not run_folder(inst, result.run_id).exists()
        report = json.loads((evidence / REPORT).read_text())
        run = inst.get_run_by_id(result.run_id)
        assert report["verdict"] and run.tags["fix7/verdict"] == report["verdict"]
        assert report["verdict"] != "REHEARSAL_PASSED"
        assert run.tags["fix7/packet_sha256"] and result.run_id in chain_by_run()
        assert inst.all_logs(result.run_id)[-1].message.startswith(f"{VERDICT_EVENT} {report['verdict']}")

        sealed = (evidence / REPORT).read_bytes()
        end_finished_run(inst, result.run_id)  # the sensor again: nothing rendered over, no second event
        assert (evidence / REPORT).read_bytes() == sealed
        assert sum(1 for e in inst.all_logs(result.run_id) if (e.message or "").startswith(VERDICT_EVENT)) == 1


def test_the_audit_chains_state_is_a_check_in_the_ui(home, tmp_path, chain):
    """Issue 21.4: audit_chain's check chain_verifies says what `fix7 audit --verify` says, reported again only
    when that changes: green after a sealed run, red naming the edited packet after one byte changed."""
    from fix7_pipeline.core.evidence.packet_files import REPORT
    from fix7_pipeline.defs.audit_chain import AUDIT_CHAIN, CHAIN_CHECK, audit_chain_sensor

    key = dg.AssetCheckKey(dg.AssetKey(AUDIT_CHAIN), CHAIN_CHECK)
    change = tiny_change(tmp_path / "change")
    with home.instance() as inst:
        out = run_rehearsal(config(tmp_path / "no-such.dump", *change, tmp_path / "ev"), instance=inst, echo=False)

        def tick(cursor):
            return audit_chain_sensor.evaluate_tick(dg.build_sensor_context(instance=inst, cursor=cursor))

        def latest():
            records = inst.event_log_storage.get_asset_check_execution_history(key, limit=10)
            return [r.event.dagster_event.event_specific_data for r in records if r.event]

        first = tick(None)
        assert latest()[0].passed and latest()[0].description.startswith("verified: 1 packet(s) re-hashed")
        assert "verified: 1 packet(s)" in first.skip_message
        again = tick(first.cursor)
        assert again.cursor == first.cursor and len(latest()) == 1  # unchanged: not reported twice

        report = Path(out["evidence_dir"]) / REPORT
        data = bytearray(report.read_bytes())
        data[data.index(NO_SAFE.encode())] = ord("X")
        report.write_bytes(bytes(data))
        broken = tick(again.cursor)
        now = latest()
        assert len(now) == 2 and not now[0].passed and now[0].description.startswith("AUDIT CHAIN BROKEN")
        assert any("packet edited" in p for p in now[0].metadata["problems"].value)
        assert broken.cursor != first.cursor
