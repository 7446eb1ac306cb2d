"""Held-out corpus v3: whispers' fixtures by its own oracle, earlybird's rule examples by category, ggshield's
recorded matches by type; each source fixed by a digest. No real test data here: made-up repositories."""

from __future__ import annotations

import base64
import json

import yaml

from benchmarks import heldout_v2 as v2, heldout_v3 as v3
from fix7_pipeline_tests.test_bench_heldout_v2 import SECRET, _repo


def test_whispers_values_are_split_by_its_oracle_and_tags_carry_none(tmp_path):
    encoded = base64.b64encode(b"x-hardcoded-y-1").decode()
    git, commit = _repo(tmp_path, {
        "tests/fixtures/passwords.yml": "db_password: hardcoded_pw1\nname: service-name-1\n",
        "tests/fixtures/apikeys.json": f'{{"apikey": "{encoded}"}}\n',
        "tests/fixtures/placeholders.xml": "<password>\n${DB_PASSWORD}\n</password>\n<key>short</key>\n",
        "tests/fixtures/falsepositive.yml": "url: http://{host}/path_{id}\nhardcoded: hardcoded_v4lue\n",
        "tests/fixtures/creditcards.yml": "card: hardcoded-4111\n",
    })
    got = [(e["part"], e["value"]) for e in v3.extract_whispers(git, commit)]
    assert got == [("secret", "hardcoded_pw1"), ("negative", "${DB_PASSWORD}"), ("secret", encoded),
                   ("negative", "http://{host}/path_{id}"), ("secret", "hardcoded_v4lue")]


def test_earlybird_examples_by_category_and_ggshield_matches_by_type(tmp_path):
    rules = {"rules": [
        {"Caption": "Acme key", "Category": "password-secret", "Example": f"acme_key = '{SECRET}'"},
        {"Caption": "Potential URL in file", "Category": "infrastructure", "Example": "https://host.test/a"},
        {"Caption": "Potential SSN in file", "Category": "pii", "Example": "123-45-6789"},
    ]}
    cassette = {"interactions": [{"response": {"body": {"string": json.dumps([{"policy_breaks": [
        {"type": "MySQL Assignment", "detector_name": "mysql_assignment", "detector_group_name": "mysql_credentials",
         "matches": [{"type": "host", "match": "db.internal.test"}, {"type": "password", "match": SECRET + "1"},
                     {"type": "client_id", "match": "client-id-12345"}]}]}])}}}]}
    git, commit = _repo(tmp_path, {
        "config/rules/password-secret.yaml": yaml.safe_dump(rules),
        "config/rules/filename.yaml": yaml.safe_dump({"rules": [{"Caption": "key file", "Category": "key",
                                                                 "Example": "server.key.pem"}]}),
        "tests/unit/cassettes/one.yaml": yaml.safe_dump(cassette),
    })
    eb = v3.extract_earlybird(git, commit)
    assert [(e["part"], e["value"], e["provider"]) for e in eb] == [("secret", SECRET, "acme"),
                                                                    ("negative", "https://host.test/a", "url")]
    gg = v3.extract_ggshield(git, commit)
    assert [(e["part"], e["value"], e["kind"]) for e in gg] == [("secret", SECRET + "1", "ggshield:mysql_assignment")]


def test_the_masked_shape_of_a_value_names_no_character():
    assert v3.masked("Ab1-x") == "A1a1d1-a1"


def test_a_small_v3_run_scores_every_scanner_and_shows_no_value(tmp_path, monkeypatch, capsys):
    """The whole v3 benchmark on a made-up source (fix7 and Kingfisher alone), through v2's measuring code:
    scored per key style, and neither the output nor the results file carries a planted value."""
    from benchmarks import scan as bench
    from fix7_pipeline_tests.e2e_support import rnd

    entries = [{"source": "ggshield", "part": "secret", "kind": f"ggshield:acme{i}", "provider": "acme",
                "value": f"acme_{rnd(28)}"} for i in range(20)]
    manifest = json.loads(v3.MANIFEST.read_text())
    (tmp_path / "heldout").mkdir()
    for s in manifest["sources"]:
        if s["name"] in v3.SOURCES_V3:
            mine = entries if s["name"] == "ggshield-cassettes" else []
            s["sha256"] = v2.h1.corpus_digest(mine)
            (tmp_path / "heldout" / f"{s['name']}-{s['commit'][:12]}.json").write_text(json.dumps(mine))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(v2.h1, "MANIFEST", tmp_path / "manifest.json")  # every version reads the one manifest
    monkeypatch.setattr(bench, "bench_dir", lambda: tmp_path)
    result = v3.run(rows=1000, peers=(), out=tmp_path / "r.json")
    ours = result["scanners"]["fix7"]
    assert result["kind"] == "fix7 held-out corpus v3 benchmark"
    assert ours["planted"] == 60 and ours["lookalikes"] == 10 * len(v3.LOOKALIKES_V3)
    assert ours["recall"] >= 0.8, ours["recall_by_key_style"]
    text = v2.render_text(result) + (tmp_path / "r.json").read_text() + str(capsys.readouterr())
    assert [e["kind"] for e in entries if e["value"] in text or e["value"][5:17] in text] == []


def test_the_tuning_figures_count_per_rule_and_show_no_value():
    """benchmarks.heldout_tuning on made-up plants: a random token under a secret word is found, a placeholder
    URL is not, and the figures name rules and kinds only."""
    from benchmarks import heldout_tuning
    from fix7_pipeline_tests.e2e_support import rnd

    entries = [{"source": "x", "part": "secret", "kind": f"x:k{i}", "provider": "acme", "value": rnd(32)}
               for i in range(5)]
    entries += [{"source": "x", "part": "negative", "kind": "x-ok", "provider": "acme",
                 "value": f"postgresql://app{i}:password@db.internal.test/app"} for i in range(5)]
    plants = v2.plant_all({"x": entries}, 7, ("x",), (), "t")
    fig = heldout_tuning.figures("made-up", plants)
    assert fig["recall"].split("/")[1] == "15" and int(fig["recall"].split("/")[0]) >= 5
    assert fig["lookalikes"] == "0/5"
    assert not [e for e in entries if e["value"] in json.dumps(fig)]
