"""Dumps written to steer our proofs: casts, operators, shadowed functions, triggers and settings.

Every function the dump defines first tries to write a marker file on the server (only a superuser
could) and then lies. The gate must never call one of them: no marker appears, and verdicts and exact
per-table counts are those of the honest clone with the same change.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, dumped_variant

MARKER = Path("/tmp") / f"fix7-steer-marker-{secrets.token_hex(6)}"

LIAR = """
create function public.leave_mark() returns void language plpgsql as $f$
begin
  begin
    execute format('copy (select 1) to %L', '{marker}');
  exception when others then null;
  end;
end $f$;
"""

# Shadows of what proofs call, with pg_catalog's signatures and with more specific ones; a cast, an
# operator and a concat taking the dump's own enum; triggers on every write.
SHADOWS = LIAR + """
create function public.md5(text) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'd41d8cd98f00b204e9800998ecf8427e'; end $f$;
create function public.md5(character varying) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'd41d8cd98f00b204e9800998ecf8427e'; end $f$;
create function public.sha256(bytea) returns bytea language plpgsql as $f$
  begin perform public.leave_mark(); return '\\x00'::bytea; end $f$;
create function public.encode(bytea, text) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'same'; end $f$;
create function public.row_to_json(record) returns json language plpgsql as $f$
  begin perform public.leave_mark(); return '{{}}'; end $f$;
create function public.format(text) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'same'; end $f$;
create function public.lower(text) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'same'; end $f$;
create function public.lower(character varying) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'same'; end $f$;
create type public.attack_state as enum ('quiet', 'loud');
create function public.attack_state_text(public.attack_state) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'same'; end $f$;
create cast (public.attack_state as text) with function public.attack_state_text(public.attack_state) as implicit;
create function public.concat(public.attack_state) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'same'; end $f$;
create function public.attack_state_eq(public.attack_state, public.attack_state) returns boolean
  language plpgsql as $f$ begin perform public.leave_mark(); return true; end $f$;
create operator public.= (leftarg = public.attack_state, rightarg = public.attack_state,
                          function = public.attack_state_eq);
create table public.attack_notes (id public.attack_state primary key, state public.attack_state not null,
                                  note text);
insert into public.attack_notes values ('quiet', 'loud', 'nothing to see'), ('loud', 'quiet', 'still nothing');
create function public.attack_trigger() returns trigger language plpgsql as $f$
  begin perform public.leave_mark(); return null; end $f$;
create trigger attack_on_write after insert or update or delete on public.attack_notes
  for each statement execute function public.attack_trigger();
create trigger attack_on_registry after insert or update or delete on public.birth_registry
  for each statement execute function public.attack_trigger();
"""

# Only where the restoring role runs it (never in the factory): put public before pg_catalog.
_PLANT = """
create function public.plant_search_path() returns boolean language plpgsql as $f$
begin
  if current_user like 'fix7\\_%' then
    execute format('alter database %I set search_path = public, pg_catalog', current_database());
    {role}
  end if;
  return true;
exception when others then return true;
end $f$;
"""

AT_RESTORE = SHADOWS + _PLANT.format(
    role="execute format('alter role %I set search_path = public, pg_catalog', current_user);") + """
create table public.attack_plant (id int primary key, ok boolean check (public.plant_search_path()));
insert into public.attack_plant values (1, true);
"""

DURING_APPLY = SHADOWS + _PLANT.format(role="") + """
create function public.plant_on_update() returns trigger language plpgsql as $f$
  begin perform public.plant_search_path(); return null; end $f$;
create trigger attack_plant_on_update after update on public.birth_registry
  for each statement execute function public.plant_on_update();
"""


# A production webhook in a 'request' operation: the honest clone's isolation proof must find it.
PROD_OPERATION = """
update public.directus_operations set type = 'request',
  options = json_build_object('url', 'https://hooks.prod.corp.internal/birth', 'method', 'POST')
where id = (select min(id::text)::uuid from public.directus_operations);
"""

# The same, with `type` an enum whose cast to text answers 'log': a proof that compares
# type::text = 'request' would never look at the URL.
LYING_CAST = PROD_OPERATION + LIAR + """
do $d$ declare labels text; begin
  select string_agg(quote_literal(t), ',') into labels
  from (select distinct type::text t from public.directus_operations union select 'log') s;
  execute 'create type public.op_kind as enum (' || labels || ')';
end $d$;
create function public.op_kind_text(public.op_kind) returns text language plpgsql as $f$
  begin perform public.leave_mark(); return 'log'; end $f$;
create cast (public.op_kind as text) with function public.op_kind_text(public.op_kind) as assignment;
alter table public.directus_operations alter column type type public.op_kind using type::text::public.op_kind;
"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "steer")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("steer")
    made = {}
    source = "fix7_t_steer_honest"
    builder.build_clone(source, registry_rows=300, seed=5)  # built once; each attack runs in a copy of it
    try:
        made["honest"] = builder.dump_clone(source, "custom", out / "honest.dump")
        for label, attack in (("shadows", SHADOWS), ("at_restore", AT_RESTORE), ("during_apply", DURING_APPLY),
                              ("prod_operation", PROD_OPERATION), ("lying_cast", LYING_CAST)):
            made[label] = dumped_variant(source, f"fix7_t_steer_{label}", attack.format(marker=MARKER),
                                         out / f"{label}.dump")
    finally:
        builder.drop_clone(source)
    return made


@pytest.fixture(scope="module")
def changes(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("changes")
    apply_sql, rollback_sql = builder.write_sample_change(d)
    sloppy = d / "sloppy_rollback.sql"
    text = rollback_sql.read_text()
    forgotten = "delete from public.system_issues where code in ('FIX7_CERTIFIED', 'FIX7_SUMMARY');"
    assert forgotten in text
    sloppy.write_text(text.replace(forgotten, ""))
    return {"correct": (apply_sql, rollback_sql), "sloppy": (apply_sql, sloppy)}


def _rehearse(instance, tmp_path, clone: Path, change: tuple[Path, Path]) -> dict:
    cfg = {"clone_path": str(clone), "apply_sql": str(change[0]), "rollback_sql": str(change[1]),
           "attested_by": "steering test", "evidence_dir": str(tmp_path / f"ev-{clone.stem}-{change[1].stem}"),
           "production_hosts": ["*.prod.corp.internal"]}
    assert not MARKER.exists()
    out = run_rehearsal(cfg, instance=instance, echo=False)
    assert not MARKER.exists(), "dump code ran as a superuser"
    return out


@pytest.fixture(scope="module")
def honest_sloppy(instance, tmp_path_factory, dumps, changes) -> dict:
    """The honest dump under the rollback that forgets two rows: what each attack is compared with, rehearsed once."""
    return _rehearse(instance, tmp_path_factory.mktemp("honest_sloppy"), dumps["honest"], changes["sloppy"])


def _rows(packet: dict) -> dict:
    return {t["table"]: (t["added"], t["removed"], t["changed"]) for t in packet["restore_diff"]["tables"]}


def _stages(packet: dict) -> str:
    return json.dumps({k: (v["status"], v["reason"]) for k, v in packet["stages"].items()}, indent=1)


def test_shadows_casts_operators_and_triggers_change_nothing(instance, tmp_path, dumps, changes, honest_sloppy):
    honest = honest_sloppy
    assert honest["verdict"] == "REHEARSAL_FAILED" and _rows(honest["packet"]), _stages(honest["packet"])
    passed = _rehearse(instance, tmp_path, dumps["shadows"], changes["correct"])
    assert passed["verdict"] == "REHEARSAL_PASSED", _stages(passed["packet"])
    hostile = _rehearse(instance, tmp_path, dumps["shadows"], changes["sloppy"])
    assert hostile["verdict"] == "REHEARSAL_FAILED", _stages(hostile["packet"])
    assert _rows(hostile["packet"]) == _rows(honest["packet"])
    assert hostile["packet"]["anchor_id"] != honest["packet"]["anchor_id"]  # the extra table is fingerprinted
    for stage in ("isolation", "sanitization", "schema_shape"):
        assert hostile["packet"]["stages"][stage]["status"] == "passed", _stages(hostile["packet"])


def test_a_search_path_planted_at_restore_is_an_isolation_finding(instance, tmp_path, dumps, changes):
    out = _rehearse(instance, tmp_path, dumps["at_restore"], changes["correct"])
    packet = out["packet"]
    assert out["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE", _stages(packet)
    assert packet["stages"]["isolation"]["status"] == "blocked"
    planted = [f for f in packet["stages"]["isolation"]["findings"] if f["rule"] == "database_setting"]
    assert sorted(f["message"].split(" for ")[1].split(" (")[0] for f in planted) == [
        f"database {packet['stages']['isolation']['restore']['database']}",
        f"role {packet['restoring_role']['role']}"], planted
    assert all("search_path" in f["message"] and "public, pg_catalog" not in f["message"] for f in planted)


def test_a_setting_planted_during_apply_cannot_hide_a_residue(instance, tmp_path, dumps, changes, honest_sloppy):
    honest = honest_sloppy
    out = _rehearse(instance, tmp_path, dumps["during_apply"], changes["sloppy"])
    packet = out["packet"]
    assert out["verdict"] == "REHEARSAL_FAILED", _stages(packet)
    assert _rows(packet) == _rows(honest["packet"]) and _rows(packet)
    rules = {f["rule"] for f in packet["stages"]["restore_diff"]["findings"]}
    assert {"rows_differ", "setting_planted"} <= rules, rules


def test_a_lying_cast_on_a_column_the_isolation_proof_reads_hides_nothing(instance, tmp_path, dumps, changes):
    def pointers(out):
        return sorted((f["table"], f["extra"]["host"], f["extra"]["rows"]) for f in out["packet"]["stages"]
                      ["isolation"]["findings"] if f["rule"] == "outward_pointer" and f.get("severity") != "note")

    honest = _rehearse(instance, tmp_path, dumps["prod_operation"], changes["correct"])
    lying = _rehearse(instance, tmp_path, dumps["lying_cast"], changes["correct"])
    assert honest["verdict"] == lying["verdict"] == "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
    assert pointers(lying) == pointers(honest) == [("directus_operations", "hooks.prod.corp.internal", 1)]
