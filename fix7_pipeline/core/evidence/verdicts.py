"""The evidence packet's verdict words: what a rehearsal, and the clone it ran on, can be judged."""

from __future__ import annotations

from ..shared.escape import md

REHEARSAL_PASSED = "REHEARSAL_PASSED"
REHEARSAL_FAILED = "REHEARSAL_FAILED"
NO_SAFE_CLONE = "NO_SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
# SIGINT, SIGTERM or a UI termination stopped the run: neither the clone nor the change was judged.
REHEARSAL_INTERRUPTED = "REHEARSAL_INTERRUPTED"
# The rehearsal server or its login stopped the run (core/postgres/server_faults.py): nothing was judged.
from ..postgres.server_faults import REHEARSAL_SERVER_FAULT  # noqa: E402
# The evidence could not be written (its disk is full): whatever the stages found, nothing is judged without it.
REHEARSAL_NOT_JUDGED = "REHEARSAL_NOT_JUDGED"
SAFE_CLONE = "SAFE_PRODUCTION_SHAPED_CLONE_AVAILABLE"
NOT_PROVEN = "N/A_NO_CLONE_TO_PROVE"


VERDICT_WORDS = frozenset({REHEARSAL_PASSED, REHEARSAL_FAILED, NO_SAFE_CLONE, SAFE_CLONE, NOT_PROVEN, "IN PROGRESS",
                    REHEARSAL_INTERRUPTED, REHEARSAL_SERVER_FAULT, REHEARSAL_NOT_JUDGED})


def verdict_word(value) -> str:
    """One of the packet's own verdict words as written, anything else escaped."""
    return value if isinstance(value, str) and value in VERDICT_WORDS else md(value)
