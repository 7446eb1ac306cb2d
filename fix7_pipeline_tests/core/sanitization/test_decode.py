"""Decode before matching: a secret written inside escaped JSON at any depth, URL-encoded or base64-encoded is
found once, as its producer wrote it. Values are random per run and never printed."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from fix7_pipeline.core.sanitization import decode, textscan
from fix7_pipeline_tests.e2e_support import rnd

SALT = "decode-test"


def _found(data: bytes) -> list[tuple[str, ...]]:
    return [h.rules for h in textscan.scan_value(data, SALT)]


def _nest(inner: dict, depth: int) -> str:
    doc = json.dumps(inner)
    for _ in range(depth):
        doc = json.dumps({"payload": doc})
    return doc


def test_json_strings_at_any_depth():
    value = "glpat-" + rnd(20)
    for depth in range(4):
        found = _found(_nest({"note": "rotated", "gitlab": value}, depth).encode())
        assert len(found) == 1 and any("gitlab" in r.lower() for r in found[0]), (depth, found)
    for depth in range(1, 4):  # an assignment whose quotes are escaped: its key is read through them
        # (letters of one case, no digit: only the key can say this value is a secret)
        found = _found(_nest({"auth": rnd(24, "abcdefghjkmnpq")}, depth).encode())
        assert len(found) == 1 and "fix7.secret-assignment" in found[0], (depth, found)


def test_url_encoded_and_base64():
    secret = rnd(22)
    url = "https://birth.example.test/cb?next=" + quote(f"/a?db_password={secret}&x=1", safe="")
    found = _found(url.encode())
    assert len(found) == 1 and "fix7.secret-assignment" in found[0], found
    blob = base64.b64encode(f"DB_PASSWORD={secret}\nPOOL=5\n".encode())
    found = _found(json.dumps({"config_b64": blob.decode()}).encode())
    assert len(found) >= 1 and all("fix7.secret-assignment" in r for r in found), found


def test_a_secret_seen_plainly_is_not_found_again_in_a_view():
    token = "ghp_" + rnd(36)
    data = json.dumps({"a": token, "note": "line one\nline two", "u": "https://x.test/?q=%20"}).encode()
    assert decode.views(data)  # the value has escapes and a % encoding: views are scanned
    assert len(_found(data)) == 1


def test_plain_values_have_no_views_and_views_decode_each_level():
    assert decode.views(b"plain text, nothing encoded") == b""
    nested = _nest({"k": "v"}, 2).encode()
    levels = decode.views(nested).split(b"\n")
    assert b'{"k": "v"}' in decode.views(nested) and len(levels) >= 2
    assert decode.views(b"a%2Fb%3Dc") == b"a/b=c"


def test_a_chunk_candidate_is_found_through_its_view():
    """The batched pass over a chunk finds a field whose secret only its decoded view shows."""
    secret = rnd(22)
    hidden = quote(f"api_key={secret}", safe="").encode()  # `api_key%3D...`: no rule matches the raw field
    assert _found(hidden) and not textscan._plain_candidates(b"a\x00" + hidden + b"\x00b",
                                                               textscan.engine().scanner)
    cands = textscan.candidates(b"a\x00" + hidden + b"\x00b", textscan.engine().scanner)
    assert [c.index for c in cands] == [1]
