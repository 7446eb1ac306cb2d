"""`fix7 stop`: stop the embedded PostgreSQL servers of fix7's home, so the home can be copied or cached whole.

A CI job that keeps FIX7_HOME between runs (one audit chain across them, with Dagster's record of every run) stops
the servers before saving it: a data directory copied while its server runs is not a consistent copy. The next
command starts them again.
"""

from __future__ import annotations

import argparse
import os
import subprocess


def cmd_stop(args: argparse.Namespace) -> int:
    from fix7_pipeline.core.shared.paths import state_dir
    from fix7_pipeline.core.postgres.server import pg_tool

    stopped = []
    for pgdata in sorted(p.parent for p in state_dir().glob("*pgdata/postmaster.pid")):
        kw = {}
        if os.geteuid() == 0:  # the server runs as the wheel's own system user, never root
            kw = {"user": pgdata.stat().st_uid, "group": pgdata.stat().st_gid, "extra_groups": []}
        r = subprocess.run([pg_tool("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "-t", "60", "stop"],
                           capture_output=True, text=True, timeout=90, **kw)
        stopped.append(f"{pgdata.name}: {'stopped' if r.returncode == 0 else 'not running'}")
    print("fix7 stop: " + ("; ".join(stopped) if stopped else f"no embedded server runs under {state_dir()}"))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("stop", help="stop the embedded PostgreSQL servers of fix7's home (before the home "
                                           "is cached or copied)")
    p.set_defaults(func=cmd_stop)
