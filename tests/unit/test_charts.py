"""Chart text fits its room: wrapped or shortened with a tooltip, sized from the text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from pipeline.report import charts
from pipeline.report.writer import run_dates


def test_a_label_that_fits_stays_whole() -> None:
    assert charts.fit_text("WHATSAPP", 200) == ["WHATSAPP"]


def test_a_long_label_wraps_at_a_word_and_keeps_all_its_text() -> None:
    label = "WHATSAPP RECIPIENT_NOT_REACHABLE"
    lines = charts.fit_text(label, 200)
    assert lines == ["WHATSAPP", "RECIPIENT_NOT_REACHABLE"]
    assert all(charts.text_width(line) <= 200 for line in lines)
    assert charts.fit_text(label, 170) == ["WHATSAPP RECIPIENT_", "NOT_REACHABLE"]


def test_what_cannot_wrap_is_shortened_with_an_ellipsis() -> None:
    lines = charts.fit_text("WHATSAPP RECIPIENT_NOT_REACHABLE", 90)
    assert len(lines) == 2
    assert lines[-1].endswith("…")
    assert all(charts.text_width(line) <= 90 for line in lines)
    assert charts.fit_text("X" * 40, 50, lines=1)[0].endswith("…")


def test_a_changed_label_carries_its_full_text_as_a_tooltip() -> None:
    label = "WHATSAPP RECIPIENT_NOT_REACHABLE_BECAUSE_OF_A_VERY_LONG_REASON"
    svg = charts.horizontal_bars([(label, 3.0, "3")], maximum=3.0, label="top reasons")
    assert svg.count("<svg") == 2  # one drawing for wide screens, one for phones
    assert svg.count(f"<title>{label}</title>") == 2
    narrow = svg.split('class="chart-narrow"')[1]
    assert 'width="360"' in narrow


def test_a_single_run_draws_labelled_points() -> None:
    svg = charts.line_chart(["Nov 25"], [("RCS", [0.539]), ("SMS", [0.938])], label="trend")
    wide = svg.split('class="chart-narrow"')[0]
    assert wide.count("<circle") == 2
    assert ">53.9%</text>" in wide
    assert ">93.8%</text>" in wide
    assert ">Nov 25</text>" in wide


def test_many_runs_show_dates_that_do_not_overlap() -> None:
    start = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    labels = run_dates([start + timedelta(days=d) for d in range(30)])
    assert labels[:2] == ["Nov 01", "Nov 02"]
    svg = charts.line_chart(labels, [("SMS", [0.9] * 30)], label="trend")
    for drawing in svg.split("</svg>")[:2]:
        shown = re.findall(r'font-size="10"[^>]*>(Nov \d\d)</text>', drawing)
        assert shown[0] == "Nov 01"
        assert shown[-1] == "Nov 30"  # the newest run is always labelled
        assert 2 < len(shown) < 30  # thinned to what fits


def test_run_dates_add_the_time_only_when_needed() -> None:
    night = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert run_dates([night, night + timedelta(hours=3)]) == ["Nov 25 02:00", "Nov 25 05:00"]
    assert run_dates([night, night + timedelta(seconds=5)])[1] == "Nov 25 02:00:05"
    assert run_dates([str(night)]) == ["Nov 25"]  # as read back from summary.json
