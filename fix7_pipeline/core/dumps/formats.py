"""What a dump is: its formats, size caps and table-of-contents entries, and how intake refuses one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..shared.errors import Fix7Error

PLAIN, PLAIN_GZIP, CUSTOM, DIRECTORY, TAR = "plain", "plain-gzip", "custom", "directory", "tar"
FORMATS = (PLAIN, PLAIN_GZIP, CUSTOM, DIRECTORY, TAR)

DEFAULT_MAX_PLAIN_BYTES = 64 * 1024 ** 3
DEFAULT_MAX_GZIP_RATIO = 200
GZIP_RATIO_GRACE_BYTES = 16 * 1024 ** 2
CHUNK = 1024 * 1024
MAX_LINE = 8 * 1024 * 1024


@dataclass
class TocEntry:
    """One table-of-contents entry: what a restore would create (ids are dump ids, not secrets)."""

    id: int
    kind: str
    schema: str | None
    name: str
    owner: str | None
    line: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "line"}

    @property
    def label(self) -> str:
        """'FOREIGN TABLE public.ft', 'USER MAPPING postgres SERVER prod': how an operator names it."""
        qualified = f"{self.schema}.{self.name}" if self.schema and self.schema != "-" else self.name
        return qualified if qualified.startswith(self.kind + " ") else f"{self.kind} {qualified}"


@dataclass
class DumpInfo:
    """What intake learnt about a dump without restoring it."""

    path: Path
    sha256: str
    bytes: int
    format: str
    compressed: bool
    pg_dump_version: str | None
    server_version: str | None
    archive_version: str | None
    toc: list[TocEntry] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    tables_with_data: list[str] = field(default_factory=list)
    schema_only: bool = False
    hand_written: bool = False  # schema SQL not written by pg_dump (a contract's source), screened all the same
    uncompressed_bytes: int | None = None
    max_plain_bytes: int = DEFAULT_MAX_PLAIN_BYTES
    max_gzip_ratio: int = DEFAULT_MAX_GZIP_RATIO
    # a plain dump's screening findings, made in inspect_dump's one pass over the bytes hashed (not carried
    # between processes: only intake screens)
    screened: tuple | None = None

    @property
    def is_archive(self) -> bool:
        return self.format in (CUSTOM, DIRECTORY, TAR)

    def as_dict(self) -> dict:
        return {"path": str(self.path), "sha256": self.sha256, "bytes": self.bytes, "format": self.format,
                "compressed": self.compressed, "pg_dump_version": self.pg_dump_version,
                "server_version": self.server_version, "archive_version": self.archive_version,
                "schema_only": self.schema_only, "uncompressed_bytes": self.uncompressed_bytes,
                "tables": self.tables, "tables_with_data": self.tables_with_data,
                "toc_entries": len(self.toc),
                "toc_kinds": _count_kinds(self.toc)}


def _count_kinds(toc: list[TocEntry]) -> dict:
    counts: dict[str, int] = {}
    for e in toc:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return dict(sorted(counts.items()))


def refuse(path, what: str, supply: str = "", rule: str = "dump_unreadable") -> Fix7Error:
    tail = f" {supply}" if supply else (" Supply a dump made by pg_dump (plain, plain gzip, custom, directory or "
                                        "tar format) of the sanitized, production-shaped clone.")
    return Fix7Error(f"The dump at {path} cannot be used: {what}.{tail}", rule=rule)
