"""The contract's model: the shape a clone must match (tables, columns, keys, checks, indexes) and its annotations."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from ..shared.errors import EXIT_USAGE, Fix7Error

FK_ACTIONS = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


IDENTITY = {"a": "always", "d": "by default"}
GENERATED = {"s": "stored", "v": "virtual"}


@dataclass
class Column:
    name: str
    type: str
    nullable: bool = True
    default: str | None = None
    identity: str | None = None           # "always" | "by default"
    generated: str | None = None          # the generation expression
    generated_kind: str | None = None     # "stored" | "virtual"

    def as_dict(self) -> dict:
        d: dict = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.default is not None:
            d["default"] = self.default
        if self.identity is not None:
            d["identity"] = self.identity
        if self.generated is not None:
            d["generated"] = {"expression": self.generated, "kind": self.generated_kind or "stored"}
        return d


@dataclass
class Key:
    """A primary key or unique constraint."""

    name: str
    columns: list[str]

    def as_dict(self) -> dict:
        return {"name": self.name, "columns": list(self.columns)}


@dataclass
class ForeignKey:
    name: str
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    on_delete: str | None = None
    on_update: str | None = None

    def as_dict(self) -> dict:
        d = {"name": self.name, "columns": list(self.columns),
             "references": {"table": self.ref_table, "columns": list(self.ref_columns)}}
        if self.on_delete:
            d["on_delete"] = self.on_delete
        if self.on_update:
            d["on_update"] = self.on_update
        return d


@dataclass
class Check:
    name: str
    definition: str

    def as_dict(self) -> dict:
        return {"name": self.name, "definition": self.definition}


@dataclass
class Index:
    name: str
    columns: list[str]
    unique: bool = False
    method: str = "btree"

    def as_dict(self) -> dict:
        return {"name": self.name, "columns": list(self.columns), "unique": self.unique, "method": self.method}


@dataclass
class TableShape:
    name: str
    columns: list[Column] = field(default_factory=list)
    primary_key: Key | None = None
    unique: list[Key] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    required: bool = True
    partition_by: str | None = None       # a partitioned table: pg_get_partkeydef, e.g. "RANGE (payment_date)"
    partition_of: str | None = None       # a partition: its parent table
    partition_bound: str | None = None    # and its bound, e.g. "FOR VALUES FROM (...) TO (...)"
    inherits: list[str] = field(default_factory=list)   # INHERITS parents, in order
    of_type: str | None = None            # a typed table: the composite type

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def as_dict(self) -> dict:
        d: dict = {"required": self.required, "columns": [c.as_dict() for c in self.columns]}
        if self.primary_key:
            d["primary_key"] = self.primary_key.as_dict()
        for key, items in (("unique", self.unique), ("foreign_keys", self.foreign_keys),
                           ("checks", self.checks), ("indexes", self.indexes)):
            if items:
                d[key] = [i.as_dict() for i in sorted(items, key=lambda i: i.name)]
        for key in ("partition_by", "partition_of", "partition_bound", "of_type"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.inherits:
            d["inherits"] = list(self.inherits)
        return d


@dataclass
class Contract:
    tables: dict[str, TableShape] = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    source: str = ""

    # -- annotations, read the same way everywhere ---------------------------------------
    def _table_columns(self, key: str) -> dict[str, list[str]]:
        return {t: list(cols or []) for t, cols in (self.annotations.get(key) or {}).items()}

    @property
    def must_be_null(self) -> dict[str, list[str]]:
        return self._table_columns("must_be_null")

    @property
    def must_be_empty(self) -> list[str]:
        return list(self.annotations.get("must_be_empty") or [])

    @property
    def hash_columns(self) -> dict[str, list[str]]:
        return self._table_columns("hash_columns")

    @property
    def secret_headers(self) -> dict[str, list[str]]:
        return self._table_columns("secret_headers")

    @property
    def pointers(self) -> list[dict]:
        return [dict(p) for p in (self.annotations.get("pointers") or [])]

    @property
    def data_rules(self) -> dict[str, dict]:
        return dict(self.annotations.get("data_rules") or {})

    @property
    def hot_tables(self) -> list[str]:
        return [str(t) for t in self.annotations.get("hot_tables") or []]

    @property
    def production_rows(self) -> dict[str, int]:
        return {str(t): int(n) for t, n in (self.annotations.get("production_rows") or {}).items()}

    def shape_dict(self) -> dict:
        return {"tables": {n: t.as_dict() for n, t in self.tables.items()}}

    def as_dict(self) -> dict:
        d: dict = {"version": 1, "shape": self.shape_dict()}
        if self.annotations:
            d["annotations"] = copy.deepcopy(self.annotations)
        return d




def contract_error(source: str, why: str) -> Fix7Error:
    """The one usage error a contract that cannot be read or made is refused with."""
    return Fix7Error(f"The contract {source} could not be read: {why}. A contract is a YAML file with a "
                     "'shape' section (see fix7_pipeline/contracts/birth_surface.yaml), schema-only SQL or a "
                     "pg_dump archive of the production shape.", EXIT_USAGE, rule="contract")


def with_annotations(shape: Contract, annotations: dict) -> Contract:
    return Contract(tables=copy.deepcopy(shape.tables), annotations=copy.deepcopy(annotations), source=shape.source)
