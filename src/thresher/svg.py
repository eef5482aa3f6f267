"""Small, dependency-free SVG charts for the study report: lines, scatter with a Pareto front, histograms, bars.

Each function returns one ``<svg>`` element as a string, so the report stays a single self-contained HTML file.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
W, H = 460, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 130, 30, 45


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-2:
        return f"{v:.1e}"
    return f"{v:.3g}"


class _Axes:
    def __init__(
        self, xs: Sequence[float], ys: Sequence[float], title: str, xlabel: str, ylabel: str, *, xticks: bool = True
    ):
        xs = [x for x in xs if math.isfinite(x)] or [0.0, 1.0]
        ys = [y for y in ys if math.isfinite(y)] or [0.0, 1.0]
        pad_x = (max(xs) - min(xs)) * 0.05 or 0.5
        pad_y = (max(ys) - min(ys)) * 0.08 or 0.5
        self.x0, self.x1 = min(xs) - pad_x, max(xs) + pad_x
        self.y0, self.y1 = min(ys) - pad_y, max(ys) + pad_y
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
            f'font-size="11"><text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{_esc(title)}</text>',
            f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="none" '
            'stroke="#999"/>',
            f'<text x="{LEFT + (W - LEFT - RIGHT) / 2}" y="{H - 8}" text-anchor="middle">{_esc(xlabel)}</text>',
            f'<text x="14" y="{TOP + (H - TOP - BOTTOM) / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {TOP + (H - TOP - BOTTOM) / 2})">{_esc(ylabel)}</text>',
        ]
        for t in _ticks(self.x0, self.x1) if xticks else []:
            px = self.px(t)
            self.parts.append(
                f'<line x1="{px:.1f}" y1="{H - BOTTOM}" x2="{px:.1f}" y2="{H - BOTTOM + 4}" stroke="#999"/>'
            )
            self.parts.append(f'<text x="{px:.1f}" y="{H - BOTTOM + 15}" text-anchor="middle">{_fmt(t)}</text>')
        for t in _ticks(self.y0, self.y1):
            py = self.py(t)
            self.parts.append(f'<line x1="{LEFT - 4}" y1="{py:.1f}" x2="{LEFT}" y2="{py:.1f}" stroke="#999"/>')
            self.parts.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
        self.legend = 0

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return H - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (H - TOP - BOTTOM)

    def add_legend(self, label: str, color: str) -> None:
        y = TOP + 6 + 15 * self.legend
        self.parts.append(f'<rect x="{W - RIGHT + 8}" y="{y - 8}" width="10" height="10" fill="{color}"/>')
        self.parts.append(f'<text x="{W - RIGHT + 22}" y="{y + 1}">{_esc(str(label)[:18])}</text>')
        self.legend += 1

    def done(self) -> str:
        return "".join(self.parts) + "</svg>"


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    errors: dict[str, Sequence[float | None]] | None = None,
    reference: str | None = None,
    marks: dict[str, tuple[Sequence[float], Sequence[float], Sequence[float | None]]] | None = None,
) -> str:
    """One polyline per named series of (xs, ys); ``errors``: a half-height per point (error bars, with markers);
    ``reference``: the series every other must beat, drawn thick and black; ``marks``: further points of a series
    (xs, ys, half-heights), markers and bars in its colour off its line (measurements beside a fitted curve)."""
    errors, marks = errors or {}, marks or {}
    xs = [x for s in series.values() for x in s[0]] + [x for m in marks.values() for x in m[0]]
    ys = [y + sign * (e or 0.0) for name, s in series.items()
          for y, e in zip(s[1], errors.get(name) or [None] * len(s[1]), strict=True) for sign in (-1, 1)]  # fmt: skip
    ys += [y + sign * (e or 0.0) for m in marks.values() for y, e in zip(m[1], m[2], strict=True) for sign in (-1, 1)]
    ax = _Axes(xs, ys, title, xlabel, ylabel)
    for k, (name, (sx, sy)) in enumerate(series.items()):
        color, width = ("#000", 3.0) if name == reference else (PALETTE[k % len(PALETTE)], 1.8)
        pts = " ".join(f"{ax.px(x):.1f},{ax.py(y):.1f}" for x, y in zip(sx, sy, strict=True) if math.isfinite(y))
        ax.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="{width}"/>')
        for x, y, e in zip(sx, sy, errors.get(name) or [None] * len(sx), strict=True):
            if name not in errors or not math.isfinite(y):
                continue
            ax.parts.append(f'<circle cx="{ax.px(x):.1f}" cy="{ax.py(y):.1f}" r="3" fill="{color}"/>')
            if e:
                ax.parts.append(f'<line x1="{ax.px(x):.1f}" y1="{ax.py(y - e):.1f}" x2="{ax.px(x):.1f}" '
                                f'y2="{ax.py(y + e):.1f}" stroke="{color}"/>')  # fmt: skip
        for x, y, e in zip(*marks.get(name, ((), (), ())), strict=True):
            ax.parts.append(f'<circle cx="{ax.px(x):.1f}" cy="{ax.py(y):.1f}" r="3" fill="{color}"/>')
            if e:
                ax.parts.append(f'<line x1="{ax.px(x):.1f}" y1="{ax.py(y - e):.1f}" x2="{ax.px(x):.1f}" '
                                f'y2="{ax.py(y + e):.1f}" stroke="{color}"/>')  # fmt: skip
        ax.add_legend(name, color)
    return ax.done()


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both lower cost (x) and higher accuracy (y), by increasing cost."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def scatter(
    points: Sequence[tuple[float, float, str]], title: str, xlabel: str, ylabel: str, *, front: bool = True
) -> str:
    """Labelled points, coloured by label, with the Pareto front (lower x, higher y) drawn as a step line."""
    ax = _Axes([p[0] for p in points], [p[1] for p in points], title, xlabel, ylabel)
    colors: dict[str, str] = {}
    if front and points:
        pf = pareto_front([(x, y) for x, y, _ in points])
        pts = " ".join(f"{ax.px(x):.1f},{ax.py(y):.1f}" for x, y in pf)
        ax.parts.append(f'<polyline points="{pts}" fill="none" stroke="#bbb" stroke-dasharray="4 3"/>')
    for x, y, label in points:
        if label not in colors:
            colors[label] = PALETTE[len(colors) % len(PALETTE)]
            ax.add_legend(label, colors[label])
        ax.parts.append(f'<circle cx="{ax.px(x):.1f}" cy="{ax.py(y):.1f}" r="4" fill="{colors[label]}">'
                        f"<title>{_esc(label)}: {_fmt(x)}, {y:.4f}</title></circle>")  # fmt: skip
    return ax.done()


def histograms(samples: dict[str, Sequence[float]], title: str, xlabel: str, bins: int = 30) -> str:
    """Overlaid outline histograms (densities) of several samples on one axis."""
    finite = {k: [v for v in vals if math.isfinite(v)] for k, vals in samples.items()}
    allv = [v for vals in finite.values() for v in vals] or [0.0, 1.0]
    lo, hi = min(allv), max(allv)
    hi = hi if hi > lo else lo + 1.0
    width = (hi - lo) / bins
    dens = {}
    for k, vals in finite.items():
        counts = [0] * bins
        for v in vals:
            counts[min(bins - 1, int((v - lo) / width))] += 1
        total = max(1, len(vals))
        dens[k] = [c / total / width for c in counts]
    edges = [lo + i * width for i in range(bins + 1)]
    ax = _Axes(edges, [0.0] + [d for ds in dens.values() for d in ds], title, xlabel, "density")
    for k, (name, ds) in enumerate(dens.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = []
        for i, d in enumerate(ds):
            pts += [f"{ax.px(edges[i]):.1f},{ax.py(d):.1f}", f"{ax.px(edges[i + 1]):.1f},{ax.py(d):.1f}"]
        ax.parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        ax.add_legend(name, color)
    return ax.done()


def bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str, *, color: str = PALETTE[0]) -> str:
    """Vertical bars with rotated labels."""
    n = max(1, len(values))
    ax = _Axes([0, n], [0.0, *values], title, "", ylabel, xticks=False)
    slot = (W - LEFT - RIGHT) / n
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        x = LEFT + i * slot + slot * 0.15
        y0, y1 = ax.py(0.0), ax.py(v)
        ax.parts.append(f'<rect x="{x:.1f}" y="{min(y0, y1):.1f}" width="{slot * 0.7:.1f}" height="{abs(y0 - y1):.1f}" '
                        f'fill="{color}"><title>{_esc(label)}: {_fmt(v)}</title></rect>')  # fmt: skip
        cx = x + slot * 0.35
        rot = f"rotate(-45 {cx:.1f} {H - BOTTOM + 10})"
        ax.parts.append(f'<text x="{cx:.1f}" y="{H - BOTTOM + 10}" font-size="9" text-anchor="end" '
                        f'transform="{rot}">{_esc(str(label)[:14])}</text>')  # fmt: skip
    return ax.done()
