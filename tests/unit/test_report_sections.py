"""The report's decision sections drawn from summary data: routing and countries."""

from __future__ import annotations

from typing import Any

from pipeline.report.writer import TOP_COUNTRIES, render_html


def summary(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "run_id": "r",
        "generated_at": "2026-11-26T02:00:00",
        "channels": [],
        "trend": [],
        "reasons": [],
        "changes": [],
        "rejects": [],
        "totals": {"contacts": 0, "targets": 0, "reused": 0},
        "routing": [],
        "routing_compared_with": None,
        "countries": [],
    }
    return base | extra


def section(html: str, title: str) -> str:
    return html.split(f"<h2>{title}</h2>")[1].split("</section>", maxsplit=1)[0]


def test_countries_beyond_the_top_are_grouped_with_their_counts() -> None:
    countries = [  # country i has 100 - i contacts on each channel, half of them reachable
        {"country": f"C{i}", "channel": channel, "targets": 100 - i, "reachable": (100 - i) // 2}
        for i in range(TOP_COUNTRIES + 3)
        for channel in ("RCS", "SMS")
    ]
    html = render_html(summary(countries=countries))
    wide = section(html, "Reachable share by country").split('class="chart-narrow"')[0]
    assert all(f">C{i}</text>" in wide for i in range(TOP_COUNTRIES))
    assert f">C{TOP_COUNTRIES}</text>" not in wide
    assert ">3 others</text>" in wide
    rest = sum(100 - i for i in range(TOP_COUNTRIES, TOP_COUNTRIES + 3))
    assert wide.count(f">of {rest}</text>") == 2  # one cell per channel
    assert wide.count(">of 100</text>") == 2


def test_routing_shows_each_first_channel_and_the_change() -> None:
    routing = [
        {"first_channel": "WHATSAPP", "contacts": 60, "share": 0.6, "change": 5},
        {"first_channel": None, "contacts": 40, "share": 0.4, "change": -5},
    ]
    html = render_html(summary(routing=routing, routing_compared_with="monday"))
    assert ">WHATSAPP first</text>" in html
    assert ">unreachable</text>" in html
    assert ">60 · 60.0% (+5)</text>" in html
    assert "since run monday" in html
