"""Which contract a run uses: the shipped default, an operator's YAML, or schema SQL / a pg_dump archive."""

from __future__ import annotations

import re
from pathlib import Path

from ..contract.from_yaml import contract_from_yaml_text, default_contract
from ..contract.model import Contract, contract_error
from ..postgres.sql_lexer import Statement, iter_lexed
from . import contract_from_schema as from_schema

_CREATE_TABLE = re.compile(r"(?i)^create\s+(?:(?:global|local)\s+)?(?:temp\s+|temporary\s+|unlogged\s+)?table\b")


def is_schema_source(path: str | Path) -> bool:
    """Whether `path` is PostgreSQL input (schema SQL or a pg_dump archive) rather than contract YAML."""
    p = Path(path)
    if p.is_dir():
        return (p / "toc.dat").is_file()
    try:
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if head.startswith(b"PGDMP") or (len(head) >= 262 and head[257:262] == b"ustar"):
        return True
    try:
        return _looks_like_sql(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError):
        return False


def load_contract(path: str | Path | None = None, *, server=None) -> Contract:
    """The contract at `path`, or the shipped default.

    YAML is read as written. Schema-only SQL or a pg_dump archive (detected from content) is restored by
    PostgreSQL into a throwaway database on `server` (a `RehearsalServer`) and its shape read from the
    catalog; without a server that is refused, since fix7 parses no DDL itself.
    """
    if path is None:
        return default_contract()
    p = Path(path)
    if is_schema_source(p):
        if server is None:
            raise contract_error(str(p), "it is SQL or a pg_dump archive, which PostgreSQL must restore to read "
                                         "its shape, and no rehearsal server was given")
        return from_schema.contract_from_schema(server, p)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise contract_error(str(p), f"{type(e).__name__}: {e}") from None
    return contract_from_yaml_text(text, str(p))


def _looks_like_sql(text: str) -> bool:
    """Schema SQL: some statement the lexer reads (never one inside a comment or a string) creates a table."""
    if re.search(r"(?m)^shape\s*:", text):
        return False
    return any(isinstance(st, Statement) and _CREATE_TABLE.match(st.text)
               for st in iter_lexed(text.splitlines(keepends=True)))
