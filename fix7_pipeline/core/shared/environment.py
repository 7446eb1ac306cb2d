"""The process environment fix7 sets for itself and every process it starts: written here, and only here."""

from __future__ import annotations

import os


def set_environment(values: dict[str, str] | None = None, *, defaults: dict[str, str] | None = None) -> None:
    """Set `values` in this process's environment, and each of `defaults` that is not set yet (an operator's own
    value wins). Called when fix7 starts something, never at import time (fix7_pipeline_tests/core/test_layout.py)."""
    for name, value in (defaults or {}).items():
        os.environ.setdefault(name, value)
    for name, value in (values or {}).items():
        os.environ[name] = value
