"""One dynamic partition per rehearsal: why, and how every launcher keys its run.

A rehearsal is one event about one dump and one change, not a refresh of one table: keyed as a partition
of its own (`DynamicPartitionsDefinition`, added by its launch: instance_guard.py), each run materializes
and checks its own partition of the seven stage assets. So a blocked rehearsal marks only its partition
failed, while the catalog's partition bar and each asset's partition list keep the last good rehearsal
visible beside it; and an asset check's status is per partition rather than a red that covers the
whole graph until the next good run. The key names when it was started and what it is about:
`<utc-timestamp>-<sha8 of the dump>` (sensor), `-nightly` (schedule), `-<run8>` (CLI, launchpad).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import dagster as dg

from fix7_pipeline.core.shared.names import PARTITIONS

REHEARSALS = dg.DynamicPartitionsDefinition(name=PARTITIONS)
KEY_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}")


def rehearsal_key(suffix: str | None = None, now: dt.datetime | None = None) -> str:
    """`<utc-timestamp>-<suffix>`; the suffix (a dump's sha8 or a run's first 8 characters) defaults to random."""
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    tail = re.sub(r"[^A-Za-z0-9]", "", suffix or "")[:12] or secrets.token_hex(4)
    return f"{stamp}-{tail}"


def add_rehearsal(instance: dg.DagsterInstance, key: str) -> str:
    """Register `key` as a rehearsal partition (idempotent) for a run this process is about to launch itself
    with `execute_in_process` (which checks the partition first). Every other launcher names its key in the
    run's `dagster/partition` tag and the instance's storage adds it with the run (instance_guard.py)."""
    from fix7_pipeline.instance_guard import partitions_added_by_launch

    if not KEY_OK.fullmatch(key):
        raise ValueError(f"{key!r} is not a rehearsal partition key (letters, digits, . _ : + -; at most 100)")
    if not instance.has_dynamic_partition(REHEARSALS.name, key):
        with partitions_added_by_launch():
            instance.add_dynamic_partitions(REHEARSALS.name, [key])
    return key
