"""Recall and look-alikes on a held-out corpus: secrets from sources fix7's rules were never tuned on.

`python -m benchmarks.heldout` (`make bench-heldout`) plants two parts, split BY SOURCE and fixed in
`heldout.json` before any tuning against them, one value per row of the birth surface, in the six
contexts of `bench_corpus.CONTEXTS` (free text, JSON value, nested JSON, config blob, URL query,
Authorization header), then runs fix7's sanitization scan and the peers available offline on the same dump:

- **held-out**: the secrets of TruffleHog's detector pattern tests (`pkg/detectors/**/*_test.go`, the `want`
  strings of each valid case that its `input` spells), read from a local git copy at the manifest's commit;
  and look-alikes generated here from classes written before the split was fixed (`HELDOUT_LOOKALIKES`:
  identifiers, hashes, placeholders and references, public keys and public client ids, token endpoints).
- **tuning**: the project's own generated corpus (`bench_corpus`, formats from gitleaks' rules,
  detect-secrets' plugins and BIRTH_SURFACE.md), which fix7's rules were written against.

The held-out values are not in this repository (TruffleHog is AGPL-3.0): they are extracted into
`.fix7/bench/heldout/` and checked against the manifest's digest, so a changed corpus fails instead of
measuring something else. Results name sources, kinds, contexts and counts, never a value.
"""

from __future__ import annotations

import argparse
import hashlib
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

MANIFEST = Path(__file__).with_name("heldout.json")
DEFAULT_TRUFFLEHOG_GIT = os.environ.get("FIX7_TRUFFLEHOG_GIT", "/work/.mirror/trufflesecurity+trufflehog/repo")
COPIES_PER_DETECTOR = 1
MIN_SECRET = 8
HELDOUT_LOOKALIKE_COPIES = 10
DEFAULT_ROWS = 5000

# -- extracting TruffleHog's test secrets ------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Unsupported(Exception):
    pass


class _GoExpr:
    """A tiny evaluator for the string expressions of Go test files: literals, names bound to them, `+` and
    fmt.Sprintf with %s / %v / %q / %d. Anything else is unsupported and the case is left out."""

    def __init__(self, text: str, names: dict[str, str]):
        self.t, self.names, self.i = text, names, 0

    def ws(self) -> None:
        while self.i < len(self.t) and self.t[self.i] in " \t\r\n":
            self.i += 1

    def atom(self) -> str:
        self.ws()
        t, i = self.t, self.i
        if i >= len(t):
            raise _Unsupported("end")
        if t[i] == "`":
            j = t.index("`", i + 1)
            self.i = j + 1
            return t[i + 1:j]
        if t[i] == '"':
            j = i + 1
            while t[j] != '"':
                j += 2 if t[j] == "\\" else 1
            self.i = j + 1
            try:
                return json.loads(t[i:j + 1])
            except ValueError as e:
                raise _Unsupported("escape") from e
        if t.startswith("fmt.Sprintf(", i):
            self.i = i + len("fmt.Sprintf(")
            args = [self.expr()]
            while True:
                self.ws()
                if self.t[self.i] == ",":
                    self.i += 1
                    self.ws()
                    if self.t[self.i] == ")":
                        break
                    args.append(self.expr())
                    continue
                break
            self.ws()
            if self.t[self.i] != ")":
                raise _Unsupported("sprintf")
            self.i += 1
            return _sprintf(args[0], args[1:])
        m = _IDENT.match(t, i)
        if m and m.group(0) in self.names:
            self.i = m.end()
            if self.i < len(t) and t[self.i] in ".([":
                raise _Unsupported("call")
            return self.names[m.group(0)]
        raise _Unsupported(t[i:i + 20])

    def expr(self) -> str:
        out = self.atom()
        while True:
            self.ws()
            if self.i < len(self.t) and self.t[self.i] == "+":
                self.i += 1
                out += self.atom()
                continue
            return out


def _sprintf(fmt: str, args: list[str]) -> str:
    it = iter(args)

    def one(m: re.Match) -> str:
        if m.group(0) == "%%":
            return "%"
        try:
            v = next(it)
        except StopIteration as e:
            raise _Unsupported("args") from e
        return json.dumps(v) if m.group(0) == "%q" else v

    return re.sub(r"%%|%[svqd]", one, fmt)


_BINDING = re.compile(r"(?m)^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|=)\s*(?=[`\"]|fmt\.Sprintf\()")


def _bindings(src: str) -> dict[str, str]:
    """Names bound to string expressions anywhere in a file (var/const blocks, `:=`), resolved in order."""
    names: dict[str, str] = {}
    for _ in range(3):  # later bindings may use earlier ones in any order
        for m in _BINDING.finditer(src):
            try:
                names[m.group(1)] = _GoExpr(src[m.end():], names).expr()
            except (_Unsupported, ValueError, IndexError):
                pass
    return names


_CASE_INPUT = re.compile(r"\binput:\s*")
_CASE_WANT = re.compile(r"\bwant:\s*\[\]string\{")


def _cases(src: str, names: dict[str, str]):
    """(input, [wanted strings]) of each pattern-test case whose input and wants the evaluator can read."""
    for m in _CASE_INPUT.finditer(src):
        try:
            text = _GoExpr(src[m.end():], names).expr()
        except (_Unsupported, ValueError, IndexError):
            continue
        w = _CASE_WANT.search(src, m.end(), m.end() + 20000)
        nxt = _CASE_INPUT.search(src, m.end())
        if not w or (nxt and nxt.start() < w.start()):
            continue
        g = _GoExpr(src[w.end():], names)
        wants = []
        try:
            while True:
                g.ws()
                if g.t[g.i] == "}":
                    break
                wants.append(g.expr())
                g.ws()
                if g.t[g.i] == ",":
                    g.i += 1
        except (_Unsupported, ValueError, IndexError):
            continue
        yield text, wants


_KEYWORDS = re.compile(r"func \(\w+ \*?Scanner\) Keywords\(\) \[\]string \{\s*return \[\]string\{([^}]*)\}")


def _git(git_dir: str, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, check=True, timeout=300).stdout


def extract_trufflehog(git_dir: str, commit: str) -> list[dict]:
    """One entry per detector (up to COPIES_PER_DETECTOR distinct secrets): the secret, the detector's path,
    its first keyword, and the line of the test input it stood on (its producer's context)."""
    files = [f for f in _git(git_dir, "ls-tree", "-r", "--name-only", commit, "pkg/detectors").decode().splitlines()
             if f.endswith("_test.go") and not f.endswith("_integration_test.go")]
    out: list[dict] = []
    for f in sorted(files):
        src = _git(git_dir, "show", f"{commit}:{f}").decode("utf-8", "replace")
        detector = f[len("pkg/detectors/"):f.rfind("/")]
        main = f[:f.rfind("/")] + "/" + f.rsplit("/", 1)[1].replace("_test.go", ".go")
        try:
            kw_src = _git(git_dir, "show", f"{commit}:{main}").decode("utf-8", "replace")
            km = _KEYWORDS.search(kw_src)
            keyword = json.loads("[" + km.group(1).strip().rstrip(",") + "]")[0] if km else ""
        except (subprocess.CalledProcessError, ValueError, IndexError):
            keyword = ""
        names = _bindings(src)
        seen: list[str] = []
        for text, wants in _cases(src, names):
            for want in wants:
                if len(seen) >= COPIES_PER_DETECTOR:
                    break
                if len(want) < MIN_SECRET or want not in text or want in seen or "\n" in want:
                    continue
                seen.append(want)
                line = next(ln for ln in text.splitlines() if want in ln).strip()
                out.append({"source": "trufflehog", "detector": detector, "keyword": keyword, "value": want,
                            "line": line})
    return out


def corpus_digest(entries: list[dict]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def load_heldout(manifest: dict, git_dir: str | None, cache: Path) -> list[dict]:
    """The held-out secrets, extracted once into `cache` and checked against the manifest's digest."""
    src = next(s for s in manifest["sources"] if s["name"] == "trufflehog-detector-tests")
    path = cache / f"trufflehog-{src['commit'][:12]}.json"
    if path.is_file():
        entries = json.loads(path.read_text())
    else:
        git_dir = git_dir or DEFAULT_TRUFFLEHOG_GIT
        if not Path(git_dir).exists():
            raise SystemExit(f"The held-out corpus is not extracted yet and no TruffleHog git copy is at {git_dir}: "
                             "clone https://github.com/trufflesecurity/trufflehog and pass its .git directory with "
                             f"--trufflehog-git (commit {src['commit']} is the one the manifest fixes).")
        entries = extract_trufflehog(git_dir, src["commit"])
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(entries))
        os.chmod(path, 0o600)
    digest = corpus_digest(entries)
    if src.get("sha256") and digest != src["sha256"]:
        raise SystemExit(f"The held-out corpus at {path} does not match the manifest (sha256 {digest[:16]}…, "
                         f"manifest {src['sha256'][:16]}…): it would measure something else. Remove it to extract "
                         "again.")
    return entries


# -- held-out look-alikes: classes fixed with the split, before any tuning -----------------------------

def _hex(g: bc.Gen, n: int) -> str:
    return g.chars(bc.ALPHABETS["H"], n)


def _b64(g: bc.Gen, n: int) -> str:
    return g.b64(g.raw(n))


def _pem_pub(g: bc.Gen) -> str:
    return bc._pem("PUBLIC KEY", "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", 2)(g)


def _jwk(g: bc.Gen) -> str:
    n = g.b64(g.raw(256), urlsafe=True, pad=False)
    return json.dumps({"kty": "RSA", "use": "sig", "kid": _hex(g, 16), "n": n, "e": "AQAB"})


HELDOUT_LOOKALIKES: tuple[tuple[str, str, object], ...] = (
    # (class, key it is stored under, maker)
    ("uuid-tenant", "tenant_id", lambda g: g.uuid()),
    ("uuid-token-id", "token_id", lambda g: g.uuid()),
    ("uuid-trace", "trace_id", lambda g: g.uuid(upper=True)),
    ("sha256-checksum", "checksum", lambda g: _hex(g, 64)),
    ("sha1-revision", "revision", lambda g: _hex(g, 40)),
    ("md5-content", "content_md5", lambda g: _hex(g, 32)),
    ("sha256-b64", "digest", lambda g: "sha256-" + _b64(g, 32)),
    ("git-lfs-oid", "lfs_oid", lambda g: "sha256:" + _hex(g, 64)),
    ("stripe-object-id", "customer", lambda g: "cus_" + g.chars(bc.ALPHABETS["N"], 14)),
    ("stripe-publishable-key", "publishable_key", lambda g: "pk_live_" + g.chars(bc.ALPHABETS["N"], 99)),
    ("google-oauth-client-id", "client_id",
     lambda g: f"{g.chars(bc.ALPHABETS['D'], 12)}-{g.chars(bc.ALPHABETS['n'], 32)}.apps.googleusercontent.com"),
    ("aws-arn-secret-ref", "secret_arn",
     lambda g: f"arn:aws:secretsmanager:eu-west-1:{g.chars(bc.ALPHABETS['D'], 12)}:secret:birth/db-"
               + g.chars(bc.ALPHABETS["N"], 6)),
    ("vault-path-ref", "credential",
     lambda g: f"vault:secret/data/birth/{g.chars(bc.ALPHABETS['L'], 8)}#password"),
    ("env-reference", "auth", lambda g: "${BIRTH_" + g.chars(bc.ALPHABETS["U"], 6) + "_TOKEN}"),
    ("github-actions-ref", "token", lambda g: "${{ secrets.BIRTH_" + g.chars(bc.ALPHABETS["U"], 6) + " }}"),
    ("redacted-marker", "password", lambda g: g.rng.choice(("<redacted>", "********", "[FILTERED]", "REDACTED"))
     + f" ({g.chars(bc.ALPHABETS['D'], 3)})"),
    ("x-placeholder", "api_key", lambda g: "x" * g.rng.randrange(24, 40)),
    ("python-format-placeholder", "password", lambda g: f"%({g.chars(bc.ALPHABETS['L'], 6)}_password)s"),
    ("ssh-rsa-public", "authorized_key", lambda g: "ssh-rsa " + g.b64(b"\x00\x00\x00\x07ssh-rsa" + g.raw(270))
     + " ops@birth"),
    ("pem-ec-public", "public_key", _pem_pub),
    ("jwk-public", "jwks", _jwk),
    ("oauth-token-endpoint", "token_endpoint",
     lambda g: f"https://login.birth-{g.chars(bc.ALPHABETS['n'], 6)}.example.test/oauth2/v2.0/token"),
    ("oidc-discovery-url", "issuer",
     lambda g: f"https://id.birth.example.test/realms/{g.chars(bc.ALPHABETS['L'], 8)}"
               "/.well-known/openid-configuration"),
    ("ethereum-address", "wallet", lambda g: "0x" + _hex(g, 40)),
    ("ulid-request", "request_id", lambda g: "01H" + g.chars(bc.ALPHABETS["K"], 23)),
    ("base64-png", "image", lambda g: "iVBORw0KGgoAAAANSUhEUgAA" + _b64(g, 60)),
    ("semver-build", "build", lambda g: f"1.{g.rng.randrange(40)}.{g.rng.randrange(90)}+sha.{_hex(g, 12)}"),
)


def _shape_of(value: str) -> str:
    if "\n" in value:
        return "multiline"
    if "://" in value:
        return "url"
    return "keyword"


_KEY_SUFFIXES = ("key", "token", "secret", "api_key", "credential", "auth", "password")
# `--keys neutral` (tuning, added with held-out v2): a word that says nothing of a secret, or only "auth"
_NEUTRAL_KEYS = ("auth", "credential", "value", "data", "conn", "login")


def _provider(detector: str, keyword: str) -> str:
    base = detector.split("/")[0]
    return re.sub(r"[^a-z0-9]+", "_", base.lower()).strip("_") or re.sub(r"[^a-z0-9]+", "_", keyword.lower())


# system_issues has 300 rows whatever the clone's size: a context of it takes no more plants than this
_ISSUE_ROWS = 295


def heldout_plants(entries: list[dict], seed: int, taken: int = 0, keys: str = "provider") -> list[bc.Plant]:
    """The held-out part as plants: each secret once, under a key named for its provider (a suffix among key,
    token, secret, api_key, credential, auth, password), spread over the contexts; then the look-alikes.
    `taken`: rows of system_issues other plants use. `keys="bare"` (a stress variant added after tuning, not
    the fixed measurement): the provider's name alone as the key (`"aiven": "..."`, `AIVEN=...`)."""
    rng = random.Random(f"fix7-heldout:{seed}")
    plants: list[bc.Plant] = []
    issues = [taken]

    def room(ctx: str) -> bool:
        if ctx != "issue_details":
            return True
        if issues[0] >= _ISSUE_ROWS:
            return False
        issues[0] += 1
        return True

    for i, e in enumerate(entries):
        value = e["value"]
        shape = _shape_of(value)
        allowed = bc._ALLOWED[shape]
        key = f"{_provider(e['detector'], e['keyword'])}_{rng.choice(_KEY_SUFFIXES)}"
        if keys == "bare":
            key = _provider(e["detector"], e["keyword"])
        elif keys == "neutral":
            key = rng.choice(_NEUTRAL_KEYS)
        for attempt in range(len(allowed)):
            ctx = allowed[(i + attempt) % len(allowed)]
            text = bc.render(ctx, shape, key, value, "secret", i)
            if bc._fits(ctx, text) and room(ctx):
                break
        else:
            continue
        plants.append(bc.Plant(f"h1-{i:04d}", "secret", f"trufflehog:{e['detector']}", shape, ctx, value, text,
                               [value]))
    n = 0
    for c, (name, key, make) in enumerate(HELDOUT_LOOKALIKES):
        for j in range(HELDOUT_LOOKALIKE_COPIES):
            g = bc.Gen(random.Random(f"fix7-heldout-lookalike:{seed}:{name}:{j}"))
            value = make(g)
            shape = _shape_of(value)
            allowed = bc._ALLOWED[shape]
            ctx = allowed[(c + j) % len(allowed)]
            text = bc.render(ctx, shape, key, value, "lookalike", j)
            if not bc._fits(ctx, text) or not room(ctx):
                ctx = "approval_comment"
                text = bc.render(ctx, shape, key, value, "lookalike", j)
            plants.append(bc.Plant(f"h2-{n:04d}", "lookalike", name, shape, ctx, value, text, [value]))
            n += 1
    return plants


# -- the run -------------------------------------------------------------------------------------------

def _score_parts(rows: dict, parts: dict[str, list[bc.Plant]], where: dict) -> dict:
    out = {}
    for part, plants in parts.items():
        s = bc.score(rows, plants, where)
        s.pop("rules", None)
        s.pop("hits_on_unplanted_rows", None)
        out[part] = s
    return out


def run(rows: int = DEFAULT_ROWS, seed: int = bc.DEFAULT_SEED, peers: tuple[str, ...] = ("detect-secrets", "gitleaks"),
        git_dir: str | None = None, out: Path | None = None, tuning: bool = True, keys: str = "provider") -> dict:
    from benchmarks.scan import bench_dir

    manifest = json.loads(MANIFEST.read_text())
    out = Path(out) if out else bench_dir() / "heldout-results.json"
    entries = load_heldout(manifest, git_dir, bench_dir() / "heldout")
    tuned = bc.build_corpus(seed) if tuning else []
    parts = {"heldout": heldout_plants(entries, seed, sum(p.context == "issue_details" for p in tuned), keys)}
    if tuning:
        parts["tuning"] = tuned
    plants = [p for ps in parts.values() for p in ps]
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
        frows: dict[tuple[str, str], set[str]] = {}
        for table, row_key, rule in fhits:
            if row_key is not None:
                frows.setdefault((table, row_key), set()).add(rule)
        scanners["fix7"] = {"status": "ran", "seconds": round(took, 2), **meta, **_score_parts(frows, parts, where)}
        if "detect-secrets" in peers:
            bc._log("detect-secrets over the plain dump")
            t0 = time.perf_counter()
            dhits, exe, version = bc.run_detect_secrets(plain)
            if exe is None:
                scanners["detect_secrets"] = {"status": "skipped", "reason": version}
            else:
                drows, _ = bc._rows_from_lines(dhits, plain, pks)
                scanners["detect_secrets"] = {"status": "ran", "seconds": round(time.perf_counter() - t0, 2),
                                              "version": version, **_score_parts(drows, parts, where)}
        if "gitleaks" in peers:
            exe, version = bc.gitleaks_bin()
            if exe is None:
                scanners["gitleaks"] = {"status": "skipped", "reason": version}
            else:
                bc._log("gitleaks over the plain dump")
                t0 = time.perf_counter()
                grows, _ = bc._rows_from_lines(bc.run_gitleaks(exe, plain), plain, pks)
                scanners["gitleaks"] = {"status": "ran", "seconds": round(time.perf_counter() - t0, 2),
                                        "version": version, **_score_parts(grows, parts, where)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "kind": "fix7 held-out corpus benchmark", "seed": seed, "keys": keys, "manifest": manifest,
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "parts": {k: {"secrets": sum(p.group == "secret" for p in v),
                      "lookalikes": sum(p.group == "lookalike" for p in v),
                      "secret_kinds": len({p.kind for p in v if p.group == "secret"}),
                      "lookalike_kinds": len({p.kind for p in v if p.group == "lookalike"})} for k, v in parts.items()},
        "clone": {"registry_rows": rows, "plain_dump_bytes": built["plain_dump_bytes"]},
        "contexts": {c.name: f"{c.table}.{c.column}: {c.what}" for c in bc.CONTEXTS},
        "scanners": scanners,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    result["results_file"] = str(out)
    return result


def render_text(result: dict) -> str:
    sc = result["scanners"]
    ran = {n: s for n, s in sc.items() if s["status"] == "ran"}
    lines = []
    for part, info in result["parts"].items():
        lines += ["", f"{part}: {info['secrets']} secrets of {info['secret_kinds']} kinds, {info['lookalikes']} "
                      f"look-alikes of {info['lookalike_kinds']} classes",
                  f"  {'context':<22}" + "".join(f"{n:>22}" for n in ran)]
        for ctx in result["contexts"]:
            row = f"  {ctx:<22}"
            for s in ran.values():
                b = s[part]["recall_by_context"][ctx]
                row += f"{b['found']:>14}/{b['planted']:<7}"
            lines.append(row)
        row = f"  {'recall / look-alikes':<22}"
        for s in ran.values():
            r = s[part]
            row += f"{(r['recall'] or 0) * 100:>12.1f}% /{r['lookalikes_flagged_pct'] or 0:>5.1f}%  "
        lines.append(row)
        for n, s in ran.items():
            if s[part]["flagged_lookalike_kinds"]:
                lines.append(f"  {n} look-alike classes flagged: " +
                             ", ".join(f"{k} {v}" for k, v in s[part]["flagged_lookalike_kinds"].items()))
    for n, s in sc.items():
        if s["status"] != "ran":
            lines.append(f"{n}: skipped: {s['reason']}")
    lines.append(f"results: {result.get('results_file')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.heldout", description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    ap.add_argument("--seed", type=int, default=bc.DEFAULT_SEED)
    ap.add_argument("--peers", default="detect-secrets,gitleaks", help="comma-separated, or none")
    ap.add_argument("--trufflehog-git", default=None, help="a TruffleHog git directory holding the manifest's commit")
    ap.add_argument("--no-tuning", action="store_true", help="plant the held-out part only")
    ap.add_argument("--keys", choices=("provider", "bare", "neutral"), default="provider",
                    help="held-out keys: <provider>_<secret word> (the fixed measurement) or the provider's name "
                         "alone (a stress variant added after tuning) or a neutral word (value, data, auth, ...)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    peers = tuple(p for p in a.peers.split(",") if p and p != "none")
    unknown = set(peers) - {"detect-secrets", "gitleaks"}
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    result = run(a.rows, a.seed, peers, a.trufflehog_git, a.out, tuning=not a.no_tuning, keys=a.keys)
    print(render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
