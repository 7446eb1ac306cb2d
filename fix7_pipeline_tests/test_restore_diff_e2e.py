"""Rehearsals whose rollback leaves one kind of thing behind: each fails, naming what was left."""

from __future__ import annotations

import pytest

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, config

LEFT_BEHIND = [
    ("large object", "select lo_from_bytea(0, 'left behind');", "large_object_differs", "large object"),
    ("default privileges", "alter default privileges grant select on tables to public;", "schema_differs",
     "default privileges for"),
    ("publication", "create publication fix7_left for table public.birth_registry;", "schema_differs",
     "publication fix7_left"),
    ("database comment", "do $$ begin execute format('comment on database %I is %L', current_database(), "
     "'changed by apply'); end $$;", "schema_differs", "comment changed"),
    ("column statistics target", "alter table public.birth_registry alter column status set statistics 900;",
     "schema_differs", "column public.birth_registry.status"),
]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "leftbehind")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    name = "fix7_t_left_behind_src"
    builder.build_clone(name, registry_rows=100, seed=3)
    try:
        return builder.dump_clone(name, "custom", tmp_path_factory.mktemp("lb") / "clone.dump")
    finally:
        builder.drop_clone(name)


@pytest.mark.parametrize("kind,apply_sql,rule,named", [k if k[0] in ("large object", "default privileges") else
                                                       pytest.param(*k, marks=pytest.mark.slow) for k in LEFT_BEHIND],
                         ids=[k[0] for k in LEFT_BEHIND])
def test_a_rollback_that_leaves_it_behind_fails_naming_it(kind, apply_sql, rule, named, dump, instance, tmp_path):
    apply_file, rollback_file = tmp_path / "apply.sql", tmp_path / "rollback.sql"
    apply_file.write_text(apply_sql + "\n")
    rollback_file.write_text("select 1; -- forgets to undo the apply\n")
    out = run_rehearsal(config(dump, apply_file, rollback_file, tmp_path / "ev"), instance=instance, echo=False)
    stage = out["packet"]["stages"]["restore_diff"]
    assert out["verdict"] == "REHEARSAL_FAILED" and stage["status"] == "failed", stage
    hits = [f for f in stage["findings"] if f["rule"] == rule and named in f["message"]]
    assert hits, stage["findings"]
    assert not [f for f in stage["findings"] if f["rule"] == "fingerprint_blind_spot"], stage["findings"]
