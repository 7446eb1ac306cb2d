"""The project's Dagster instance on the embedded PostgreSQL server (storage in its own database)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fix7_pipeline.core.postgres.embedded import embedded_dagster_url
from fix7_pipeline.core.shared.environment import set_environment
from fix7_pipeline.core.shared.paths import project_dir, state_dir


INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")  # shipped in the package: the wheel is the tool


def workspace_text() -> str:
    """The code location `fix7 ui` serves: the installed package's definitions, from fix7's home."""
    from fix7_pipeline.launch import LOCATION, MODULE

    return (f"load_from:\n  - python_module:\n      module_name: {MODULE}\n      location_name: {LOCATION}\n"
            f"      working_directory: {json.dumps(str(project_dir()))}\n")


def prepare_dagster_home(home: Path | None = None, storage_db: str = "dagster_storage") -> Path:
    """Point DAGSTER_HOME at fix7's home (.fix7/dagster_home) with the package's dagster.yaml and a workspace.yaml
    naming the installed code location; start storage on demand."""
    home = Path(home or os.environ.get("DAGSTER_HOME") or state_dir() / "dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    dst = home / "dagster.yaml"
    if not dst.exists() or dst.read_bytes() != INSTANCE_CONFIG.read_bytes():
        shutil.copyfile(INSTANCE_CONFIG, dst)
    workspace = home / "workspace.yaml"
    if not workspace.exists() or workspace.read_text() != workspace_text():
        workspace.write_text(workspace_text())
    set_environment({"DAGSTER_HOME": str(home)})
    if not os.environ.get("FIX7_DAGSTER_PG_URL"):  # not a default: that would connect to create it every time
        set_environment({"FIX7_DAGSTER_PG_URL": embedded_dagster_url(storage_db)})
    set_environment(defaults={"FIX7_DAGSTER_ARTIFACTS": str(home / "storage"),
                              "FIX7_DAGSTER_COMPUTE_LOGS": str(home / "compute_logs"),
                              "FIX7_PROJECT_DIR": str(project_dir())})
    return home


def storage_database(url: str | None = None) -> tuple[str, str]:
    """(database, role) of the instance's storage URL (FIX7_DAGSTER_PG_URL), never its password or host."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url if url is not None else os.environ.get("FIX7_DAGSTER_PG_URL", ""))
    return unquote(parts.path.lstrip("/")) or "?", unquote(parts.username or "") or "?"


def get_instance():
    """The instance; its storage's first use creates tables and stamps their revision, so processes starting
    at the same moment take turns (an advisory lock in the storage database) rather than race to do it twice."""
    from dagster import DagsterInstance

    prepare_dagster_home()
    url = os.environ.get("FIX7_DAGSTER_PG_URL")
    if not url:
        return DagsterInstance.get()
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as c:
            c.execute(sqlalchemy.text("select pg_catalog.pg_advisory_lock(pg_catalog.hashtext('fix7 dagster storage'))"))
            return DagsterInstance.get()
    finally:
        engine.dispose()
