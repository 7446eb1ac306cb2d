"""The traffic probe's latency over time, as a PNG in the evidence packet (matplotlib, drawn off screen)."""

from __future__ import annotations

import io
from pathlib import Path

from .packet_files import sha256_file, write_atomic, writing
from ..change.traffic_markdown import chart_name

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def load_matplotlib():
    """matplotlib's Figure, drawing off screen (Agg); imported on first use, or ahead by core/run/preload.py."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure


def draw(label: str, traffic: dict) -> bytes:
    """Each probe query as a point (time since the change began, latency in ms, log scale), by table; a blocked
    one as a bar over the time it waited, ringed in red where it was answered; the change's statements as
    bands, named by line."""
    Figure = load_matplotlib()
    tl = traffic["timeline"]
    names = [t["table"] for t in traffic["tables"] if t.get("mode") != "not probed"]
    all_names = [t["table"] for t in traffic["tables"]]
    fig = Figure(figsize=(11.5, 4.2), dpi=100)
    ax = fig.add_subplot()
    for k, (line, kind, start, end) in enumerate(tl["statements"]):
        ax.axvspan(start, end, color="#dddddd" if k % 2 else "#eeeeee", zorder=0)
        ax.text((start + end) / 2, 1.0, f"line {line}", transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=7)
    if tl.get("commit"):
        ax.axvline(tl["commit"][1], color="#555555", linestyle="--", linewidth=0.8, zorder=1)
    for idx, name in enumerate(all_names):
        if name not in names:
            continue
        pts = [(t, ms, b) for t, ms, i, b in zip(tl["t_s"], tl["ms"], tl["table"], tl["blocked"]) if i == idx]
        if not pts:
            continue
        colour = _COLOURS[idx % len(_COLOURS)]
        ax.scatter([p[0] for p in pts], [max(p[1], 0.01) for p in pts], s=8, color=colour, label=name, zorder=2)
        for t, ms, b in pts:  # a blocked query as the span it waited, from its start to its answer
            if b:
                ax.plot([t, t + ms / 1000], [ms, ms], color=colour, linewidth=2.5, solid_capstyle="butt", zorder=3)
                ax.scatter([t + ms / 1000], [ms], s=40, facecolors="none", edgecolors="red", linewidths=0.8,
                           zorder=4)
    limit = (traffic.get("settings") or {}).get("lock_timeout_ms")
    if limit:
        ax.axhline(limit, color="red", linestyle=":", linewidth=0.8, label=f"lock_timeout {limit:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel(f"seconds since {label} began (statements shaded; dashed: COMMIT)")
    ax.set_ylabel("probe query latency, ms")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def write_charts(directory: Path, impact: dict) -> dict:
    """The chart of each stage whose probe ran, written atomically into the packet folder; returns the `files`
    entries (name -> sha256, bytes) and names the chart in the stage's traffic section."""
    files = {}
    for label, section in (impact or {}).items():
        traffic = (section or {}).get("traffic") or {}
        if not traffic.get("ran") or not (traffic.get("timeline") or {}).get("t_s"):
            continue
        name = chart_name(label)
        path = directory / name
        try:
            png = draw(label, traffic)
        except Exception as e:  # noqa: BLE001 - the chart is a view of the numbers, which the packet keeps
            traffic["chart_error"] = f"the chart could not be drawn: {type(e).__name__}: {e}"[:300]
            continue
        with writing(path):
            write_atomic(path, png)
        traffic["chart"] = name
        files[name] = {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files
