"""Verified clone reuse (issue 25): a dump restored and gated once is rehearsed again from its template.

Real dumps, the real job, the embedded PostgreSQL 18. Templates are on here only (conftest turns them off for
every other test, so no test's clone carries into another's)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from psycopg import sql

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.evidence import audit
from fix7_pipeline.core.anchor import fingerprint
from fix7_pipeline.core.run import carried_anchor, clone_template_key, clone_templates as templates
from fix7_pipeline.core.shared.errors import Fix7Error
from fix7_pipeline.core.postgres.throwaways import create_throwaway, drop_throwaway
from fix7_pipeline.core.shared.model import STAGES
from fix7_pipeline.core.shared.paths import project_dir
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DAGSTER_ENV, PRODUCTION, DagsterHome, config, left_on_server
from fix7_pipeline_tests.pg import superuser

SOURCE = "fix7_t_templates_src"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "templates")
    yield h
    h.drop()


@pytest.fixture(scope="module")
def instance(home):
    with home.instance() as inst:
        yield inst


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    out = tmp_path_factory.mktemp("templates")
    builder.build_clone(SOURCE, registry_rows=300, seed=25)
    try:
        path = builder.dump_clone(SOURCE, "custom", out / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)
    return {"dump": path, "change": builder.write_sample_change(out)}


@pytest.fixture
def on(monkeypatch, server):
    """Templates on, and none on the server before or after the test."""
    monkeypatch.setenv(templates.ENV, "on")
    _drop_all(server)
    yield
    _drop_all(server)


def _drop_all(server):
    for t in templates.list_templates(server):
        templates.drop_template(server, t.name)
    templates.drop_orphan_roles(server)


def _rehearse(instance, dump, ev, **kw) -> dict:
    out = run_rehearsal(config(dump["dump"], *dump["change"], ev, **kw), instance=instance, echo=False)
    return out


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_second_rehearsal_reuses_the_verified_clone_and_cites_its_gating_packet(on, instance, dump, server,
                                                                                 tmp_path):
    with left_on_server(server) as left:
        first = _rehearse(instance, dump, tmp_path / "first")
    assert first["verdict"] == "REHEARSAL_PASSED"
    gating = first["packet"]
    kept = gating["clone_template"]
    assert kept["kept"] is True and kept["anchor_id"] == gating["anchor_id"]
    assert gating["clone_reuse"]["reused"] is False and "no template" in gating["clone_reuse"]["why"]
    # what the run left: the template, locked, fix7's; the role that owns its objects, no longer able to log in
    (t,) = templates.list_templates(server)
    assert t.name == kept["database"] and t.sound and t.owner == templates.OWNER_ROLE
    assert left - {f"role {templates.OWNER_ROLE}"} == {f"database {t.name}", f"role {kept['objects_role']}"}
    with superuser(server, server.admin_db) as c:
        assert c.execute("select rolcanlogin, rolpassword is null from pg_authid where rolname = %s",
                         (kept["objects_role"],)).fetchone() == (False, True)
        assert c.execute("select datallowconn, datistemplate, datacl::text from pg_database where datname = %s",
                         (t.name,)).fetchone()[:2] == (False, True)

    with left_on_server(server) as left:
        second = _rehearse(instance, dump, tmp_path / "second")
    assert second["verdict"] == "REHEARSAL_PASSED", [(s, v["status"], v["reason"], v.get("internal_error")) for s, v in second["packet"]["stages"].items() if v["status"] != "passed"]
    packet = second["packet"]
    reuse = packet["clone_reuse"]
    assert reuse["reused"] is True and reuse["template"] == t.name
    entry = audit.chain_by_run()[first["run_id"]]
    assert reuse["gating_packet"]["packet_sha256"] == _sha256(tmp_path / "first" / "rehearsal-report.json") \
        == entry["packet_sha256"]
    assert reuse["gating_packet"]["chain_seq"] == entry["seq"]
    # intake hashed and listed the dump; its data was read by the gating run's restore, whose packet vouches for it
    assert gating["clone"]["data"]["read_by"] == "restore"
    assert gating["stages"]["isolation"]["restore"]["statistics"]["analyzed"] is True  # the template plans as production
    assert packet["clone"]["sha256"] == gating["clone"]["sha256"]
    assert packet["clone"]["data"]["read_by"] == "the gating run's restore"
    assert packet["clone"]["data"]["vouched_by"] == {"template": t.name, "run_id": first["run_id"],
                                                     "packet_sha256": entry["packet_sha256"], "chain_seq": entry["seq"]}
    assert reuse["gating_packet"]["chain_entry_sha256"] == audit.entry_sha256(entry)
    assert reuse["carried_anchor_id"] == gating["anchor_id"] and reuse["check"] == templates.BY_SEAL
    # checked by its seal, which the gating packet holds with the fingerprint its anchor id hashes
    assert reuse["seal"] == {"oid": kept["oid"], "row_version": kept["row_version"]} == {
        "oid": t.oid, "row_version": t.row_version}
    assert fingerprint.anchor_id(gating[templates.FINGERPRINT_FIELD]) == gating["anchor_id"]
    assert fingerprint.digest(gating[templates.FINGERPRINT_FIELD]) == kept["anchor_fingerprint_sha256"]
    for stage in ("isolation", "sanitization", "schema_shape"):
        assert packet["stages"][stage]["status"] == "passed"
        assert packet["stages"][stage]["reason"].startswith(f"reused verified clone {reuse['key'][:12]}")
    assert all(packet["stages"][s]["status"] == "passed" for s in STAGES)
    assert "restore" not in packet["stages"]["isolation"]  # nothing was restored
    assert packet["isolation_proven"] is True and packet["restore_diff"]["tables"] == []
    prov = json.loads((tmp_path / "second" / "clone-provenance.json").read_text())
    assert prov["clone_reuse"]["gating_packet"]["packet_sha256"] == entry["packet_sha256"]
    assert "copied from the verified clone template" in prov["method"]
    assert left == set()  # the copy and its role are dropped; the template stays as it was
    with superuser(server, server.admin_db) as c:  # the copy's membership in the objects' role was for one statement
        assert c.execute("select count(*) from pg_auth_members m join pg_roles r on r.oid = m.roleid "
                         "where r.rolname = %s", (kept["objects_role"],)).fetchone()[0] == 0
    # no run's role can reach the template
    tw = create_throwaway(server)
    try:
        with pytest.raises(Fix7Error, match="Could not connect"):
            server.connect(t.name, tw.login, purpose="test: a run role tries the template").close()
    finally:
        drop_throwaway(server, tw)
    (after,) = templates.list_templates(server)
    assert after.sound and after.facts["uses"] == 1 and after.facts["anchor_id"] == gating["anchor_id"]
    assert audit.verify_chain().ok


def test_the_reused_clone_s_anchor_carries_the_proven_fingerprint_which_a_full_read_confirms(
        on, instance, dump, server, tmp_path, monkeypatch):
    """The anchor of a reused clone is not fingerprinted again: its fingerprint is the template check's, its
    schema part read again after REASSIGN OWNED. A full read of the anchor copy gives the same anchor id."""
    first = _rehearse(instance, dump, tmp_path / "first")
    assert first["verdict"] == "REHEARSAL_PASSED"
    seen = {}
    take = carried_anchor.take_anchor

    def take_and_read(ctx, carried, how):
        anchor = take(ctx, carried, how)
        with superuser(server, anchor.database) as c:
            seen["full"] = fingerprint.fingerprint(c)
        seen["carried"] = anchor.fingerprint
        return anchor

    monkeypatch.setattr(carried_anchor, "take_anchor", take_and_read)
    second = _rehearse(instance, dump, tmp_path / "second")
    packet = second["packet"]
    assert second["verdict"] == "REHEARSAL_PASSED"
    stage = packet["stages"]["snapshot_anchor"]
    assert stage["status"] == "passed" and "proven with the clone template check" in stage["reason"], stage
    assert "carried" not in packet["clone_reuse"]  # the fingerprint is the record's, never the packet's
    assert packet["clone_reuse"]["anchor_fingerprint"].startswith("carried from the template check")
    assert seen["carried"] == seen["full"] and fingerprint.anchor_id(seen["full"]) == packet["anchor_id"]
    # owners are in the fingerprint: the run's role owns the copy, so its anchor is not the gating run's id
    assert packet["anchor_id"] != first["packet"]["anchor_id"] == packet["clone_reuse"]["carried_anchor_id"]
    assert packet["restore_diff"]["tables"] == [] and packet["restore_diff"]["schema"] == []
    with superuser(server, server.admin_db) as c:  # no clone is left sealed
        assert c.execute("select count(*) from pg_database where not datallowconn and datname like 'fix7_%' "
                         "and not datistemplate").fetchone()[0] == 0


@pytest.mark.parametrize("window", ["written_while_sealed", "session_at_the_seal"])
def test_a_clone_touched_between_the_check_and_the_anchor_is_fingerprinted_in_full(
        window, on, instance, dump, server, tmp_path, monkeypatch):
    """An admin who opens the sealed clone, writes and closes it again: nothing is carried, the anchor is read in
    full and, not being the sealed state, stops the run as a server fault (no verdict on the change). A session
    already on the copy when the check seals it: the copy is fingerprinted in full, proven, and the anchor read in
    full."""
    _rehearse(instance, dump, tmp_path / "first")
    if window == "written_while_sealed":
        take = carried_anchor.take_anchor

        def write_then_take(ctx, carried, how):
            name = sql.Identifier(ctx.record.throwaway.database)
            with superuser(server, server.admin_db) as c:
                c.execute(sql.SQL("alter database {} with allow_connections true").format(name))
            with superuser(server, ctx.record.throwaway.database) as c:
                c.execute("update public.birth_registry set row_version = row_version + 1 "
                          "where ctid = (select ctid from public.birth_registry limit 1)")
            with superuser(server, server.admin_db) as c:
                c.execute(sql.SQL("alter database {} with allow_connections false").format(name))
            return take(ctx, carried, how)

        monkeypatch.setattr(carried_anchor, "take_anchor", write_then_take)
    else:
        seal = carried_anchor.seal

        def seal_with_a_stranger(c, database, own):
            with superuser(server, database):
                return seal(c, database, own)

        monkeypatch.setattr(carried_anchor, "seal", seal_with_a_stranger)
    second = _rehearse(instance, dump, tmp_path / "second")
    packet = second["packet"]
    assert packet["clone_reuse"]["reused"] is True
    stage = packet["stages"]["snapshot_anchor"]
    why = packet["clone_reuse"]["anchor_fingerprint"]
    assert why.startswith("read in full") and ("opened again" in why) == (window == "written_while_sealed"), why
    if window == "written_while_sealed":
        assert packet["clone_reuse"]["check"] == templates.BY_SEAL
        assert [f["rule"] for f in stage["findings"]] == [carried_anchor.NOT_AS_SEALED], stage
        assert "is not the state its gating packet sealed" in stage["reason"]
        assert second["verdict"] == "REHEARSAL_SERVER_FAULT"
    else:
        assert packet["clone_reuse"]["check"] == templates.IN_FULL
        assert stage["status"] == "passed" and "template check" not in stage["reason"], stage
        assert second["verdict"] == "REHEARSAL_PASSED"


@pytest.mark.parametrize("what", ["contract", *(pytest.param(w, marks=pytest.mark.slow)  # test-slow: the same key
                                                 for w in ("rule_set", "fix7_version"))])
def test_a_changed_contract_rule_set_or_fix7_forces_a_fresh_gate(what, on, instance, dump, server, tmp_path,
                                                                  monkeypatch):
    first = _rehearse(instance, dump, tmp_path / "first")
    assert first["packet"]["clone_template"]["kept"] is True
    kw = {}
    if what == "contract":
        contract = tmp_path / "contract.yaml"
        from fix7_pipeline.core.intake.contract_load import load_contract

        data = load_contract(None).as_dict()
        data.setdefault("annotations", {})["hot_tables"] = ["public.birth_registry"]
        contract.write_text(json.dumps(data))
        kw["contract"] = str(contract)
    elif what == "rule_set":
        monkeypatch.setattr(clone_template_key, "rule_set_version", lambda: "kingfisher 9.9.9, fix7 rules edited")
    else:
        monkeypatch.setattr(clone_template_key, "fix7_version", lambda: "0.1.0+another")
    second = _rehearse(instance, dump, tmp_path / "second", **kw)
    assert second["verdict"] == "REHEARSAL_PASSED"
    reuse = second["packet"]["clone_reuse"]
    assert reuse["reused"] is False and reuse["why"] == "no template of this key on the server"
    assert second["packet"]["stages"]["isolation"]["restore"]["tool"]  # restored and gated again
    assert "reused" not in second["packet"]["stages"]["sanitization"]["reason"]
    # and that run keeps a template of its own key beside the first
    assert {t.name for t in templates.list_templates(server)} == {
        first["packet"]["clone_template"]["database"], second["packet"]["clone_template"]["database"]}


def test_a_template_the_admin_altered_is_detected_and_not_used(on, instance, dump, server, tmp_path):
    first = _rehearse(instance, dump, tmp_path / "first")
    name = first["packet"]["clone_template"]["database"]
    with superuser(server, server.admin_db) as c:
        c.execute(sql.SQL("alter database {} with allow_connections true").format(sql.Identifier(name)))
    with superuser(server, name) as c:
        c.execute("update public.birth_registry set row_version = row_version + 1 "
                  "where ctid = (select ctid from public.birth_registry limit 1)")
    with superuser(server, server.admin_db) as c:
        c.execute(sql.SQL("alter database {} with allow_connections false").format(sql.Identifier(name)))
    second = _rehearse(instance, dump, tmp_path / "second")
    reuse = second["packet"]["clone_reuse"]
    assert reuse["reused"] is False and reuse["discarded"] is True, reuse
    # told by its pg_database row, before any copy: nothing was fingerprinted
    assert "changed behind fix7's back" in reuse["why"] and "found_anchor_id" not in reuse
    kept = first["packet"]["clone_template"]
    assert reuse["recorded_seal"] == {"oid": kept["oid"], "row_version": kept["row_version"]}
    assert reuse["found_seal"]["oid"] == kept["oid"] and reuse["found_seal"]["row_version"] != kept["row_version"]
    # the full path ran on the dump itself, passed, and its gated anchor is the template now
    assert second["verdict"] == "REHEARSAL_PASSED"
    assert second["packet"]["stages"]["isolation"]["restore"]["tool"]
    (t,) = templates.list_templates(server)
    assert t.facts["gating_run_id"] == second["run_id"] and t.facts["anchor_id"] == second["packet"]["anchor_id"]


def test_a_template_whose_gating_packet_was_edited_is_not_used(on, instance, dump, server, tmp_path):
    first = _rehearse(instance, dump, tmp_path / "first")
    report = tmp_path / "first" / "rehearsal-report.json"
    report.write_text(report.read_text().replace('"verdict": "REHEARSAL_PASSED"', '"verdict": "REHEARSAL_PASSED" '))
    second = _rehearse(instance, dump, tmp_path / "second")
    reuse = second["packet"]["clone_reuse"]
    assert reuse["reused"] is False and reuse["discarded"] is True and "packet edited" in reuse["why"], reuse
    assert "vouched_by" not in second["packet"]["clone"]["data"]  # a packet that does not hold vouches for nothing
    assert second["verdict"] == "REHEARSAL_PASSED"
    (t,) = templates.list_templates(server)  # the new gated clone replaced it
    assert t.facts["gating_run_id"] == second["run_id"] != first["run_id"]


def test_a_gating_packet_whose_recorded_row_version_was_edited_is_not_used(on, instance, dump, server, tmp_path):
    """An admin who altered the template (a new row version) and wrote that version into its gating packet: the
    packet's seal in the audit chain breaks, and the template is discarded."""
    first = _rehearse(instance, dump, tmp_path / "first")
    kept = first["packet"]["clone_template"]
    name = kept["database"]
    with superuser(server, server.admin_db) as c:
        c.execute(sql.SQL("alter database {} with allow_connections true").format(sql.Identifier(name)))
        c.execute(sql.SQL("alter database {} with allow_connections false").format(sql.Identifier(name)))
        moved = c.execute("select xmin::text from pg_database where datname = %s", (name,)).fetchone()[0]
    assert moved != kept["row_version"]
    report = tmp_path / "first" / "rehearsal-report.json"
    text = report.read_text()
    recorded = f'"row_version": "{kept["row_version"]}"'
    assert text.count(recorded) == 1
    report.write_text(text.replace(recorded, f'"row_version": "{moved}"'))
    second = _rehearse(instance, dump, tmp_path / "second")
    reuse = second["packet"]["clone_reuse"]
    assert reuse["reused"] is False and reuse["discarded"] is True and "packet edited" in reuse["why"], reuse
    assert second["verdict"] == "REHEARSAL_PASSED" and second["packet"]["stages"]["isolation"]["restore"]["tool"]


ROW_EDIT = ("update public.birth_registry set row_version = row_version + 1 "
            "where ctid = (select ctid from public.birth_registry limit 1)")


def _alter_as_a_file_edit_would(monkeypatch, server, statement: str = ROW_EDIT):
    """The template's content made to differ from the fingerprint its packet seals while its pg_database row is the
    one sealed: what an edit of its files or a change in single-user mode leaves. Done honestly through a session
    on the anchor between its fingerprint and its lock (a session an admin held there), so the row version fix7
    records is the template's real one and nothing of fix7's check is bypassed."""
    lock = templates._lock_template

    def write_then_lock(c, name, role, facts):
        with superuser(server, name) as s:
            s.execute("set default_transaction_read_only = off")  # the anchor is read-only for the run's role
            s.execute(statement)
        return lock(c, name, role, facts)

    monkeypatch.setattr(templates, "_lock_template", write_then_lock)


def test_a_template_altered_outside_postgresql_fails_the_restore_diff_as_a_server_fault_and_is_discarded(
        on, instance, dump, server, tmp_path, monkeypatch):
    from fix7_pipeline.core.run import template_fault

    with monkeypatch.context() as m:
        _alter_as_a_file_edit_would(m, server)
        first = _rehearse(instance, dump, tmp_path / "first")
    kept = first["packet"]["clone_template"]
    assert kept["kept"] is True
    second = _rehearse(instance, dump, tmp_path / "second")
    packet = second["packet"]
    assert packet["clone_reuse"]["reused"] is True and packet["clone_reuse"]["check"] == templates.BY_SEAL  # unseen
    stage = packet["stages"]["restore_diff"]
    assert stage["status"] == "failed" and [f["rule"] for f in stage["findings"]] == [template_fault.RULE], stage
    assert stage["reason"].startswith("Template altered outside PostgreSQL; discarded"), stage["reason"]
    assert stage["findings"][0]["extra"]["found_anchor_id"] != stage["findings"][0]["extra"]["carried_anchor_id"]
    assert second["verdict"] == "REHEARSAL_SERVER_FAULT"  # no verdict on the change
    assert "anchor_restore_path" not in stage  # the dump is not restored again to prove a rollback not judged
    assert templates.list_templates(server) == []  # discarded: the next run restores and gates the dump afresh
    third = _rehearse(instance, dump, tmp_path / "third")
    assert third["verdict"] == "REHEARSAL_PASSED" and third["packet"]["clone_reuse"]["reused"] is False


def test_a_template_whose_schema_was_altered_where_its_seal_is_blind_is_discarded_at_the_handover(
        on, instance, dump, server, tmp_path, monkeypatch):
    """The schema part is read again after REASSIGN OWNED: one that differs from the sealed fingerprint in more
    than owners is a template altered, found before anything is rehearsed on it."""
    with monkeypatch.context() as m:
        _alter_as_a_file_edit_would(m, server, "create index fix7_t_added on public.birth_registry (row_version)")
        first = _rehearse(instance, dump, tmp_path / "first")
    assert first["packet"]["clone_template"]["kept"] is True
    second = _rehearse(instance, dump, tmp_path / "second")
    reuse = second["packet"]["clone_reuse"]
    assert reuse["reused"] is False and reuse["discarded"] is True, reuse
    assert "schema differs from the anchor fingerprint its gating packet sealed in more than owners" in reuse["why"]
    assert second["verdict"] == "REHEARSAL_PASSED" and second["packet"]["stages"]["isolation"]["restore"]["tool"]
    (t,) = templates.list_templates(server)
    assert t.facts["gating_run_id"] == second["run_id"]


def test_a_reused_clone_whose_rollback_does_not_restore_is_told_apart_from_an_altered_template(
        on, instance, dump, server, tmp_path):
    from fix7_pipeline.core.run import template_fault

    first = _rehearse(instance, dump, tmp_path / "first")
    assert first["packet"]["clone_template"]["kept"] is True
    apply_sql = tmp_path / "apply.sql"
    apply_sql.write_text(dump["change"][0].read_text() + "\ncreate table public.fix7_t_left_behind (x integer);\n")
    out = run_rehearsal(config(dump["dump"], apply_sql, dump["change"][1], tmp_path / "second"), instance=instance,
                        echo=False)
    packet = out["packet"]
    assert packet["clone_reuse"]["reused"] is True
    stage = packet["stages"]["restore_diff"]
    assert stage["status"] == "failed" and template_fault.RULE not in {f["rule"] for f in stage["findings"]}
    assert stage["template_check"] == template_fault.ROLLBACK and stage["anchor_restore_path"]["proven"] is True
    assert out["verdict"] == "REHEARSAL_FAILED"
    (t,) = templates.list_templates(server)  # the template holds: it stays
    assert t.facts["gating_run_id"] == first["run_id"]


@pytest.mark.slow
def test_an_unlocked_template_is_not_used(on, instance, dump, server, tmp_path):
    first = _rehearse(instance, dump, tmp_path / "first")
    name = first["packet"]["clone_template"]["database"]
    with superuser(server, server.admin_db) as c:
        c.execute(sql.SQL("alter database {} with allow_connections true").format(sql.Identifier(name)))
    second = _rehearse(instance, dump, tmp_path / "second")
    assert second["packet"]["clone_reuse"]["reused"] is False and second["packet"]["clone_reuse"]["discarded"]
    assert second["verdict"] == "REHEARSAL_PASSED"


def test_no_template_is_kept_whose_fingerprint_would_print_a_name_a_secret_rule_matched(on, instance, dump, server,
                                                                                         tmp_path, monkeypatch):
    """The gating packet must seal the anchor's full fingerprint, which names objects; a name the scan redacted is
    never printed, so such an anchor is not kept as a template (a slower next run, never a leak)."""
    from fix7_pipeline.core.sanitization.redact import RedactedNames

    def with_a_redacted_table(state):
        names = RedactedNames()
        names.add("public.birth_registry")
        return names

    monkeypatch.setattr(templates.RedactedNames, "from_state", staticmethod(with_a_redacted_table))
    first = _rehearse(instance, dump, tmp_path / "first")
    kept = first["packet"]["clone_template"]
    assert kept["kept"] is False and "matched a secret rule" in kept["why"], kept
    assert templates.FINGERPRINT_FIELD not in first["packet"] and templates.list_templates(server) == []
    assert "public.birth_registry" not in (tmp_path / "first" / "rehearsal-report.json").read_text().split(
        '"clone_template"')[1]


def test_fresh_clone_forces_the_full_path(on, instance, dump, server, tmp_path):
    first = _rehearse(instance, dump, tmp_path / "first")
    second = _rehearse(instance, dump, tmp_path / "second", fresh_clone=True)
    assert second["packet"]["clone_reuse"] == {"reused": False, "key": first["packet"]["clone_template"]["key"],
                                                 "template": first["packet"]["clone_template"]["database"],
                                                 "why": "--fresh-clone: restored and gated again"}
    assert second["packet"]["stages"]["isolation"]["restore"]["tool"]
    assert second["packet"]["clone"]["data"]["read_by"] == "restore"
    assert second["packet"]["clone_template"]["kept"] is False  # the one there stays
    (t,) = templates.list_templates(server)
    assert t.facts["gating_run_id"] == first["run_id"]


def _start(home: DagsterHome, dump: dict, ev) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in DAGSTER_ENV and k != "FIX7_DEBUG"}
    env.update(home.env, **{templates.ENV: "on"})
    args = ["rehearse", "--clone", str(dump["dump"]), "--apply", str(dump["change"][0]), "--rollback",
            str(dump["change"][1]), "--attested-by", "e2e", "--production-host", PRODUCTION, "--evidence-dir",
            str(ev), "--json"]
    return subprocess.Popen([sys.executable, "-c", _CLI_SAYING_WHETHER_GX_WAS_IMPORTED, *args], cwd=str(project_dir()),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# `fix7 …` as `python -m fix7_pipeline.cli` runs it, with an exit handler saying last, on stderr, whether Great
# Expectations was imported (fix7 leaves by os._exit after running the exit handlers: cli/main.py's `leave`)
_CLI_SAYING_WHETHER_GX_WAS_IMPORTED = (
    "import atexit, runpy, sys\n"
    "sys.argv[0] = 'fix7'\n"
    "atexit.register(lambda: print('gx imported:', 'great_expectations' in sys.modules, file=sys.stderr))\n"
    "runpy.run_module('fix7_pipeline.cli', run_name='__main__', alter_sys=True)\n")


def test_two_rehearsals_of_one_dump_at_once_share_one_template(on, home, instance, dump, server, tmp_path):
    first = _rehearse(instance, dump, tmp_path / "first")
    with left_on_server(server) as left:
        procs = [_start(home, dump, tmp_path / f"run{i}") for i in (1, 2)]
        results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    packets = [json.loads((tmp_path / f"run{i}" / "rehearsal-report.json").read_text()) for i in (1, 2)]
    for p in packets:
        assert p["verdict"] == "REHEARSAL_PASSED"
        assert p["clone_reuse"]["reused"] is True
        assert p["clone_reuse"]["gating_packet"]["run_id"] == first["run_id"]
    # a repeat runs no gate, so it never loads the gates' library (a sixth of a 1M repeat on two cores)
    assert [err.strip().splitlines()[-1] for _, err in results] == ["gx imported: False"] * 2
    assert left == set()
    (t,) = templates.list_templates(server)
    assert t.facts["uses"] == 2


@pytest.mark.slow
def test_two_first_rehearsals_at_once_keep_one_template(on, home, dump, server, tmp_path):
    """No template yet: both restore and gate; one keeps its anchor as the template, the other says why not."""
    procs = [_start(home, dump, tmp_path / f"run{i}") for i in (1, 2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    packets = [json.loads((tmp_path / f"run{i}" / "rehearsal-report.json").read_text()) for i in (1, 2)]
    assert [p["clone_reuse"]["reused"] for p in packets] == [False, False]
    kept = sorted(p["clone_template"]["kept"] for p in packets)
    assert kept == [False, True], [p["clone_template"] for p in packets]
    loser = next(p for p in packets if not p["clone_template"]["kept"])
    assert loser["clone_template"]["why"] == "a template of this key is already on the server"
    (t,) = templates.list_templates(server)
    assert t.facts["gating_run_id"] == next(p["run_id"] for p in packets if p["clone_template"]["kept"])
    assert t.sound


def test_fix7_clones_lists_caps_and_drops(on, home, instance, dump, server, tmp_path):
    first = _rehearse(instance, dump, tmp_path / "first")
    name = first["packet"]["clone_template"]["database"]
    listed = home.cli("clones", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    (row,) = data["templates"]
    assert row["database"] == name and row["locked"] is True and row["gating_run_id"] == first["run_id"]
    assert row["bytes"] > 0 and data["budget_bytes"] == templates.DEFAULT_MAX_BYTES
    table = home.cli("clones")
    assert name in table.stdout and first["run_id"] in table.stdout
    missing = home.cli("clones", "--drop", templates.PREFIX + "0" * 24)
    assert missing.returncode == 2 and "no clone template" in missing.stderr and "Traceback" not in missing.stderr
    capped = home.cli("clones", "--max-bytes", str(2 * row["bytes"]), "--json")
    assert json.loads(capped.stdout)["dropped"] == []  # it fits
    capped = home.cli("clones", "--max-bytes", "1M", "--json")
    assert json.loads(capped.stdout)["dropped"] == [name] and json.loads(capped.stdout)["templates"] == []
    second = _rehearse(instance, dump, tmp_path / "second")
    name = second["packet"]["clone_template"]["database"]
    dropped = home.cli("clones", "--drop", name)
    assert dropped.returncode == 0 and f"dropped {name}" in dropped.stdout
    assert templates.list_templates(server) == []
    with superuser(server, server.admin_db) as c:  # nor the role its objects belonged to
        assert not c.execute("select 1 from pg_roles where rolname = %s",
                             (second["packet"]["clone_template"]["objects_role"],)).fetchone()


# -- the same on an external server, as a managed-cloud login (LOGIN CREATEDB CREATEROLE, no superuser) ----------

@pytest.mark.parametrize("major", [15, pytest.param(18, marks=pytest.mark.slow)])
def test_an_external_server_reuses_its_template_as_a_cloud_login(major, on, instance, dump, tmp_path, monkeypatch):
    from fix7_pipeline_tests.external_pg import CLOUD_ADMIN, PG15_BIN, available, start_cluster, wheel_bin

    if major == 15 and not (available(PG15_BIN) and builder.system_pg_dump(15) is not None):
        pytest.skip("no Debian PostgreSQL 15 (make system-pg)")
    cluster = start_cluster(major, PG15_BIN if major == 15 else wheel_bin())
    try:
        source = "fix7_t_templates_ext"
        builder.build_clone(source, registry_rows=120, seed=26, major=15 if major == 15 else None)
        try:
            clone = builder.dump_clone(source, "custom", tmp_path / "clone.dump", major=15 if major == 15 else None)
        finally:
            builder.drop_clone(source, major=15 if major == 15 else None)
        monkeypatch.setenv("FIX7_REHEARSAL_SERVER_PASSWORD", cluster.password(CLOUD_ADMIN))
        runs = [run_rehearsal(config(clone, *dump["change"], tmp_path / f"ev{i}", server_url=cluster.url(CLOUD_ADMIN)),
                              instance=instance, echo=False) for i in (1, 2)]
        assert [r["verdict"] for r in runs] == ["REHEARSAL_PASSED"] * 2, [
            (s, v["status"], v["reason"]) for r in runs for s, v in r["packet"]["stages"].items()
            if v["status"] != "passed"]
        assert runs[0]["packet"]["clone_template"]["kept"] is True, runs[0]["packet"]["clone_template"]
        reuse = runs[1]["packet"]["clone_reuse"]
        assert reuse["reused"] is True, reuse
        assert reuse["gating_packet"]["run_id"] == runs[0]["run_id"]
        assert reuse["key_parts"]["server"]["version_num"] // 10000 == major
        assert {c["host"] for c in runs[1]["packet"]["connections"] if c["purpose"] != "dagster storage"} == \
            {"127.0.0.1"}
    finally:
        cluster.stop()
