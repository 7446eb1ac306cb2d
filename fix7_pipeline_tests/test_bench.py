"""The sanitization benchmark end to end on a small clone: full recall, ratios written, no planted value shown."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fix7_pipeline import bench


def _run(tmp_path, rows: int) -> tuple[dict, str]:
    out = tmp_path / "results.json"
    r = subprocess.run([sys.executable, "-m", "fix7_pipeline.bench", "--rows", str(rows), "--repeat", "1",
                        "--no-profile", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(out.read_text()), r.stdout + r.stderr + out.read_text()


def _check(result: dict, shown: str, rows: int) -> None:
    """What a small run can check: every planted secret found where it was planted and nowhere else, and none
    of them in what the bench printed or wrote. How fast is the benchmark's own business (`make bench`)."""
    assert result["row_counts"]["birth_registry"] == rows
    assert result["row_counts"]["os_proposal_approvals"] >= rows
    plants = {p["plant"]: p for p in result["plants"]}
    assert set(plants) == {p.name for p in bench.PLANTS} and len(plants) >= 8
    assert len({p["table"] for p in plants.values()}) >= 8
    assert {p["kind"] for p in plants.values()} >= {"text", "character varying", "json", "jsonb"}

    # recall: each planted row found, by the rule family meant for it, and no finding on any other row
    ours = result["recall"]["ours"]
    assert (ours["found"], ours["planted"], ours["recall"]) == (len(bench.PLANTS), len(bench.PLANTS), 1.0), \
        ours["rules_per_plant"]
    for p in bench.PLANTS:
        assert p.family in ours["rules_per_plant"][p.name], (p.name, ours["rules_per_plant"][p.name])
    assert ours["findings_elsewhere"] == 0
    assert len(result["times_s"]["scan"]) == len(result["times_s"]["pg_dump"]) == result["repeat"]  # both ran

    ds = result["detect_secrets"]
    if ds["status"] == "ran":  # its hits are mapped back to the plain dump's lines: the mapping must hold
        theirs = result["recall"]["detect_secrets"]
        assert theirs["planted"] == len(bench.PLANTS)
        assert theirs["found"] == sum(1 for types in theirs["types_per_plant"].values() if types)
        assert "AWS Access Key" in theirs["types_per_plant"]["aws_key_in_free_text"], theirs["types_per_plant"]
        assert "Private Key" in theirs["types_per_plant"]["pem_key_in_revision"], theirs["types_per_plant"]
    else:
        assert ds["reason"] and result["ratios"]["scan_vs_detect_secrets"] is None

    # no leak: the values are the real ones (the cached plain dump holds each needle exactly once, so this
    # search can fail), and neither a value nor any 8 characters of its random part is in anything shown
    cdir = bench.clone_dir(rows, result["seed"])
    values = bench.planted_values(bench.load_key(cdir))
    assert set(values) == set(plants)
    plain = (cdir / "clone.sql").read_bytes()
    for name, (value, needle) in values.items():
        assert plain.count(needle.encode()) == 1, f"{name}: its needle is not in the planted dump once"
        assert value not in shown and needle not in shown, f"{name} leaked into the bench output"
        assert all(needle[i:i + 8] not in shown for i in range(len(needle) - 7)), name


def test_small_bench_finds_every_planted_secret(tmp_path):
    result, shown = _run(tmp_path, 1000)
    _check(result, shown, 1000)


@pytest.mark.slow
def test_bench_at_20000_rows(tmp_path):
    result, shown = _run(tmp_path, 20000)
    _check(result, shown, 20000)


def test_needles_found_on_the_right_lines(tmp_path):
    """Line numbers are what detect-secrets recall rests on: check them against a hand-made file."""
    f = tmp_path / "d.sql"
    f.write_text("COPY t (a) FROM stdin;\nx needle-one y\nplain\n\\.\nneedle-two and needle-one\n")
    assert bench.needle_lines(f, {"a": "needle-one", "b": "needle-two", "c": "absent"}) == \
        {"a": [2, 5], "b": [5], "c": []}
    parts = tmp_path / "parts"
    parts.mkdir()
    split = bench.detect_secrets_input(f, {2}, parts, 2, 10)
    kept = sorted(n for ns in split["origin"].values() for n in ns)
    assert 2 in kept and {1, 4, 5} <= set(kept) and split["every_kth_data_line"] > 1
    for name, origin in split["origin"].items():
        src = f.read_text().splitlines()
        assert (parts / name).read_text().splitlines() == [src[n - 1] for n in origin]
