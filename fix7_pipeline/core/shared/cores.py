"""The cores this process may run on: the affinity mask where the platform has one (a container's or a CI
runner's limit), else the machine's count."""

from __future__ import annotations

import os


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
