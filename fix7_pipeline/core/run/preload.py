"""The library a rehearsal needs only later, imported in the background as it starts.

Great Expectations (the gates) takes seconds to import. The restore mostly waits on the server, so once intake
knows the dump will be restored and gated (no verified clone template vouched for it) a thread imports it
meanwhile, and the stage that uses it finds it loaded. A repeat rehearsal from a template runs no gate and never
imports it: on two cores the import's second and a half of CPU, holding the GIL, was a sixth of a 1M repeat. Python's
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
