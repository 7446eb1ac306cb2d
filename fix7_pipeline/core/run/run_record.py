"""The run record: what intake learnt about a rehearsal's inputs, handed unchanged to every stage.

Intake reads each input once (the dump hashed and screened, each change file hashed into a private copy, the
contract parsed) and puts the facts here; a stage never reads an input again, it reads the record. The
record is frozen: a stage that learns something (the throwaways it named, the anchor, the contract derived
from schema SQL) hands the next stage a new record (`with_`), never an edited one. It travels between
Dagster steps as JSON (`as_json`/`from_json`), so it holds no secret: throwaway passwords are derived by
the server from the process's key, never stored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ..change.change_sql import ChangeSQL
from ..contract.from_yaml import contract_from_dict
from ..contract.model import Contract
from ..dumps.formats import DumpInfo, TocEntry
from ..intake.request import RehearsalRequest


@dataclass(frozen=True)
class ThrowawayNames:
    """The run's throwaway clone database, its role and every further database (anchor, scratch, re-restore)."""

    database: str
    role: str
    tag: str
    extra_databases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Anchor:
    database: str
    anchor_id: str
    fingerprint: dict
    database_properties: dict


@dataclass(frozen=True)
class RunRecord:
    request: RehearsalRequest
    run_id: str
    evidence_dir: str
    clone: dict = field(default_factory=dict)  # the packet's `clone` facts
    dump: DumpInfo | None = None  # as intake inspected it: restored by these facts, checked by its sha256
    changes: tuple[ChangeSQL, ...] = ()  # apply and rollback as intake read them: sha256 and private copy
    contract: Contract | None = None  # parsed once; from schema SQL, derived at the first stage with a server
    contract_derived_from_schema: bool = False
    throwaway: ThrowawayNames | None = None
    anchor: Anchor | None = None
    # a reused clone's anchor, copied and proven with the template check; the anchor stage records it
    carried_anchor: Anchor | None = None
    restore: dict | None = None  # the restore's outcome (StageOutcome.as_dict), for the isolation gate's entry
    redacted_names: dict | None = None  # RedactedNames.as_state(), from the secret scan on
    witness: dict | None = None  # the seal's witness, when this stage sealed the packet

    def with_(self, **changes) -> RunRecord:
        return replace(self, **changes)

    def change(self, label: str) -> ChangeSQL | None:
        return next((c for c in self.changes if c.label == label), None)

    # -- between Dagster steps ----------------------------------------------------------
    def as_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["request"] = asdict(self.request)
        out["dump"] = _dump_json(self.dump)
        out["changes"] = [asdict(c) for c in self.changes]
        out["contract"] = {"source": self.contract.source, "data": self.contract.as_dict()} if self.contract else None
        out["throwaway"] = asdict(self.throwaway) if self.throwaway else None
        out["anchor"] = asdict(self.anchor) if self.anchor else None
        out["carried_anchor"] = asdict(self.carried_anchor) if self.carried_anchor else None
        return out

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        c = data.get("contract")
        tw = data.get("throwaway")
        return cls(**{**data,
                      "request": RehearsalRequest(**data["request"]),
                      "dump": _dump_from_json(data.get("dump")),
                      "changes": tuple(ChangeSQL(**c) for c in data.get("changes") or ()),
                      "contract": contract_from_dict(c["data"], c["source"]) if c else None,
                      "throwaway": ThrowawayNames(**{**tw, "extra_databases": tuple(tw["extra_databases"])})
                      if tw else None,
                      "anchor": Anchor(**data["anchor"]) if data.get("anchor") else None,
                      "carried_anchor": Anchor(**data["carried_anchor"]) if data.get("carried_anchor") else None})


def _dump_json(info: DumpInfo | None) -> dict | None:
    """What later stages restore by: of the table of contents only the extensions (the restore checks the server
    has them; it lists an archive's contents itself), so other names from the dump are not stored between steps."""
    if info is None:
        return None
    d = {f.name: getattr(info, f.name) for f in fields(info) if f.name != "screened"}
    d["path"] = str(info.path)
    d["toc"] = [asdict(e) for e in info.toc if e.kind == "EXTENSION"]
    return d


def _dump_from_json(d: dict | None) -> DumpInfo | None:
    if d is None:
        return None
    return DumpInfo(**{**d, "path": Path(d["path"]), "toc": [TocEntry(**e) for e in d.get("toc") or []]})
