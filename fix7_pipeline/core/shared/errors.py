"""One exception type the user sees: a one-paragraph message and an exit code."""

from __future__ import annotations

import re
from .escape import visible

EXIT_PASSED = 0
EXIT_REHEARSAL_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_SAFE_CLONE = 3
EXIT_SERVER_FAULT = 4  # the rehearsal server or its login failed: nothing was judged
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM exits 143 (interrupts.exit_code)


class Fix7Error(Exception):
    """An expected failure, explained in operator words; never shown as a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_NO_SAFE_CLONE, rule: str = "error"):
        super().__init__(message)
        # one paragraph, and a quoted name can neither hide characters nor drive a terminal
        self.message = visible(" ".join(message.split()))
        self.exit_code = exit_code
        self.rule = rule


class ServerFault(Fix7Error):
    """The rehearsal server or its admin login failed the run (a missing privilege, a setting, out of locks,
    disk full on the server, unreachable): the clone and the change were not judged, exit 4."""

    def __init__(self, message: str, rule: str = "server_fault"):
        super().__init__(message, EXIT_SERVER_FAULT, rule=rule if rule.startswith("server") else f"server.{rule}")


class HostRefused(Fix7Error):
    """A connection to a host that is not the rehearsal server was refused before any socket opened."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_NO_SAFE_CLONE, rule="host_guard")


_TRAILING_VALUE = re.compile(r':\s*"(?:[^"]|"")*"\s*$')
_NAMED_VALUE = re.compile(r'\b(value|literal|token|input)\s+"(?:[^"]|"")*"', re.IGNORECASE)
_BYTES = re.compile(r"(invalid byte sequence for encoding \"[^\"]+\":)\s*(0x[0-9a-fA-F]{2}\s*)+")


def withhold_values(message: str) -> str:
    """A server message with the data values it quotes cut out; identifiers (relation "t") are kept.

    PostgreSQL quotes the offending value in type, enum, range and literal errors
    (`invalid input syntax for type bigint: "…"`, `value "…" is out of range`), and a
    value that fails a restore or a change can be a secret.
    """
    message = _BYTES.sub(r"\1 (bytes withheld)", message)
    message = _NAMED_VALUE.sub(lambda m: f'{m.group(1)} "(withheld)"', message)
    return _TRAILING_VALUE.sub(': "(value withheld)"', message)
