"""Held-out corpus v5: SonarSource's secret specifications read by their examples' own oracle (`containsSecret`,
`match`); the source fixed by a digest. No real test data here: a made-up repository."""

from __future__ import annotations

from benchmarks import heldout_v5 as v5
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
