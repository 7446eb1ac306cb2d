"""What every held-out corpus version from v3 on must hold: its sources fixed in the manifest (commit and digest),
only the latest held out and every earlier one declared tuning, a changed extraction refused, each secret planted
under every key style, and look-alike classes of its own that no earlier version or the tuning corpus has."""

from __future__ import annotations

import json

import pytest

from benchmarks import corpus as bench_corpus, heldout_v2 as v2, heldout_v3 as v3, heldout_v4 as v4
from benchmarks import heldout_v5 as v5, heldout_v6 as v6

VERSIONS = (v3.VERSION, v4.VERSION, v5.VERSION, v6.VERSION)
LATEST = VERSIONS[-1]


def _manifest() -> dict:
    return json.loads(v2.MANIFEST.read_text())


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.tag)
def test_a_version_is_fixed_and_only_the_latest_is_held_out(version):
    m = _manifest()
    by_name = {s["name"]: s for s in m["sources"]}
    part = "heldout" if version is LATEST else "tuning"  # an earlier one was measured once, then looked at
    for name in version.sources:
        s = by_name[name]
        assert s["part"] == part and name in m["split"][part]
        assert len(s["commit"]) == 40 and len(s["sha256"]) == 64 and s["secrets"] > 0
    for name in v2.SOURCES_V2:
        assert by_name[name]["part"] == "tuning" and name in m["split"]["tuning"]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.tag)
def test_a_changed_source_is_refused(version, tmp_path):
    src = next(s for s in _manifest()["sources"] if s["name"] == version.sources[0])
    (tmp_path / f"{src['name']}-{src['commit'][:12]}.json").write_text(json.dumps([{"value": "x"}]))
    with pytest.raises(SystemExit, match="does not match the manifest"):
        version.load({"sources": [src]}, tmp_path)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.tag)
def test_a_version_plants_every_key_style_and_lookalike_classes_of_its_own(version):
    entries = [{"source": "x", "part": "secret", "kind": f"x:k{i}", "provider": "acme",
                "value": f"acme_{i:04d}Kx7Lp2Qm9Rk4"} for i in range(30)]
    plants = version.plants({version.sources[0]: entries}, 7)
    assert sum(p.group == "secret" for p in plants) == 30 * len(v2.KEY_STYLES)
    classes = {p.kind for p in plants if p.group == "lookalike"}
    assert classes == {f"class|{name}" for name, _, _ in version.lookalikes}
    earlier = {name for name, _, _ in v2.LOOKALIKES_V2} | {k.name for k in bench_corpus.LOOKALIKE_KINDS}
    for other in VERSIONS[:VERSIONS.index(version)]:
        earlier |= {name for name, _, _ in other.lookalikes}
    assert not {name for name, _, _ in version.lookalikes} & earlier
