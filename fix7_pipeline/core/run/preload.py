"""The libraries a rehearsal needs only later, imported in the background as it starts.

Great Expectations (the gates) and matplotlib (the traffic charts) take seconds to import. Intake and the restore
mostly wait on the disk and the server, so a thread imports them meanwhile, on the other core, and the stage that
uses them finds them loaded. Python's import lock makes a stage that gets there first wait for the import, never
see half a module; a library that fails to import fails where it is used, with that stage's message.
"""

from __future__ import annotations

import threading

from ..evidence.charts import load_matplotlib
from ..shape.gx_gates import import_gx

_started = threading.Event()


def _load() -> None:
    for load in (import_gx, load_matplotlib):
        try:
            load()
        except Exception:  # noqa: BLE001 - the stage that uses it imports it again and reports the failure
            pass


def start_preloading() -> None:
    """Once per process: the background import of the gates' and the charts' libraries."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_load, name="fix7-preload", daemon=True).start()
