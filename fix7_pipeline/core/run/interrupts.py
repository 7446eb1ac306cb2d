"""Interruption: Ctrl-C, SIGTERM, and a run terminated from the Dagster UI.

An interrupted rehearsal is not a judgment of the clone: the stage that was running records
`interrupted`, the throwaways are dropped and the packet is sealed REHEARSAL_INTERRUPTED.

Three things raise inside a stage: fix7's own handler (`watch`, installed by the CLI) raises
`Interrupted`, a KeyboardInterrupt, so psycopg cancels a running statement and subprocess.run
kills its child; inside a Dagster step, Dagster's handler raises DagsterExecutionInterruptedError
instead, for SIGINT and SIGTERM alike and for a termination requested in the UI (the run worker
gets SIGINT). Dagster does not say which signal it was, so `watch` also has the interpreter write
every caught signal's number to a pipe (signal.set_wakeup_fd); `signals_since` reads it.

That pipe and the numbers read from it (`_pipe`, `_seen`) are the one module-level state in core/, kept
on purpose: signals are delivered to a process and its wakeup fd is one per process, so their log is per
process by nature (each step process of the multiprocess executor has its own, empty unless `watch` ran
there). No fact of a run lives in it: a stage records an interruption in the packet before re-raising.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_seen: list[int] = []
_pipe: dict = {"read": None}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised by fix7's handler (or re-raised after a deferred cleanup)."""

    def __init__(self, signum: int | None = None):
        super().__init__(signum)
        self.signum = signum


def is_interrupt(e: BaseException) -> bool:
    """KeyboardInterrupt (Interrupted included) or Dagster's DagsterExecutionInterruptedError.

    Dagster's class is recognized by name, so core/ still imports nothing from Dagster.
    """
    if isinstance(e, KeyboardInterrupt):
        return True
    return any(c.__name__ == "DagsterExecutionInterruptedError" and c.__module__.startswith("dagster")
               for c in type(e).__mro__)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise(signum, _frame) -> None:
    raise Interrupted(signum)


def watch() -> None:
    """In the CLI's main thread: SIGINT and SIGTERM raise Interrupted, and every caught signal is remembered."""
    if not _main_thread():
        return
    if _pipe["read"] is None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        _pipe["read"] = r
    for s in SIGNALS:
        signal.signal(s, _raise)


def _drain() -> None:
    fd = _pipe["read"]
    if fd is None:
        return
    while True:
        try:
            data = os.read(fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            return
        _seen.extend(b for b in data if b in SIGNALS)


def mark() -> int:
    """A position in the signal log, for `signals_since`."""
    _drain()
    return len(_seen)


def signals_since(position: int = 0) -> list[int]:
    """SIGINT/SIGTERM caught since `position` (only known where `watch` was called)."""
    _drain()
    return list(_seen[position:])


def signal_of(e: BaseException | None, position: int = 0) -> int | None:
    """Which signal an interruption was: the exception's own, else the first one caught since `position`."""
    signum = getattr(e, "signum", None)
    if signum in SIGNALS:
        return signum
    seen = signals_since(position)
    return seen[0] if seen else None


def signal_name(signum: int | None) -> str | None:
    return signal.Signals(signum).name if signum in SIGNALS else None


def exit_code(signum: int | None) -> int:
    """The shell's convention: 128 + the signal number (130 SIGINT, 143 SIGTERM); 130 when unknown."""
    return 128 + int(signum) if signum in SIGNALS else 128 + int(signal.SIGINT)


@contextmanager
def deferred(*, reraise: bool = True):
    """Cleanup that a second Ctrl-C must not cut short (dropping throwaways, sealing the packet).

    Signals arriving meanwhile are recorded and, if nothing else is propagating, raised as
    `Interrupted` when the block ends (reraise=False only records them). Main thread only.
    """
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    saved = {s: signal.getsignal(s) for s in SIGNALS}

    def record(signum, _frame) -> None:
        caught.append(signum)

    for s in SIGNALS:
        signal.signal(s, record)
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
    if caught and reraise:
        raise Interrupted(caught[0])
