"""Small inline SVG charts for the HTML report: no scripts, no fonts, no network.

Each function returns one `<svg>` element as text; every label is escaped.

    horizontal_bars([("WHATSAPP", 0.62, "62%")], maximum=1.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

WIDTH = 720
ROW = 26
LABEL_WIDTH = 170
VALUE_WIDTH = 90
PALETTE = {
    "CAPABILITY_FULL": "#1b7f3b",
    "CAPABILITY_PARTIAL": "#7cc68d",
    "NO_CAPABILITY": "#c23b22",
    "CAPABILITY_UNKNOWN": "#9e9e9e",
    "NO_RESPONSE": "#f0b429",
    "REQUEST_FAILED": "#6b3fa0",
}
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def _svg(height: int, body: str, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{escape(label)}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">{body}</svg>'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-family="sans-serif" fill="#222">{escape(text)}</text>'
    )


def horizontal_bars(
    rows: Sequence[tuple[str, float, str]], *, maximum: float, label: str, colour: str = "#1f77b4"
) -> str:
    """One bar per row: (label, value, text shown after the bar)."""
    if not rows:
        return empty_chart(label)
    left = _label_width(name for name, _, _ in rows)
    span = WIDTH - left - VALUE_WIDTH
    parts = []
    for index, (name, value, shown) in enumerate(rows):
        y = 8 + index * ROW
        length = 0.0 if maximum <= 0 else max(0.0, min(1.0, value / maximum)) * span
        parts.append(_text(left - 8, y + 14, name, "end"))
        parts.append(
            f'<rect class="bar" x="{left}" y="{y}" width="{length:.1f}" height="18" '
            f'fill="{colour}"><title>{escape(name)}: {escape(shown)}</title></rect>'
        )
        parts.append(_text(left + length + 6, y + 14, shown))
    return _svg(16 + len(rows) * ROW, "".join(parts), label)


def stacked_bars(
    categories: Sequence[str],
    segments: Sequence[str],
    values: Sequence[Sequence[int]],
    *,
    label: str,
) -> str:
    """One 100% bar per category, split into `segments` (status names) by `values[i][j]`."""
    if not categories:
        return empty_chart(label)
    span = WIDTH - LABEL_WIDTH - 20
    parts = []
    for index, (category, counts) in enumerate(zip(categories, values, strict=True)):
        y = 8 + index * ROW
        total = sum(counts) or 1
        x = float(LABEL_WIDTH)
        parts.append(_text(LABEL_WIDTH - 8, y + 14, category, "end"))
        for segment, count in zip(segments, counts, strict=True):
            if count <= 0:
                continue
            width = span * count / total
            colour = PALETTE.get(segment, "#555")
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y}" width="{width:.1f}" height="18" '
                f'fill="{colour}"><title>{escape(category)} {escape(segment)}: {count:,} '
                f"({count / total:.1%})</title></rect>"
            )
            x += width
    legend_y = 16 + len(categories) * ROW
    parts.append(_legend(segments, [PALETTE.get(s, "#555") for s in segments], legend_y))
    return _svg(legend_y + 42, "".join(parts), label)


def _label_width(names: Iterable[str]) -> int:
    """Room for the longest label (about 7 px a character at 12 px), within limits."""
    longest = max((len(name) for name in names), default=0)
    return int(min(WIDTH / 2, max(LABEL_WIDTH, 7 * longest + 12)))


def _legend(names: Sequence[str], colours: Sequence[str], y: float) -> str:
    """Coloured keys in a row, wrapping onto a second row when they do not fit."""
    parts, x = [], 20.0
    for name, colour in zip(names, colours, strict=True):
        width = 14 + 6.2 * len(name) + 12
        if x + width > WIDTH:
            x, y = 20.0, y + 16
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, y + 9, name, size=10))
        x += width
    return "".join(parts)


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    maximum: float = 1.0,
) -> str:
    """One line per series over `x_labels` (e.g. runs); values as shares of `maximum`."""
    if not x_labels or not series:
        return empty_chart(label)
    height, left, top, bottom = 240, 50, 12, 40
    plot_w, plot_h = WIDTH - left - 20, height - top - bottom
    step = plot_w / max(1, len(x_labels) - 1)
    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#888"/>'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(_text(left - 6, y + 4, f"{tick * maximum:.0%}", "end", 10))
    for index, name in enumerate(x_labels):
        if len(x_labels) <= 8 or index % max(1, len(x_labels) // 8) == 0:
            parts.append(_text(left + index * step, height - 22, name[:15], "middle", 9))
    colours = []
    for number, (_, values) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        colours.append(colour)
        points = [
            (left + i * step, top + plot_h * (1 - min(1.0, (v or 0) / maximum)))
            for i, v in enumerate(values)
            if v is not None
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(
            f'<polyline class="line" points="{path}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
    parts.append(_legend([name for name, _ in series], colours, height - 12))
    return _svg(height, "".join(parts), label)


def empty_chart(label: str) -> str:
    return _svg(40, _text(10, 24, f"{label}: no data yet"), label)


def intervals(
    rows: Sequence[tuple[str, float, float, float, str]], *, label: str, colour: str = "#1f77b4"
) -> str:
    """One confidence interval per row on a 0-100% axis: (label, share, low, high, text);
    a line from low to high with a dot at the share."""
    if not rows:
        return empty_chart(label)
    left = _label_width(name for name, *_ in rows)
    span = WIDTH - left - 2 * VALUE_WIDTH
    parts = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = left + span * tick
        bottom = 8 + len(rows) * ROW
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        parts.append(_text(x, 20 + len(rows) * ROW, f"{tick:.0%}", "middle", 10))
    for index, (name, share, low, high, shown) in enumerate(rows):
        y = 8 + index * ROW + 9
        x_low, x_high = left + span * low, left + span * high
        parts.append(_text(left - 8, y + 5, name, "end"))
        parts.append(
            f'<line class="interval" x1="{x_low:.1f}" y1="{y}" x2="{x_high:.1f}" y2="{y}" '
            f'stroke="{colour}" stroke-width="3"><title>{escape(name)}: {escape(shown)}</title>'
            "</line>"
        )
        parts.append(f'<circle cx="{left + span * share:.1f}" cy="{y}" r="4" fill="{colour}"/>')
        parts.append(_text(left + span + 8, y + 5, shown, size=11))
    return _svg(28 + len(rows) * ROW, "".join(parts), label)
