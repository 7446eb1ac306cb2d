"""`fix7 ui`: the Dagster webserver and daemon on the project's instance (embedded PostgreSQL storage)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fix7_pipeline.core.shared.errors import EXIT_USAGE, Fix7Error


def dagster_executable() -> str:
    """The venv's `dagster`, so the UI runs the same Dagster the CLI does."""
    beside = Path(sys.executable).parent / "dagster"
    found = str(beside) if beside.exists() else shutil.which("dagster")
    if not found:
        raise Fix7Error("The `dagster` command is not installed in this environment; run `make install`.",
                        EXIT_USAGE, rule="dagster_missing")
    return found


def dev_command(port: int, host: str, home: Path) -> list[str]:
    """`dagster dev` on the workspace prepare_dagster_home wrote into the Dagster home (the installed package)."""
    return [dagster_executable(), "dev", "-w", str(home / "workspace.yaml"), "-p", str(port), "-h", host]


def cmd_ui(args: argparse.Namespace) -> int:
    import os

    from fix7_pipeline.core.shared.paths import project_dir
    from fix7_pipeline.core.shared.escape import visible
    from fix7_pipeline.instance import prepare_dagster_home, storage_database

    if not 0 < args.port < 65536:
        raise Fix7Error(f"--port {args.port} is not a TCP port", EXIT_USAGE, rule="usage")
    home = prepare_dagster_home()
    database, role = storage_database()
    command = dev_command(args.port, args.host, home)
    print(f"fix7 ui: Dagster UI at http://{args.host}:{args.port} (webserver + daemon)\n"
          f"  instance: {home} (run storage: embedded PostgreSQL, database `{visible(database)}`, "
          f"role `{visible(role)}`)\n"
          f"  workspace: {home / 'workspace.yaml'} (the installed fix7_pipeline.definitions)\n"
          f"  fix7 home: {project_dir()}\n  stop with Ctrl-C", flush=True)
    # Its own process group: a terminal's Ctrl-C reaches only fix7, which forwards it exactly once.
    proc = subprocess.Popen(command, cwd=project_dir(), env=dict(os.environ), preexec_fn=_interruptible,
                            process_group=0)
    stopping = _stop_on_signal(proc)
    try:
        code = proc.wait()
    finally:
        stop_group(proc.pid)
    return 0 if stopping.is_set() else code


def stop_group(pgid: int, grace_s: float = 10) -> None:
    """End what dagster dev left in its process group (webserver, daemon, code server) when it died without
    stopping them: SIGTERM, then SIGKILL after grace_s. Nothing of a stopped UI outlives `fix7 ui`."""
    if pgid <= 1:  # never a group of our own: 0 would be fix7's, 1 init's
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def _interruptible() -> None:
    """In the child: Ctrl-C must reach dagster dev even when fix7 was started with SIGINT ignored
    (a background job, a CI step), or the webserver and daemon never get their clean shutdown."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_on_signal(proc: subprocess.Popen, grace_s: float = 30) -> threading.Event:
    """Ctrl-C or SIGTERM: ask dagster dev to shut down (SIGINT), then insist after grace_s."""
    stopping = threading.Event()

    def later(delay: float, action) -> None:
        timer = threading.Timer(delay, lambda: proc.poll() is None and action())
        timer.daemon = True
        timer.start()

    def on_signal(signum, frame) -> None:
        if proc.poll() is not None or stopping.is_set():
            return
        stopping.set()
        proc.send_signal(signal.SIGINT)
        later(grace_s, lambda: (proc.terminate(), later(10, proc.kill)))

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stopping


def register(subparsers) -> None:
    p = subparsers.add_parser("ui", help="start the Dagster UI (webserver + daemon) on the project's instance")
    p.add_argument("--port", type=int, default=3000, metavar="N", help="port to serve on (default 3000)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, this machine only)")
    p.set_defaults(func=cmd_ui)
