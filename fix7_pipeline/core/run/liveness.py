"""Whether the process that started a run is still running it: how a crash is told from a run in progress.

A rehearsal killed with SIGKILL (or by the machine going down) leaves its Dagster run STARTED forever. The run's
own events record the pid of the process that started it; that process is gone, or the pid now belongs to a
process started later (a reused pid), or it is a zombie: then the run crashed. When this cannot be told (no
/proc, no pid recorded), the run counts as alive: a live run is never closed as crashed.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def _boot_time() -> float | None:
    try:
        for line in (_PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def _process_start(pid: int) -> tuple[str, float] | None:
    """(state, start time in epoch seconds) of a live pid, from /proc; None when it does not exist."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3, starttime field 22
    boot = _boot_time()
    if boot is None:
        raise OSError("no boot time in /proc/stat")
    return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def process_alive(pid: int | None, started_by: float) -> bool:
    """Whether `pid` is still the process that recorded an event at `started_by` (epoch seconds)."""
    if not pid:
        return True  # nothing to look at: not provably dead
    if not _PROC.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        found = _process_start(pid)
    except (OSError, ValueError, IndexError):
        return True
    if found is None:
        return False
    state, started = found
    if state in ("Z", "X"):  # killed, not yet reaped: it runs nothing any more
        return False
    return started <= started_by + 2.0  # a pid started after the run's event is another process
