"""The traffic probe's latency over time, as an SVG in the evidence packet.

Written as text by a small writer, not drawn with matplotlib: the library was some 37 MB of a rehearsal's peak
memory for one chart per stage. Names from the dump (tables) are XML-escaped; the output depends on the numbers
alone, so the same traffic gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .packet_files import sha256_file, write_atomic, writing
from ..change.traffic_markdown import chart_name

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
WIDTH, HEIGHT = 1150, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 880, 30, 360  # the plot area; the legend is to its right
FLOOR_MS = 0.01


def _ticks(low: float, high: float, most: int = 8) -> list[float]:
    """Round steps (1, 2 or 5 times a power of ten) over [low, high]."""
    span = max(high - low, 1e-9)
    step = 10 ** math.floor(math.log10(span / most))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= most:
            step *= m
            break
    first = math.ceil(low / step) * step
    return [round(first + k * step, 10) for k in range(int((high - first) / step + 1e-9) + 1)]


def _num(v: float) -> str:
    return f"{v:.1f}"


def _label(v: float) -> str:
    return f"{v:g}"


class _Plot:
    """Seconds on x (linear), milliseconds on y (log, whole decades)."""

    def __init__(self, x_max: float, y_values: list[float]):
        self.x_max = max(x_max, 1e-3)
        self.lo = math.floor(math.log10(min(y_values, default=1.0)))
        self.hi = max(math.ceil(math.log10(max(y_values, default=10.0))), self.lo + 1)

    def x(self, t: float) -> float:
        return LEFT + (RIGHT - LEFT) * max(t, 0.0) / self.x_max

    def y(self, ms: float) -> float:
        v = math.log10(max(ms, FLOOR_MS))
        return BOTTOM - (BOTTOM - TOP) * (v - self.lo) / (self.hi - self.lo)


def draw(label: str, traffic: dict) -> bytes:
    """Each probe query as a point (time since the change began, latency in ms, log scale), by table; a blocked
    one as a bar over the time it waited, ringed in red where it was answered; the change's statements as
    bands, named by line; COMMIT dashed; the lock timeout dotted red."""
    tl = traffic["timeline"]
    names = [t["table"] for t in traffic["tables"] if t.get("mode") != "not probed"]
    all_names = [t["table"] for t in traffic["tables"]]
    limit = (traffic.get("settings") or {}).get("lock_timeout_ms")
    points = [(t, max(ms, FLOOR_MS), i, b) for t, ms, i, b in zip(tl["t_s"], tl["ms"], tl["table"], tl["blocked"])
              if 0 <= i < len(all_names) and all_names[i] in names]
    ends = [t + ms / 1000 for t, ms, _i, _b in points] + [s[3] for s in tl["statements"]]
    if tl.get("commit"):
        ends.append(tl["commit"][1])
    plot = _Plot(max(ends, default=1.0) * 1.02, [p[1] for p in points] + ([limit] if limit else []))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" font-size="10">',
           f'<title>{escape(f"probe query latency over time, {label}")}</title>',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>']
    for k, (line, _kind, start, end) in enumerate(tl["statements"]):
        x0, x1 = plot.x(start), plot.x(end)
        out.append(f'<rect class="statement" data-line={quoteattr(str(line))} x="{_num(x0)}" y="{TOP}" '
                   f'width="{_num(max(x1 - x0, 0.5))}" height="{BOTTOM - TOP}" '
                   f'fill="{"#dddddd" if k % 2 else "#eeeeee"}"/>')
        out.append(f'<text x="{_num((x0 + x1) / 2)}" y="{TOP - 4}" text-anchor="middle" font-size="7">'
                   f'line {escape(str(line))}</text>')
    if tl.get("commit"):
        x = _num(plot.x(tl["commit"][1]))
        out.append(f'<line class="commit" x1="{x}" y1="{TOP}" x2="{x}" y2="{BOTTOM}" stroke="#555555" '
                   'stroke-width="0.8" stroke-dasharray="4 3"/>')
    for t in _ticks(0.0, plot.x_max):
        x = _num(plot.x(t))
        out.append(f'<line x1="{x}" y1="{BOTTOM}" x2="{x}" y2="{BOTTOM + 4}" stroke="#000000"/>'
                   f'<text x="{x}" y="{BOTTOM + 15}" text-anchor="middle">{_label(t)}</text>')
    for d in range(plot.lo, plot.hi + 1):
        y = _num(plot.y(10.0 ** d))
        out.append(f'<line x1="{LEFT - 4}" y1="{y}" x2="{LEFT}" y2="{y}" stroke="#000000"/>'
                   f'<text class="ytick" x="{LEFT - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
                   f'{_label(10.0 ** d)}</text>')
    for idx, name in enumerate(all_names):
        colour = _COLOURS[idx % len(_COLOURS)]
        mine = [p for p in points if p[2] == idx]
        for t, ms, _i, _b in mine:
            out.append(f'<circle class="query" data-table="{idx}" cx="{_num(plot.x(t))}" cy="{_num(plot.y(ms))}" '
                       f'r="2" fill="{colour}"/>')
        for t, ms, _i, b in mine:  # a blocked query as the span it waited, from its start to its answer
            if b:
                x0, x1, y = _num(plot.x(t)), _num(plot.x(t + ms / 1000)), _num(plot.y(ms))
                out.append(f'<line class="waited" data-table="{idx}" x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" '
                           f'stroke="{colour}" stroke-width="2.5"/>')
                out.append(f'<circle class="answered" cx="{x1}" cy="{y}" r="4" fill="none" stroke="#ff0000" '
                           'stroke-width="0.8"/>')
    legend = [(name, _COLOURS[idx % len(_COLOURS)], "dot") for idx, name in enumerate(all_names) if name in names]
    if limit:
        y = _num(plot.y(limit))
        out.append(f'<line class="lock-timeout" x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" stroke="#ff0000" '
                   'stroke-width="0.8" stroke-dasharray="1 2"/>')
        legend.append((f"lock_timeout {limit:g} ms", "#ff0000", "dots"))
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{RIGHT - LEFT}" height="{BOTTOM - TOP}" fill="none" '
               'stroke="#000000" stroke-width="0.8"/>')
    for k, (text, colour, mark) in enumerate(legend):
        y = TOP + 8 + 14 * k
        out.append(f'<circle cx="{RIGHT + 16}" cy="{y}" r="3" fill="{colour}"/>' if mark == "dot" else
                   f'<line x1="{RIGHT + 10}" y1="{y}" x2="{RIGHT + 22}" y2="{y}" stroke="{colour}" '
                   'stroke-dasharray="1 2"/>')
        out.append(f'<text class="legend" x="{RIGHT + 28}" y="{y}" dominant-baseline="middle" font-size="8">'
                   f'{escape(text)}</text>')
    out.append(f'<text x="{(LEFT + RIGHT) / 2:.0f}" y="{BOTTOM + 32}" text-anchor="middle">'
               f'{escape(f"seconds since {label} began (statements shaded; dashed: COMMIT)")}</text>')
    out.append(f'<text x="16" y="{(TOP + BOTTOM) / 2:.0f}" text-anchor="middle" '
               f'transform={quoteattr(f"rotate(-90 16 {(TOP + BOTTOM) / 2:.0f})")}>probe query latency, ms</text>')
    out.append("</svg>\n")
    return "\n".join(out).encode()


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
            svg = draw(label, traffic)
        except Exception as e:  # noqa: BLE001 - the chart is a view of the numbers, which the packet keeps
            traffic["chart_error"] = f"the chart could not be drawn: {type(e).__name__}: {e}"[:300]
            continue
        with writing(path):
            write_atomic(path, svg)
        traffic["chart"] = name
        files[name] = {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files
