"""Names judged before anything prints them: a dump's table of contents, the words a stage prints."""

from __future__ import annotations

import re

from . import textscan
from .redact import RedactedNames

def judge_names(names, registry: RedactedNames) -> RedactedNames:
    """Scan each name alone, as the catalog scan scans an identifier, and register every one a rule matches:
    how names read from a dump before it is restored (its table of contents) are judged before anything
    prints them. Returns `registry`."""
    batch = textscan.ValueBatch("")
    for name in sorted({n for n in names if n}):
        batch.add(name, name.encode("utf-8", "surrogatepass"))
    batch.flush()
    for name, _hit in batch.hits:
        registry.add(name)
    return registry


_WORD_BREAK = re.compile(r"[\s,;:()\[\]{}\"'`=]+")


def judge_printed_names(obj, registry: RedactedNames) -> RedactedNames:
    """Judge every word of every string in a JSON-like value (an outcome's reason, findings and details) as a
    name: what a stage before the scan prints about the clone (a column the isolation proof names, an object a
    server error names) is judged before it is written. A dotted word is judged whole and part by part."""
    words: set[str] = set()

    def walk(o) -> None:
        if isinstance(o, str):
            for w in _WORD_BREAK.split(o):
                words.add(w)
                words.update(w.split("."))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(k)
                walk(v)
        elif isinstance(o, (list, tuple, set)):
            for v in o:
                walk(v)

    walk(obj)
    return judge_names(words, registry)


def dump_names(info) -> list[str]:
    """Every name a dump's inspection carries (table of contents entries, their schemas and owners, tables)."""
    out: list[str] = []
    for e in getattr(info, "toc", None) or ():
        out += [e.name, e.schema or "", e.owner or "", e.label, *e.name.split(" ")]
    for t in [*(getattr(info, "tables", None) or ()), *(getattr(info, "tables_with_data", None) or ())]:
        out += [t, *t.split(".", 1)]
    return out
