"""Names are data: every name, path or value from the dump or the operator is escaped for where it is written.

A table name, a file name, an attestation or a server message can hold anything: a newline that splits a
report line, `|` that adds a table cell, `<b>` or `[x](y)` that becomes markup, an ESC sequence that drives a
terminal, a character XML 1.0 cannot carry. Every writer passes such text through one of these:

- `visible` — plain text (terminal lines, Dagster text metadata, tags, check descriptions): control,
  format, private-use, unassigned and line/paragraph-separator characters become visible escapes
  (`\\n`, `\\x1b`, `\\u202e`), so a value stays on its line and shows what it holds.
- `md` — Markdown inline text (rehearsal-report.md): `visible`, with a backslash before every character
  Markdown, GitHub Markdown or HTML gives a meaning to.
- `md_code` — a value shown as inline code when it is made only of harmless characters, else as `md`.
- `xml` — XML 1.0 text and attribute values (JUnit): characters XML 1.0 cannot carry (and CR, which XML
  parsers fold into LF) become visible escapes; ElementTree itself escapes `& < > "`.
"""

from __future__ import annotations

import re
import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Characters CommonMark / GFM / HTML give a meaning to inline; CommonMark lets any ASCII punctuation be
# backslash-escaped, so escaping them is always safe.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#$!(){}])")
_MD_CODE_OK = re.compile(r"[\w./:@+=,-]+(?: [\w./:@+=,-]+)*")
_XML_BAD = re.compile("[^\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    o = ord(c)
    if o <= 0xFF:
        return f"\\x{o:02x}"
    if o <= 0xFFFF:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def _hidden(c: str) -> bool:
    o = ord(c)
    if o < 0x20 or 0x7F <= o < 0xA0:
        return True
    return o >= 0xA0 and unicodedata.category(c) in _HIDDEN_CATEGORIES


def visible(value) -> str:
    """`value` as one line of plain text: invisible and line-breaking characters as visible escapes."""
    text = "" if value is None else str(value)
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape_char(c) if _hidden(c) else c for c in text)


def md(value) -> str:
    """`value` as Markdown inline text that renders literally: no line split, no markup, no HTML."""
    return visible(_MD_SPECIAL.sub(r"\\\1", "" if value is None else str(value)))


def md_code(value) -> str:
    """`value` as inline code when it holds only harmless characters (ids, hashes, plain paths), else `md`."""
    text = "" if value is None else str(value)
    if text and _MD_CODE_OK.fullmatch(text) and visible(text) == text:
        return f"`{text}`"
    return md(text)


def xml(value) -> str:
    """`value` as XML 1.0 character data: characters XML cannot carry, and CR, as visible escapes."""
    text = "" if value is None else str(value)
    return _XML_BAD.sub(lambda m: _escape_char(m.group(0)), text)
