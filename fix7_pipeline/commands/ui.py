"""`fix7 ui`: the Dagster webserver and daemon on the project's instance (embedded PostgreSQL storage)."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from fix7_pipeline.core.errors import EXIT_USAGE, Fix7Error


def dagster_executable() -> str:
    """The venv's `dagster`, so the UI runs the same Dagster the CLI does."""
    beside = Path(sys.executable).parent / "dagster"
    found = str(beside) if beside.exists() else shutil.which("dagster")
    if not found:
        raise Fix7Error("The `dagster` command is not installed in this environment; run `make install`.",
                        EXIT_USAGE, rule="dagster_missing")
    return found


def dev_command(port: int, host: str) -> list[str]:
    from fix7_pipeline.core.paths import project_dir

    return [dagster_executable(), "dev", "-w", str(project_dir() / "workspace.yaml"), "-p", str(port), "-h", host]


def cmd_ui(args: argparse.Namespace) -> int:
    import os

    from fix7_pipeline.core.paths import project_dir
    from fix7_pipeline.instance import prepare_dagster_home

    if not 0 < args.port < 65536:
        raise Fix7Error(f"--port {args.port} is not a TCP port", EXIT_USAGE, rule="usage")
    home = prepare_dagster_home()
    command = dev_command(args.port, args.host)
    print(f"fix7 ui: Dagster UI at http://{args.host}:{args.port} (webserver + daemon)\n"
          f"  instance: {home} (run storage: embedded PostgreSQL, database `dagster`)\n"
          f"  workspace: {project_dir() / 'workspace.yaml'}\n  stop with Ctrl-C", flush=True)
    proc = subprocess.Popen(command, cwd=project_dir(), env=dict(os.environ))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("ui", help="start the Dagster UI (webserver + daemon) on the project's instance")
    p.add_argument("--port", type=int, default=3000, metavar="N", help="port to serve on (default 3000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    p.set_defaults(func=cmd_ui)
