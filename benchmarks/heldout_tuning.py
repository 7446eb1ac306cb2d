"""Per-rule look-alike and recall figures on the tuning sources, in process and without a clone.

`python -m benchmarks.heldout_tuning` renders every plant of the tuning sources (held-out v2 to v6, now tuning;
TruffleHog's detector tests with each key style; the project's corpus v1) as its cell text and scans it with
`textscan.scan_value`, the check every batched candidate of the real scan is confirmed against. It shows which
rule flags which look-alike class and what each rule finds alone, in seconds, to tune by; the figures that count
are the clone benchmarks' (`make bench-heldout-v4`, `make bench-corpus`). It reads no held-out part. Counts and
kinds only, never a value.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from benchmarks import corpus as bc
from benchmarks import heldout as h1
from benchmarks import heldout_v2 as h2
from benchmarks import heldout_v3 as h3
from benchmarks import heldout_v4 as h4
from benchmarks import heldout_v5 as h5
from benchmarks import heldout_v6 as h6

VERSIONS = {v.tag: v for v in (h3.VERSION, h4.VERSION, h5.VERSION, h6.VERSION)}


def _text(p: bc.Plant) -> bytes:
    t = p.text if isinstance(p.text, str) else json.dumps(p.text)
    return t.encode("utf-8", "replace")


def _rules(p: bc.Plant) -> tuple[str, ...]:
    from fix7_pipeline.core.sanitization import textscan
    headers = p.context == "auth_header"
    hits = textscan.scan_value(_text(p), "tuning", headers=False)
    if headers:
        hits += textscan.scan_value(_text(p), "tuning", headers=True)
    return tuple(sorted({h.rule for h in hits}))


def figures(name: str, plants: list[bc.Plant]) -> dict:
    secrets = [p for p in plants if p.group == "secret"]
    looks = [p for p in plants if p.group == "lookalike"]
    found = {p.id: _rules(p) for p in secrets}
    flagged = {p.id: _rules(p) for p in looks}
    by_rule_look: Counter = Counter(r for rs in flagged.values() for r in rs)
    by_rule_alone: Counter = Counter(rs[0] for rs in found.values() if len(rs) == 1)
    by_class: Counter = Counter(p.kind.split(":")[0] for p in looks if flagged[p.id])
    return {"part": name, "recall": f"{sum(bool(v) for v in found.values())}/{len(secrets)}",
            "lookalikes": f"{sum(bool(v) for v in flagged.values())}/{len(looks)}",
            "lookalikes_by_rule": dict(by_rule_look.most_common()),
            "secrets_found_by_this_rule_only": dict(by_rule_alone.most_common()),
            "flagged_lookalike_kinds": dict(by_class.most_common())}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.scan import bench_dir

    ap = argparse.ArgumentParser(prog="python -m benchmarks.heldout_tuning", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=bc.DEFAULT_SEED)
    ap.add_argument("--parts", default="v2,v3,v4,v5,v6,trufflehog-neutral,corpus-v1")
    a = ap.parse_args(argv)
    manifest = json.loads(h1.MANIFEST.read_text())
    out = []
    for part in a.parts.split(","):
        if part == "v2":
            plants = h2.plants_v2(h2.load_v2(manifest, bench_dir() / "heldout"), a.seed)
        elif part in VERSIONS:
            plants = VERSIONS[part].plants(VERSIONS[part].load(manifest, bench_dir() / "heldout"), a.seed)
        elif part.startswith("trufflehog-"):
            entries = h1.load_heldout(manifest, None, bench_dir() / "heldout")
            plants = h1.heldout_plants(entries, a.seed, keys=part.split("-", 1)[1])
        elif part == "corpus-v1":
            plants = bc.build_corpus(a.seed)
        else:
            ap.error(f"unknown part {part}")
        out.append(figures(part, plants))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
