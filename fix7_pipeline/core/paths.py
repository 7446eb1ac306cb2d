"""Where the project keeps its state: `.fix7/` beside the checkout (git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The project root: FIX7_PROJECT_DIR, else the nearest parent holding pyproject.toml, else cwd."""
    env = os.environ.get("FIX7_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").exists() and (p / "fix7_pipeline").is_dir():
            return p
    pkg_root = Path(__file__).resolve().parents[2]
    if (pkg_root / "pyproject.toml").exists():
        return pkg_root
    return here


def state_dir() -> Path:
    d = project_dir() / ".fix7"
    d.mkdir(parents=True, exist_ok=True)
    return d


def dagster_home() -> Path:
    d = Path(os.environ.get("DAGSTER_HOME") or state_dir() / "dagster_home")
    d.mkdir(parents=True, exist_ok=True)
    return d
