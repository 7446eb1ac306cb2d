"""The run record between Dagster steps: JSON there and back, frozen, and no more of the dump than stages need."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fix7_pipeline.core.change.change import ChangeSQL
from fix7_pipeline.core.contract.load import load_contract
from fix7_pipeline.core.dumps.formats import CUSTOM, DumpInfo, TocEntry
from fix7_pipeline.core.request import RehearsalRequest
from fix7_pipeline.core.run_record import Anchor, RunRecord, ThrowawayNames


def _record() -> RunRecord:
    dump = DumpInfo(path=Path("/d/clone.dump"), sha256="ab" * 32, bytes=10, format=CUSTOM, compressed=True,
                    pg_dump_version="18.1", server_version="17.2", archive_version="1.16",
                    toc=[TocEntry(1, "EXTENSION", "-", "pgcrypto", None, "1; 3079 1 EXTENSION - pgcrypto"),
                         TocEntry(2, "TABLE", "public", "tok_live_abc", "prod", "2; 1259 2 TABLE public tok")],
                    tables=["public.t"])
    return RunRecord(request=RehearsalRequest(clone_path="/d/clone.dump", attested_by="ops"), run_id="run-1",
                     evidence_dir="/ev", clone={"sha256": "ab" * 32}, dump=dump,
                     changes=(ChangeSQL("apply", "/c/a.sql", "01" * 32, "select 1;"),
                              ChangeSQL("rollback", "/c/r.sql", "02" * 32, "select 2;")),
                     contract=load_contract(), throwaway=ThrowawayNames("fix7_clone_x", "fix7_restorer_x", "x",
                                                                        ("fix7_anchor_x",)),
                     anchor=Anchor("fix7_anchor_x", "anc-1", {"tables": {}}, {"encoding": "UTF8"}))


def test_the_record_travels_as_json_and_comes_back_the_same():
    before = _record()
    after = RunRecord.from_json(json.loads(json.dumps(before.as_json(), default=str)))
    assert after.change("rollback").text == "select 2;" and after.change("apply").sha256 == "01" * 32
    assert after.throwaway == before.throwaway and after.anchor == before.anchor
    assert after.contract.as_dict() == before.contract.as_dict() and after.request == before.request
    assert after.dump.path == before.dump.path and after.dump.sha256 == before.dump.sha256
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.evidence_dir = "/elsewhere"  # type: ignore[misc]


def test_only_the_extensions_of_the_table_of_contents_are_stored_between_steps():
    stored = json.dumps(_record().as_json(), default=str)
    assert "pgcrypto" in stored and "tok_live_abc" not in stored
    assert [e.kind for e in RunRecord.from_json(json.loads(stored)).dump.toc] == ["EXTENSION"]
