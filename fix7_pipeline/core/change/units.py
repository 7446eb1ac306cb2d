"""Names and units every impact module shares: lock modes, relation kinds, table names, bytes and rows."""

from __future__ import annotations

import re

LOCK_MODES = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock", "ShareLock",
              "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view", "i": "index", "I": "partitioned index",
          "S": "sequence", "v": "view", "f": "foreign table"}


def mode_name(pg_mode: str) -> str:
    """'AccessExclusiveLock' -> 'ACCESS EXCLUSIVE', as LOCK TABLE and the documentation spell it."""
    return " ".join(re.findall(r"[A-Z][a-z]*", pg_mode.removesuffix("Lock"))).upper()


def strength(mode: str) -> int:
    names = [mode_name(m) for m in LOCK_MODES]
    return names.index(mode) if mode in names else -1


def qualified(name: str) -> str:
    """A contract or threshold table name as schema.table (a bare name is in public)."""
    name = str(name).strip()
    return name if "." in name else f"public.{name}"



def rows_text(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 10_000:
        return f"{n / 1e3:.0f}k"
    return f"{n:,}"


def bytes_text(n: int | None) -> str:
    if n is None:
        return "?"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n} B"


def scale_note(settings, table: str | None) -> str:
    """'1.0M rows in the clone; production has 40M', where the contract states production's rows."""
    if not table:
        return ""
    clone = settings.clone_rows.get(table)
    prod = settings.production_rows.get(table)
    if clone is None and prod is None:
        return ""
    text = f"{rows_text(clone)} rows in the clone" if clone is not None else "rows in the clone unknown"
    if prod is not None:
        text += f"; production has {rows_text(prod)}"
    return text
