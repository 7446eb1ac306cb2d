"""The birth-surface contract: the shape a clone must match, plus what its data and secrets must honour.

A contract comes from YAML (the shipped default, `contracts/birth_surface.yaml`, or an operator's
file) or from PostgreSQL itself: schema-only SQL or any pg_dump archive is restored through the
screened, least-privileged restore path into a throwaway database and its shape is read from the
catalog (`core/intake/contract_from_schema.contract_from_schema`); no DDL is parsed here. The YAML has two top-level
sections so the shape can be compared with its SQL source exactly:

    version: 1
    shape:
      tables:
        <table>:                       # bare name for schema public, else schema.table
          required: true|false         # a missing required table fails, an optional one is a note
          columns:
            - {name: id, type: uuid, nullable: false, default: "nextval(...)"}   # type as format_type()
            - {name: n, type: bigint, nullable: false, identity: always}         # or: by default
            - {name: t, type: numeric, generated: {expression: "(a * 2)", kind: stored}}  # or kind: virtual
          primary_key: {name: t_pkey, columns: [id]}
          unique:       [{name: t_x_key, columns: [x]}]
          foreign_keys: [{name: t_y_fkey, columns: [y], references: {table: u, columns: [id]},
                          on_delete: CASCADE}]                                   # on_* omitted = NO ACTION
          checks:       [{name: t_check, definition: "CHECK ((x > 0))"}]         # pg_get_constraintdef form
          indexes:      [{name: t_x_idx, columns: [x], unique: false, method: btree}]
          partition_by: "RANGE (payment_date)"      # a partitioned table (pg_get_partkeydef)
          partition_of: payment                     # a partition, with its bound (pg_get_expr form)
          partition_bound: "FOR VALUES FROM ('2022-01-01 00:00:00+00') TO ('2022-02-01 00:00:00+00')"
          inherits: [parent]                        # INHERITS parents, in order
          of_type: public.some_type                 # a typed table (CREATE TABLE ... OF type)
    annotations:
      must_be_null:  {<table>: [<column>, ...]}   # secrets that a sanitized clone carries as NULL
      must_be_empty: [<table>, ...]               # tables a sanitized clone carries empty
      secret_headers: {<table>: [<json column>]}  # Authorization/Cookie/token headers must be absent
      hash_columns:  {<table>: [<column>, ...]}   # sha256 hex columns: data, not secrets
      lookalike_columns: {<table>: [<column>, ...]}  # ids, public keys, client ids: word-keyed secret rules
                                                  # do not fire there (core/sanitization/plan.py)
      pointers:      [{table, column, json_key?, status_column?, where?: {column: value}}]
                                                  # outward pointers (URLs a clone would call)
      data_rules:    {<rule name>: {table: ..., description: ...}}   # optional: none means shape only
      hot_tables:    [<table>, ...]               # production reads/writes them all the time: an ACCESS
                                                  # EXCLUSIVE lock on one is a warning (core/change/impact.py)
      production_rows: {<table>: <rows>}          # production's row counts, shown beside the clone's
"""

from __future__ import annotations

import re
from importlib import resources

import yaml

from .model import GENERATED, IDENTITY, Check, Column, Contract, ForeignKey, Index, Key, TableShape, contract_error

# -- YAML ---------------------------------------------------------------------------------

def dump_contract_yaml(contract: Contract) -> str:
    return yaml.safe_dump(contract.as_dict(), sort_keys=False, default_flow_style=None, width=120)



def _column(c: dict) -> Column:
    gen = c.get("generated")
    if gen is not None and not isinstance(gen, dict):
        gen = {"expression": gen}
    identity = c.get("identity")
    if identity is not None:
        identity = " ".join(str(identity).lower().split())
        if identity not in IDENTITY.values():
            raise ValueError(f"column {c['name']}: identity is 'always' or 'by default', not {identity!r}")
    kind = None if gen is None else str(gen.get("kind", "stored")).lower()
    if kind is not None and kind not in GENERATED.values():
        raise ValueError(f"column {c['name']}: generated kind is 'stored' or 'virtual', not {kind!r}")
    return Column(str(c["name"]), _norm_type(str(c["type"])), bool(c.get("nullable", True)),
                  None if c.get("default") is None else str(c["default"]), identity,
                  None if gen is None else str(gen["expression"]), kind)


def _opt(t: dict, key: str) -> str | None:
    return None if t.get(key) is None else str(t[key])


def contract_from_dict(data: object, source: str = "<dict>") -> Contract:
    if not isinstance(data, dict) or not isinstance(data.get("shape"), dict):
        raise contract_error(source, "no 'shape' mapping at the top level")
    if data.get("version", 1) != 1:
        raise contract_error(source, f"unknown version {data.get('version')!r}")
    tables_in = data["shape"].get("tables")
    if not isinstance(tables_in, dict) or not tables_in:
        raise contract_error(source, "'shape.tables' is missing or empty")
    tables: dict[str, TableShape] = {}
    try:
        for tname, t in tables_in.items():
            t = t or {}
            cols = [_column(c) for c in t.get("columns") or []]
            if "columns" not in t:
                raise ValueError(f"table {tname} has no columns")
            pk = t.get("primary_key")
            tables[str(tname)] = TableShape(
                name=str(tname), columns=cols, required=bool(t.get("required", True)),
                primary_key=Key(str(pk["name"]), [str(x) for x in pk["columns"]]) if pk else None,
                unique=[Key(str(u["name"]), [str(x) for x in u["columns"]]) for u in t.get("unique") or []],
                foreign_keys=[ForeignKey(str(f["name"]), [str(x) for x in f["columns"]],
                                         str(f["references"]["table"]),
                                         [str(x) for x in f["references"]["columns"]],
                                         _norm_action(f.get("on_delete")), _norm_action(f.get("on_update")))
                              for f in t.get("foreign_keys") or []],
                checks=[Check(str(c["name"]), str(c["definition"])) for c in t.get("checks") or []],
                indexes=[Index(str(i["name"]), [str(x) for x in i["columns"]], bool(i.get("unique", False)),
                               str(i.get("method", "btree"))) for i in t.get("indexes") or []],
                partition_by=_opt(t, "partition_by"), partition_of=_opt(t, "partition_of"),
                partition_bound=_opt(t, "partition_bound"), of_type=_opt(t, "of_type"),
                inherits=[str(x) for x in t.get("inherits") or []])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise contract_error(source, f"{type(e).__name__} {e}") from None
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise contract_error(source, "'annotations' is not a mapping")
    hot = annotations.get("hot_tables")
    if hot is not None and (not isinstance(hot, list) or not all(isinstance(t, str) and t for t in hot)):
        raise contract_error(source, "'annotations.hot_tables' is not a list of table names")
    rows = annotations.get("production_rows")
    if rows is not None and (not isinstance(rows, dict) or not all(
            isinstance(t, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
            for t, n in rows.items())):
        raise contract_error(source, "'annotations.production_rows' is not a mapping of table names to row counts")
    return Contract(tables=tables, annotations=annotations, source=source)



def contract_from_yaml_text(text: str, source: str) -> Contract:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise contract_error(source, f"YAML error {str(e).splitlines()[0]}") from None
    return contract_from_dict(data, source)


DEFAULT_CONTRACT = "birth_surface.yaml"


def default_contract() -> Contract:
    """The shipped default contract (the birth surface), used when the operator names none."""
    text = resources.files("fix7_pipeline").joinpath("contracts", DEFAULT_CONTRACT).read_text("utf-8")
    return contract_from_yaml_text(text, f"default ({DEFAULT_CONTRACT})")


# -- hand-written YAML types ------------------------------------------------------------------

_TYPE_ALIASES = {
    "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
    "float8": "double precision", "float4": "real", "float": "double precision", "decimal": "numeric",
    "varchar": "character varying", "char": "character", "bpchar": "character",
    "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
    "timetz": "time with time zone", "time": "time without time zone",
}


def _norm_type(t: str) -> str:
    """A type as format_type() prints it, for the aliases people write by hand (quoted names kept as written)."""
    if '"' in t:
        return " ".join(t.split())
    t = " ".join(t.replace(" (", "(").split()).lower()
    t = re.sub(r"^pg_catalog\.", "", t)
    m = re.match(r"^([a-z0-9_ ]+?)\s*(\(.*\))?(\[\])*$", t)
    if not m:
        return t
    base, mods = m.group(1), m.group(2) or ""
    arr = t[m.end(2) if m.group(2) else m.end(1):]
    if base in ("timestamp", "time") and mods:
        return f"{base}{mods} without time zone{arr}"
    if base in ("timestamptz", "timetz") and mods:
        return f"{base[:-2]}{mods} with time zone{arr}"
    if base == "character" and not mods:
        mods = "(1)"
    if base == "char" and not mods:
        return "character(1)" + arr
    base = _TYPE_ALIASES.get(base, base)
    mods = mods.replace(" ", "")
    return f"{base}{mods}{arr}"


def _norm_action(a: object) -> str | None:
    if a is None:
        return None
    a = " ".join(str(a).upper().split())
    return None if a == "NO ACTION" else a
