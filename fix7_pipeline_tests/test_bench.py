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
    assert result["row_counts"]["birth_registry"] == rows
    assert result["row_counts"]["os_proposal_approvals"] >= rows
    ours = result["recall"]["ours"]
    assert ours["planted"] == len(bench.PLANTS) >= 8
    assert ours["recall"] == 1.0, ours["rules_per_plant"]
    assert ours["findings_elsewhere"] == 0
    assert len({p["table"] for p in result["plants"]}) >= 8
    assert {p["kind"] for p in result["plants"]} >= {"text", "character varying", "json", "jsonb"}
    for p in result["plants"]:
        assert p["family"] in ours["rules_per_plant"][p["plant"]], p
    assert result["ratios"]["scan_vs_pg_dump"] > 0
    assert result["median_s"]["scan"] > 0 and result["median_s"]["pg_dump"] > 0
    ds = result["detect_secrets"]
    if ds["status"] == "ran":
        assert result["ratios"]["scan_vs_detect_secrets"] > 0
        assert 0 <= result["recall"]["detect_secrets"]["recall"] <= 1
        assert result["recall"]["detect_secrets"]["planted"] == len(bench.PLANTS)
    else:
        assert ds["reason"] and result["ratios"]["scan_vs_detect_secrets"] is None
    values = bench.planted_values(bench.load_key(bench.clone_dir(rows, result["seed"])))
    for name, (value, needle) in values.items():
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
