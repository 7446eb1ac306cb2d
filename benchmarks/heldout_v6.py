"""Held-out corpus v6: CredSweeper's samples read by its own expected reports, fixed before any tuning of the sixth round.

`python -m benchmarks.heldout_v6` (`make bench-heldout-v6`). v5 was measured once and its flags are looked at from
that round on, so it is tuning, with v1 to v4 and the project's own corpus. v6 takes `Samsung/CredSweeper`'s test
samples (`tests/samples/`), a scanner fix7 embeds nothing from, through the reports its own tests expect, at the
commit `heldout.json` fixes, extracted into `.fix7/bench/heldout/` (never into this repository) and checked against
the manifest's sha256:

- a **secret** is the value of a finding of its default report (`tests/data/output.json`: rules, filters and its
  model), of a rule that names a credential (severity medium and above, not an identifier's rule);
- a **negative** is the value of a finding its rules alone report (`tests/data/no_filters_no_ml.json`) that the
  default report rejects: what its filters and its model judged no credential;
- values of one rule that differ only in their digits are one test case (the first is kept).

A pair rule (an id then its secret) gives its last value; a private key gives its block when its lines are a PEM
block, else nothing. Values are planted by `heldout_v2.plant_all` exactly as v2 to v5's, beside look-alike classes
written down here before any tuning (`LOOKALIKES_V6`). Results name sources, kinds, contexts and counts, never a
value.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from pathlib import Path

from benchmarks import corpus as bc
from benchmarks import heldout as h1
from benchmarks import heldout_v2 as h2
from benchmarks import heldout_versions as hv

MANIFEST = h1.MANIFEST
SOURCES_V6 = ("credsweeper-samples",)
_DEFAULT_REPORT = "tests/data/output.json"
_RULES_ONLY_REPORT = "tests/data/no_filters_no_ml.json"
_LEFT_OUT_SEVERITIES = {"info", "low"}
_IDENTIFIER_RULES = {"AWS Client ID", "Alibaba Access Key ID", "Tencent WeChat API App ID"}
_PEM_LINE = re.compile(r"[A-Za-z0-9+/=]*|[\w-]+: .*")


def _value(finding: dict) -> str | None:
    lines = [ld["value"] for ld in finding["line_data_list"]]
    if len(lines) > 1 and finding["rule"].endswith("Private Key"):
        block = (lines[0].startswith("-----BEGIN") and lines[-1].startswith("-----END")
                 and all(_PEM_LINE.fullmatch(v) for v in lines[1:-1]))
        return "\n".join(lines) if block else None
    return lines[-1]


def _credential_rule(finding: dict) -> bool:
    return finding["severity"] not in _LEFT_OUT_SEVERITIES and finding["rule"] not in _IDENTIFIER_RULES


def _usable(v: str | None) -> bool:
    return v is not None and h2.MIN_VALUE <= len(v) <= h2.MAX_VALUE and h2.printable(v)


def _one_case(seen: set, rule: str, v: str) -> bool:
    """A value that differs from another of its rule only in its digits is one test case, not two: the samples
    repeat one password behind eighty separators and numbers to test CredSweeper's parsing, not a new secret."""
    case = (rule, re.sub(r"\d+", "0", v))
    if case in seen:
        return False
    seen.add(case)
    return True


def extract_credsweeper(git_dir: Path, commit: str) -> list[dict]:
    reported = json.loads(h2._show(git_dir, commit, _DEFAULT_REPORT))
    rules_only = json.loads(h2._show(git_dir, commit, _RULES_ONLY_REPORT))
    listed = {ld["value"] for f in reported for ld in f["line_data_list"]} | {_value(f) for f in reported}
    out, cases = [], set()
    for f in reported:
        v = _value(f)
        if _credential_rule(f) and _usable(v) and _one_case(cases, f["rule"], v):
            out.append({"source": "credsweeper", "part": "secret", "kind": f"credsweeper:{f['rule']}",
                        "provider": h2._provider(f["rule"]), "value": v})
    for f in rules_only:
        v = _value(f)
        if (_credential_rule(f) and _usable(v) and v not in listed and h2._not_a_word(v)
                and _one_case(cases, f["rule"], v)):
            out.append({"source": "credsweeper", "part": "negative", "kind": f"credsweeper-rejected:{f['rule']}",
                        "provider": "service", "value": v})
    return out


EXTRACTORS_V6 = {"credsweeper-samples": extract_credsweeper}


# -- look-alike classes v6, written down with the source, before any tuning of this round ----------------

_hex = h2._hex
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BASE32_LOWER = "abcdefghijklmnopqrstuvwxyz234567"

LOOKALIKES_V6: tuple[tuple[str, str, object], ...] = (
    ("sentry-event-id", "event_id", lambda g: _hex(g, 32)),
    ("ga-client-id", "ga_client_id",
     lambda g: f"GA1.2.{g.chars(bc.ALPHABETS['D'], 10)}.{g.chars(bc.ALPHABETS['D'], 10)}"),
    ("blake2b-file-hash", "file_hash", lambda g: "blake2b:" + hashlib.blake2b(g.raw(32)).hexdigest()),
    ("webauthn-credential-id", "credential_id", lambda g: base64.urlsafe_b64encode(g.raw(32)).decode().rstrip("=")),
    ("birth-certificate-number", "certificate_no", lambda g: f"BC-{g.chars('12', 1)}0{g.chars(bc.ALPHABETS['D'], 2)}-"
                                                             f"{g.chars(bc.ALPHABETS['D'], 8)}"),
    ("age-recipient", "recipient", lambda g: "age1" + g.chars(_BECH32, 58)),
    ("wireguard-public-key", "peer_public_key", lambda g: base64.b64encode(g.raw(32)).decode()),
    ("ipfs-cid", "cid", lambda g: "bafy" + g.chars(_BASE32_LOWER, 55)),
    ("webhook-signature", "webhook_signature", lambda g: "sha256=" + _hex(g, 64)),
    ("s3-version-id", "version_id", lambda g: g.chars(bc.ALPHABETS["N"] + "._", 32)),
)


VERSION = hv.Version("v6", SOURCES_V6, EXTRACTORS_V6, LOOKALIKES_V6, __doc__.splitlines()[0])
load_v6, plants_v6, run, main = VERSION.load, VERSION.plants, VERSION.run, VERSION.main


if __name__ == "__main__":
    sys.exit(main())
