"""SVG charts of the leaderboard site, drawn in Python: no script or library needed to see them.

Every point carries a ``<title>`` (the browser's hover tooltip) with its name and numbers, and a
``data-tip`` the site's script shows on hover and keyboard focus. Axes are fitted to the data with a
margin, so no point is ever clipped at the frame.

Example::

    >>> svg = scatter([Point("madry", 98.9, 85.2, "ours", "madry: clean 98.90%, robust 85.20%")],
    ...               "clean accuracy (%)", "robust accuracy (%)", "mnist linf:0.3")
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

W, H = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 62, 18, 16, 48
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22")
KIND_STYLE = {"ours": ("#1f77b4", "circle"), "published": ("#888888", "square"), "unreliable": ("#d62728", "cross")}


@dataclass(frozen=True)
class Point:
    """One point of a scatter: its label (the tooltip's first words), coordinates, kind
    (``ours``, ``published`` or ``unreliable``) and the tooltip text."""

    name: str
    x: float
    y: float
    kind: str
    tip: str


@dataclass(frozen=True)
class Series:
    """A named polyline (an eps sweep) with its tooltip text per point."""

    name: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]
    tips: tuple[str, ...]


def _range(values: Sequence[float], lo_floor: float | None = None, hi_ceil: float | None = None,
           min_span: float = 0.0) -> tuple[float, float]:
    """An axis range holding every value with a 6% margin either side, at least ``min_span`` wide,
    kept within [lo_floor, hi_ceil] (plus a 2% margin) where the values are: no point sits on the frame."""
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    lo, hi, m = lo - 0.06 * span, hi + 0.06 * span, 0.02 * span
    low = lo_floor - m if lo_floor is not None and min(values) >= lo_floor else -math.inf
    high = hi_ceil + m if hi_ceil is not None and max(values) <= hi_ceil else math.inf
    if hi - lo >= high - low:
        return low, high
    if lo < low:
        lo, hi = low, hi + (low - lo)
    if hi > high:
        lo, hi = lo - (hi - high), high
    return lo, hi


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


def _fmt_tick(v: float) -> str:
    return f"{v:.6g}"


class _Frame:
    def __init__(self, xr: tuple[float, float], yr: tuple[float, float]) -> None:
        self.xr, self.yr = xr, yr

    def x(self, v: float) -> float:
        return LEFT + (v - self.xr[0]) / (self.xr[1] - self.xr[0]) * (W - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return H - BOTTOM - (v - self.yr[0]) / (self.yr[1] - self.yr[0]) * (H - TOP - BOTTOM)

    def axes(self, xlabel: str, ylabel: str) -> list[str]:
        e = html.escape
        out = [f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}"/>']
        for t in _ticks(*self.xr):
            px = self.x(t)
            out.append(f'<line class="grid" x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{H - BOTTOM}"/>'
                       f'<text class="tick" x="{px:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{_fmt_tick(t)}</text>')
        for t in _ticks(*self.yr):
            py = self.y(t)
            out.append(f'<line class="grid" x1="{LEFT}" x2="{W - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
                       f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{_fmt_tick(t)}</text>')
        out.append(f'<text class="label" x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 8}" text-anchor="middle">{e(xlabel)}</text>')
        out.append(f'<text class="label" transform="translate(14 {(TOP + H - BOTTOM) / 2:.0f}) rotate(-90)" '
                   f'text-anchor="middle">{e(ylabel)}</text>')
        return out


def _open(title: str) -> str:
    e = html.escape
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{e(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{e(title)}</title>')


def _marker(kind: str, px: float, py: float, tip: str) -> str:
    colour, shape = KIND_STYLE.get(kind, KIND_STYLE["ours"])
    t = html.escape(tip)
    head = f'<g class="pt {kind}" tabindex="0" data-tip="{t}"><title>{t}</title>'
    if shape == "square":
        body = f'<rect x="{px - 4.5:.1f}" y="{py - 4.5:.1f}" width="9" height="9" fill="{colour}" fill-opacity="0.7"/>'
    elif shape == "cross":
        body = (f'<path d="M{px - 5:.1f},{py - 5:.1f}L{px + 5:.1f},{py + 5:.1f}M{px - 5:.1f},{py + 5:.1f}'
                f'L{px + 5:.1f},{py - 5:.1f}" stroke="{colour}" stroke-width="2.5"/>')
    else:
        body = f'<circle cx="{px:.1f}" cy="{py:.1f}" r="5.5" fill="{colour}" fill-opacity="0.85"/>'
    return head + body + "</g>"


def scatter(points: Sequence[Point], xlabel: str, ylabel: str, title: str) -> str:
    """A scatter plot of ``points`` (accuracies in %): '' when there are none."""
    if not points:
        return ""
    frame = _Frame(_range([p.x for p in points], 0.0, 100.0, 10.0), _range([p.y for p in points], 0.0, 100.0, 10.0))
    out = [_open(title), *frame.axes(xlabel, ylabel)]
    for kind in ("published", "unreliable", "ours"):  # ours drawn last, on top
        out += [_marker(p.kind, frame.x(p.x), frame.y(p.y), p.tip) for p in points if p.kind == kind]
    out.append("</svg>")
    return "".join(out)


def lines(series: Sequence[Series], xlabel: str, ylabel: str, title: str) -> str:
    """One polyline per series with a legend under the plot: '' when no series has a point."""
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in s.ys]
    if not xs:
        return ""
    frame = _Frame(_range(xs, 0.0), _range(ys, 0.0, 100.0, 10.0))
    out = [_open(title), *frame.axes(xlabel, ylabel)]
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in zip(s.xs, s.ys))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, tip in zip(s.xs, s.ys, s.tips):
            t = html.escape(tip)
            out.append(f'<g class="pt" tabindex="0" data-tip="{t}"><title>{t}</title><circle cx="{frame.x(x):.1f}" '
                       f'cy="{frame.y(y):.1f}" r="4" fill="{colour}"/></g>')
    out.append("</svg>")
    legend = "".join(f'<li><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>'
                     f"{html.escape(s.name)}</li>" for i, s in enumerate(series))
    return "".join(out) + f'<ul class="legend">{legend}</ul>'


def histogram(values: Sequence[float], xlabel: str, title: str, bins: int = 20) -> str:
    """A histogram of ``values`` (finite ones) with a tooltip per bar: '' when there are none."""
    v = sorted(x for x in values if math.isfinite(x))
    if not v:
        return ""
    lo, hi = v[0], v[-1]
    width = (hi - lo) / bins if hi > lo else max(abs(hi), 1e-3) * 0.1
    edges = [lo + i * width for i in range(bins + 1)] if hi > lo else [lo - width / 2, lo + width / 2]
    counts = [0] * (len(edges) - 1)
    for x in v:
        counts[min(int((x - edges[0]) / (edges[1] - edges[0])), len(counts) - 1)] += 1
    frame = _Frame(_range([edges[0], edges[-1]]), (0.0, max(counts) * 1.08))
    out = [_open(title), *frame.axes(xlabel, "points")]
    for c, a, b in zip(counts, edges, edges[1:]):
        if not c:
            continue
        x0, x1, y = frame.x(a), frame.x(b), frame.y(c)
        tip = html.escape(f"{c} point(s) with minimum perturbation in [{a:.4g}, {b:.4g}]")
        out.append(f'<g class="pt" tabindex="0" data-tip="{tip}"><title>{tip}</title><rect x="{x0:.1f}" y="{y:.1f}" '
                   f'width="{max(x1 - x0 - 1, 1):.1f}" height="{frame.y(0) - y:.1f}" fill="#1f77b4"/></g>')
    out.append("</svg>")
    return "".join(out)
