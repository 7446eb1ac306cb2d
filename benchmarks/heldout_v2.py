"""Held-out corpus v2: secrets and negatives from scanners' test data no fix7 rule was written against.

`python -m benchmarks.heldout_v2` (`make bench-heldout-v2`). v1's held-out part (TruffleHog's detector tests)
was looked at while tuning, so it is declared tuning in `heldout.json`; v2 takes its values from three other
projects' tests, each at the commit the manifest fixes, extracted into `.fix7/bench/heldout/` (never into
this repository) and checked against the manifest's sha256:

- `secretlint/secretlint`: each rule's `test/snapshots/ng.*` input, the exact spans its `output.json`
  reports (secrets); the `ok.*` inputs, a value per line (negatives);
- `semgrep/semgrep-rules`, `generic/secrets/security/` (not `generic/secrets/gitleaks/`: gitleaks' formats
  are the tuning corpus's): the line after each `ruleid:` annotation (secrets), after each `ok:` (negatives);
- `sirwart/ripsecrets`, `test/one_per_line/*` (secrets) and `test/none` (negatives).

A value is read from its line the same way for positives and negatives (`value_of`). Each secret is planted
three times, once per key style (`KEY_STYLES`: a secret word, a neutral word, the provider's name alone),
spread over the six contexts; negatives once each under a neutral key, beside look-alike classes written
down here before the first measurement (`LOOKALIKES_V2`). Results name sources, kinds, contexts and counts,
never a value.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import corpus as bc
from benchmarks import heldout as h1

MANIFEST = h1.MANIFEST
MIRROR = Path(os.environ.get("FIX7_HELDOUT_MIRROR", "/work/.mirror"))
MIN_VALUE = 8
MAX_VALUE = 4000
SOURCES_V2 = ("secretlint-rule-tests", "semgrep-rules-secrets-tests", "ripsecrets-tests")
KEY_STYLES = {
    # style: keys a secret is planted under (one chosen per plant, seeded)
    "secret_word": ("{p}_token", "{p}_secret", "{p}_api_key", "{p}_password"),
    "neutral_word": ("auth", "credential", "value", "data", "conn", "login"),
    "provider_only": ("{p}",),
}
NEGATIVE_KEYS = ("value", "data", "setting", "note", "config", "auth")


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, check=True,
                          timeout=300).stdout


def _files(git_dir: Path, commit: str, under: str) -> list[str]:
    return sorted(_git(git_dir, "ls-tree", "-r", "--name-only", commit, under).decode().splitlines())


def _show(git_dir: Path, commit: str, path: str) -> str:
    return _git(git_dir, "show", f"{commit}:{path}").decode("utf-8", "replace")


_QUOTED = re.compile(r"""(["'`])([^"'`\n]{%d,})\1""" % MIN_VALUE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_SEP = re.compile(r"\s*(?:=>|:=|=|:)\s*")
_COMMENT_TAIL = re.compile(r"\s+(?://|#)\s.*$")


_XML_TEXT = re.compile(r">([^<>]{%d,})</" % MIN_VALUE)


def printable(v: str) -> bool:
    """Text a row can carry: no control character but a line break, no undecodable byte (a binary p12)."""
    return "\ufffd" not in v and all(ch.isprintable() or ch == "\n" for ch in v)


def value_of(line: str) -> str | None:
    """The value a line carries: a URL with credentials, an XML element's text or the longest quoted string,
    else what follows the first assignment (`key = v`, `KEY: v`), else the line's longest word. None: shorter
    than MIN_VALUE or not printable."""
    line = _COMMENT_TAIL.sub("", line.strip()).strip().rstrip(",;")
    if not line or not printable(line):
        return None
    url = _URL.search(line)
    if url and "@" in url.group(0):
        v = url.group(0).rstrip("\"'`,;)")
    elif (x := _XML_TEXT.search(line)):
        v = x.group(1).strip()
    elif (q := _QUOTED.findall(line)):
        v = max((s for _, s in q), key=len)
    else:
        parts = _SEP.split(line, maxsplit=1)
        v = parts[1] if len(parts) == 2 and re.fullmatch(r"[\w.\-\"' ]{1,60}", parts[0]) else \
            max(line.split(), key=len)
        v = v.strip().strip("\"'`")
    return v if MIN_VALUE <= len(v) <= MAX_VALUE else None


def _not_a_word(v: str) -> bool:
    """A negative worth planting: more than a bare word of letters (prose around a test case is no look-alike)."""
    return not re.fullmatch(r"[A-Za-z]+", v)


def _provider(name: str) -> str:
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    drop = {"detected", "api", "key", "keys", "token", "tokens", "secret", "secrets", "access", "auth", "oauth",
            "password", "private", "value", "id", "ng", "pat", "personal", "ok", "one", "per", "line"}
    kept = [w for w in words if w not in drop]
    return "_".join(kept[:2]) or "service"


def extract_secretlint(git_dir: Path, commit: str) -> list[dict]:
    out = []
    files = [f for f in _files(git_dir, commit, "packages/@secretlint")
             if "/secretlint-rule-" in f and "/test/snapshots/" in f]
    dirs = sorted({f.rsplit("/", 1)[0] for f in files})
    for d in dirs:
        rule = d.split("/secretlint-rule-")[1].split("/")[0]
        case = d.rsplit("/", 1)[1]
        if rule in ("example", "filter-comments", "no-dotenv", "no-homedir", "secp256k1-privatekey-filter",
                    "pattern"):
            continue
        if any(f.startswith(d + "/options") for f in files):
            continue  # a case that holds only under non-default options
        inputs = [f for f in files if f.startswith(d + "/input")]
        if len(inputs) != 1:
            continue
        try:
            text = _show(git_dir, commit, inputs[0])
        except subprocess.CalledProcessError:
            continue
        if case.startswith("ng."):
            try:
                result = json.loads(_show(git_dir, commit, d + "/output.json"))
            except (subprocess.CalledProcessError, ValueError):
                continue
            seen = set()
            for m in result.get("messages", []):
                a, b = m.get("range", [0, 0])
                v = text[a:b].strip()
                named = [x for x in (m.get("data") or {}).values()
                         if isinstance(x, str) and len(x) >= MIN_VALUE and x in text]
                if named:  # the value the rule names, when its range is off (a key or a cut-off span)
                    v = max(named, key=len).strip()
                if "://" in v:
                    v = v.rstrip("\"';,)")
                if MIN_VALUE <= len(v) <= MAX_VALUE and printable(v) and v not in seen:
                    seen.add(v)
                    out.append({"source": "secretlint", "part": "secret", "kind": f"secretlint:{rule}",
                                "provider": _provider(rule), "value": v})
        elif case.startswith("ok."):
            for ln in text.splitlines():
                v = value_of(ln)
                if v and "allowlist" not in ln and _not_a_word(v):
                    out.append({"source": "secretlint", "part": "negative", "kind": f"secretlint-ok:{rule}",
                                "provider": _provider(rule), "value": v})
    return out


_ANNOT = re.compile(r"^\s*(?:#|//|<!--|--|/\*|;)\s*(ruleid|ok)\s*:\s*([\w.-]+)")


def extract_semgrep(git_dir: Path, commit: str) -> list[dict]:
    out = []
    for f in _files(git_dir, commit, "generic/secrets/security"):
        if f.endswith(".yaml"):
            continue
        lines = _show(git_dir, commit, f).splitlines()
        for i, ln in enumerate(lines):
            m = _ANNOT.match(ln)
            if not m or i + 1 >= len(lines):
                continue
            rule, target = m.group(2), lines[i + 1]
            if target.strip().startswith("-----BEGIN"):
                block = [target.strip()]
                for nxt in lines[i + 2:]:
                    if not nxt.strip() or _ANNOT.match(nxt):
                        break
                    block.append(nxt.strip())
                v = "\n".join(block) if len(block) > 1 else None
            else:
                v = value_of(target)
            if not v:
                continue
            part = "secret" if m.group(1) == "ruleid" else "negative"
            if part == "negative" and not _not_a_word(v):
                continue
            out.append({"source": "semgrep-rules", "part": part,
                        "kind": f"semgrep{'' if part == 'secret' else '-ok'}:{rule}",
                        "provider": _provider(rule), "value": v})
    return out


def extract_ripsecrets(git_dir: Path, commit: str) -> list[dict]:
    out = []
    for f in _files(git_dir, commit, "test/one_per_line"):
        name = f.rsplit("/", 1)[1]
        for ln in _show(git_dir, commit, f).splitlines():
            v = value_of(ln)
            if v:
                out.append({"source": "ripsecrets", "part": "secret", "kind": f"ripsecrets:{name}",
                            "provider": _provider(name), "value": v})
    for ln in _show(git_dir, commit, "test/none").splitlines():
        v = value_of(ln)
        if v and "allowlist" not in ln and _not_a_word(v):
            out.append({"source": "ripsecrets", "part": "negative", "kind": "ripsecrets-none",
                        "provider": "service", "value": v})
    return out


EXTRACTORS = {"secretlint-rule-tests": extract_secretlint, "semgrep-rules-secrets-tests": extract_semgrep,
              "ripsecrets-tests": extract_ripsecrets}


def _dedup(entries: list[dict]) -> list[dict]:
    seen, out = set(), []
    for e in entries:
        if e["value"] in seen:
            continue
        seen.add(e["value"])
        out.append(e)
    return out


def load_v2(manifest: dict, cache: Path) -> dict[str, list[dict]]:
    """Each v2 source's entries, extracted once into `cache` and checked against the manifest's digest."""
    return load_sources(manifest, cache, SOURCES_V2, EXTRACTORS)


def load_sources(manifest: dict, cache: Path, names: tuple[str, ...], extractors: dict) -> dict[str, list[dict]]:
    """The named sources' entries, extracted once into `cache` and checked against the manifest's digest."""
    out = {}
    for src in manifest["sources"]:
        if src["name"] not in names:
            continue
        path = cache / f"{src['name']}-{src['commit'][:12]}.json"
        if path.is_file():
            entries = json.loads(path.read_text())
        else:
            git_dir = MIRROR / src["mirror"] / "repo"
            if not git_dir.exists():
                raise SystemExit(f"The held-out source {src['name']} is not extracted yet and no git copy is at "
                                 f"{git_dir}: fetch {src['repo']} (commit {src['commit']}) there, or set "
                                 "FIX7_HELDOUT_MIRROR.")
            entries = _dedup(extractors[src["name"]](git_dir, src["commit"]))
            cache.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(entries))
            os.chmod(path, 0o600)
        digest = h1.corpus_digest(entries)
        if src.get("sha256") and digest != src["sha256"]:
            raise SystemExit(f"The held-out source {src['name']} at {path} does not match the manifest (sha256 "
                             f"{digest[:16]}…, manifest {src['sha256'][:16]}…): it would measure something else.")
        out[src["name"]] = entries
    return out


# -- look-alike classes v2, written down before the first measurement ------------------------------------

def _hex(g: bc.Gen, n: int) -> str:
    return g.chars(bc.ALPHABETS["H"], n)


LOOKALIKES_V2: tuple[tuple[str, str, object], ...] = (
    ("git-commit-sha", "commit", lambda g: _hex(g, 40)),
    ("npm-integrity-sha512", "integrity", lambda g: "sha512-" + g.b64(g.raw(64))),
    ("docker-image-digest", "image", lambda g: "registry.example.test/birth/api@sha256:" + _hex(g, 64)),
    ("k8s-uid", "uid", lambda g: g.uuid()),
    ("csp-nonce", "nonce", lambda g: g.b64(g.raw(16))),
    ("idempotency-key", "idempotency_key", lambda g: g.uuid()),
    ("cache-key", "cache_key", lambda g: "v2:" + _hex(g, 32)),
    ("stripe-price-id", "price", lambda g: "price_" + g.chars(bc.ALPHABETS["N"], 24)),
    ("s3-object-key", "object", lambda g: f"uploads/{g.chars(bc.ALPHABETS['D'], 4)}/"
                                           f"{_hex(g, 16)}.pdf"),
    ("slug-with-number", "slug", lambda g: f"birth-{g.chars(bc.ALPHABETS['L'], 6)}-report-"
                                           f"{g.chars(bc.ALPHABETS['D'], 3)}"),
    ("env-var-name", "credential", lambda g: "BIRTH_" + g.chars(bc.ALPHABETS["U"], 8) + "_API_TOKEN"),
    ("masked-card", "card", lambda g: "**** **** **** " + g.chars(bc.ALPHABETS["D"], 4)),
)


def _plant_key(style: str, provider: str, rng: random.Random) -> str:
    return rng.choice(KEY_STYLES[style]).format(p=provider)


_ISSUE_ROWS = 295


def plants_v2(sources: dict[str, list[dict]], seed: int) -> list[bc.Plant]:
    return plant_all(sources, seed, SOURCES_V2, LOOKALIKES_V2, "v2")


def plant_all(sources: dict[str, list[dict]], seed: int, names: tuple[str, ...],
              lookalikes: tuple[tuple[str, str, object], ...], tag: str) -> list[bc.Plant]:
    """Each secret three times (one per key style), each negative once under a neutral key, each look-alike
    class HELDOUT_LOOKALIKE_COPIES times under its own key; contexts spread by index, seeded by `tag`."""
    rng = random.Random(f"fix7-heldout-{tag}:{seed}")
    issues = [0]
    plants: list[bc.Plant] = []

    def room(ctx: str) -> bool:
        if ctx != "issue_details":
            return True
        if issues[0] >= _ISSUE_ROWS:
            return False
        issues[0] += 1
        return True

    def place(pid: str, group: str, kind: str, value: str, key: str, i: int) -> None:
        shape = h1._shape_of(value)
        allowed = bc._ALLOWED[shape]
        for attempt in range(len(allowed)):
            ctx = allowed[(i + attempt) % len(allowed)]
            text = bc.render(ctx, shape, key, value, group, i)
            if bc._fits(ctx, text) and room(ctx):
                plants.append(bc.Plant(pid, group, kind, shape, ctx, value, text, [value]))
                return

    n = 0
    for name in names:
        for e in sources.get(name, []):
            if e["part"] == "secret":
                for s, style in enumerate(KEY_STYLES):
                    place(f"{tag}s-{n:04d}-{s}", "secret", f"{style}|{e['kind']}", e["value"],
                          _plant_key(style, e["provider"], rng), n + s)
            else:
                place(f"{tag}n-{n:04d}", "lookalike", f"negative|{e['kind']}", e["value"], rng.choice(NEGATIVE_KEYS),
                      n)
            n += 1
    for c, (name, key, make) in enumerate(lookalikes):
        for j in range(h1.HELDOUT_LOOKALIKE_COPIES):
            g = bc.Gen(random.Random(f"fix7-heldout-{tag}-lookalike:{seed}:{name}:{j}"))
            place(f"{tag}l-{c:02d}-{j:02d}", "lookalike", f"class|{name}", make(g), key, c + j)
    return plants


# -- the run -------------------------------------------------------------------------------------------

def _score(rows: dict, plants: list[bc.Plant], where: dict) -> dict:
    s = bc.score(rows, plants, where)
    s.pop("rules", None)
    out = {k: s[k] for k in ("recall", "found", "planted", "lookalikes_flagged", "lookalikes",
                             "lookalikes_flagged_pct", "recall_by_context", "hits_on_unplanted_rows")}
    hit = lambda p: (where[p.id]["table"], where[p.id]["row_key"]) in rows  # noqa: E731
    by_style: dict[str, list[int]] = {}
    by_source: dict[str, list[int]] = {}
    for p in plants:
        if p.group != "secret":
            continue
        style, kind = p.kind.split("|", 1)
        for d, k in ((by_style, style), (by_source, kind.split(":")[0])):
            d.setdefault(k, [0, 0])
            d[k][0] += hit(p)
            d[k][1] += 1
    look: dict[str, list[int]] = {}
    for p in plants:
        if p.group == "lookalike":
            k = p.kind.split("|")[0]
            look.setdefault(k, [0, 0])
            look[k][0] += hit(p)
            look[k][1] += 1
    out["recall_by_key_style"] = {k: {"found": a, "planted": b} for k, (a, b) in by_style.items()}
    out["recall_by_source"] = {k: {"found": a, "planted": b} for k, (a, b) in by_source.items()}
    out["lookalikes_by_origin"] = {k: {"flagged": a, "planted": b} for k, (a, b) in look.items()}
    # by context and key style, so a figure for one style can be read per context
    grid: dict[str, dict[str, list[int]]] = {}
    for p in plants:
        if p.group == "secret":
            style = p.kind.split("|", 1)[0]
            g = grid.setdefault(p.context, {}).setdefault(style, [0, 0])
            g[0] += hit(p)
            g[1] += 1
    out["recall_by_context_and_key_style"] = grid
    flagged_classes: dict[str, int] = {}
    for p in plants:
        if p.group == "lookalike" and hit(p):
            flagged_classes[p.kind] = flagged_classes.get(p.kind, 0) + 1
    out["flagged_lookalike_kinds"] = dict(sorted(flagged_classes.items()))
    return out


def run(rows: int = h1.DEFAULT_ROWS, seed: int = bc.DEFAULT_SEED,
        peers: tuple[str, ...] = ("detect-secrets", "gitleaks"), out: Path | None = None) -> dict:
    from benchmarks.scan import bench_dir

    manifest = json.loads(MANIFEST.read_text())
    out = Path(out) if out else bench_dir() / "heldout-v2-results.json"
    sources = load_v2(manifest, bench_dir() / "heldout")
    return measure("fix7 held-out corpus v2 benchmark", sources, plants_v2(sources, seed),
                   [s for s in manifest["sources"] if s["name"] in SOURCES_V2], rows, seed, peers, out)


def measure(kind: str, sources: dict[str, list[dict]], plants: list[bc.Plant], manifest_sources: list[dict],
            rows: int, seed: int, peers: tuple[str, ...], out: Path) -> dict:
    """Plant `plants` in one clone, run fix7 and the peers on the same dump, write counts (no value) to `out`."""
    from benchmarks.scan import bench_dir
    from fix7_pipeline.core.sanitization import rules as fix7_rules

    work = Path(tempfile.mkdtemp(prefix="fix7-heldout-", dir=bench_dir()))
    scanners: dict[str, dict] = {}
    try:
        bc._log(f"building a {rows}-row clone and planting {len(plants)} values")
        built = bc.build_dumps(work, rows, seed, plants)
        where = built["where"]
        pks = {w["table"]: w["pk"] for w in where.values()}
        plain = work / "clone.sql"
        bc._log("fix7: restoring the custom dump and running the sanitization scan")
        fhits, took, meta = bc.run_fix7(work)
        source_of = {r.name: r.source for r in fix7_rules.registry()}
        frows: dict[tuple[str, str], set[str]] = {}
        krows: dict[tuple[str, str], set[str]] = {}
        for table, row_key, rule in fhits:
            if row_key is None:
                continue
            frows.setdefault((table, row_key), set()).add(rule)
            if source_of.get(rule) == fix7_rules.KINGFISHER:
                krows.setdefault((table, row_key), set()).add(rule)
        scanners["fix7"] = {"status": "ran", "seconds": round(took, 2), **meta, **_score(frows, plants, where)}
        scanners["kingfisher_alone"] = {
            "status": "ran", "how": "fix7's scan, counting only findings of Kingfisher's own catalog rules",
            **_score(krows, plants, where)}
        if "detect-secrets" in peers:
            bc._log("detect-secrets over the plain dump")
            t0 = time.perf_counter()
            dhits, exe, version = bc.run_detect_secrets(plain)
            if exe is None:
                scanners["detect_secrets"] = {"status": "skipped", "reason": version}
            else:
                drows, _ = bc._rows_from_lines(dhits, plain, pks)
                scanners["detect_secrets"] = {"status": "ran", "seconds": round(time.perf_counter() - t0, 2),
                                              "version": version, **_score(drows, plants, where)}
        if "gitleaks" in peers:
            exe, version = bc.gitleaks_bin()
            if exe is None:
                scanners["gitleaks"] = {"status": "skipped", "reason": version}
            else:
                bc._log("gitleaks over the plain dump")
                t0 = time.perf_counter()
                grows, _ = bc._rows_from_lines(bc.run_gitleaks(exe, plain), plain, pks)
                scanners["gitleaks"] = {"status": "ran", "seconds": round(time.perf_counter() - t0, 2),
                                        "version": version, **_score(grows, plants, where)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    secrets_ = [p for p in plants if p.group == "secret"]
    result = {
        "kind": kind, "seed": seed,
        "manifest_sources": manifest_sources,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "corpus": {"secret_values": sum(1 for e in (x for v in sources.values() for x in v) if e["part"] == "secret"),
                   "secret_plants": len(secrets_), "secret_kinds": len({p.kind.split("|")[1] for p in secrets_}),
                   "lookalike_plants": sum(p.group == "lookalike" for p in plants)},
        "clone": {"registry_rows": rows, "plain_dump_bytes": built["plain_dump_bytes"]},
        "contexts": {c.name: f"{c.table}.{c.column}: {c.what}" for c in bc.CONTEXTS},
        "scanners": scanners,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["results_file"] = str(out)
    return result


def render_text(result: dict) -> str:
    ran = {n: s for n, s in result["scanners"].items() if s["status"] == "ran"}
    c = result["corpus"]
    lines = [f"{result['kind']}: {c['secret_values']} secrets ({c['secret_plants']} plants, {c['secret_kinds']} kinds), "
             f"{c['lookalike_plants']} look-alikes", f"  {'':<24}" + "".join(f"{n:>20}" for n in ran)]

    def pct(a: int, b: int) -> str:
        return f"{100 * a / b:5.1f}% ({a}/{b})" if b else "-"

    lines.append(f"  {'recall':<24}" + "".join(f"{pct(s['found'], s['planted']):>20}" for s in ran.values()))
    lines.append(f"  {'look-alikes flagged':<24}" + "".join(
        f"{pct(s['lookalikes_flagged'], s['lookalikes']):>20}" for s in ran.values()))
    for style in KEY_STYLES:
        lines.append(f"  {'keys: ' + style:<24}" + "".join(
            f"{pct(s['recall_by_key_style'][style]['found'], s['recall_by_key_style'][style]['planted']):>20}"
            for s in ran.values()))
    for ctx in result["contexts"]:
        lines.append(f"  {ctx:<24}" + "".join(
            f"{pct(s['recall_by_context'][ctx]['found'], s['recall_by_context'][ctx]['planted']):>20}"
            for s in ran.values()))
    for n, s in result["scanners"].items():
        if s["status"] != "ran":
            lines.append(f"{n}: skipped: {s['reason']}")
    lines.append(f"results: {result.get('results_file')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.heldout_v2", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=h1.DEFAULT_ROWS)
    ap.add_argument("--seed", type=int, default=bc.DEFAULT_SEED)
    ap.add_argument("--peers", default="detect-secrets,gitleaks", help="comma-separated, or none")
    ap.add_argument("--digests", action="store_true",
                    help="extract the sources and print each one's entry count and sha256 (no value), then stop")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.digests:
        from benchmarks.scan import bench_dir
        manifest = json.loads(MANIFEST.read_text())
        for s in manifest["sources"]:
            s.pop("sha256", None) if s["name"] in SOURCES_V2 else None
        for name, entries in load_v2(manifest, bench_dir() / "heldout").items():
            print(f"{name}: {sum(e['part'] == 'secret' for e in entries)} secrets, "
                  f"{sum(e['part'] == 'negative' for e in entries)} negatives, sha256 {h1.corpus_digest(entries)}")
        return 0
    peers = tuple(p for p in a.peers.split(",") if p and p != "none")
    unknown = set(peers) - {"detect-secrets", "gitleaks"}
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    print(render_text(run(a.rows, a.seed, peers, a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
