"""The library a rehearsal needs only later, imported in the background as it starts.

Great Expectations (the gates) takes seconds to import. Intake and the restore mostly wait on the disk and the
server, so a thread imports it meanwhile, on the other core, and the stage that uses it finds it loaded. Python's
import lock makes a stage that gets there first wait for the import, never see half a module; a library that
fails to import fails where it is used, with that stage's message. (The traffic charts need no library: they are
SVG text, core/evidence/charts.py.)
"""

from __future__ import annotations

import threading

from ..shape.gx_gates import import_gx

_started = threading.Event()


def _load() -> None:
    try:
        import_gx()
    except Exception:  # noqa: BLE001 - the stage that uses it imports it again and reports the failure
        pass


def start_preloading() -> None:
    """Once per process: the background import of the gates' library."""
    if _started.is_set():
        return
    _started.set()
    threading.Thread(target=_load, name="fix7-preload", daemon=True).start()
