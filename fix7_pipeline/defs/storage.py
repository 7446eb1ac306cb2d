"""Where a stage hands its output (the run record, core/run/run_record.py) to the next: a folder of the run's own,
never a path shared by runs.

Dagster's default filesystem IO manager keys asset outputs by asset key alone, so two rehearsals running
at once read each other's state (and one dropped the other's databases). Here every output lives under
`<instance storage>/fix7-runs/<run id>/<asset>.json`, or, when FIX7_EVIDENCE_ROOT is in S3, under
`<root>/runs/<run id>/` (steps on machines of their own share no folder). The run's folder is removed when the run ends:
by `evidence_packet`, by the CLI for the run it followed, and by fix7_verdict_sensor for a failed run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import dagster as dg

from fix7_pipeline.core.storage.run_outputs import run_prefix
from fix7_pipeline.core.storage.store import is_remote
from fix7_pipeline.core.run.run_record import RunRecord


def run_folder(instance: dg.DagsterInstance, run_id: str) -> Path:
    """The run's folder here, or its prefix in S3 when the evidence root is there (core/storage/run_outputs.py)."""
    shared = run_prefix(run_id)
    return shared if shared is not None else Path(instance.storage_directory()) / "fix7-runs" / run_id


class RunScopedIOManager(dg.ConfigurableIOManager):
    """Run records as JSON under a folder named by the run that produced them."""

    def _path(self, instance: dg.DagsterInstance, run_id: str, asset_key: dg.AssetKey) -> Path:
        return run_folder(instance, run_id) / f"{'__'.join(asset_key.path)}.json"

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        path = self._path(context.step_context.instance, context.run_id, context.asset_key)
        if is_remote(path):
            return path.write(json.dumps(obj.as_json(), default=str).encode("utf-8"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj.as_json(), f, default=str)
        os.replace(tmp, path)

    def load_input(self, context: dg.InputContext):
        upstream = context.upstream_output
        path = self._path(context.instance, upstream.run_id, upstream.asset_key)
        return RunRecord.from_json(json.loads(path.read_text(encoding="utf-8")))


def discard_run_outputs(instance: dg.DagsterInstance, run_id: str) -> None:
    from fix7_pipeline.core.change.change_sql import discard_copies

    folder = run_folder(instance, run_id)
    if is_remote(folder):  # the change copies are in it too
        try:
            folder.remove_tree()
        except OSError:
            pass  # the run ended; what the store refused to remove now is removed by no one, and read by no one
    else:
        shutil.rmtree(folder, ignore_errors=True)
    discard_copies(run_id)  # intake's private copies of the change files
