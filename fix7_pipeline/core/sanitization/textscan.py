"""Many values per scanner call, every match mapped back to the one value it lies in.

Values leave PostgreSQL only as a COPY stream (text format). A chunk of whole COPY rows becomes one
scanner input: field and row separators (raw TAB and LF: data tabs and newlines are escaped by COPY)
become NUL, which no text value can hold, COPY's escapes are decoded, and each NUL is then scanned as a
newline, so every value starts and ends a line of its own. A match is then located by the NUL before
and after it, and confirmed by scanning its value alone: the value alone is what decides, so a match
that crosses a separator, or a rule whose companion (an AWS secret beside its key id) sits in a
neighbouring value, never makes a finding of two values. A value touched by a crossing match is
rescanned alone as well, so a secret is not lost to a match that started in the value before it.

Nothing here prints or keeps a matched value: a hit is (rule, offsets in its value, salted fingerprint).
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
from dataclasses import dataclass

from . import decode, field_detectors, keyvalue
from .rules import engine

NUL = b"\x00"
_SEPARATORS = bytes.maketrans(b"\t\n", b"\x00\x00")


@dataclass(frozen=True)
class Hit:
    """One secret inside one value: offsets are bytes of that value. `rule` is the rule it is reported by;
    `rules` every rule that matched it (several detectors often match one token: a provider's pattern and
    fix7's `token = ...` assignment), so one occurrence is one finding."""

    rule: str
    start: int
    end: int
    fingerprint: str
    rules: tuple[str, ...] = ()


def _preference(rule: str) -> tuple:
    """Which rule reports an occurrence several matched: a provider's own pattern (Kingfisher's, then
    detect-secrets') before fix7's, fix7's specific rules before the ones keyed on a word (`token =`, `Bearer`),
    and a value's mere look (`fix7.generated-value`) last."""
    return (rule.startswith("fix7."), rule.startswith(field_detectors.PREFIX), rule in keyvalue.KEYED_ON_A_WORD,
            rule == keyvalue.GENERATED_VALUE, rule)


def merge(hits: list[Hit]) -> list[Hit]:
    """One hit per occurrence: hits whose spans overlap in one value are one secret, reported by the preferred
    rule (its span and fingerprint) and naming every rule that matched."""
    out: list[Hit] = []
    group: list[Hit] = []
    end = -1
    for h in sorted(hits, key=lambda h: (h.start, h.end)) + [None]:
        if h is not None and group and h.start < end:
            group.append(h)
            end = max(end, h.end)
            continue
        if group:
            names = sorted({r for g in group for r in (g.rules or (g.rule,))}, key=_preference)
            first = min(group, key=lambda g: _preference(g.rule))
            out.append(Hit(first.rule, first.start, first.end, first.fingerprint, tuple(names)))
        if h is not None:
            group, end = [h], h.end
    return out


def fingerprint(salt: str, data: bytes) -> str:
    """The salted fingerprint findings carry (per-run salt): same secret, same run, same fingerprint."""
    return hashlib.sha256(salt.encode("utf-8") + data).hexdigest()[:16]


def _raw_hits(scanner, data: bytes) -> list[tuple[str, int, int]]:
    return [(f.rule_id, f.location["start_offset"], f.location["end_offset"])
            for f in scanner.scan(data) if f.visible]


def scan_value(data: bytes, salt: str, *, headers: bool = False) -> list[Hit]:
    """Scan one value alone, then its decoded views (`decode.views`): the truth every batched candidate is
    confirmed against. A secret found in the value is not found again in a view of it."""
    eng = engine()
    scanner = eng.header_scanner if headers else eng.scanner
    view = decode.views(data)
    text = data + b"\n" + view if view else data
    out: list[Hit] = []
    # what the value and the views before showed (a view repeats each level's secrets); the same span matched
    # by several rules is one occurrence, kept with every rule
    seen: list[tuple[bytes, int, int]] = []
    for rule, s, e in sorted(_raw_hits(scanner, text), key=lambda h: (h[1] >= len(data), h[1])):
        s, e = max(0, s), min(len(text), max(e, s))
        if not keyvalue.plausible(rule, text, s, e) or not field_detectors.confirm(rule, text, s, e):
            continue
        found = text[s:e]
        if s >= len(data) and any((found in o or o in found) and (os_, oe) != (s, e) for o, os_, oe in seen):
            continue
        seen.append((found, s, e))
        out.append(Hit(rule, s, e, fingerprint(salt, found)))
    return merge(out)


def decode_copy_text(raw: bytes) -> bytes:
    """Whole COPY text-format rows -> their field values, each followed by one NUL."""
    r = raw.translate(_SEPARATORS)
    if b"\\" in r:
        r = codecs.escape_decode(r)[0]
    return r


@dataclass(frozen=True)
class Candidate:
    """A field some batched match touched: where it lies in the decoded chunk."""

    index: int   # field number in the chunk (row * fields_per_row + column)
    start: int
    end: int


def candidates(decoded: bytes, scanner) -> list[Candidate]:
    """Fields of a decoded chunk that some match of `scanner` touches, in the field or in its decoded views
    (sorted, distinct)."""
    found = {c.index: c for c in _plain_candidates(decoded, scanner)}
    for c in _view_candidates(decoded, scanner):
        found.setdefault(c.index, c)
    return [found[i] for i in sorted(found)]


def _field_at(decoded: bytes, pos: int) -> tuple[int, int]:
    fs = decoded.rfind(NUL, 0, pos) + 1 if pos > 0 else 0
    fe = decoded.find(NUL, pos)
    return fs, len(decoded) if fe < 0 else fe


def _encoded_fields(decoded: bytes) -> list[tuple[int, int]]:
    """(start, end) of each field carrying an encoding `decode.views` reads. Found with bytes.find (a regex
    over every chunk would cost as much as the scan itself): only fields with a backslash or a % are tested."""
    found: set[tuple[int, int]] = set()
    for mark in (b"\\", b"%"):
        pos = decoded.find(mark)
        while pos >= 0:
            fs, fe = _field_at(decoded, pos)
            if decode.NEEDS.search(decoded, fs, fe):
                found.add((fs, fe))
            pos = decoded.find(mark, fe)
    return sorted(found)


def _view_candidates(decoded: bytes, scanner) -> list[Candidate]:
    """Fields whose decoded views (`decode.views`) some match of `scanner` touches."""
    fields = _encoded_fields(decoded)
    if not fields:
        return []
    views, kept = [], []
    for fs, fe in fields:
        v = decode.views(decoded[fs:fe])
        if v:
            views.append(v.replace(NUL, b" "))
            kept.append((fs, fe))
    touched = {c.index for c in _plain_candidates(NUL.join(views), scanner)}
    out, counted, at = [], 0, 0
    for i, (fs, fe) in enumerate(kept):
        counted += decoded.count(NUL, at, fs)
        at = fs
        if i in touched:
            out.append(Candidate(counted, fs, fe))
    return out


def _plain_candidates(decoded: bytes, scanner) -> list[Candidate]:
    batch = decoded.replace(NUL, b"\n")
    spans = sorted({(s, e) for _rule, s, e in _raw_hits(scanner, batch)})
    if not spans:
        return []
    starts: dict[int, int] = {}
    for s, e in spans:
        pos = s
        while True:
            fs = decoded.rfind(NUL, 0, pos) + 1 if pos > 0 else 0
            fe = decoded.find(NUL, pos)
            fe = len(decoded) if fe < 0 else fe
            starts[fs] = fe
            if e <= fe + 1 or fe >= len(decoded):
                break
            pos = fe + 1  # the match crosses a separator: the next value is a candidate too
    out, counted, at = [], 0, 0
    for fs in sorted(starts):
        counted += decoded.count(NUL, at, fs)
        at = fs
        out.append(Candidate(counted, fs, starts[fs]))
    return out


def row_fields(decoded: bytes, cand: Candidate, per_row: int) -> list[bytes]:
    """Every field of the row a candidate lies in."""
    col = cand.index % per_row
    start = cand.start
    for _ in range(col):
        start = decoded.rfind(NUL, 0, start - 1) + 1
    end = cand.start
    for _ in range(per_row - col):
        nxt = decoded.find(NUL, end)
        end = (len(decoded) if nxt < 0 else nxt) + 1
    return decoded[start:end - 1].split(NUL)


def parse_copy_row(line: bytes) -> list[bytes]:
    """One COPY text-format row (no trailing LF) as its decoded fields."""
    return [codecs.escape_decode(f)[0] if b"\\" in f else f for f in line.split(b"\t")]


class ValueBatch:
    """Values of any origin (bytea, settings), scanned many per call; hits confirmed alone."""

    def __init__(self, salt: str, *, limit: int = 4 << 20, headers: bool = False):
        self.salt, self.limit, self.headers = salt, limit, headers
        self.refs: list = []
        self.values: list[bytes] = []
        self.size = 0
        self.hits: list[tuple[object, Hit]] = []

    def add(self, ref, value: bytes) -> None:
        if not value:
            return
        self.refs.append(ref)
        self.values.append(value)
        self.size += len(value) + 1
        if self.size >= self.limit:
            self.flush()

    def flush(self) -> None:
        if not self.values:
            return
        eng = engine()
        scanner = eng.header_scanner if self.headers else eng.scanner
        texts = []
        for v in self.values:
            view = decode.views(v)
            texts.append(v + b"\n" + view if view else v)
        starts, pos = [], 0
        for v in texts:
            starts.append(pos)
            pos += len(v) + 1
        batch = b"\n".join(texts)
        touched: set[int] = set()
        for _rule, s, e in _raw_hits(scanner, batch):
            first = bisect.bisect_right(starts, s) - 1
            last = bisect.bisect_right(starts, max(s, e - 1)) - 1
            touched.update(range(max(first, 0), last + 1))
        for i in sorted(touched):
            for h in scan_value(self.values[i], self.salt, headers=self.headers):
                self.hits.append((self.refs[i], h))
        self.refs, self.values, self.size = [], [], 0
