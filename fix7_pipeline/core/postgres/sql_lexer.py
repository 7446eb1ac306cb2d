"""One SQL lexer: quotes, comments, dollar quotes and COPY data the way psql and the server read them.

Every reader of SQL in fix7 goes through it: the dump screening and the restore (`core/dumps/`), the
change screen and runner (`core/change/change_sql.py`), the impact patterns (`core/change/impact.py`) and the contract's
schema-source sniffing (`core/contract/`).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

COPY_FROM_STDIN = re.compile(r"^COPY\b.*\bFROM\s+STDIN\b", re.I | re.S)
_META_WORD = re.compile(r"\\([A-Za-z]+|[^A-Za-z\s]?)")
# The server's lexer works on bytes: every byte of a non-ASCII character is an identifier character.
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")


def _ident_char(c: str) -> bool:
    """Part of an identifier, so a quote right after it starts no new token ("" is a line's start)."""
    return len(c) == 1 and (c.isascii() and (c.isalnum() or c in "_$") or c >= "\x80")



@dataclass
class Statement:
    line: int
    text: str           # normalised (comments removed, whitespace collapsed), first 4 KiB
    at_line_start: bool
    col: int = 0        # where it starts on `line` (0-based)
    end_line: int = 0   # where it ends: the line of its semicolon (or of the end of input) ...
    end_col: int = 0    # ... and the column just after it


@dataclass
class Meta:
    line: int
    word: str
    arg: str
    alone: bool         # the meta-command is the whole line, outside any statement


# -- where a quote, a dollar quote or a comment ends ---------------------------------------------

LINE_COMMENT, BLOCK_COMMENT = "--", "/*"
_QUOTED = {
    "'": re.compile(r"(?:[^']|'')*+'"),                  # '' is a quote inside
    "E'": re.compile(r"(?:[^'\\]|\\.|'')*+'", re.S),   # and so is \' in an escape string
    '"': re.compile(r'(?:[^"]|"")*+"'),
}
_COMMENT_MARK = re.compile(r"/\*|\*/")


def quote_at(text: str, i: int, std_strings: bool = True) -> str | None:
    """What opens at text[i] (outside any quote): '--', '/*', "'", "E'", '"', a dollar tag such as '$body$', or None.

    `'` opens an escape string (`E'`) after an E that starts a token, or anywhere when
    standard_conforming_strings is off; a `$` right after an identifier character opens nothing.
    """
    c = text[i]
    if c == "-":
        return LINE_COMMENT if text.startswith("--", i) else None
    if c == "/":
        return BLOCK_COMMENT if text.startswith("/*", i) else None
    if c == "'":
        prev = text[i - 1] if i else ""
        prev2 = text[i - 2] if i > 1 else ""
        escaped = prev in ("e", "E") and not _ident_char(prev2)
        return "E'" if (escaped or not std_strings) else "'"
    if c == '"':
        return '"'
    if c == "$" and not (i and _ident_char(text[i - 1])):
        m = _DOLLAR_TAG.match(text, i)
        return m.group(0) if m else None
    return None


def quote_end(text: str, i: int, q: str, depth: int = 1) -> tuple[int | None, int]:
    """Where `q` (open before text[i]) ends: (the index just after it, or None when it runs past the end of
    `text`; the nesting depth of a block comment still open, else 0). Block comments nest; a line comment
    ends before its newline."""
    if q == LINE_COMMENT:
        j = text.find("\n", i)
        return (len(text) if j < 0 else j), 0
    if q == BLOCK_COMMENT:
        for m in _COMMENT_MARK.finditer(text, i):
            depth += 1 if m.group(0) == "/*" else -1
            if depth == 0:
                return m.end(), 0
        return None, depth
    rx = _QUOTED.get(q)
    if rx is not None:
        m = rx.match(text, i)
        return (m.end() if m else None), 0
    j = text.find(q, i)  # a dollar quote ends at its own tag
    return (None if j < 0 else j + len(q)), 0


# -- psql's view: statements, meta-commands and COPY data, one line at a time ----------------------

class PlainScanner:
    """Tracks quotes, comments, dollar quotes and COPY data the way psql does, one line at a time."""

    def __init__(self):
        self.in_copy = False
        self.q: str | None = None
        self.depth = 0
        self.std_strings = True
        self.buf: list[str] = []
        self.buf_len = 0
        self.stmt_line: int | None = None
        self.stmt_col = 0
        self.stmt_at_start = False
        self.pending_copy = False
        self.after_copy_junk = False

    def _add(self, s: str) -> None:
        if self.buf_len < 4096:
            s = s[:4096 - self.buf_len]
            self.buf.append(s)
            self.buf_len += len(s)

    def _start(self, lineno: int, col: int) -> None:
        if self.stmt_line is None:
            self.stmt_line, self.stmt_col, self.stmt_at_start = lineno, col, col == 0
            self.buf, self.buf_len = [], 0

    def _end(self, lineno: int, col: int) -> Statement:
        text = " ".join("".join(self.buf).split())
        st = Statement(self.stmt_line or 0, text, self.stmt_at_start, self.stmt_col, lineno, col)
        self.stmt_line, self.buf, self.buf_len = None, [], 0
        return st

    def finish(self, lineno: int, col: int) -> Statement | None:
        """The statement left without a semicolon at the end of input, which a server still runs."""
        if self.stmt_line is None:
            return None
        self.q = None
        return self._end(lineno, col)

    def in_statement(self) -> bool:
        return self.stmt_line is not None or self.q is not None

    def feed(self, lineno: int, line: str, complete: bool = True) -> tuple[str, list[Statement], list[Meta]]:
        """Classify one line: ("copy_data" | "copy_end" | "sql", statements ended on it, meta-commands)."""
        if self.in_copy:
            if line.rstrip("\r\n") == "\\." and complete:
                self.in_copy = False
                return "copy_end", [], []
            return "copy_data", [], []
        stmts: list[Statement] = []
        metas: list[Meta] = []
        i, n = 0, len(line)
        copy_after = False
        while i < n:
            q = self.q
            if q is not None:  # inside a quote or a block comment, maybe opened on an earlier line
                end, self.depth = quote_end(line, i, q, self.depth)
                if q != BLOCK_COMMENT:
                    self._add(line[i:end])  # quoted text is kept as written
                if end is None:
                    break
                self.q, i = None, end
                if q == BLOCK_COMMENT and self.stmt_line is not None:
                    self._add(" ")  # a comment separates words, as the server reads it
                continue
            c = line[i]
            q = quote_at(line, i, self.std_strings)
            if q == LINE_COMMENT:
                if self.stmt_line is not None:
                    self._add(" ")
                break
            if q == BLOCK_COMMENT:
                self.q, self.depth = q, 1
                i += 2
                continue
            if c.isspace():
                if self.stmt_line is not None:
                    self._add(" ")
                i += 1
                continue
            if copy_after:
                self.after_copy_junk = True
            if c == "\\":
                m = _META_WORD.match(line, i)
                word = m.group(1) if m else ""
                alone = self.stmt_line is None and not line[:i].strip()
                metas.append(Meta(lineno, word, line[m.end() if m else i + 1:].strip(), alone))
                break
            self._start(lineno, i)
            if q is not None:
                self.q = q
                opener = q if q[0] == "$" else c
                self._add(opener)
                i += len(opener)
                continue
            if c == ";":
                self._add(";")
                st = self._end(lineno, i + 1)
                stmts.append(st)
                self._note_statement(st)
                if COPY_FROM_STDIN.match(st.text):
                    copy_after = True
                i += 1
                continue
            self._add(c)
            i += 1
        if copy_after and complete:
            self.in_copy = True
        return "sql", stmts, metas

    def _note_statement(self, st: Statement) -> None:
        m = re.match(r"^SET standard_conforming_strings (?:=|TO) '?(on|off)'?\s*;$", st.text, re.I)
        if m:
            self.std_strings = m.group(1).lower() == "on"




# -- the server's view of one statement: its tokens ------------------------------------------------

_CODE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<prefix>(?:[BbXxNnEe]|[Uu]&)(?='))           # b'..', x'..', n'..', e'..', u&'..': part of the string
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
  | (?P<num>[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?)
  | (?P<punct>::|[(),;.\[\]])
  | (?P<op>(?:(?!--|/\*)[^\sA-Za-z0-9_(),;.\[\]"'$])+|\$)
""", re.X)


@dataclass(frozen=True)
class Tok:
    kind: str      # word | ident | str | num | punct | op
    value: str     # words lower-cased, quoted identifiers unquoted; strings and dollar quotes ""
    depth: int     # parenthesis depth before the token


def tokens(text: str) -> list[Tok]:
    """SQL tokens of one statement: comments dropped, strings and dollar quotes one `str` token each.

    Quotes, dollar quotes and comments end where `quote_end` says, as for whole files, so a
    statement's tokens never disagree with where the scanner saw it end.
    """
    out: list[Tok] = []
    i, n, depth = 0, len(text), 0
    while i < n:
        q = quote_at(text, i)
        if q is not None:
            start = i + (len(q) if q[0] == "$" or q in (LINE_COMMENT, BLOCK_COMMENT) else 1)
            end, _ = quote_end(text, start, q)
            end = n if end is None else end
            if q == '"':
                out.append(Tok("ident", text[i + 1:end - 1].replace('""', '"'), depth))
            elif q not in (LINE_COMMENT, BLOCK_COMMENT):
                out.append(Tok("str", "", depth))
            i = end
            continue
        m = _CODE.match(text, i)
        if not m:
            i += 1
            continue
        kind, value = m.lastgroup, m.group(0)
        i = m.end()
        if kind in ("ws", "prefix"):
            continue
        if kind == "word":
            value = value.lower()
        if kind == "punct" and value == ")":
            depth = max(0, depth - 1)
        out.append(Tok(kind, value, depth))
        if kind == "punct" and value == "(":
            depth += 1
    return out


_IDENT = r'(?:"(?:[^"]|"")*"|[^\s".(]+)'
_COPY_TARGET = re.compile(rf"^COPY\s+({_IDENT})(?:\.({_IDENT}))?", re.I)


def copy_target(text: str) -> str:
    """'schema.table' (unquoted) of a COPY statement, as the TOC names it."""
    m = _COPY_TARGET.match(text)
    if not m:
        return "?"
    parts = [unquote_ident(x) for x in m.groups() if x]
    return ".".join(parts)


def unquote_ident(name: str) -> str:
    if name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name.lower()


_LINE_END = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class Lines(Sequence):
    """A text's lines (as `str.splitlines(keepends=True)` cuts them), kept as the text and where each line
    starts: a large change file is held once, not once more as a list of lines."""

    def __init__(self, text: str):
        self.text = text
        self.starts = array("q", [0])
        self.starts.extend(m.end() for m in _LINE_END.finditer(text))
        if self.starts[-1] == len(text):
            self.starts.pop()
        if not text:
            self.starts = array("q")

    def start(self, i: int) -> int:
        """Where line i (0-based) starts; len(self) gives the text's end."""
        return self.starts[i] if i < len(self.starts) else len(self.text)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.text[self.starts[i]:self.start(i + 1)]


@dataclass(frozen=True)
class Lexed:
    """A change file as the lexer reads it: every statement (one without a final semicolon too) and meta-command."""

    lines: Lines
    statements: list[Statement]
    metas: list[Meta]

    def source(self, st: Statement) -> str:
        """The statement exactly as written, comments and all."""
        return self.lines.text[self.lines.start(st.line - 1) + st.col:self.lines.start(st.end_line - 1) + st.end_col]


def lex(text: str) -> Lexed:
    """One reading of a SQL text (a change file, schema SQL) as psql would send it: every statement and meta-command.

    The change screen and the change runner's pieces both read it, so the two never disagree.
    """
    lines = Lines(text)
    statements: list[Statement] = []
    metas: list[Meta] = []
    for item in iter_lexed(lines):
        (metas if isinstance(item, Meta) else statements).append(item)
    return Lexed(lines, statements, metas)


def iter_lexed(lines):
    """Statements (an empty `;` left out, the last one without a semicolon included) and meta-commands, lazily."""
    scanner = PlainScanner()
    count, last_len = 0, 0  # `lines` may be a file, read line by line
    for count, line in enumerate(lines, start=1):
        last_len = len(line)
        _, sts, ms = scanner.feed(count, line, True)
        yield from ms
        yield from (st for st in sts if st.text != ";")
    last = scanner.finish(count, last_len)
    if last is not None:
        yield last
