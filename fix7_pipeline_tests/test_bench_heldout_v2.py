"""Held-out corpus v2: values read from scanners' test files as their projects write them, each source fixed
by a digest, planted under three key styles. No real test data here: made-up repositories and values."""

from __future__ import annotations

import json
import subprocess

import pytest

from benchmarks import corpus as bench_corpus, heldout_v2 as v2

SECRET = "zq_" + "Kx7Lp2Qm9Rk4Zt8WvB3nQaYd"


def _repo(tmp_path, files: dict[str, str]) -> tuple:
    work = tmp_path / "src"
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return work / ".git", commit


def test_a_value_is_read_from_its_line():
    assert v2.value_of(f'acme_token = "{SECRET}"') == SECRET
    assert v2.value_of(f"ACME_TOKEN: {SECRET}  # a comment") == SECRET
    assert v2.value_of(f"<apiKey>{SECRET}</apiKey>") == SECRET
    assert v2.value_of("see https://svc:Pw0rdLong@db.example.test/x for it") == "https://svc:Pw0rdLong@db.example.test/x"
    assert v2.value_of("short") is None and v2.value_of("bin \x00\x01 data") is None


def test_secretlint_spans_semgrep_annotations_and_ripsecrets_lines(tmp_path):
    out = json.dumps({"messages": [{"range": [8, 8 + len(SECRET)], "data": {}}]})
    git, commit = _repo(tmp_path, {
        "packages/@secretlint/secretlint-rule-acme/test/snapshots/ng.secret/input.txt": f"acme = '{SECRET}'\n",
        "packages/@secretlint/secretlint-rule-acme/test/snapshots/ng.secret/output.json": out,
        "packages/@secretlint/secretlint-rule-acme/test/snapshots/ok.valid/input.txt": "ACME = acme_placeholder_1\nword\n",
        "packages/@secretlint/secretlint-rule-acme/test/snapshots/ok.allows/input.txt": f"t = {SECRET}x\n",
        "packages/@secretlint/secretlint-rule-acme/test/snapshots/ok.allows/options.json": "{}",
        "generic/secrets/security/detected-acme-token.txt":
            f"# ruleid: detected-acme-token\nacme = {SECRET}9\n\n# ok: detected-acme-token\nacme = $ACME_TOKEN\n",
        "generic/secrets/gitleaks/acme.go": f"// ruleid: acme\nacme := \"{SECRET}8\"\n",
        "test/one_per_line/acme": f"ACME_KEY = '{SECRET}7'\n",
        "test/none": "ACME = settings.ACME_SECRET_NAME\n",
    })
    sl = v2.extract_secretlint(git, commit)
    assert [(e["part"], e["value"]) for e in sl] == [("secret", SECRET), ("negative", "acme_placeholder_1")]
    sg = v2.extract_semgrep(git, commit)
    assert [(e["part"], e["value"], e["provider"]) for e in sg] == [("secret", SECRET + "9", "acme"),
                                                                     ("negative", "$ACME_TOKEN", "acme")]
    rs = v2.extract_ripsecrets(git, commit)
    assert [(e["part"], e["value"]) for e in rs] == [("secret", SECRET + "7"),
                                                     ("negative", "settings.ACME_SECRET_NAME")]


def test_a_changed_source_is_refused(tmp_path):
    m = json.loads(v2.MANIFEST.read_text())
    src = next(s for s in m["sources"] if s["name"] == "ripsecrets-tests")
    (tmp_path / f"ripsecrets-tests-{src['commit'][:12]}.json").write_text(json.dumps([{"value": "x"}]))
    with pytest.raises(SystemExit, match="does not match the manifest"):
        v2.load_v2({"sources": [src]}, tmp_path)


def test_each_secret_is_planted_under_every_key_style_and_no_tuning_kind():
    entries = [{"source": "x", "part": "secret", "kind": f"x:k{i}", "provider": "acme",
                "value": f"acme_{i:04d}Kx7Lp2Qm9Rk4"} for i in range(150)]
    entries += [{"source": "x", "part": "negative", "kind": "x-ok", "provider": "acme", "value": f"n-{i}-{i}"}
                for i in range(20)]
    plants = v2.plants_v2({"ripsecrets-tests": entries}, 7)
    secrets = [p for p in plants if p.group == "secret"]
    assert len(secrets) == 450
    assert {p.kind.split("|")[0] for p in secrets} == set(v2.KEY_STYLES)
    assert sum(p.context == "issue_details" for p in plants) <= v2._ISSUE_ROWS
    assert {p.context for p in secrets} == {c.name for c in bench_corpus.CONTEXTS}
    provider_only = [p for p in secrets if p.kind.startswith("provider_only") and p.context == "issue_details"]
    assert provider_only and all(list(p.text) == ["acme"] for p in provider_only)
    tuned = {k.name for k in bench_corpus.SECRET_KINDS} | {k.name for k in bench_corpus.LOOKALIKE_KINDS}
    assert not {p.kind.split("|")[1] for p in plants} & tuned
    assert sum(p.group == "lookalike" for p in plants) == 20 + 10 * len(v2.LOOKALIKES_V2)


def test_a_small_run_scores_every_scanner_and_shows_no_value(tmp_path, monkeypatch, capsys):
    """The whole v2 benchmark on made-up sources (fix7 and Kingfisher alone): scored per key style and context,
    and neither the output nor the results file carries a planted value."""
    from benchmarks import scan as bench
    from fix7_pipeline_tests.e2e_support import rnd

    entries = [{"source": "ripsecrets", "part": "secret", "kind": f"ripsecrets:acme{i}", "provider": "acme",
                "value": f"acme_{rnd(28)}"} for i in range(40)]
    entries += [{"source": "ripsecrets", "part": "negative", "kind": "ripsecrets-none", "provider": "service",
                 "value": f"settings.ACME_{i}_NAME"} for i in range(10)]
    manifest = json.loads(v2.MANIFEST.read_text())
    for s in manifest["sources"]:
        if s["name"] in v2.SOURCES_V2:
            s["sha256"] = v2.h1.corpus_digest(entries if s["name"] == "ripsecrets-tests" else [])
            (tmp_path / "heldout").mkdir(exist_ok=True)
            (tmp_path / "heldout" / f"{s['name']}-{s['commit'][:12]}.json").write_text(
                json.dumps(entries if s["name"] == "ripsecrets-tests" else []))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(v2, "MANIFEST", tmp_path / "manifest.json")
    monkeypatch.setattr(bench, "bench_dir", lambda: tmp_path)
    result = v2.run(rows=1000, peers=(), out=tmp_path / "r.json")
    ours = result["scanners"]["fix7"]
    assert ours["planted"] == 120 and ours["lookalikes"] == 10 + 10 * len(v2.LOOKALIKES_V2)
    assert set(ours["recall_by_key_style"]) == set(v2.KEY_STYLES)
    assert ours["recall"] >= 0.8, ours["recall_by_key_style"]
    assert result["scanners"]["kingfisher_alone"]["planted"] == 120
    text = v2.render_text(result) + (tmp_path / "r.json").read_text() + str(capsys.readouterr())
    assert [e["kind"] for e in entries if e["value"] in text or e["value"][5:17] in text] == []
