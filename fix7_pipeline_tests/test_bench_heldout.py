"""The held-out benchmark's corpus: read from Go test sources as TruffleHog writes them, split by source and
fixed by a digest (a changed corpus is refused, not measured). No real test data here: a made-up Go file."""

from __future__ import annotations

import json

import pytest

from benchmarks import corpus as bench_corpus, heldout as bench_heldout

GO = '''package acme

var (
    validPattern   = "acme_AbCdEf0123456789XyZ"
    invalidPattern = "acme_short"
    keyword        = "acme"
)

func TestAcme_Pattern(t *testing.T) {
    tests := []struct{ name string; input string; want []string }{
        {name: "valid", input: fmt.Sprintf("%s token = '%s'", keyword, validPattern), want: []string{validPattern}},
        {name: "raw", input: `line one
        [DEBUG] key=` + "acme_ZZZZ0000yyyy1111QQ" + ` end`, want: []string{"acme_ZZZZ0000yyyy1111QQ"}},
        {name: "invalid", input: fmt.Sprintf("%s = %s", keyword, invalidPattern), want: nil},
        {name: "concat", input: "a b", want: []string{validPattern + "x"}},
    }
}
'''


def test_go_cases_are_read_with_their_inputs():
    names = bench_heldout._bindings(GO)
    assert names["keyword"] == "acme"
    cases = list(bench_heldout._cases(GO, names))
    wanted = [w for text, wants in cases for w in wants if w in text]
    assert wanted == ["acme_AbCdEf0123456789XyZ", "acme_ZZZZ0000yyyy1111QQ"]
    assert bench_heldout._sprintf("%s=%q", ["k", "v"]) == 'k="v"'


def test_manifest_splits_by_source_and_fixes_the_corpus():
    m = json.loads(bench_heldout.MANIFEST.read_text())
    parts = m["split"]
    assert not set(parts["tuning"]) & set(parts["heldout"])
    by_name = {s["name"]: s for s in m["sources"]}
    for part in ("tuning", "heldout"):
        for n in parts[part]:
            assert by_name[n]["part"] == part
    th = by_name["trufflehog-detector-tests"]
    assert len(th["commit"]) == 40 and len(th["sha256"]) == 64 and th["part"] == "tuning"  # looked at: v1 only
    for name in ("secretlint-rule-tests", "semgrep-rules-secrets-tests", "ripsecrets-tests"):
        assert by_name[name]["part"] == "tuning" and name in parts["tuning"]  # v2: measured once, then looked at
        assert len(by_name[name]["commit"]) == 40 and len(by_name[name]["sha256"]) == 64


def test_a_changed_corpus_is_refused(tmp_path):
    m = json.loads(bench_heldout.MANIFEST.read_text())
    src = next(s for s in m["sources"] if s["name"] == "trufflehog-detector-tests")
    (tmp_path / f"trufflehog-{src['commit'][:12]}.json").write_text(json.dumps([{"value": "x"}]))
    with pytest.raises(SystemExit, match="does not match the manifest"):
        bench_heldout.load_heldout(m, None, tmp_path)


def test_heldout_plants_fit_the_clone_and_carry_no_tuning_kind():
    entries = [{"source": "trufflehog", "detector": f"d{i}", "keyword": "k", "value": f"V{i:04d}abcdefghijkl",
                "line": ""} for i in range(400)]
    plants = bench_heldout.heldout_plants(entries, 7, taken=200)
    assert sum(p.context == "issue_details" for p in plants) <= bench_heldout._ISSUE_ROWS - 200
    tuned = {k.name for k in bench_corpus.SECRET_KINDS} | {k.name for k in bench_corpus.LOOKALIKE_KINDS}
    assert not {p.kind for p in plants} & tuned
    assert {p.context for p in plants if p.group == "secret"} == {c.name for c in bench_corpus.CONTEXTS}


def test_a_small_run_scores_every_part_and_shows_no_value(tmp_path, monkeypatch, capsys):
    """The whole benchmark on a made-up held-out source (fix7 only): plants are found through the restored
    clone, scored per context, and neither the output nor the results file carries a planted value."""
    from benchmarks import scan as bench
    from fix7_pipeline_tests.e2e_support import rnd

    entries = [{"source": "trufflehog", "detector": f"acme{i}", "keyword": "acme", "value": f"acme_{rnd(28)}",
                "line": ""} for i in range(60)]
    manifest = json.loads(bench_heldout.MANIFEST.read_text())
    src = next(s for s in manifest["sources"] if s["name"] == "trufflehog-detector-tests")
    src["sha256"] = bench_heldout.corpus_digest(entries)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "heldout").mkdir()
    (tmp_path / "heldout" / f"trufflehog-{src['commit'][:12]}.json").write_text(json.dumps(entries))
    monkeypatch.setattr(bench_heldout, "MANIFEST", tmp_path / "manifest.json")
    monkeypatch.setattr(bench, "bench_dir", lambda: tmp_path)
    result = bench_heldout.run(rows=1000, peers=(), out=tmp_path / "r.json", tuning=False)
    ours = result["scanners"]["fix7"]["heldout"]
    assert ours["planted"] == 60 and ours["lookalikes"] == 270
    assert ours["recall"] >= 0.8 and ours["lookalikes_flagged_pct"] <= 5.0, (ours["recall"],
                                                                              ours["flagged_lookalike_kinds"])
    assert sum(b["planted"] for b in ours["recall_by_context"].values()) == 60
    text = bench_heldout.render_text(result) + (tmp_path / "r.json").read_text() + str(capsys.readouterr())
    leaked = [e["detector"] for e in entries if e["value"] in text or e["value"][5:17] in text]
    assert leaked == []
