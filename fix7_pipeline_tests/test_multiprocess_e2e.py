"""Issue 11.2: the rehearsal job under Dagster's multiprocess executor, each stage in a process of its own.

Nothing a later stage needs may live in one process's memory: the run's facts travel in the asset outputs
(the run-scoped IO manager), the server and its secrets come from the resource's EnvVars in each step
process, and the throwaway roles' passwords are derived there, never passed along. Each run is checked for
its verdict (the run's tag and the sealed packet), for one process per stage, for what the server holds
afterwards, and for the process's secrets (the throwaway key, the external server's derived role passwords)
nowhere in Dagster's storage, the stored outputs, the Dagster home or the evidence.
"""

from __future__ import annotations

import os

import dagster as dg
import pytest
from dagster._core.storage.tags import PARTITION_NAME_TAG

from fix7_pipeline.core.postgres.hosts import HostPolicy
from fix7_pipeline.core.shared.model import STAGES
from fix7_pipeline.core.postgres.server import THROWAWAY_KEY_ENV, RehearsalServer
from fix7_pipeline.defs.partitions import add_rehearsal, rehearsal_key
from fix7_pipeline.defs.stages import PACKET_DIR_TAG
from fix7_pipeline.defs.storage import run_folder
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import (DagsterHome, assert_blocked_at_gate, config, files_under, find_leaks,
                                             left_on_server, load_packet, multiprocess_rehearsal_job, planted, rnd,
                                             variant)

SOURCE = "fix7_t_multiprocess_src"
STEPS = ["clone_intake", "rehearsal_clone", "snapshot_anchor", "apply", "rollback", "restore_diff",
         "evidence_packet"]  # rehearsal_clone's step also evaluates its four gates


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "multiprocess")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiprocess")
    builder.build_clone(SOURCE, registry_rows=200, seed=5)
    try:
        clean = builder.dump_clone(SOURCE, "custom", out / "clean.dump")
        token = planted("planted deploy key", "ghp_", (rnd(36), True))
        name = variant(SOURCE, "fix7_t_multiprocess_tok",
                       f"update public.system_issues set details = details || "
                       f"jsonb_build_object('note', 'deploy key {token.value}') where id = 1")
        try:
            leaky = builder.dump_clone(name, "custom", out / "planted.dump")
        finally:
            builder.drop_clone(name)
    finally:
        builder.drop_clone(SOURCE)
    apply_sql, rollback_sql = builder.write_sample_change(out)
    return {"clean": clean, "planted": leaky, "token": token, "change": (apply_sql, rollback_sql)}


def _throwaway_key():
    """A planted secret as the process's throwaway key: every step process inherits it, nothing may keep it."""
    return planted("throwaway key", "Tk-", (rnd(32), True))


@pytest.fixture
def throwaway_key(monkeypatch):
    key = _throwaway_key()
    monkeypatch.setenv(THROWAWAY_KEY_ENV, key.value)
    return key


@pytest.fixture(scope="module")
def runs(home, dumps, server, tmp_path_factory):
    """A passing rehearsal, then a blocked one, in the module's Dagster home, each under a throwaway key of its own:
    run once, read by the tests of each run and by the catalog test of the pair (the blocked after the passing)."""
    out = {}
    for label, dump in (("passing", dumps["clean"]), ("blocked", dumps["planted"])):
        key = _throwaway_key()
        ev = tmp_path_factory.mktemp(f"multiprocess_{label}") / "ev"
        with pytest.MonkeyPatch.context() as mp, left_on_server(server) as left:
            mp.setenv(THROWAWAY_KEY_ENV, key.value)
            result, tags, starts = _run(home, config(dump, *dumps["change"], ev))
        out[label] = {"result": result, "tags": tags, "starts": starts, "ev": ev, "left": left, "key": key}
    return out


def _run(home: DagsterHome, cfg: dict):
    """The rehearsal, keyed as a rehearsal partition of its own as every launcher keys it."""
    with home.instance() as inst:
        key = add_rehearsal(inst, rehearsal_key())
        result = dg.execute_job(dg.reconstructable(multiprocess_rehearsal_job), instance=inst,
                                run_config={"ops": {"clone_intake": {"config": cfg}}},
                                tags={PARTITION_NAME_TAG: key}, raise_on_error=False)
        run = inst.get_run_by_id(result.run_id)
        starts = {e.step_key: e.dagster_event.pid for e in inst.all_logs(result.run_id)
                  if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
        return result, dict(run.tags), starts


def _secrets_kept(home: DagsterHome, evidence_dir, secrets: list) -> list[str]:
    blobs = {"dagster storage rows": home.storage_rows(), **files_under(home.path, "dagster_home"),
             **files_under(evidence_dir, "evidence")}
    assert len(blobs) > 5
    return find_leaks(blobs, secrets)


def test_a_passing_rehearsal_under_the_multiprocess_executor(home, runs):
    result, tags, starts, ev, left, throwaway_key = (runs["passing"][k] for k in ("result", "tags", "starts", "ev",
                                                                                   "left", "key"))
    packet = load_packet(ev)
    assert result.success, packet["stages"]
    assert tags["fix7/verdict"] == packet["verdict"] == "REHEARSAL_PASSED"
    assert tags[PACKET_DIR_TAG] == str(ev) and tags["fix7/evidence"] == str(ev)
    assert [packet["stages"][s]["status"] for s in STAGES] == ["passed"] * len(STAGES)
    # one process per stage, none of them this one: nothing could have crossed in memory
    assert sorted(starts) == sorted(STEPS)
    assert len(set(starts.values())) == len(STEPS) and os.getpid() not in starts.values()
    throwaways = packet["throwaways"]
    assert len(throwaways["created"]) >= 3 and set(throwaways["dropped"]) == set(throwaways["created"])
    assert left == set()
    assert _secrets_kept(home, ev, [throwaway_key]) == []


def test_a_blocked_rehearsal_under_the_multiprocess_executor(home, dumps, runs):
    result, tags, starts, ev, left, throwaway_key = (runs["blocked"][k] for k in ("result", "tags", "starts", "ev",
                                                                                   "left", "key"))
    packet = load_packet(ev)
    assert result.success  # the failed gate handed no clone on: the run reached its verdict
    assert tags["fix7/verdict"] == packet["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert packet["stages"]["isolation"]["status"] == "passed"
    assert packet["stages"]["sanitization"]["status"] == "blocked"
    assert any("system_issues" in (f.get("table") or "") for f in packet["stages"]["sanitization"]["findings"])
    assert [packet["stages"][s]["status"] for s in STAGES[3:]] == ["skipped"] * len(STAGES[3:])
    assert sorted(starts) == sorted(STEPS[:2])  # the stages after the gate never started
    assert len(set(starts.values())) == 2 and os.getpid() not in starts.values()
    with home.instance() as inst:  # the failed gate, in its own process, handed no clone on to snapshot_anchor
        sanitized = assert_blocked_at_gate(inst, result.run_id, "sanitized")
    assert sanitized.metadata["suite"].value == "sanitization" and sanitized.metadata["failed"].value >= 1
    # the blocking stage, in its own process, dropped what the restoring stage's process had created
    throwaways = packet["throwaways"]
    assert throwaways["created"] and set(throwaways["dropped"]) == set(throwaways["created"])
    assert left == set()
    # a blocked run keeps its stage outputs (the facts the next steps would have read): they hold no secret
    with home.instance() as inst:
        outputs = files_under(run_folder(inst, result.run_id), "stored outputs")
    assert sorted(outputs) == ["stored outputs/clone_intake.json"]  # a clone that failed a gate is not handed on
    assert find_leaks(outputs, [throwaway_key, dumps["token"]]) == []
    assert _secrets_kept(home, ev, [throwaway_key]) == []


def test_a_blocked_rehearsal_after_a_passing_one_leaves_the_catalog_showing_the_passing_one(home, runs):
    """Issue 21.3, as the UI's catalog reads it (Dagster's partition status, the assets' latest materializations,
    the checks' execution records): the blocked rehearsal fails no partition of any asset, materializes nothing
    after intake, leaves the gates it never ran Skipped (planned in a run that succeeded), and every stage's
    latest materialization is still the passing rehearsal's."""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    from fix7_pipeline.defs.partitions import REHEARSALS

    blocked, tags = runs["blocked"]["result"], runs["blocked"]["tags"]
    assert tags["fix7/verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    key = tags[PARTITION_NAME_TAG]
    with home.instance() as inst:
        passing = next(r for r in inst.get_runs(dg.RunsFilter(job_name="fix7_rehearsal"))
                       if r.tags.get("fix7/verdict") == "REHEARSAL_PASSED")  # the latest passing run
        for asset in STEPS:
            status = get_and_update_asset_status_cache_value(inst, dg.AssetKey(asset), REHEARSALS)
            assert list(status.deserialize_failed_partition_subsets(REHEARSALS).get_partition_keys()) == [], asset
            made = set(status.deserialize_materialized_partition_subsets(REHEARSALS).get_partition_keys())
            assert (key in made) == (asset == "clone_intake"), asset
            assert passing.tags[PARTITION_NAME_TAG] in made, asset
            if asset != "clone_intake":
                assert inst.get_latest_materialization_event(dg.AssetKey(asset)).run_id == passing.run_id, asset
        for gate, expected in (("isolation_proven", "SUCCEEDED"), ("sanitized", "FAILED"),
                               ("production_shaped", "PLANNED"), ("data_rules", "PLANNED")):
            history = inst.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(dg.AssetKey("rehearsal_clone"), gate), limit=10)
            record = next(h for h in history if h.run_id == blocked.run_id)
            assert record.status.value == expected, (gate, record.status)  # PLANNED in a SUCCESS run: Skipped
        assert inst.get_run_by_id(blocked.run_id).status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.slow
def test_an_external_server_rehearsal_under_the_multiprocess_executor(home, dumps, server, tmp_path, throwaway_key):
    """An external server's throwaway role gets a password: derived in each step process from the key, so the
    stages after the restore (other processes) log in as it, and it is stored nowhere."""
    info = builder.factory_conninfo()
    url = f"postgresql://{info['user']}@/postgres?host={info['host']}&port={info['port']}"
    external = RehearsalServer.from_url(url, HostPolicy(), throwaway_key=throwaway_key.value)
    ev = tmp_path / "ev"
    with left_on_server(external) as left, left_on_server(server) as left_on_embedded:
        result, tags, starts = _run(home, config(dumps["clean"], *dumps["change"], ev, server_url=url))
    packet = load_packet(ev)
    assert result.success, packet["stages"]
    assert tags["fix7/verdict"] == packet["verdict"] == "REHEARSAL_PASSED"
    assert packet["request"]["server"]["kind"] == "external"
    assert len(set(starts.values())) == len(STEPS)
    role = packet["restoring_role"]["role"]
    password = external.throwaway_login(role).password
    assert password and password != external.throwaway_login(role + "x").password
    assert left == set() and left_on_embedded == set()
    derived = planted("derived role password", (password, True))
    assert _secrets_kept(home, ev, [throwaway_key, derived]) == []
