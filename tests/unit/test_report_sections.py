"""The report's decision sections drawn from summary data: routing and countries."""

from __future__ import annotations

import re
from html import unescape
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


def estimate(channel: str, share: float, stratum: str | None = None) -> dict[str, Any]:
    return {
        "channel": channel,
        "stratum": stratum,
        "share": share,
        "low": share - 0.0036,
        "high": share + 0.0069,
        "level": 0.95,
        "sample": 20_000,
        "population": 10_000_000,
        "reachable": int(share * 20_000),
        "no_response": 12,
        "no_response_share": 0.0006,
        "reachable_estimate": round(share * 10_000_000),
        "reachable_low": round((share - 0.0036) * 10_000_000),
        "reachable_high": round((share + 0.0069) * 10_000_000),
    }


def test_a_sampled_run_s_report_leads_with_its_whole_list_estimates() -> None:
    estimates = [estimate("RCS", 0.54), estimate("RCS", 0.6, "SE"), estimate("SMS", 0.93)]
    html = render_html(summary(estimates=estimates, rejects=[{"reason": "empty_row", "rows": 1}]))
    titles = re.findall(r"<h2>(.*?)</h2>", html)
    assert titles[0] == "Estimated for the whole list (sample, 95% intervals)"
    first = section(html, titles[0])
    row = re.search(r"<tr><td>RCS</td>(.*?)</tr>", first)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1))
    share, contacts = ["54.0%", "53.6% - 54.7%"], ["5,400,000", "5,364,000 - 5,469,000"]
    assert cells[:5] == [*share, *contacts, "10,000,000"]
    assert "The sections below count the sample's own targets" in first
    assert ">RCS SE</text>" in first  # the strata's intervals stay, in the chart


def test_a_full_run_s_report_has_no_estimates_section() -> None:
    assert "Estimated" not in render_html(summary())


def coverage(**extra: Any) -> dict[str, Any]:
    buckets = ["< 1 day", "1-3 days", "3-7 days", "7-14 days", "14-30 days", "30 days or more"]
    base: dict[str, Any] = {
        "list_targets": 6003,
        "fresh_targets": 5990,
        "fresh_share": 5990 / 6003,
        "deferred": 0,
        "ages": [{"age": a, "answers": 5990 if a == "< 1 day" else 0} for a in buckets],
        "without_answer": [
            {"reason": "transient failure", "targets": 10},
            {"reason": "not a Sinch contact", "targets": 3},
        ],
        "callback_rate_per_second": 581.74,
        "night_seconds": 86400.0,
        "nights_to_full_refresh": 1,
    }
    return base | extra


def test_the_coverage_text_counts_what_its_chart_draws() -> None:
    html = section(render_html(summary(coverage=coverage())), "Coverage by fresh answers")
    text = html.split("<svg")[0]
    assert "5,990 of 6,003 targets on the list (99.8%) have an answer younger than its TTL" in text
    assert "13 have none in this run: transient failure 10, not a Sinch contact 3" in text
    assert "At 582 callbacks/s a full refresh of the list takes 1 night of 24 h 00 min" in text
    wide = "".join(chart.split('"chart-narrow"')[0] for chart in html.split('"chart-wide"'))
    bars = {unescape(k): n for k, n in re.findall(r"<title>([^<:]+): ([\d,]+)</title>", wide)}
    assert bars["< 1 day"] == "5,990"  # not 6,003: the 13 without an answer are bars of their own
    assert bars["transient failure"] == "10"
    assert bars["not a Sinch contact"] == "3"
    drawn = sum(int(n.replace(",", "")) for n in bars.values())
    assert drawn == 6003


def test_answers_older_than_their_ttl_are_said_apart() -> None:
    ages = [{"age": "< 1 day", "answers": 40}, {"age": "7-14 days", "answers": 60}]
    shown = coverage(list_targets=100, fresh_targets=40, fresh_share=0.4, ages=ages)
    shown["without_answer"] = []
    text = section(render_html(summary(coverage=shown)), "Coverage by fresh answers")
    assert (
        "40 of 100 targets on the list (40.0%) have an answer younger than its TTL; 60 answers"
        in text
    )
    assert "none in this run" not in text
