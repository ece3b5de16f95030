"""Small inline SVG charts for the HTML report: no scripts, no fonts, no network.

Each function returns a chart drawn twice, for a wide screen (WIDTH) and a phone-width one
(NARROW_WIDTH), in two `<div>`s that the report's CSS (`CSS`) shows one at a time; every label
is escaped. Label columns are sized from their text; a label that does not fit is wrapped onto
a second line or shortened with "…", and then carries its full text as a `<title>` tooltip.

    horizontal_bars([("WHATSAPP", 0.62, "62%")], maximum=1.0, label="reachable share")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

WIDTH = 720
NARROW_WIDTH = 360
ROW = 26
LABEL_WIDTH = 170
VALUE_WIDTH = 90
FONT = 12
LINE = 14  # line height of a wrapped 12 px label
PALETTE = {
    "CAPABILITY_FULL": "#1b7f3b",
    "CAPABILITY_PARTIAL": "#7cc68d",
    "NO_CAPABILITY": "#c23b22",
    "CAPABILITY_UNKNOWN": "#9e9e9e",
    "NO_RESPONSE": "#f0b429",
    "REQUEST_FAILED": "#6b3fa0",
    "NOT_A_CONTACT": "#5b7083",
}
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
# One drawing per screen width; below 600 px the narrow one shows. Charts never overflow the
# page: a chart wider than its column scales down (its text with it) instead.
CSS = (
    ".chart-narrow{display:none}@media (max-width:600px){.chart-wide{display:none}"
    ".chart-narrow{display:block}}svg.chart{max-width:100%;height:auto;display:block}"
)

# Advance widths in em, rounded up from DejaVu Sans (the widest common sans-serif, and
# Chromium's default on Linux), so a label measured here fits in any sans-serif font.
_WIDE_CHARS = frozenset("MWmw%+…@")
_CAPITALS = frozenset("ABCDGHKNOQRUVXZ")
_NARROW_CHARS = frozenset("fijlrtIJ")
_THIN_CHARS = frozenset(" .,:;·/()'!|-")


def text_width(text: str, size: float = FONT) -> float:
    """An upper estimate of the rendered width of `text` at `size` px."""
    total = 0.0
    for char in text:
        if char in _WIDE_CHARS:
            total += 1.0
        elif char in _CAPITALS:
            total += 0.79
        elif char in _NARROW_CHARS:
            total += 0.42
        elif char in _THIN_CHARS:
            total += 0.4
        elif char.isdigit() or char.islower() or char in "EFLPSTY_":
            total += 0.66
        else:
            total += 0.8
    return total * size


def fit_text(text: str, room: float, size: float = FONT, lines: int = 2) -> list[str]:
    """`text` as at most `lines` lines each narrower than `room`: wrapped after a space, `_` or
    `-` where possible, the last line shortened with "…" when it still does not fit."""
    if text_width(text, size) <= room:
        return [text]
    if lines > 1:
        breaks = [i + 1 for i, c in enumerate(text) if c in " _-" and 0 < i < len(text) - 1]
        splits = [(text[:at].rstrip(), text[at:].lstrip()) for at in reversed(breaks)]
        fitting = [(head, tail) for head, tail in splits if text_width(head, size) <= room]
        # Rather a break that keeps all of the text, between words before inside one; else
        # the latest break, the rest shortened.
        for head, tail in sorted(fitting, key=lambda split: " " not in text[len(split[0])]):
            if len(rest := fit_text(tail, room, size, lines - 1)) == 1 and rest[0] == tail:
                return [head, tail]
        if fitting:
            head, tail = fitting[0]
            return [head, *fit_text(tail, room, size, lines - 1)]
    return [_shorten(text, room, size)]


def _shorten(text: str, room: float, size: float) -> str:
    for end in range(len(text) - 1, 0, -1):
        if text_width(text[:end] + "…", size) <= room:
            return text[:end].rstrip() + "…"
    return "…"


def responsive(draw: Callable[[int], str]) -> str:
    """The chart drawn at both widths, each in the `<div>` the report's CSS shows at its size."""
    return (
        f'<div class="chart-wide">{draw(WIDTH)}</div>'
        f'<div class="chart-narrow">{draw(NARROW_WIDTH)}</div>'
    )


def _svg(height: float, body: str, label: str, width: float = WIDTH) -> str:
    width, height = math.ceil(width), math.ceil(height)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{escape(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{body}</svg>'
    )


def _text(
    x: float,
    y: float,
    text: str,
    anchor: str = "start",
    size: int = FONT,
    *,
    fill: str = "#222",
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-family="sans-serif" font-weight="{weight}" fill="{fill}">{escape(text)}</text>'
    )


def _label(
    x: float,
    middle: float,
    text: str,
    room: float,
    anchor: str,
    *,
    size: int = FONT,
    lines: int = 2,
) -> str:
    """A label fitted into `room` on at most `lines` lines, vertically centred on `middle`; a
    `<title>` tooltip with the full text when it had to be wrapped or shortened."""
    fitted = fit_text(text, room, size, lines)
    if fitted == [text]:
        return _text(x, middle + size * 0.36, text, anchor, size)
    first = middle + size * 0.36 - (len(fitted) - 1) * LINE / 2
    spans = "".join(
        f'<tspan x="{x:.1f}" y="{first + i * LINE:.1f}">{escape(line)}</tspan>'
        for i, line in enumerate(fitted)
    )
    return (
        f'<text font-size="{size}" text-anchor="{anchor}" font-family="sans-serif" '
        f'fill="#222"><title>{escape(text)}</title>{spans}</text>'
    )


def _label_column(names: Sequence[str], width: int) -> tuple[float, float, float]:
    """(left edge of the bars, room for a label, row height): room for the longest label,
    at most 45% of the chart; rows grow when a label needs two lines."""
    natural = max((text_width(n) for n in names), default=0.0)
    room = min(natural, width * 0.45 - 16)
    wrapped = any(len(fit_text(n, room)) > 1 for n in names)
    return room + 16, room, ROW + (LINE if wrapped else 0)


def horizontal_bars(
    rows: Sequence[tuple[str, float, str]], *, maximum: float, label: str, colour: str = "#1f77b4"
) -> str:
    """One bar per row: (label, value, text shown after the bar)."""
    if not rows:
        return empty_chart(label)
    return responsive(lambda width: _horizontal_bars(width, rows, maximum, label, colour))


def _horizontal_bars(
    width: int,
    rows: Sequence[tuple[str, float, str]],
    maximum: float,
    label: str,
    colour: str,
) -> str:
    left, room, row = _label_column([name for name, _, _ in rows], width)
    value_width = max(text_width(shown) for _, _, shown in rows) + 12
    span = max(20.0, width - left - value_width)
    parts = []
    for index, (name, value, shown) in enumerate(rows):
        y = 8 + index * row + (row - 18) / 2
        length = 0.0 if maximum <= 0 else max(0.0, min(1.0, value / maximum)) * span
        parts.append(_label(left - 8, y + 9, name, room, "end"))
        parts.append(
            f'<rect class="bar" x="{left:.1f}" y="{y:.1f}" width="{length:.1f}" height="18" '
            f'fill="{colour}"><title>{escape(name)}: {escape(shown)}</title></rect>'
        )
        parts.append(_text(left + length + 6, y + 13, shown))
    total = left + span + value_width
    return _svg(16 + len(rows) * row, "".join(parts), label, max(width, total))


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
    return responsive(lambda width: _stacked_bars(width, categories, segments, values, label))


def _stacked_bars(
    width: int,
    categories: Sequence[str],
    segments: Sequence[str],
    values: Sequence[Sequence[int]],
    label: str,
) -> str:
    left, room, row = _label_column(categories, width)
    span = width - left - 12
    parts = []
    for index, (category, counts) in enumerate(zip(categories, values, strict=True)):
        y = 8 + index * row + (row - 18) / 2
        total = sum(counts) or 1
        x = left
        parts.append(_label(left - 8, y + 9, category, room, "end"))
        for segment, count in zip(segments, counts, strict=True):
            if count <= 0:
                continue
            share = span * count / total
            colour = PALETTE.get(segment, "#555")
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{share:.1f}" height="18" '
                f'fill="{colour}"><title>{escape(category)} {escape(segment)}: {count:,} '
                f"({count / total:.1%})</title></rect>"
            )
            x += share
    legend, legend_height = _legend_rows(
        segments, [PALETTE.get(s, "#555") for s in segments], 16 + len(categories) * row, width
    )
    parts.append(legend)
    return _svg(16 + len(categories) * row + legend_height + 6, "".join(parts), label, width)


def _legend(names: Sequence[str], colours: Sequence[str], y: float, width: int = WIDTH) -> str:
    return _legend_rows(names, colours, y, width)[0]


def _legend_rows(
    names: Sequence[str], colours: Sequence[str], y: float, width: int
) -> tuple[str, float]:
    """Coloured keys in rows that wrap at the chart's width; (svg, height used)."""
    parts, x, top = [], 12.0, y
    for name, colour in zip(names, colours, strict=True):
        shown = fit_text(name, width - 40, 10, lines=1)[0]
        key = 14 + text_width(shown, 10) + 14
        if x + key > width and x > 12:
            x, y = 12.0, y + 16
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, y + 9, shown, size=10))
        x += key
    return "".join(parts), y - top + 16


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    maximum: float = 1.0,
) -> str:
    """One line per series over `x_labels` (e.g. the runs' dates); values as shares of
    `maximum`. Each series' last point is labelled with its value, so a single run draws as
    labelled points rather than an empty axis."""
    if not x_labels or not series:
        return empty_chart(label)
    return responsive(lambda width: _line_chart(width, x_labels, series, label, maximum))


def _line_chart(
    width: int,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    label: str,
    maximum: float,
) -> str:
    left, right, top, plot_h = 48, 62, 12, 170
    plot_w = width - left - right
    bottom = top + plot_h

    def x_of(index: int) -> float:
        if len(x_labels) == 1:
            return left + plot_w / 2
        return left + index * plot_w / (len(x_labels) - 1)

    parts = [f'<line x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}" stroke="#888"/>']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eee"/>'
        )
        parts.append(_text(left - 6, y + 4, f"{tick * maximum:.0%}", "end", 10))
    parts += _x_axis_labels(x_labels, x_of, plot_w, bottom + 16)
    colours, ends = [], []
    for number, (name, values) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        colours.append(colour)
        points = [
            (x_of(i), top + plot_h * (1 - max(0.0, min(1.0, v / maximum))), v)
            for i, v in enumerate(values)
            if v is not None
        ]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(
            f'<polyline class="line" points="{path}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        parts += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
            f"<title>{escape(name)}: {v / maximum:.1%}</title></circle>"
            for x, y, v in points
        ]
        ends.append((points[-1], colour))
    parts += _end_labels(ends, maximum, top, bottom)
    legend, legend_height = _legend_rows([name for name, _ in series], colours, bottom + 28, width)
    parts.append(legend)
    return _svg(bottom + 28 + legend_height + 4, "".join(parts), label, width)


def _x_axis_labels(
    x_labels: Sequence[str], x_of: Callable[[int], float], plot_w: float, y: float
) -> list[str]:
    """As many labels as fit side by side without overlapping (always the first and last)."""
    widest = max(text_width(name, 10) for name in x_labels) + 10
    step = plot_w / max(1, len(x_labels) - 1)
    every = max(1, math.ceil(widest / step)) if len(x_labels) > 1 else 1
    shown = set(range(0, len(x_labels), every))
    if (len(x_labels) - 1) not in shown:  # the newest run matters most: replace the neighbour
        shown = {i for i in shown if i < len(x_labels) - every} | {len(x_labels) - 1}
    # Centred under their points: the plot's margins leave room for half a label each side.
    return [_text(x_of(index), y, x_labels[index], "middle", 10) for index in sorted(shown)]


def _end_labels(
    ends: list[tuple[tuple[float, float, float], str]], maximum: float, top: float, bottom: float
) -> list[str]:
    """Each series' last value beside its last point, nudged apart so none overlap."""
    placed = sorted(((y, x, v, colour) for (x, y, v), colour in ends), key=lambda e: e[0])
    ys = [e[0] for e in placed]
    for i in range(1, len(ys)):
        ys[i] = max(ys[i], ys[i - 1] + 13)
    for i in range(len(ys) - 1, -1, -1):
        ys[i] = min(ys[i], bottom if i == len(ys) - 1 else ys[i + 1] - 13)
    ys = [max(y, top + 6) for y in ys]
    return [
        _text(x + 7, y + 4, f"{v / maximum:.1%}", size=11, fill=colour, weight="bold")
        for y, (_, x, v, colour) in zip(ys, placed, strict=True)
    ]


def share_matrix(
    row_labels: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[tuple[float, int] | None]],
    *,
    label: str,
) -> str:
    """A table of shades: one row per `row_labels` entry, one column per `columns` entry, each
    cell `(share, count)` showing the share and, under it, the count it is a share of (so a
    share of few is not over-read); `None` for an empty cell."""
    if not row_labels or not columns:
        return empty_chart(label)
    return responsive(lambda width: _share_matrix(width, row_labels, columns, cells, label))


def _share_matrix(
    width: int,
    row_labels: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[tuple[float, int] | None]],
    label: str,
) -> str:
    left, room, _ = _label_column(row_labels, width)
    cell_w = max(46.0, (width - left - 4) / len(columns))
    row, head = 36, 22
    parts = [
        _label(left + (j + 0.5) * cell_w, 10, name, cell_w - 6, "middle", size=11, lines=1)
        for j, name in enumerate(columns)
    ]
    for i, (name, values) in enumerate(zip(row_labels, cells, strict=True)):
        y = head + i * row
        parts.append(_label(left - 8, y + row / 2, name, room, "end"))
        for j, cell in enumerate(values):
            x = left + j * cell_w
            if cell is None:
                parts.append(_text(x + cell_w / 2, y + row / 2 + 4, "–", "middle", fill="#777"))
                continue
            share, count = cell
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" '
                f'height="{row - 2}" fill="{_shade(share)}"><title>{escape(name)} '
                f"{escape(columns[j])}: {share:.1%} of {count:,}</title></rect>"
            )
            centre = x + cell_w / 2
            parts.append(
                _text(
                    centre,
                    y + 16,
                    _first_fitting((f"{share:.1%}", f"{share:.0%}"), cell_w - 6, FONT),
                    "middle",
                    weight="bold",
                )
            )
            parts.append(
                _text(
                    centre,
                    y + 29,
                    _first_fitting(
                        (f"of {count:,}", f"of {_short(count)}", _short(count)), cell_w - 6, 10
                    ),
                    "middle",
                    10,
                )
            )
    total = left + len(columns) * cell_w + 4
    return _svg(head + len(row_labels) * row + 4, "".join(parts), label, max(width, total))


def _first_fitting(variants: Sequence[str], room: float, size: int) -> str:
    """The first of `variants` (longest first) that fits `room`, else the last."""
    return next((v for v in variants if text_width(v, size) <= room), variants[-1])


def _short(count: int) -> str:
    """1,234 -> '1.2k', 2,345,678 -> '2.3M': for cells too narrow for the full count."""
    if count >= 999_950:  # what would round to 1000.0k
        return f"{count / 1_000_000:.1f}M"
    if count >= 1_000:
        return f"{count / 1_000:.1f}k"
    return str(count)


def _shade(share: float) -> str:
    """White-green (0%) to a mid green (100%) that dark text still reads on (contrast 5:1)."""
    low, high = (0xF2, 0xF8, 0xF3), (0x4C, 0xA3, 0x66)
    share = max(0.0, min(1.0, share))
    return "#" + "".join(
        f"{round(a + (b - a) * share):02x}" for a, b in zip(low, high, strict=True)
    )


def empty_chart(label: str) -> str:
    return responsive(
        lambda width: _svg(
            40, _label(10, 20, f"{label}: no data yet", width - 20, "start"), label, width
        )
    )


def intervals(
    rows: Sequence[tuple[str, float, float, float, str]], *, label: str, colour: str = "#1f77b4"
) -> str:
    """One confidence interval per row on a 0-100% axis: (label, share, low, high, text);
    a line from low to high with a dot at the share."""
    if not rows:
        return empty_chart(label)
    return responsive(lambda width: _intervals(width, rows, label, colour))


def _intervals(
    width: int, rows: Sequence[tuple[str, float, float, float, str]], label: str, colour: str
) -> str:
    left, room, row = _label_column([name for name, *_ in rows], width)
    # On a narrow screen the numbers stay in the tooltip (and the table below the chart).
    with_values = width > NARROW_WIDTH
    value_width = max(text_width(shown) for *_, shown in rows) + 12 if with_values else 0.0
    span = max(20.0, width - left - value_width - 12)
    ticks = (0.0, 0.25, 0.5, 0.75, 1.0) if span >= 240 else (0.0, 0.5, 1.0)
    bottom = 8 + len(rows) * row
    parts = []
    for tick in ticks:
        x = left + span * tick
        parts.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{bottom}" stroke="#eee"/>')
        anchor = "start" if tick == 0 else "end" if tick == 1 else "middle"
        parts.append(_text(x, bottom + 12, f"{tick:.0%}", anchor, 10))
    for index, (name, share, low, high, shown) in enumerate(rows):
        y = 8 + index * row + row / 2
        x_low, x_high = left + span * low, left + span * high
        parts.append(_label(left - 8, y, name, room, "end"))
        parts.append(
            f'<line class="interval" x1="{x_low:.1f}" y1="{y:.1f}" x2="{x_high:.1f}" '
            f'y2="{y:.1f}" stroke="{colour}" stroke-width="3">'
            f"<title>{escape(name)}: {escape(shown)}</title></line>"
        )
        parts.append(f'<circle cx="{left + span * share:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
        if with_values:
            parts.append(_text(left + span + 12, y + 4, shown, size=11))
    return _svg(bottom + 20, "".join(parts), label, width)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """An HTML table that scrolls sideways on a screen too narrow for it."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return (
        f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        "</table></div>"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)
