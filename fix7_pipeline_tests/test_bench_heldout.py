"""The held-out benchmark's corpus: read from Go test sources as TruffleHog writes them, split by source and
fixed by a digest (a changed corpus is refused, not measured). No real test data here: a made-up Go file."""

from __future__ import annotations

import json

import pytest

from fix7_pipeline import bench_corpus, bench_heldout

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
    assert len(th["commit"]) == 40 and len(th["sha256"]) == 64 and th["part"] == "heldout"


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
