"""Held-out corpus v5: SonarSource's secret specifications read by their examples' own oracle (`containsSecret`,
`match`); the source fixed by a digest. No real test data here: a made-up repository."""

from __future__ import annotations

import json

import pytest

from benchmarks import corpus as bench_corpus, heldout_v2 as v2, heldout_v3 as v3, heldout_v4 as v4, heldout_v5 as v5
from fix7_pipeline_tests.test_bench_heldout_v2 import SECRET, _repo

_SPEC = """provider:
  metadata:
    name: Acme
  detection:
    post:
      statisticalFilter:
        threshold: 4.2
      patternNot:
        - "^\\\\d++$"       # only SonarSource's own YAML parser reads this file whole
  rules:
    - id: acme-token # with a comment
      detection:
        matching:
          pattern: "acme_[a-z]+"
      examples:
        - text: |
            client = Acme(token="%(secret)s")
          containsSecret: true
          match: %(secret)s
        - text: |
            import acme
            client = Acme(token=os.environ["ACME_TOKEN"], url="https://api.acme.test/v2/items")
          containsSecret: false
    - id: acme-url
      examples:
        - text: "url = acme://user:pw@host"
          containsSecret: true
          match: short
"""


def test_sonar_examples_by_their_oracle_and_each_negative_by_its_longest_value(tmp_path):
    git, commit = _repo(tmp_path, {
        f"{v5._SPECS}/acme.yaml": _SPEC % {"secret": SECRET},
        f"{v5._SPECS}/categories.json": "{}",
    })
    got = [(e["part"], e["kind"], e["value"]) for e in v5.extract_sonar(git, commit)]
    assert got == [("secret", "sonar:acme-token", SECRET),
                   ("negative", "sonar-ok:acme-token", "https://api.acme.test/v2/items")]


def test_v5_stays_fixed_and_is_tuning_now_with_v4():
    m = json.loads(v5.MANIFEST.read_text())
    by_name = {s["name"]: s for s in m["sources"]}
    for name in v5.SOURCES_V5:  # measured once (results-v5-heldout.json), then looked at in v5's own round
        s = by_name[name]
        assert s["part"] == "tuning" and name in m["split"]["tuning"]
        assert len(s["commit"]) == 40 and len(s["sha256"]) == 64 and s["secrets"] > 0
    for name in (*v4.SOURCES_V4, *v3.SOURCES_V3, *v2.SOURCES_V2):
        assert by_name[name]["part"] == "tuning" and name in m["split"]["tuning"]


def test_a_changed_v5_source_is_refused(tmp_path):
    m = json.loads(v5.MANIFEST.read_text())
    src = next(s for s in m["sources"] if s["name"] == "sonar-secrets-specifications")
    (tmp_path / f"sonar-secrets-specifications-{src['commit'][:12]}.json").write_text(json.dumps([{"value": "x"}]))
    with pytest.raises(SystemExit, match="does not match the manifest"):
        v5.load_v5({"sources": [src]}, tmp_path)


def test_v5_plants_every_key_style_and_its_own_lookalike_classes():
    entries = [{"source": "x", "part": "secret", "kind": f"x:k{i}", "provider": "acme",
                "value": f"acme_{i:04d}Kx7Lp2Qm9Rk4"} for i in range(30)]
    plants = v5.plants_v5({"sonar-secrets-specifications": entries}, 7)
    assert sum(p.group == "secret" for p in plants) == 90
    classes = {p.kind for p in plants if p.group == "lookalike"}
    assert classes == {f"class|{name}" for name, _, _ in v5.LOOKALIKES_V5}
    earlier = ({name for name, _, _ in v2.LOOKALIKES_V2} | {name for name, _, _ in v3.LOOKALIKES_V3}
               | {name for name, _, _ in v4.LOOKALIKES_V4} | {k.name for k in bench_corpus.LOOKALIKE_KINDS})
    assert not {name for name, _, _ in v5.LOOKALIKES_V5} & earlier
