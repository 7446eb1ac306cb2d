"""Decoding before matching: a secret matched as its producer wrote it, not as it was encoded on the way in.

COPY's text escapes are decoded with the chunk (`textscan.decode_copy_text`); base64 runs are decoded by
Kingfisher's scanner itself (a finding spans the encoded run). Here, a value's other encodings are decoded
into views scanned after the value itself: JSON string escapes at any depth (a JSON document stored inside a
JSON string, `{\\"api_key\\": \\"...\\"}`, one level per pass) and URL encoding (`%2F`, `%3D`). A view is
only built for a value that carries such an encoding (`NEEDS`), so plain values cost one regex search.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

NEEDS = re.compile(rb"\\[\\\"/nrtu]|%[0-9A-Fa-f]{2}")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|([\\\"/bfnrt]))")
_SIMPLE = {b"\\": b"\\", b'"': b'"', b"/": b"/", b"b": b" ", b"f": b" ", b"n": b"\n", b"r": b"\n", b"t": b"\t"}
MAX_DEPTH = 4


def _unescape(data: bytes) -> bytes:
    def one(m: re.Match) -> bytes:
        if m.group(1):
            return chr(int(m.group(1), 16)).encode("utf-8", "replace")
        return _SIMPLE[m.group(2)]
    return _ESCAPE.sub(one, data)


def views(value: bytes) -> bytes:
    """The value's decoded forms, one per line (b"" when it carries no encoding)."""
    if not NEEDS.search(value):
        return b""
    out: list[bytes] = []
    cur = value
    for _ in range(MAX_DEPTH):
        if b"\\" not in cur:
            break
        nxt = _unescape(cur)
        if nxt == cur:
            break
        out.append(nxt)
        cur = nxt
    for v in (value, *out):
        if b"%" in v:
            u = unquote_to_bytes(v)
            if u != v:
                out.append(u)
                break
    return b"\n".join(out)
