"""Rule files fix7 writes for Kingfisher to compile beside its own catalog: each under the rule cache, named by
its content's digest, so a changed rule is a new file and the compiled cache never serves an old one."""

from __future__ import annotations

import hashlib
from pathlib import Path


def yaml_str(s: str) -> str:
    """`s` as a single-quoted YAML scalar."""
    return "'" + s.replace("'", "''") + "'"


def cached_rule_file(cache: Path, stem: str, text: str) -> Path:
    """`<cache>/<stem>-<digest>.yml` holding `text`, written once (atomically) and reused after."""
    path = cache / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yml"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path
