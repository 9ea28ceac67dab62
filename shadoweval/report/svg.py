"""Small inline-SVG charts for the HTML report: no JavaScript, no network at view time.

Four shapes cover the report: lines (distributions as ECDFs, values over time), grouped
bars (score histograms), a scatter with error bars (cost against quality) and a forest
plot (one interval per row: the quality change per segment). Each chart is
an ``<svg class="plot" data-plot=NAME>`` with ``<title>`` tooltips on its marks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
W, H = 640, 300
ML, MR, MT, MB = 64, 16, 28, 48  # margins: room for tick labels and the legend

Fmt = Callable[[float], str]


PRIMARY_COLOR = "#555b66"
Colors = Mapping[str, str]


def color(i: int, name: str | None = None, colors: Colors | None = None) -> str:
    """A fixed colour per series name when given (one upstream, one colour on every chart
    of a page), else by position."""
    if name == "primary":
        return PRIMARY_COLOR
    if colors and name is not None and name in colors:
        return colors[name]
    return PALETTE[i % len(PALETTE)]


def palette_for(names: Sequence[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=mag * 10)
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12) + 0.0)  # + 0.0: no "-0" label
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0**e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


@dataclass
class _Scale:
    lo: float
    hi: float
    a: float  # pixel of lo
    b: float  # pixel of hi
    log: bool = False

    def __call__(self, v: float) -> float:
        if self.log:
            lo, hi, v = math.log10(self.lo), math.log10(self.hi), math.log10(max(v, self.lo))
        else:
            lo, hi = self.lo, self.hi
        span = (hi - lo) or 1.0
        return self.a + (v - lo) / span * (self.b - self.a)


def _frame(name: str, title: str) -> list[str]:
    return [
        f'<svg class="plot" data-plot="{escape(name)}" viewBox="0 0 {W} {H}" '
        f'width="{W}" height="{H}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{ML}" y="16" class="ptitle">{escape(title)}</text>',
    ]


def _axes(
    out: list[str],
    xs: _Scale,
    ys: _Scale,
    xticks: Sequence[float],
    yticks: Sequence[float],
    xfmt: Fmt,
    yfmt: Fmt,
    xlabel: str,
    ylabel: str,
) -> None:
    x0, x1, y0, y1 = ML, W - MR, H - MB, MT
    out.append(f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" class="pbg"/>')
    for t in yticks:
        y = ys(t)
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(yfmt(t))}</text>')
    for t in xticks:
        x = xs(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y0}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle">{escape(xfmt(t))}</text>')
    out.append(
        f'<text x="{(x0 + x1) / 2}" y="{H - 20}" text-anchor="middle" class="axis">'
        f"{escape(xlabel)}</text>"
    )
    out.append(
        f'<text x="14" y="{(y0 + y1) / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 14 {(y0 + y1) / 2})">{escape(ylabel)}</text>'
    )


def _legend(out: list[str], names: Sequence[str], colors: Colors | None) -> None:
    x = ML
    for i, name in enumerate(names):
        out.append(
            f'<rect x="{x}" y="{H - 12}" width="10" height="10" fill="{color(i, name, colors)}"/>'
        )
        out.append(f'<text x="{x + 14}" y="{H - 3}">{escape(name)}</text>')
        x += 24 + 7 * len(name)


def _empty(name: str, title: str) -> str:
    out = _frame(name, title)
    out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text></svg>')
    return "".join(out)


@dataclass
class Line:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]


def lines(
    name: str,
    title: str,
    series: Sequence[Line],
    *,
    xlabel: str,
    ylabel: str,
    xfmt: Fmt = lambda v: f"{v:g}",
    yfmt: Fmt = lambda v: f"{v:g}",
    xlog: bool = False,
    xticks: Sequence[tuple[float, str]] | None = None,
    ylim: tuple[float, float] | None = None,
    step: bool = False,
    colors: Colors | None = None,
) -> str:
    pts = [
        (x, y)
        for s in series
        for x, y in zip(s.xs, s.ys, strict=True)
        if y is not None and math.isfinite(x) and (not xlog or x > 0)
    ]
    if not pts:
        return _empty(name, title)
    xlo, xhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo, yhi = ylim or (min(p[1] for p in pts), max(p[1] for p in pts))
    if yhi <= ylo:
        ylo, yhi = ylo - 0.5, yhi + 0.5
    if xhi <= xlo:  # one x value: widen around it (on a log axis, never to zero or below)
        xlo, xhi = (xlo / 2, xhi * 2) if xlog else (xlo - 1, xhi + 1)
    xs = _Scale(xlo, xhi, ML, W - MR, xlog)
    ys = _Scale(ylo, yhi, H - MB, MT)
    out = _frame(name, title)
    ticks = (
        [t for t, _ in xticks]
        if xticks
        else (_log_ticks(xlo, xhi) if xlog else _nice_ticks(xlo, xhi))
    )
    labels = dict(xticks) if xticks else {}
    _axes(
        out,
        xs,
        ys,
        ticks,
        _nice_ticks(ylo, yhi),
        (lambda v: labels.get(v, "")) if xticks else xfmt,
        yfmt,
        xlabel,
        ylabel,
    )
    for i, s in enumerate(series):
        coords = [
            (xs(x), ys(y))
            for x, y in zip(s.xs, s.ys, strict=True)
            if y is not None and (not xlog or x > 0)
        ]
        if not coords:
            continue
        d = []
        for j, (x, y) in enumerate(coords):
            if j == 0:
                d.append(f"M{x:.1f},{y:.1f}")
            elif step:
                d.append(f"H{x:.1f}V{y:.1f}")
            else:
                d.append(f"L{x:.1f},{y:.1f}")
        out.append(
            f'<path d="{"".join(d)}" fill="none" stroke="{color(i, s.name, colors)}" '
            'stroke-width="2" '
            f'data-series="{escape(s.name)}"><title>{escape(s.name)}</title></path>'
        )
        if len(coords) <= 60 and not step:
            for (x, y), yv, xv in zip(
                coords, [v for v in s.ys if v is not None], s.xs, strict=False
            ):
                out.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color(i, s.name, colors)}">'
                    f"<title>{escape(s.name)}: {escape(xfmt(xv))}, {escape(yfmt(yv))}</title>"
                    "</circle>"
                )
    _legend(out, [s.name for s in series], colors)
    out.append("</svg>")
    return "".join(out)


def bars(
    name: str,
    title: str,
    categories: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    yfmt: Fmt = lambda v: f"{v:.0%}",
    colors: Colors | None = None,
) -> str:
    vals = [v for _, vs in groups for v in vs]
    if not vals or not categories:
        return _empty(name, title)
    top = max(max(vals), 1e-9)
    ys = _Scale(0.0, top, H - MB, MT)
    xs = _Scale(0.0, float(len(categories)), ML, W - MR)
    out = _frame(name, title)
    _axes(out, xs, ys, [], _nice_ticks(0.0, top), str, yfmt, xlabel, ylabel)
    slot = (W - MR - ML) / len(categories)
    width = slot * 0.8 / max(len(groups), 1)
    for c, cat in enumerate(categories):
        out.append(
            f'<text x="{ML + slot * (c + 0.5):.1f}" y="{H - MB + 16}" text-anchor="middle">'
            f"{escape(cat)}</text>"
        )
        for g, (gname, gvals) in enumerate(groups):
            v = gvals[c]
            x = ML + slot * c + slot * 0.1 + g * width
            y = ys(v)
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{H - MB - y:.1f}" fill="{color(g, gname, colors)}">'
                f"<title>{escape(gname)} {escape(cat)}: "
                f"{escape(yfmt(v))}</title></rect>"
            )
    _legend(out, [g for g, _ in groups], colors)
    out.append("</svg>")
    return "".join(out)


@dataclass
class Point:
    name: str
    x: float
    y: float
    x_lo: float | None = None
    x_hi: float | None = None
    y_lo: float | None = None
    y_hi: float | None = None


def scatter(
    name: str,
    title: str,
    points: Sequence[Point],
    *,
    xlabel: str,
    ylabel: str,
    xfmt: Fmt = lambda v: f"{v:g}",
    yfmt: Fmt = lambda v: f"{v:g}",
    accept: tuple[float | None, float | None] = (None, None),
    colors: Colors | None = None,
) -> str:
    """Points with CI whiskers; ``accept`` = (max x, min y) shades the region that passes."""
    pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    if not pts:
        return _empty(name, title)
    xv = [v for p in pts for v in (p.x, p.x_lo, p.x_hi) if v is not None and math.isfinite(v)]
    yv = [v for p in pts for v in (p.y, p.y_lo, p.y_hi) if v is not None and math.isfinite(v)]
    xmax_ok, ymin_ok = accept
    if xmax_ok is not None:
        xv.append(xmax_ok)
    if ymin_ok is not None:
        yv.append(ymin_ok)
    xlo, xhi = min(0.0, *xv), max(xv) * 1.1 or 1.0
    pad = (max(yv) - min(yv)) * 0.1 or 0.05
    ylo, yhi = min(yv) - pad, max(yv) + pad
    xs = _Scale(xlo, xhi, ML, W - MR)
    ys = _Scale(ylo, yhi, H - MB, MT)
    out = _frame(name, title)
    if xmax_ok is not None or ymin_ok is not None:
        rx1 = xs(xmax_ok) if xmax_ok is not None else W - MR
        ry0 = ys(ymin_ok) if ymin_ok is not None else H - MB
        out.append(
            f'<rect class="accept" x="{ML}" y="{MT}" width="{rx1 - ML:.1f}" '
            f'height="{ry0 - MT:.1f}"><title>passes the cost and quality rules</title></rect>'
        )
    _axes(out, xs, ys, _nice_ticks(xlo, xhi), _nice_ticks(ylo, yhi), xfmt, yfmt, xlabel, ylabel)
    for i, p in enumerate(pts):
        cx, cy = xs(p.x), ys(p.y)
        if p.x_lo is not None and p.x_hi is not None:
            out.append(
                f'<line x1="{xs(p.x_lo):.1f}" x2="{xs(p.x_hi):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                f'stroke="{color(i, p.name, colors)}" stroke-width="1.5"/>'
            )
        if p.y_lo is not None and p.y_hi is not None:
            out.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{ys(p.y_lo):.1f}" y2="{ys(p.y_hi):.1f}" '
                f'stroke="{color(i, p.name, colors)}" stroke-width="1.5"/>'
            )
        out.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="6" '
            f'fill="{color(i, p.name, colors)}">'
            f"<title>{escape(p.name)}: {escape(xfmt(p.x))}, {escape(yfmt(p.y))}</title></circle>"
        )
        out.append(f'<text x="{cx + 9:.1f}" y="{cy - 8:.1f}">{escape(p.name)}</text>')
    out.append("</svg>")
    return "".join(out)


@dataclass
class Interval:
    name: str
    value: float
    lo: float | None
    hi: float | None
    marked: bool = False  # drawn in the alarm colour (e.g. worse than the primary)
    note: str = ""


ROW_H = 22
ALARM = "#d62728"


def forest(
    name: str,
    title: str,
    rows: Sequence[Interval],
    *,
    xlabel: str,
    xfmt: Fmt = lambda v: f"{v:g}",
    reference: float = 0.0,
    bound: float | None = None,
) -> str:
    """One row per interval (point and whisker) against a reference line; ``bound`` draws
    a dashed line (e.g. the quality rule's allowed drop). Height grows with the rows."""
    rows = [r for r in rows if math.isfinite(r.value)]
    if not rows:
        return _empty(name, title)
    left = ML + 8 * min(24, max(len(r.name) for r in rows))  # room for the row names
    height = MT + ROW_H * len(rows) + MB
    vals = [v for r in rows for v in (r.value, r.lo, r.hi) if v is not None and math.isfinite(v)]
    vals += [reference] + ([bound] if bound is not None else [])
    pad = (max(vals) - min(vals)) * 0.08 or 0.05
    xs = _Scale(min(vals) - pad, max(vals) + pad, left, W - MR)
    out = [
        f'<svg class="plot" data-plot="{escape(name)}" viewBox="0 0 {W} {height}" '
        f'width="{W}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{ML}" y="16" class="ptitle">{escape(title)}</text>',
    ]
    y0, y1 = MT, MT + ROW_H * len(rows)
    out.append(
        f'<rect x="{left}" y="{y0}" width="{W - MR - left}" height="{y1 - y0}" class="pbg"/>'
    )
    for t in _nice_ticks(xs.lo, xs.hi):
        x = xs(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0}" y2="{y1}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{y1 + 16}" text-anchor="middle">{escape(xfmt(t))}</text>')
    rx = xs(reference)
    out.append(f'<line x1="{rx:.1f}" x2="{rx:.1f}" y1="{y0}" y2="{y1}" stroke="#000"/>')
    if bound is not None:
        bx = xs(bound)
        out.append(
            f'<line x1="{bx:.1f}" x2="{bx:.1f}" y1="{y0}" y2="{y1}" stroke="{ALARM}" '
            'stroke-dasharray="4 3"><title>the rule\'s bound</title></line>'
        )
    for i, r in enumerate(rows):
        cy = y0 + ROW_H * (i + 0.5)
        colour = ALARM if r.marked else PALETTE[0]
        out.append(
            f'<text x="{left - 6}" y="{cy + 4:.1f}" text-anchor="end">{escape(r.name)}</text>'
        )
        if r.lo is not None and r.hi is not None and math.isfinite(r.lo) and math.isfinite(r.hi):
            out.append(
                f'<line x1="{xs(r.lo):.1f}" x2="{xs(r.hi):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        interval = f" [{xfmt(r.lo)}, {xfmt(r.hi)}]" if r.lo is not None and r.hi is not None else ""
        tip = f"{r.name}: {xfmt(r.value)}{interval}{(' ' + r.note) if r.note else ''}"
        out.append(
            f'<circle class="point" cx="{xs(r.value):.1f}" cy="{cy:.1f}" r="5" fill="{colour}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    out.append(
        f'<text x="{(left + W - MR) / 2}" y="{height - 14}" text-anchor="middle" class="axis">'
        f"{escape(xlabel)}</text>"
    )
    out.append("</svg>")
    return "".join(out)
