"""The restore diff's second witness: pg_dump's own schema text, compared section by section.

The catalog fingerprint sees what its query names; pg_dump sees whatever it would restore. Both
databases are dumped with the wheel's `pg_dump --schema-only` as the run's restoring role (never a
superuser), split at pg_dump's `-- Name: …; Type: …; Schema: …` headers, and each section's
normalised text is hashed (function bodies and options may hold secrets: no text is kept). A section
that differs where the fingerprint found nothing is a blind spot of the fingerprint, and fails closed.
"""

from __future__ import annotations

import hashlib
import re

from ..postgres.pg_tools import run_tool
from ..postgres.server import Login, RehearsalServer, pg_tool
from ..shared.errors import Fix7Error, withhold_values

_HEADER = re.compile(r"^-- Name: (?P<name>.*?); Type: (?P<type>.*?); Schema: (?P<schema>.*?); Owner: .*$")
_NOISE = ("\\restrict", "\\unrestrict", "SET ", "SELECT pg_catalog.set_config(")


def sections(text: str) -> dict[str, str]:
    """{'TYPE schema.name': sha256 of its statements} for a pg_dump schema-only text."""
    out: dict[str, str] = {}
    key, body = "(preamble)", []

    def flush() -> None:
        k, n = key, 2
        while k in out:
            k, n = f"{key} #{n}", n + 1
        out[k] = hashlib.sha256("\n".join(body).encode()).hexdigest()

    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            flush()
            schema = m["schema"]
            key, body = f"{m['type']} {m['name'] if schema == '-' else schema + '.' + m['name']}", []
        elif line.strip() and not line.startswith("--") and not line.startswith(_NOISE):
            body.append(line.rstrip())
    flush()
    return out


def schema_sections(server: RehearsalServer, database: str, login: Login, *, timeout: float = 600) -> dict[str, str]:
    env = server.tool_env(database, login, "schema text (pg_dump --schema-only)", "pg_dump")
    r = run_tool([pg_tool("pg_dump"), "--schema-only", "--no-owner", "--restrict-key=fix7schematext",
                  "-d", database], env, timeout=timeout)
    if r.returncode != 0:
        first = next((ln for ln in r.stderr.splitlines() if ln.strip()), f"exit {r.returncode}")
        raise Fix7Error(f"pg_dump --schema-only of {database} failed: {withhold_values(first)}", rule="schema_text")
    return sections(r.stdout)


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
