"""Where fix7 keeps its state: one home, chosen by FIX7_HOME.

The home holds `evidence/` (the default evidence root), `rehearsal.yaml` (schedule and sensor) and `.fix7/`
(the embedded server's data, the Dagster home with the audit chain). It is, in order: FIX7_HOME; FIX7_PROJECT_DIR
(what `fix7 ui` hands its webserver and daemon); a fix7 checkout the command runs in or was installed from
(editable), as it always was; else `$XDG_DATA_HOME/fix7` (default `~/.local/share/fix7`), so an installed `fix7`
works from any folder and never writes into the repository it is run in.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "FIX7_HOME"


def _checkout(p: Path) -> bool:
    return (p / "pyproject.toml").exists() and (p / "fix7_pipeline").is_dir()


def default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "fix7"


def project_dir() -> Path:
    """fix7's home (see the module's docstring); created on first use."""
    for env in (HOME_ENV, "FIX7_PROJECT_DIR"):
        if os.environ.get(env):
            home = Path(os.environ[env]).expanduser().resolve()
            break
    else:
        here = Path.cwd().resolve()
        pkg_root = Path(__file__).resolve().parents[2]
        home = next((p for p in (here, *here.parents) if _checkout(p)), None) or \
            (pkg_root if _checkout(pkg_root) else default_home())
    home.mkdir(parents=True, exist_ok=True)
    return home


def state_dir() -> Path:
    d = project_dir() / ".fix7"
    d.mkdir(parents=True, exist_ok=True)
    return d


def dagster_home() -> Path:
    d = Path(os.environ.get("DAGSTER_HOME") or state_dir() / "dagster_home")
    d.mkdir(parents=True, exist_ok=True)
    return d
