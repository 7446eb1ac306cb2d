"""The birth-surface contract: the shape a clone must match, plus what its data and secrets must honour.

A contract comes from YAML (the shipped default, `contracts/birth_surface.yaml`, or an operator's
file) or from a `pg_dump --schema-only` file, parsed here without a database. The YAML has two
top-level sections so the shape can be compared with its SQL source exactly:

    version: 1
    shape:
      tables:
        <table>:                       # bare name for schema public, else schema.table
          required: true|false         # a missing required table fails, an optional one is a note
          columns:
            - {name: id, type: uuid, nullable: false, default: "nextval(...)"}   # type as format_type()
          primary_key: {name: t_pkey, columns: [id]}
          unique:       [{name: t_x_key, columns: [x]}]
          foreign_keys: [{name: t_y_fkey, columns: [y], references: {table: u, columns: [id]},
                          on_delete: CASCADE}]                                   # on_* omitted = NO ACTION
          checks:       [{name: t_check, definition: "CHECK ((x > 0))"}]         # pg_get_constraintdef form
          indexes:      [{name: t_x_idx, columns: [x], unique: false, method: btree}]
    annotations:
      must_be_null:  {<table>: [<column>, ...]}   # secrets that a sanitized clone carries as NULL
      must_be_empty: [<table>, ...]               # tables a sanitized clone carries empty
      secret_headers: {<table>: [<json column>]}  # Authorization/Cookie/token headers must be absent
      hash_columns:  {<table>: [<column>, ...]}   # sha256 hex columns: data, not secrets
      pointers:      [{table, column, json_key?, status_column?, where?: {column: value}}]
                                                  # outward pointers (URLs a clone would call)
      data_rules:    {<rule name>: {table: ..., description: ...}}
      hot_tables:    [<table>, ...]               # production reads/writes them all the time: an ACCESS
                                                  # EXCLUSIVE lock on one is a warning (core/impact.py)
      production_rows: {<table>: <rows>}          # production's row counts, shown beside the clone's
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from .errors import EXIT_USAGE, Fix7Error

DEFAULT_CONTRACT = "birth_surface.yaml"
FK_ACTIONS = {"a": None, "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


@dataclass
class Column:
    name: str
    type: str
    nullable: bool = True
    default: str | None = None

    def as_dict(self) -> dict:
        d = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.default is not None:
            d["default"] = self.default
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


# -- YAML ---------------------------------------------------------------------------------

def dump_contract_yaml(contract: Contract) -> str:
    return yaml.safe_dump(contract.as_dict(), sort_keys=False, default_flow_style=None, width=120)


def _bad(source: str, why: str) -> Fix7Error:
    return Fix7Error(f"The contract {source} could not be read: {why}. A contract is a YAML file with a "
                     "'shape' section (see fix7_pipeline/contracts/birth_surface.yaml) or a pg_dump "
                     "--schema-only SQL file.", EXIT_USAGE, rule="contract")


def contract_from_dict(data: object, source: str = "<dict>") -> Contract:
    if not isinstance(data, dict) or not isinstance(data.get("shape"), dict):
        raise _bad(source, "no 'shape' mapping at the top level")
    if data.get("version", 1) != 1:
        raise _bad(source, f"unknown version {data.get('version')!r}")
    tables_in = data["shape"].get("tables")
    if not isinstance(tables_in, dict) or not tables_in:
        raise _bad(source, "'shape.tables' is missing or empty")
    tables: dict[str, TableShape] = {}
    try:
        for tname, t in tables_in.items():
            t = t or {}
            cols = [Column(str(c["name"]), _norm_type(str(c["type"])), bool(c.get("nullable", True)),
                           None if c.get("default") is None else str(c["default"])) for c in t.get("columns") or []]
            if not cols:
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
                               str(i.get("method", "btree"))) for i in t.get("indexes") or []])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise _bad(source, f"{type(e).__name__} {e}") from None
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise _bad(source, "'annotations' is not a mapping")
    hot = annotations.get("hot_tables")
    if hot is not None and (not isinstance(hot, list) or not all(isinstance(t, str) and t for t in hot)):
        raise _bad(source, "'annotations.hot_tables' is not a list of table names")
    rows = annotations.get("production_rows")
    if rows is not None and (not isinstance(rows, dict) or not all(
            isinstance(t, str) and isinstance(n, int) and not isinstance(n, bool) and n >= 0
            for t, n in rows.items())):
        raise _bad(source, "'annotations.production_rows' is not a mapping of table names to row counts")
    return Contract(tables=tables, annotations=annotations, source=source)


def load_contract(path: str | Path | None = None) -> Contract:
    """The contract at `path` (YAML or schema-only SQL, detected from content), or the shipped default."""
    if path is None:
        text = resources.files("fix7_pipeline").joinpath("contracts", DEFAULT_CONTRACT).read_text("utf-8")
        return _from_yaml_text(text, f"default ({DEFAULT_CONTRACT})")
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(str(p), f"{type(e).__name__}: {e}") from None
    if _looks_like_sql(text):
        c = contract_from_sql(text, source=str(p))
        return c
    return _from_yaml_text(text, str(p))


def _from_yaml_text(text: str, source: str) -> Contract:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _bad(source, f"YAML error {str(e).splitlines()[0]}") from None
    return contract_from_dict(data, source)


def _looks_like_sql(text: str) -> bool:
    return re.search(r"(?im)^\s*create\s+(unlogged\s+)?table\b", text) is not None and \
        re.search(r"(?m)^shape\s*:", text) is None


# -- schema-only SQL -------------------------------------------------------------------------

_TYPE_ALIASES = {
    "int": "integer", "int4": "integer", "int8": "bigint", "int2": "smallint", "bool": "boolean",
    "float8": "double precision", "float4": "real", "float": "double precision", "decimal": "numeric",
    "varchar": "character varying", "char": "character", "bpchar": "character",
    "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
    "timetz": "time with time zone", "time": "time without time zone",
}
_SERIALS = {"serial": "integer", "serial4": "integer", "bigserial": "bigint", "serial8": "bigint",
            "smallserial": "smallint", "serial2": "smallint"}


def _norm_type(t: str) -> str:
    """A type as format_type() prints it, for the aliases people write by hand."""
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


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<string>[EeNn]?'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<cast>::)
  | (?P<punct>[(),;.\[\]])
  | (?P<op>[^\sA-Za-z0-9_(),;.\[\]"']+)
""", re.S | re.X)


@dataclass
class _Tok:
    kind: str
    text: str

    @property
    def word(self) -> str:
        return self.text.lower() if self.kind == "word" else ""


def _statements(sql_text: str) -> list[list[_Tok]]:
    """Split SQL into token lists per statement; skips psql meta lines and COPY data blocks."""
    stmts: list[list[_Tok]] = []
    cur: list[_Tok] = []
    pos, n = 0, len(sql_text)
    at_line_start = True
    while pos < n:
        if at_line_start and not cur:
            m = re.match(r"[ \t]*\\[^\n]*(\n|$)", sql_text[pos:])
            if m:
                pos += m.end()
                continue
        m = _TOKEN_RE.match(sql_text, pos)
        if not m:
            raise ValueError(f"unreadable text at character {pos}")
        kind = m.lastgroup if m.lastgroup != "tag" else "dollar"
        if m.group("dollar") is not None:
            end = sql_text.find(m.group("dollar"), m.end())
            if end < 0:
                raise ValueError("unterminated dollar-quoted string")
            cur.append(_Tok("string", sql_text[pos:end + len(m.group("dollar"))]))
            pos = end + len(m.group("dollar"))
            at_line_start = False
            continue
        text = m.group(0)
        pos = m.end()
        if kind == "ws":
            at_line_start = "\n" in text
            continue
        if kind == "comment":
            continue
        at_line_start = False
        if kind == "punct" and text == ";":
            if cur:
                stmts.append(cur)
                if _is_copy_from_stdin(cur):
                    end = sql_text.find("\n\\.", pos)
                    pos = n if end < 0 else end + 3
                cur = []
            at_line_start = False
            continue
        cur.append(_Tok(kind, text))
    if cur:
        stmts.append(cur)
    return stmts


def _is_copy_from_stdin(toks: list[_Tok]) -> bool:
    words = [t.word for t in toks]
    return bool(words) and words[0] == "copy" and "stdin" in words


def _ident(t: _Tok) -> str:
    if t.kind == "qident":
        return t.text[1:-1].replace('""', '"')
    if t.kind == "word":
        return t.text.lower()
    raise ValueError(f"expected a name, found {t.text!r}")


class _Cursor:
    def __init__(self, toks: list[_Tok]):
        self.toks, self.i = toks, 0

    def peek(self, k: int = 0) -> _Tok | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def next(self) -> _Tok:
        t = self.peek()
        if t is None:
            raise ValueError("statement ends early")
        self.i += 1
        return t

    def accept(self, *words: str) -> bool:
        for k, w in enumerate(words):
            t = self.peek(k)
            if t is None or t.word != w:
                return False
        self.i += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            raise ValueError(f"expected {' '.join(words).upper()} near {self.peek().text if self.peek() else 'end'!r}")

    def qualified(self) -> str:
        parts = [_ident(self.next())]
        while self.peek() and self.peek().text == "." and self.peek().kind == "punct":
            self.i += 1
            parts.append(_ident(self.next()))
        if len(parts) == 2 and parts[0] == "public":
            return parts[1]
        return ".".join(parts)

    def name_list(self) -> list[str]:
        self.expect_punct("(")
        names = [_ident(self.next())]
        while self.peek() and self.peek().text == ",":
            self.i += 1
            names.append(_ident(self.next()))
        self.expect_punct(")")
        return names

    def expect_punct(self, p: str) -> None:
        t = self.next()
        if t.text != p:
            raise ValueError(f"expected {p!r}, found {t.text!r}")

    def balanced(self) -> list[_Tok]:
        """The tokens inside the parenthesis group starting here (parentheses consumed)."""
        self.expect_punct("(")
        depth, out = 1, []
        while True:
            t = self.next()
            if t.kind == "punct" and t.text == "(":
                depth += 1
            elif t.kind == "punct" and t.text == ")":
                depth -= 1
                if depth == 0:
                    return out
            out.append(t)

    def until(self, stop_words: set[str]) -> list[_Tok]:
        """Tokens up to (not including) a top-level stop word, comma or the end."""
        out, depth = [], 0
        while self.peek() is not None:
            t = self.peek()
            if depth == 0 and (t.word in stop_words or (t.kind == "punct" and t.text in ",)")):
                break
            if t.kind == "punct" and t.text in "([":
                depth += 1
            elif t.kind == "punct" and t.text in ")]":
                depth -= 1
            out.append(t)
            self.i += 1
        return out


def _render(toks: list[_Tok]) -> str:
    """Tokens back to text in PostgreSQL's deparse spacing (close enough for defaults and checks)."""
    out = ""
    prev: _Tok | None = None
    for t in toks:
        text = t.text
        if prev is None:
            out = text
        elif t.kind == "punct" and text in ",)]":
            out += text
        elif t.kind == "cast" or (prev.kind == "cast"):
            out += text
        elif prev.kind == "punct" and prev.text in "([":
            out += text
        elif t.kind == "punct" and text == "[":
            out += text
        elif t.kind == "punct" and text == "(" and prev.kind in ("word", "qident") and prev.word not in (
                "any", "all", "and", "or", "not", "in", "check"):
            out += text
        elif t.kind == "punct" and text == "." or (prev.kind == "punct" and prev.text == "."):
            out += text
        else:
            out += " " + text
        prev = t
    return out


_COLUMN_STOP = {"collate", "default", "not", "null", "constraint", "primary", "unique", "check", "references",
                "generated"}


def _strip_parens(s: str) -> str:
    s = s.strip()
    while s.startswith("(") and s.endswith(")") and _balanced_whole(s):
        s = s[1:-1].strip()
    return s


def _balanced_whole(s: str) -> bool:
    depth = 0
    in_str = False
    for i, ch in enumerate(s):
        if ch == "'":
            in_str = not in_str
        if in_str:
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


def check_definition(expr: str, tail: str = "") -> str:
    """A CHECK expression the way pg_get_constraintdef prints a single-expression constraint."""
    d = f"CHECK (({_strip_parens(expr)}))"
    return f"{d} {tail}".strip()


class _Builder:
    def __init__(self):
        self.tables: dict[str, TableShape] = {}
        self.pending_fk_refs: list[ForeignKey] = []

    def table(self, name: str) -> TableShape:
        if name not in self.tables:
            raise ValueError(f"ALTER TABLE names {name}, which no CREATE TABLE before it defines")
        return self.tables[name]

    # CREATE TABLE -------------------------------------------------------------------------
    def create_table(self, c: _Cursor) -> None:
        c.accept("if", "not", "exists")
        name = c.qualified()
        t = self.tables.setdefault(name, TableShape(name=name))
        nxt = c.peek()
        if nxt is None or nxt.text != "(":
            raise ValueError(f"CREATE TABLE {name} is not a column list (OF/AS/PARTITION OF are not supported)")
        body = _Cursor(c.balanced())
        while body.peek() is not None:
            self.table_element(t, body)
            if body.peek() is not None:
                body.expect_punct(",")

    def table_element(self, t: TableShape, c: _Cursor) -> None:
        first = c.peek()
        if first.word in ("constraint", "primary", "unique", "check", "foreign", "exclude") and first.kind == "word":
            self.table_constraint(t, c)
            return
        if first.word == "like":
            raise ValueError("CREATE TABLE ... (LIKE ...) is not supported")
        col = _ident(c.next())
        type_toks = c.until(_COLUMN_STOP)
        if not type_toks:
            raise ValueError(f"column {t.name}.{col} has no type")
        raw_type = _render(type_toks)
        serial = _SERIALS.get(raw_type.lower())
        column = Column(col, serial or _norm_type(raw_type))
        if serial:
            column.nullable = False
            schema, _, bare = t.name.rpartition(".")
            seq = f"{quote_ident(schema or 'public')}.{quote_ident(f'{bare}_{col}_seq')}"
            column.default = f"nextval('{seq}'::regclass)"
        t.columns.append(column)
        conname: str | None = None
        while c.peek() is not None and not (c.peek().kind == "punct" and c.peek().text == ","):
            if c.accept("collate"):
                c.qualified()
            elif c.accept("default"):
                column.default = _render(c.until(_COLUMN_STOP))
            elif c.accept("not", "null"):
                column.nullable = False
            elif c.accept("null"):
                column.nullable = True
            elif c.accept("constraint"):
                conname = _ident(c.next())
                continue
            elif c.accept("primary", "key"):
                t.primary_key = Key(conname or f"{_bare(t.name)}_pkey", [col])
                column.nullable = False
            elif c.accept("unique"):
                c.accept("nulls", "not", "distinct")
                t.unique.append(Key(conname or f"{_bare(t.name)}_{col}_key", [col]))
            elif c.accept("check"):
                expr = _render(c.balanced())
                t.checks.append(Check(conname or f"{_bare(t.name)}_{col}_check", check_definition(expr)))
            elif c.accept("references"):
                fk = ForeignKey(conname or f"{_bare(t.name)}_{col}_fkey", [col], c.qualified(), [])
                if c.peek() is not None and c.peek().text == "(":
                    fk.ref_columns = c.name_list()
                self.fk_actions(fk, c)
                t.foreign_keys.append(fk)
            elif c.accept("generated"):
                c.until({"not", "null", "constraint", "primary", "unique", "check", "references"})
            else:
                raise ValueError(f"column {t.name}.{col}: unexpected {c.peek().text!r}")
            conname = None

    def fk_actions(self, fk: ForeignKey, c: _Cursor) -> None:
        while c.peek() is not None:
            if c.accept("on", "delete"):
                fk.on_delete = _norm_action(_render(c.until({"on", "match", "deferrable", "not", "initially"})))
            elif c.accept("on", "update"):
                fk.on_update = _norm_action(_render(c.until({"on", "match", "deferrable", "not", "initially"})))
            elif c.accept("match"):
                c.next()
            elif c.accept("deferrable") or c.accept("not", "deferrable") or c.accept("not", "valid"):
                pass
            elif c.accept("initially"):
                c.next()
            else:
                break
        if not fk.ref_columns:
            self.pending_fk_refs.append(fk)

    def table_constraint(self, t: TableShape, c: _Cursor) -> None:
        name = _ident(c.next()) if c.accept("constraint") else None
        bare = _bare(t.name)
        if c.accept("primary", "key"):
            cols = c.name_list()
            t.primary_key = Key(name or f"{bare}_pkey", cols)
            for col in cols:
                if t.column(col):
                    t.column(col).nullable = False
        elif c.accept("unique"):
            c.accept("nulls", "not", "distinct")
            cols = c.name_list()
            t.unique.append(Key(name or f"{bare}_{'_'.join(cols)}_key", cols))
        elif c.accept("check"):
            expr = _render(c.balanced())
            tail = "NOT VALID" if c.accept("not", "valid") else ""
            c.accept("no", "inherit")
            t.checks.append(Check(name or f"{bare}_check", check_definition(expr, tail)))
        elif c.accept("foreign", "key"):
            cols = c.name_list()
            c.expect("references")
            fk = ForeignKey(name or f"{bare}_{'_'.join(cols)}_fkey", cols, c.qualified(), [])
            if c.peek() is not None and c.peek().text == "(":
                fk.ref_columns = c.name_list()
            self.fk_actions(fk, c)
            t.foreign_keys.append(fk)
        elif c.accept("exclude"):
            c.until(set())
        else:
            raise ValueError(f"table {t.name}: unreadable constraint near {c.peek().text if c.peek() else 'end'!r}")
        while c.peek() is not None and not (c.peek().kind == "punct" and c.peek().text == ","):
            c.next()  # DEFERRABLE, USING INDEX TABLESPACE, ... do not change the shape

    # ALTER TABLE -------------------------------------------------------------------------
    def alter_table(self, c: _Cursor) -> None:
        c.accept("if", "exists")
        c.accept("only")
        name = c.qualified()
        if name not in self.tables:
            return  # ALTER TABLE on a view/sequence/partition pg_dump also emits; not part of the shape
        t = self.tables[name]
        while c.peek() is not None:
            if c.accept("add"):
                if c.peek() is not None and c.peek().word == "column":
                    raise ValueError(f"ALTER TABLE {name} ADD COLUMN is not supported in a contract")
                self.table_constraint(t, c)
            elif c.accept("alter"):
                c.accept("column")
                col = _ident(c.next())
                column = t.column(col)
                if column is None:
                    raise ValueError(f"ALTER TABLE {name} names unknown column {col}")
                if c.accept("set", "default"):
                    column.default = _render(c.until(set()))
                elif c.accept("drop", "default"):
                    column.default = None
                elif c.accept("set", "not", "null"):
                    column.nullable = False
                elif c.accept("drop", "not", "null"):
                    column.nullable = True
                else:
                    c.until(set())  # ADD GENERATED ... AS IDENTITY, SET STATISTICS, ...
            else:
                c.until(set())  # OWNER TO, REPLICA IDENTITY, ENABLE TRIGGER, ... do not change the shape
            if c.peek() is not None and c.peek().text == ",":
                c.next()

    def create_index(self, c: _Cursor, unique: bool) -> None:
        c.accept("concurrently")
        c.accept("if", "not", "exists")
        name = _ident(c.next())
        c.expect("on")
        c.accept("only")
        table = c.qualified()
        method = "btree"
        if c.accept("using"):
            method = c.next().text.lower()
        items = _Cursor(c.balanced())
        cols = []
        while items.peek() is not None:
            cols.append(_render(items.until(set())).split(" ")[0].strip('"'))
            if items.peek() is not None:
                items.next()
        if table in self.tables:
            self.tables[table].indexes.append(Index(name, cols, unique, method))

    def finish(self) -> dict[str, TableShape]:
        for fk in self.pending_fk_refs:
            ref = self.tables.get(fk.ref_table)
            if ref is None or ref.primary_key is None:
                raise ValueError(f"foreign key {fk.name} references {fk.ref_table} without a column list "
                                 "and no primary key is known")
            fk.ref_columns = list(ref.primary_key.columns)
        return self.tables


def quote_ident(name: str) -> str:
    """An identifier as PostgreSQL's quote_ident prints it (keywords aside)."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _bare(name: str) -> str:
    return name.split(".")[-1]


def contract_from_sql(sql_text: str, source: str = "<sql>") -> Contract:
    """The shape of every table in a schema-only SQL file (pg_dump output or hand-written DDL)."""
    b = _Builder()
    try:
        for toks in _statements(sql_text):
            c = _Cursor(toks)
            if c.accept("create", "table") or c.accept("create", "unlogged", "table"):
                b.create_table(c)
            elif c.accept("alter", "table"):
                b.alter_table(c)
            elif c.accept("create", "unique", "index"):
                b.create_index(c, True)
            elif c.accept("create", "index"):
                b.create_index(c, False)
        tables = b.finish()
    except (ValueError, IndexError, AttributeError) as e:
        raise _bad(source, f"the SQL could not be parsed ({e})") from None
    if not tables:
        raise _bad(source, "it defines no tables")
    return Contract(tables=tables, annotations={}, source=source)


def with_annotations(shape: Contract, annotations: dict) -> Contract:
    return Contract(tables=copy.deepcopy(shape.tables), annotations=copy.deepcopy(annotations), source=shape.source)
