"""Issue 22: end-to-end rehearsals that turn red when a guarded line is broken on purpose.

- the restore diff reads through pinned, read-only sessions (row_security=off): a table whose forced
  row-level-security policy hides the rows the rollback left behind cannot pass as "rows back as anchored";
- the default evidence folder carries the run id: the same dump rehearsed twice in the same second gets two
  folders, two sealed packets;
- large_object_diff reports removed objects: a rollback that lo_unlinks an anchored large object fails.
"""

from __future__ import annotations

import datetime as real_dt
import types

import pytest

from fix7_pipeline.cli.rehearse import run_rehearsal
from fix7_pipeline.core.evidence import evidence_dir as packet_dirs
from fix7_pipeline.core.evidence.packet_files import REPORT
from fix7_pipeline.demo import builder
from fix7_pipeline_tests.e2e_support import DagsterHome, config, dumped_variant, load_packet

SOURCE = "fix7_t_mutations_src"
ANCHORED_LO = 424242
VARIANT = f"""
create table public.ledger (id integer primary key, note text not null);
insert into public.ledger values (1, 'opening'), (2, 'closing');
select pg_catalog.lo_from_bytea({ANCHORED_LO}, 'anchored large object');
"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = DagsterHome.create(tmp_path_factory.mktemp("dagster_home"), "mutations")
    with home.instance() as inst:
        yield inst
    home.drop()


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    builder.build_clone(SOURCE, registry_rows=60, seed=22)
    try:
        yield dumped_variant(SOURCE, f"{SOURCE}_v", VARIANT, tmp_path_factory.mktemp("mut") / "clone.dump")
    finally:
        builder.drop_clone(SOURCE)


def _rehearse(instance, dump, tmp_path, apply_sql: str, rollback_sql: str, evidence_dir="ev") -> dict:
    change = tmp_path / "change"
    change.mkdir(parents=True, exist_ok=True)
    (change / "apply.sql").write_text(apply_sql)
    (change / "rollback.sql").write_text(rollback_sql)
    ev = str(tmp_path / evidence_dir) if evidence_dir else ""
    return run_rehearsal(config(dump, change / "apply.sql", change / "rollback.sql", ev), instance=instance,
                         echo=False)


def test_rows_a_forced_row_security_policy_hides_are_never_reported_back(instance, dump, tmp_path):
    """An unpinned session (row_security on) would see ledger without the leftover row and call its rows back as
    anchored; the pinned one may not read through the policy, so the leftover is reported, never hidden."""
    out = _rehearse(instance, dump, tmp_path,
                    "insert into public.ledger values (100, 'left behind');\n"
                    "alter table public.ledger enable row level security;\n"
                    "alter table public.ledger force row level security;\n"
                    "create policy anchored_only on public.ledger using (id < 100);\n",
                    "select 1; -- forgets the row and the policy\n")
    stage = out["packet"]["stages"]["restore_diff"]
    assert out["verdict"] == "REHEARSAL_FAILED" and stage["status"] == "failed", stage
    rows = [f for f in stage["findings"] if "ledger" in f["message"] and f["rule"] != "schema_differs"]
    assert rows, stage["findings"]
    assert any(f["rule"] == "rows_differ" or "row-level security" in f["message"] for f in rows), rows


def test_a_rollback_that_unlinks_an_anchored_large_object_fails(instance, dump, tmp_path):
    out = _rehearse(instance, dump, tmp_path, "select 1;\n", f"select pg_catalog.lo_unlink({ANCHORED_LO});\n")
    stage = out["packet"]["stages"]["restore_diff"]
    assert out["verdict"] == "REHEARSAL_FAILED" and stage["status"] == "failed", stage
    assert [f["message"] for f in stage["findings"] if f["rule"] == "large_object_differs"] == [
        f"large object {ANCHORED_LO} removed after rollback"], stage["findings"]
    assert out["packet"]["restore_diff"]["large_objects"]["removed"] == [str(ANCHORED_LO)]


def test_the_same_dump_twice_in_the_same_second_gets_two_folders(instance, dump, tmp_path, monkeypatch):
    """The folder name's clock is held at one second for both runs (evidence_dir.default_evidence_dir's stamp)."""
    held = real_dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=real_dt.timezone.utc)

    class HeldClock(real_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return held if tz else held.replace(tzinfo=None)

    monkeypatch.setattr(packet_dirs, "dt", types.SimpleNamespace(**{**vars(real_dt), "datetime": HeldClock}))
    monkeypatch.setenv("FIX7_EVIDENCE_ROOT", str(tmp_path / "evidence"))
    runs = [_rehearse(instance, dump, tmp_path / f"run{i}", "select 1;\n", "select 1;\n", evidence_dir=None)
            for i in range(2)]
    folders = sorted((tmp_path / "evidence").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("20260102T030405Z-") for f in folders), folders
    assert sorted(str(f) for f in folders) == sorted(r["evidence_dir"] for r in runs)
    for run in runs:
        packet = load_packet(run["evidence_dir"])
        assert packet["run_id"] == run["run_id"] and packet["verdict"] == "REHEARSAL_PASSED"
        assert packet["clone"]["encoding"]["dump"] == "UTF8" and packet["clone"]["encoding"]["invalid_utf8"] is False
        assert (tmp_path / "evidence" / run["evidence_dir"].split("/")[-1] / REPORT).exists()
