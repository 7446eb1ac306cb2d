"""The statement patterns impact warns about, read from the project's SQL lexer (one statement at a time)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..postgres.sql_lexer import Tok, tokens

_SERIAL = {"serial", "serial4", "serial2", "serial8", "smallserial", "bigserial"}


def _is_name(t: Tok) -> bool:
    return t.kind in ("word", "ident")


def _name_at(toks: list[Tok], i: int) -> tuple[list[str], int]:
    """A possibly qualified name starting at i: its parts and the index after it."""
    parts = []
    while i < len(toks) and _is_name(toks[i]):
        parts.append(toks[i].value)
        if i + 2 < len(toks) and toks[i + 1].value == "." and toks[i + 1].kind == "punct":
            i += 2
            continue
        return parts, i + 1
    return parts, i


def _has_seq(words: list[str], seq: list[str]) -> bool:
    k = len(seq)
    return any(words[i:i + k] == seq for i in range(len(words) - k + 1))


def _split_actions(toks: list[Tok]) -> list[list[Tok]]:
    out, cur = [], []
    for t in toks:
        if t.kind == "punct" and t.value == "," and t.depth == 0:
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


@dataclass
class Pattern:
    rule: str
    line: int
    table: list[str]
    detail: str = ""
    extra: dict = field(default_factory=dict)


def default_functions(toks: list[Tok]) -> list[str]:
    """Function names called in a column DEFAULT expression (up to the next column constraint)."""
    stop = {"not", "null", "constraint", "check", "references", "generated", "collate", "unique", "primary"}
    names, on = [], False
    for j, t in enumerate(toks):
        if t.kind == "word" and t.depth == 0:
            if t.value == "default":
                on = True
                continue
            if on and t.value in stop:
                on = False
        if on and _is_name(t) and j + 1 < len(toks) and toks[j + 1].value == "(" and toks[j + 1].kind == "punct":
            names.append(t.value)
    return names


def patterns(text: str, line: int) -> list[Pattern]:
    """The known dangerous patterns in one statement of the lexer."""
    toks = tokens(text)
    w = [t.value if t.kind == "word" else "" for t in toks]
    out: list[Pattern] = []
    if w[:1] == ["create"] and "index" in w[:3]:
        i = w.index("index")
        concurrently = w[i + 1:i + 2] == ["concurrently"]
        on = next((k for k in range(i + 1, len(toks)) if w[k] == "on" and toks[k].depth == 0), None)
        if on is not None and not concurrently:
            k = on + 1 + (w[on + 1:on + 2] == ["only"])
            name, _ = _name_at(toks, k)
            if name:
                out.append(Pattern("index_without_concurrently", line, name))
    elif w[:2] == ["alter", "table"]:
        i = 2
        if w[i:i + 2] == ["if", "exists"]:
            i += 2
        if w[i:i + 1] == ["only"]:
            i += 1
        name, i = _name_at(toks, i)
        if not name or w[2:3] == ["all"]:
            return out
        if i < len(toks) and toks[i].value == "*":
            i += 1
        for action in _split_actions(toks[i:]):
            aw = [t.value if t.kind == "word" and t.depth == 0 else "" for t in action]
            if aw[:1] == ["add"]:
                j = 1
                if aw[j:j + 1] == ["constraint"]:
                    j += 2
                kind = aw[j:j + 1]
                if kind in (["foreign"], ["check"]):
                    if not _has_seq(aw, ["not", "valid"]):
                        out.append(Pattern("constraint_without_not_valid", line, name,
                                           "FOREIGN KEY" if kind == ["foreign"] else "CHECK"))
                    continue
                if kind in (["primary"], ["unique"], ["exclude"]):
                    continue
                j += aw[j:j + 1] == ["column"]
                if aw[j:j + 3] == ["if", "not", "exists"]:
                    j += 3
                column = action[j].value if j < len(action) else "?"
                typ = action[j + 1].value if j + 1 < len(action) and action[j + 1].kind == "word" else ""
                funcs = default_functions(action[j + 1:])
                has_default = "default" in aw
                identity = _has_seq(aw, ["generated"]) and ("identity" in aw or "stored" in aw)
                out.append(Pattern("add_column", line, name, column,
                                   {"functions": funcs, "serial": typ in _SERIAL, "identity": identity,
                                    "has_default": has_default}))
            elif aw[:1] == ["alter"]:
                j = 1 + (aw[1:2] == ["column"])
                rest = aw[j + 1:]
                if rest[:1] == ["type"] or rest[:3] == ["set", "data", "type"]:
                    column = action[j].value if j < len(action) else "?"
                    k = j + 1 + (1 if rest[:1] == ["type"] else 3)
                    typ = []
                    for t in action[k:]:
                        if t.depth == 0 and t.kind == "word" and t.value in ("using", "collate"):
                            break
                        if t.depth == 0 and _is_name(t):
                            typ.append(t.value)
                    out.append(Pattern("column_type_change", line, name, column, {"type": " ".join(typ)}))
    return out


def function_names(lexed) -> set[str]:
    """Every function named in an added column's DEFAULT, to ask the catalog which are volatile."""
    names: set[str] = set()
    if lexed is None:
        return names
    for st in lexed.statements:
        for p in patterns(lexed.source(st), st.line):
            names.update(p.extra.get("functions", []))
    return names


def growth_patterns(text: str, line: int) -> list[Pattern]:
    """Statements whose time grows with a table's rows and that `patterns` does not already name: an UPDATE or
    DELETE (its target), VALIDATE CONSTRAINT and SET NOT NULL (a scan of every row)."""
    toks = tokens(text)
    w = [t.value if t.kind == "word" and t.depth == 0 else "" for t in toks]
    i = None
    if w[:1] == ["update"]:
        i, rule = 1, "update_rows"
    elif w[:2] == ["delete", "from"]:
        i, rule = 2, "delete_rows"
    if i is not None:
        i += w[i:i + 1] == ["only"]
        name, _ = _name_at(toks, i)
        return [Pattern(rule, line, name)] if name else []
    out: list[Pattern] = []
    if w[:2] == ["alter", "table"]:
        i = 2 + 2 * (w[2:4] == ["if", "exists"])
        i += w[i:i + 1] == ["only"]
        name, i = _name_at(toks, i)
        if not name:
            return out
        for action in _split_actions(toks[i:]):
            aw = [t.value if t.kind == "word" and t.depth == 0 else "" for t in action]
            if aw[:2] == ["validate", "constraint"]:
                out.append(Pattern("validate_constraint", line, name, "VALIDATE CONSTRAINT"))
            elif aw[:1] == ["alter"] and _has_seq(aw, ["set", "not", "null"]):
                out.append(Pattern("set_not_null", line, name, "SET NOT NULL"))
    return out
