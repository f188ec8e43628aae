"""Small, dependency-free SVG charts for the HTML reports: line charts and heatmaps.

No matplotlib, no Qt: each function returns an ``<svg>`` element as text,
sized in CSS pixels, readable without JavaScript and printable.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")


@dataclass
class Line:
    label: str
    x: Sequence[float]
    y: Sequence[float | None]
    color: str = PALETTE[0]
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(low / step + 1e-9) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.0e}"
    return f"{value:.3g}"


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def line_chart(
    lines: Sequence[Line], *, title: str = "", x_label: str = "", y_label: str = "", width: int = 520,
    height: int = 300, x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
    marker_x: float | None = None, diagonal: bool = False, integer_x: bool = False,
) -> str:
    """Lines over shared axes with ticks, a legend above the plot, an optional vertical marker and diagonal.

    ``integer_x`` keeps x ticks on whole numbers (epochs).
    """
    left, right, bottom = 56, 12, 44
    longest = max((len(line.label[:30]) for line in lines), default=0)
    columns = max(1, min(3, int((width - left - right) // (longest * 6.5 + 36))))
    legend_rows = math.ceil(len(lines) / columns)
    top = (26 if title else 8) + 15 * legend_rows + 4
    plot_w, plot_h = width - left - right, height - top - bottom
    xs = [float(x) for line in lines for x in line.x]
    ys = [float(y) for line in lines for y in line.y if y is not None and math.isfinite(y)]
    x0, x1 = x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    y0, y1 = y_range or ((min(ys), max(ys)) if ys else (0.0, 1.0))
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        pad = abs(y0) * 0.05 or 0.5
        y0, y1 = y0 - pad, y1 + pad
    if not y_range:  # a little air above and below the data
        pad = (y1 - y0) * 0.05
        y0, y1 = y0 - pad, y1 + pad

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#999"/>']
    if title:
        parts.append(f'<text x="{width / 2}" y="18" text-anchor="middle" class="title">{_esc(title)}</text>')
    for tick in nice_ticks(y0, y1):
        y = py(tick)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(tick)}</text>')
    x_ticks = nice_ticks(x0, x1, 6)
    if integer_x:
        x_ticks = [t for t in x_ticks if float(t).is_integer()] or [x0, x1]
    for tick in x_ticks:
        x = px(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">'
                     f'{_fmt(tick)}</text>')
    if diagonal:
        parts.append(f'<line x1="{px(x0):.1f}" y1="{py(y0):.1f}" x2="{px(x1):.1f}" y2="{py(y1):.1f}" '
                     'stroke="#bbb" stroke-dasharray="4 4"/>')
    if marker_x is not None and x0 <= marker_x <= x1:
        x = px(marker_x)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#555" '
                     'stroke-dasharray="2 3"><title>saved (best) epoch</title></line>')
    for line in lines:
        segments, current = [], []
        for x, y in zip(line.x, line.y, strict=True):
            if y is None or not math.isfinite(y):
                if current:
                    segments.append(current)
                current = []
                continue
            current.append(f"{px(float(x)):.1f},{py(float(y)):.1f}")
        if current:
            segments.append(current)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        for points in segments:
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{line.color}"/>')
            else:
                parts.append(f'<polyline fill="none" stroke="{line.color}" stroke-width="1.8"{dash} '
                             f'points="{" ".join(points)}"/>')
    column = plot_w / columns
    for i, line in enumerate(lines):  # legend: rows above the plot
        x = left + (i % columns) * column
        y = (26 if title else 8) + 15 * (i // columns) + 8
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        parts.append(f'<line x1="{x:.1f}" x2="{x + 22:.1f}" y1="{y - 4}" y2="{y - 4}" '
                     f'stroke="{line.color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 28:.1f}" y="{y}" class="legend">{_esc(line.label[:30])}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle" class="axis">'
                 f'{_esc(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {top + plot_h / 2}) rotate(-90)" text-anchor="middle" '
                 f'class="axis">{_esc(y_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def heatmap(matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str = "", cell: int = 0) -> str:
    """A confusion matrix: rows are the true class, columns the predicted; shade = share of the row."""
    n = len(labels)
    cell = cell or max(22, min(56, 480 // max(n, 1)))
    left, top = 90, 58 if title else 34
    width, height = max(left + n * cell + 16, int(len(title) * 7.5) + 20), top + n * cell + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">']
    if title:
        parts.append(f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{_esc(title)}</text>')
    parts.append(f'<text x="{left + n * cell / 2}" y="{top - 20}" text-anchor="middle" class="axis">'
                 'predicted</text>')
    parts.append(f'<text transform="translate(12 {top + n * cell / 2}) rotate(-90)" text-anchor="middle" '
                 'class="axis">true</text>')
    font = max(9, min(13, cell // 3))
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        name = _esc(str(labels[i])[:10])
        parts.append(f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4}" text-anchor="end" '
                     f'class="tick">{name}</text>')
        for j, count in enumerate(row):
            share = count / total
            shade = int(255 - share * 200)
            colour = f"rgb({shade},{int(255 - share * 120)},255)" if i == j else f"rgb(255,{shade},{shade})"
            if count == 0:
                colour = "#fafafa"
            x, y = left + j * cell, top + i * cell
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" stroke="#ddd">'
                         f'<title>true {_esc(labels[i])}, predicted {_esc(labels[j])}: {count}</title></rect>')
            if count:
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + font / 3}" text-anchor="middle" '
                             f'font-size="{font}">{count}</text>')
    for j, label in enumerate(labels):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 4}" text-anchor="middle" class="tick">'
                     f'{_esc(str(label)[:6])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar(value: float | None, low: float, high: float, *, width: int = 120, error: float | None = None) -> str:
    """An inline horizontal bar (with an optional ± error whisker) for table cells."""
    if value is None or not math.isfinite(value) or high <= low:
        return ""

    def to_px(v: float) -> float:
        return max(0.0, min(width, (v - low) / (high - low) * width))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="12" class="bar">',
             f'<rect x="0" y="2" width="{to_px(value):.1f}" height="8" fill="#8fb3d9"/>']
    if error:
        a, b = to_px(value - error), to_px(value + error)
        parts.append(f'<line x1="{a:.1f}" x2="{b:.1f}" y1="6" y2="6" stroke="#333"/>')
    parts.append("</svg>")
    return "".join(parts)
