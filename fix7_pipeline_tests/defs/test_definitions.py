"""The Definitions load, and the asset graph an operator sees is pinned by a committed snapshot.

After an intended change to the graph, regenerate the snapshot with
`FIX7_UPDATE_SNAPSHOT=1 .venv/bin/pytest fix7_pipeline_tests/defs/test_definitions.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fix7_pipeline.definitions import REHEARSAL_ASSETS, defs
from fix7_pipeline.defs.intake import RehearsalRequestConfig

SNAPSHOT = Path(__file__).with_name("asset_graph.snapshot.json")
PROJECT = Path(__file__).resolve().parents[2]


def asset_graph_snapshot() -> dict:
    graph = defs.resolve_asset_graph()
    checks: dict = {}
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        checks.setdefault(key.asset_key.to_user_string(), {})[key.name] = {"blocking": spec.blocking}
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        name = key.to_user_string()
        assets[name] = {"deps": sorted(p.to_user_string() for p in node.parent_keys),
                        "checks": checks.get(name, {}), "group": node.group_name,
                        "kinds": sorted(node.kinds), "owners": sorted(node.owners),
                        "partitions": _partitions(node.partitions_def)}
    job = defs.resolve_job_def("fix7_rehearsal")
    repo = defs.get_repository_def()
    return {
        "assets": assets,
        "jobs": {j.name: sorted(k.to_user_string() for k in j.asset_layer.executable_asset_keys)
                 for j in [job]},
        "job_checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in job.asset_layer.asset_graph.asset_check_keys),
        "job_partitions": _partitions(job.partitions_def),
        "schedules": {s.name: {"job": s.job_name} for s in repo.schedule_defs},
        "sensors": {s.name: {"jobs": sorted(t.job_name for t in s.targets)} for s in repo.sensor_defs},
    }


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    return f"{type(partitions_def).__name__}:{getattr(partitions_def, 'name', '')}"


def test_definitions_validate():
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_matches_the_committed_snapshot():
    current = asset_graph_snapshot()
    if os.environ.get("FIX7_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the asset graph changed; if intended, regenerate with FIX7_UPDATE_SNAPSHOT=1 and review the diff")


def test_every_asset_and_check_explains_itself():
    for assets_def in REHEARSAL_ASSETS:
        for key in assets_def.keys:
            assert len(assets_def.descriptions_by_key.get(key) or "") > 40, key
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).description, key


def test_launchpad_fields_are_documented_with_defaults():
    fields = RehearsalRequestConfig.model_fields
    assert {"clone_path", "apply_sql", "rollback_sql", "attested_by"} <= set(fields)
    for name, f in fields.items():
        assert f.description, name
        assert not f.is_required(), f"{name} needs a default so the launchpad opens with a valid config"


def test_schedule_and_sensor_start_stopped_without_an_operator_config():
    if (PROJECT / "rehearsal.yaml").exists() or os.environ.get("FIX7_REHEARSAL_CONFIG"):
        pytest.skip("the operator's rehearsal.yaml decides here; test_automation covers both ways")
    assert defs.resolve_schedule_def("nightly_rehearsal").default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs.resolve_sensor_def("clone_drop_sensor").default_status == dg.DefaultSensorStatus.STOPPED


def test_the_workspace_loads_from_the_command_line(tmp_path):
    """What `fix7 ui` and `dg dev` load: workspace.yaml -> fix7_pipeline.definitions, in a fresh process."""
    dagster = Path(sys.executable).parent / "dagster"
    res = subprocess.run([str(dagster), "definitions", "validate", "-w", str(PROJECT / "workspace.yaml")],
                         cwd=PROJECT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DAGSTER_HOME": str(tmp_path), "DAGSTER_DISABLE_TELEMETRY": "1"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
