"""The traffic chart as SVG: every query, wait, statement, COMMIT and the lock timeout drawn where its numbers say,
names from the dump escaped, and no plotting library loaded by a rehearsal."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET

from fix7_pipeline.core.evidence.charts import draw, write_charts

NS = {"s": "http://www.w3.org/2000/svg"}
HOSTILE = 'public."a<b>&c" --\'</svg><script>'


def _traffic() -> dict:
    return {"ran": True, "settings": {"lock_timeout_ms": 1000.0},
            "tables": [{"table": "public.birth_registry", "mode": "read"}, {"table": HOSTILE, "mode": "read"},
                       {"table": "public.quiet", "mode": "not probed"}],
            "timeline": {"t_s": [0.1, 0.5, 1.0, 1.2, 2.5, 0.3], "ms": [1.0, 10.0, 2500.0, 0.004, 3.0, 7.0],
                         "table": [0, 0, 0, 1, 1, 2], "kind": ["select"] * 6,
                         "blocked": [False, False, True, False, False, False],
                         "statements": [[1, "LOCK TABLE", 0.2, 3.6], [4, "UPDATE", 3.6, 3.9]],
                         "commit": [3.9, 4.0]}}


def _svg(traffic: dict) -> ET.Element:
    return ET.fromstring(draw("apply", traffic))


def test_every_number_is_drawn_where_it_says():
    root = _svg(_traffic())
    queries = root.findall(".//s:circle[@class='query']", NS)
    assert sorted(q.get("data-table") for q in queries) == ["0", "0", "0", "1", "1"]  # the unprobed table's is not
    xs = [float(q.get("cx")) for q in queries]
    assert xs == sorted(xs)  # drawn in time order here (0.1, 0.5, 1.0, 1.2, 2.5 s): later is further right
    ys = [float(q.get("cy")) for q in queries]  # 1, 10, 2500, 0.004 (drawn at the 0.01 floor) and 3 ms
    # log scale: a decade is the same height anywhere; a faster query is lower (larger y)
    assert abs((ys[0] - ys[1]) - (ys[1] - ys[2]) / math.log10(250)) < 0.5
    assert ys[3] > ys[0] > ys[4] > ys[1] > ys[2]
    waited = root.findall(".//s:line[@class='waited']", NS)
    answered = root.findall(".//s:circle[@class='answered']", NS)
    assert len(waited) == len(answered) == 1
    assert float(waited[0].get("x2")) - float(waited[0].get("x1")) > 0  # the 2.5 s it waited, from its start
    assert float(answered[0].get("cx")) == float(waited[0].get("x2"))
    bands = root.findall(".//s:rect[@class='statement']", NS)
    assert [b.get("data-line") for b in bands] == ["1", "4"]
    texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "line 1" in texts and "line 4" in texts
    commit = root.find(".//s:line[@class='commit']", NS)
    assert commit is not None and float(commit.get("x1")) > float(bands[1].get("x"))
    timeout = root.find(".//s:line[@class='lock-timeout']", NS)
    ten, thousand = (next(float(t.get("y")) for t in root.findall(".//s:text[@class='ytick']", NS)
                          if t.text == v) for v in ("10", "1000"))
    assert float(timeout.get("y1")) == thousand < ten
    legend = ["".join(t.itertext()) for t in root.findall(".//s:text[@class='legend']", NS)]
    assert legend == ["public.birth_registry", HOSTILE, "lock_timeout 1000 ms"]
    assert "seconds since apply began (statements shaded; dashed: COMMIT)" in texts
    assert "probe query latency, ms" in texts


def test_the_same_traffic_gives_the_same_bytes_and_a_name_cannot_break_out(tmp_path):
    first = draw("apply", _traffic())
    assert first == draw("apply", _traffic())
    assert b"<script>" not in first and first.count(b"</svg>") == 1
    impact = {"apply": {"traffic": _traffic()}, "rollback": {"traffic": {"ran": False}}}
    files = write_charts(tmp_path, impact)
    assert list(files) == ["traffic-apply.svg"] and impact["apply"]["traffic"]["chart"] == "traffic-apply.svg"
    assert (tmp_path / "traffic-apply.svg").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traffic-apply.svg"]


def test_a_rehearsal_loads_no_plotting_library():
    """The chart and the background preload import nothing of matplotlib (its ~37 MB was the peak's)."""
    code = ("import sys\n"
            "from fix7_pipeline.core.run import preload\n"
            "from fix7_pipeline.core.evidence import charts\n"
            "preload._load()\n"
            f"charts.draw('apply', {_traffic()!r})\n"
            "import fix7_pipeline.definitions\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'PIL')))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
