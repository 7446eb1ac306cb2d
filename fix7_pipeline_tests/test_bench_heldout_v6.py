"""Held-out corpus v6: CredSweeper's samples read by the reports its own tests expect (default report: secrets;
rejected by its filters and model: negatives); the source fixed by a digest. No real test data here: a made-up
repository."""

from __future__ import annotations

import json

import pytest

from benchmarks import corpus as bench_corpus, heldout_v2 as v2, heldout_v3 as v3, heldout_v4 as v4
from benchmarks import heldout_v5 as v5, heldout_v6 as v6
from fix7_pipeline_tests.test_bench_heldout_v2 import SECRET, _repo

REJECTED = "zq_" + "placeholder_for_tests_only"
KEY_ID = "AKIA" + "Q2WX4EC6RV8TB0YN"


def _finding(rule: str, severity: str, *values: str) -> dict:
    return {"rule": rule, "severity": severity, "line_data_list": [{"value": v, "path": "s"} for v in values]}


def _reports(tmp_path, reported: list[dict], rules_only: list[dict]):
    return _repo(tmp_path, {v6._DEFAULT_REPORT: json.dumps(reported), v6._RULES_ONLY_REPORT: json.dumps(rules_only)})


def test_secrets_from_the_default_report_negatives_from_what_it_rejects(tmp_path):
    pem = ["-----BEGIN EC PRIVATE KEY-----", "MHcCAQEEIB" + "x7Lp2Qm9Rk4Zt8WvB3nQ", "-----END EC PRIVATE KEY-----"]
    reported = [
        _finding("Acme Token", "high", SECRET),
        _finding("Acme Multi", "high", KEY_ID, SECRET + "Pair"),       # a pair rule: its id, then its secret
        _finding("PEM Private Key", "high", *pem),
        _finding("PEM Private Key", "high", '"-----BEGIN RSA PRIVATE KEY-----', '+ "MIIEow"'),  # not a PEM block
        _finding("AWS Client ID", "medium", KEY_ID),                   # an identifier's rule
        _finding("UUID", "info", "6f1c2a4e-9b3d-4e7a-8c21-5d0f3b9a7e64"),  # below medium
        _finding("Password", "high", "Cr4zyHorse!2023"),
        _finding("Password", "high", "Cr4zyHorse!1999"),               # the same case, other digits
    ]
    rules_only = [*reported, _finding("Acme Token", "high", REJECTED), _finding("Acme Token", "high", "acmetokens")]
    git, commit = _reports(tmp_path, reported, rules_only)
    got = [(e["part"], e["kind"], e["value"]) for e in v6.extract_credsweeper(git, commit)]
    assert got == [("secret", "credsweeper:Acme Token", SECRET),
                   ("secret", "credsweeper:Acme Multi", SECRET + "Pair"),
                   ("secret", "credsweeper:PEM Private Key", "\n".join(pem)),
                   ("secret", "credsweeper:Password", "Cr4zyHorse!2023"),
                   ("negative", "credsweeper-rejected:Acme Token", REJECTED)]


def test_v6_is_held_out_and_v5_is_tuning_now():
    m = json.loads(v6.MANIFEST.read_text())
    by_name = {s["name"]: s for s in m["sources"]}
    for name in v6.SOURCES_V6:
        s = by_name[name]
        assert s["part"] == "heldout" and name in m["split"]["heldout"]
        assert len(s["commit"]) == 40 and len(s["sha256"]) == 64 and s["secrets"] > 0
    for name in (*v5.SOURCES_V5, *v4.SOURCES_V4, *v3.SOURCES_V3, *v2.SOURCES_V2):
        assert by_name[name]["part"] == "tuning" and name in m["split"]["tuning"]


def test_a_changed_v6_source_is_refused(tmp_path):
    m = json.loads(v6.MANIFEST.read_text())
    src = next(s for s in m["sources"] if s["name"] == "credsweeper-samples")
    (tmp_path / f"credsweeper-samples-{src['commit'][:12]}.json").write_text(json.dumps([{"value": "x"}]))
    with pytest.raises(SystemExit, match="does not match the manifest"):
        v6.load_v6({"sources": [src]}, tmp_path)


def test_v6_plants_every_key_style_and_its_own_lookalike_classes():
    entries = [{"source": "x", "part": "secret", "kind": f"x:k{i}", "provider": "acme",
                "value": f"acme_{i:04d}Kx7Lp2Qm9Rk4"} for i in range(30)]
    plants = v6.plants_v6({"credsweeper-samples": entries}, 7)
    assert sum(p.group == "secret" for p in plants) == 90
    classes = {p.kind for p in plants if p.group == "lookalike"}
    assert classes == {f"class|{name}" for name, _, _ in v6.LOOKALIKES_V6}
    earlier = ({name for name, _, _ in v2.LOOKALIKES_V2} | {name for name, _, _ in v3.LOOKALIKES_V3}
               | {name for name, _, _ in v4.LOOKALIKES_V4} | {name for name, _, _ in v5.LOOKALIKES_V5}
               | {k.name for k in bench_corpus.LOOKALIKE_KINDS})
    assert not {name for name, _, _ in v6.LOOKALIKES_V6} & earlier
