"""One exception type the user sees: a one-paragraph message and an exit code."""

from __future__ import annotations

EXIT_PASSED = 0
EXIT_REHEARSAL_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_SAFE_CLONE = 3


class Fix7Error(Exception):
    """An expected failure, explained in operator words; never shown as a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_NO_SAFE_CLONE, rule: str = "error"):
        super().__init__(message)
        self.message = " ".join(message.split())
        self.exit_code = exit_code
        self.rule = rule


class HostRefused(Fix7Error):
    """A connection to a host that is not the rehearsal server was refused before any socket opened."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_NO_SAFE_CLONE, rule="host_guard")
