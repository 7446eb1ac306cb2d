"""Held-out corpus v6: CredSweeper's samples read by the reports its own tests expect (default report: secrets;
rejected by its filters and model: negatives); the source fixed by a digest. No real test data here: a made-up
repository."""

from __future__ import annotations

import json

from benchmarks import heldout_v6 as v6
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
