"""What every held-out corpus version from v3 on shares: its run (extract, plant, measure) and its command line.

Each version module (`heldout_v3` to `heldout_v6`) keeps its own sources, extractors and look-alike classes, and
hands them here as one `Version`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import corpus as bc
from benchmarks import heldout as h1
from benchmarks import heldout_v2 as h2


def run_version(kind: str, manifest_path: Path, names: tuple[str, ...], load: Callable, plants: Callable,
                default_out: str, rows: int, seed: int, peers: tuple[str, ...], out: Path | None) -> dict:
    """Extract (or read back) the version's sources, plant them and measure every scanner on one dump."""
    from benchmarks.scan import bench_dir

    manifest = json.loads(Path(manifest_path).read_text())
    out = Path(out) if out else bench_dir() / default_out
    sources = load(manifest, bench_dir() / "heldout")
    return h2.measure(kind, sources, plants(sources, seed), [s for s in manifest["sources"] if s["name"] in names],
                      rows, seed, peers, out)


def masked(v: str) -> str:
    """A value's shape without the value: character classes run-length coded (`A4a10d2=1`)."""
    cls = lambda ch: "A" if ch.isupper() else "a" if ch.islower() else "d" if ch.isdigit() else ch  # noqa: E731
    out, prev, n = [], None, 0
    for ch in v:
        c = cls(ch)
        if c == prev:
            n += 1
            continue
        if prev is not None:
            out.append(f"{prev}{n}" if prev in "Aad" else prev * n)
        prev, n = c, 1
    if prev is not None:
        out.append(f"{prev}{n}" if prev in "Aad" else prev * n)
    return "".join(out)


def main_for(prog: str, description: str, manifest_path: Path, names: tuple[str, ...], load: Callable,
             run: Callable, argv: list[str] | None) -> int:
    """`python -m benchmarks.heldout_vN`: the benchmark, or with --digests the sources' counts and sha256 (and with
    --masked each entry's kind and masked shape), never a value."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--rows", type=int, default=h1.DEFAULT_ROWS)
    ap.add_argument("--seed", type=int, default=bc.DEFAULT_SEED)
    ap.add_argument("--peers", default="detect-secrets,gitleaks", help="comma-separated, or none")
    ap.add_argument("--digests", action="store_true",
                    help="extract the sources and print each one's entry count and sha256 (no value), then stop")
    ap.add_argument("--masked", action="store_true",
                    help="with --digests: each entry's kind and masked shape (no value), to check the extractor")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.digests:
        from benchmarks.scan import bench_dir
        manifest = json.loads(Path(manifest_path).read_text())
        for s in manifest["sources"]:
            s.pop("sha256", None) if s["name"] in names else None
        for name, entries in load(manifest, bench_dir() / "heldout").items():
            print(f"{name}: {sum(e['part'] == 'secret' for e in entries)} secrets, "
                  f"{sum(e['part'] == 'negative' for e in entries)} negatives, sha256 {h1.corpus_digest(entries)}")
            if a.masked:
                for e in entries:
                    print(f"  {e['part']:<8} {e['kind'][:50]:<50} {masked(e['value'])[:60]}")
        return 0
    peers = tuple(p for p in a.peers.split(",") if p and p != "none")
    unknown = set(peers) - {"detect-secrets", "gitleaks"}
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    print(h2.render_text(run(a.rows, a.seed, peers, a.out)))
    return 0


@dataclass(frozen=True)
class Version:
    """One held-out corpus version: its sources (by manifest name), how each is extracted, its own look-alike classes
    (name, key, generator) and the tag that seeds its planting (`v5`)."""
    tag: str
    sources: tuple[str, ...]
    extractors: dict[str, Callable]
    lookalikes: tuple[tuple[str, str, object], ...]
    description: str

    def load(self, manifest: dict, cache: Path) -> dict[str, list[dict]]:
        return h2.load_sources(manifest, cache, self.sources, self.extractors)

    def plants(self, sources: dict[str, list[dict]], seed: int) -> list[bc.Plant]:
        return h2.plant_all(sources, seed, self.sources, self.lookalikes, self.tag)

    def run(self, rows: int = h1.DEFAULT_ROWS, seed: int = bc.DEFAULT_SEED,
            peers: tuple[str, ...] = ("detect-secrets", "gitleaks"), out: Path | None = None) -> dict:
        return run_version(f"fix7 held-out corpus {self.tag} benchmark", h1.MANIFEST, self.sources, self.load,
                           self.plants, f"heldout-{self.tag}-results.json", rows, seed, peers, out)

    def main(self, argv: list[str] | None = None) -> int:
        return main_for(f"python -m benchmarks.heldout_{self.tag}", self.description, h1.MANIFEST, self.sources,
                        self.load, self.run, argv)
