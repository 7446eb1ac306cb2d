"""Where a run's stage outputs live when its steps run on machines of their own (issue 28.1).

A step hands the next one its run record (defs/storage.py) and intake's private copies of the change files
(core/change.py). In one process tree they sit in folders on this machine; on Kubernetes or Docker each step
has a filesystem of its own, so with the evidence root in S3 they go to `<FIX7_EVIDENCE_ROOT>/runs/<run id>/`
instead, and no step needs a folder another step wrote. Removed when the run ends, like the folders.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .store import evidence_path, scheme


def run_prefix(run_id: str):
    """`<root>/runs/<run id>` (an S3Path) when FIX7_EVIDENCE_ROOT is in S3; None: the outputs stay local."""
    root = os.environ.get("FIX7_EVIDENCE_ROOT") or ""
    return evidence_path(root) / "runs" / run_id if scheme(root) == "s3" else None


def share_change_copy(run_id: str, change):
    """A ChangeSQL whose private copy is in the run's prefix (the local copy removed); as it was when local."""
    prefix = run_prefix(run_id)
    if prefix is None or not change.copy:
        return change
    local = Path(change.copy)
    shared = prefix / "changes" / local.name
    shared.write(local.read_bytes())
    local.unlink(missing_ok=True)
    return replace(change, copy=str(shared))
