"""Held-out corpus v5: SonarSource's secret specifications, fixed before any tuning of the fifth round.

`python -m benchmarks.heldout_v5` (`make bench-heldout-v5`). v4 was measured once and its misses are looked at
from this round on, so it is tuning, with v1 to v3 and the project's own corpus. v5 takes the examples of
`SonarSource/sonar-text`'s secret rules (`sonar-text-plugin/src/main/resources/org/sonar/plugins/secrets/
configuration/*.yaml`), a scanner fix7 embeds nothing from, at the commit `heldout.json` fixes, extracted into
`.fix7/bench/heldout/` (never into this repository) and checked against the manifest's sha256:

- each example with `containsSecret: true` gives its `match` (the secret as SonarSource's rule reports it);
- each example with `containsSecret: false` gives the longest value of its lines (`heldout_v2.value_of`, more
  than a bare word): the near miss the rule is tested against.

Only the `examples:` lists are read (each parsed alone: some files' detection sections are YAML that only
SonarSource's own parser accepts). Values are planted by `heldout_v2.plant_all` exactly as v2 to v4's, beside
look-alike classes written down here before any tuning (`LOOKALIKES_V5`). Results name sources, kinds, contexts
and counts, never a value.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

import yaml

from benchmarks import corpus as bc
from benchmarks import heldout as h1
from benchmarks import heldout_v2 as h2
from benchmarks import heldout_versions as hv

MANIFEST = h1.MANIFEST
SOURCES_V5 = ("sonar-secrets-specifications",)
_SPECS = "sonar-text-plugin/src/main/resources/org/sonar/plugins/secrets/configuration"
_RULE_ID = re.compile(r"^\s*(?:-\s*)?id:\s*([\w.-]+)")
_EXAMPLES = re.compile(r"^(\s*)examples:\s*$")


def _example_lists(text: str) -> list[tuple[str, list]]:
    """(rule id, its examples) for every `examples:` list of a specification, each parsed alone."""
    lines = text.splitlines()
    out, rule = [], "rule"
    for i, line in enumerate(lines):
        if (m := _RULE_ID.match(line)):
            rule = m.group(1)
        m = _EXAMPLES.match(line)
        if not m:
            continue
        indent, block = len(m.group(1)), []
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            block.append(nxt)
        try:
            examples = yaml.safe_load("\n".join(block)) or []
        except yaml.YAMLError:
            continue
        if isinstance(examples, list):
            out.append((rule, examples))
    return out


def extract_sonar(git_dir: Path, commit: str) -> list[dict]:
    out = []
    for f in h2._files(git_dir, commit, _SPECS):
        if not f.endswith((".yaml", ".yml")):
            continue
        provider = f.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for rule, examples in _example_lists(h2._show(git_dir, commit, f)):
            for ex in examples:
                if not isinstance(ex, dict) or not isinstance(ex.get("text"), str):
                    continue
                if ex.get("containsSecret") is True:
                    v = ex.get("match")
                    if isinstance(v, str) and h2.MIN_VALUE <= len(v) <= h2.MAX_VALUE and h2.printable(v):
                        out.append({"source": "sonar", "part": "secret", "kind": f"sonar:{rule}",
                                    "provider": h2._provider(provider), "value": v.strip()})
                elif ex.get("containsSecret") is False:
                    values = [v for v in map(h2.value_of, ex["text"].splitlines()) if v and h2._not_a_word(v)]
                    if values:  # its longest value: the near miss the example tests the rule against
                        out.append({"source": "sonar", "part": "negative", "kind": f"sonar-ok:{rule}",
                                    "provider": "service", "value": max(values, key=len)})
    return out


EXTRACTORS_V5 = {"sonar-secrets-specifications": extract_sonar}


# -- look-alike classes v5, written down with the source, before any tuning of this round ----------------

def _hex(g: bc.Gen, n: int) -> str:
    return g.chars(bc.ALPHABETS["H"], n)


_PUSH_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"

LOOKALIKES_V5: tuple[tuple[str, str, object], ...] = (
    ("firebase-push-id", "push_id", lambda g: "-N" + g.chars(_PUSH_CHARS, 18)),
    ("otel-span-id", "span_id", lambda g: _hex(g, 16)),
    ("content-md5", "content_md5", lambda g: g.b64(hashlib.md5(g.raw(32)).digest())),
    ("k8s-service-account-subject", "token_subject",
     lambda g: f"system:serviceaccount:births:{g.chars(bc.ALPHABETS['L'], 6)}-writer"),
    ("public-key-pem", "jwt_public_key",
     lambda g: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" + g.b64(g.raw(48))[:52]
               + "\n-----END PUBLIC KEY-----"),
    ("azure-tenant-id", "tenant", lambda g: g.uuid()),
    ("npm-resolved-url", "resolved",
     lambda g: f"https://registry.npmjs.org/{g.chars(bc.ALPHABETS['L'], 7)}/-/"
               f"{g.chars(bc.ALPHABETS['L'], 7)}-{g.chars('123456789', 1)}.{g.chars(bc.ALPHABETS['D'], 1)}.0.tgz"),
    ("correlation-id", "correlation_id", lambda g: "corr-" + g.chars(bc.ALPHABETS["N"], 24)),
    ("order-reference", "order_ref", lambda g: "ORD-" + g.chars("0123456789ABCDEFGHJKMNPQRSTVWXYZ", 10)),
    ("sha256-base64-checksum", "checksum", lambda g: base64.b64encode(hashlib.sha256(g.raw(32)).digest()).decode()),
)


VERSION = hv.Version("v5", SOURCES_V5, EXTRACTORS_V5, LOOKALIKES_V5, __doc__.splitlines()[0])
load_v5, plants_v5, run, main = VERSION.load, VERSION.plants, VERSION.run, VERSION.main


if __name__ == "__main__":
    sys.exit(main())
