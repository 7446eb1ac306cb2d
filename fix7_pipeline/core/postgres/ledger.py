"""The connection ledger: every connection the rehearsal server granted, in order (the evidence's `connections`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field


@dataclass
class ConnectionRecord:
    host: str
    port: int
    database: str
    role: str
    purpose: str
    client: str
    opened_at: str


@dataclass
class ConnectionLedger:
    """Every connection granted, in order: the evidence's `connections`."""

    entries: list[ConnectionRecord] = field(default_factory=list)

    def record(self, **kw) -> None:
        self.entries.append(ConnectionRecord(opened_at=now_utc(), **kw))

    def as_dicts(self) -> list[dict]:
        return [asdict(e) for e in self.entries]


def now_utc() -> str:
    """Now, as the ledger and the throwaway marks write it."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
