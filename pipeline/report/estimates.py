"""The report's first section for a sampled run: what it ran for. Per channel the estimated
reachable share of the whole list, its 95% interval and the reachable contacts it extrapolates
to (share of the list's size), then each estimate drawn with its interval, strata included.
The sections after it count the sample's own targets.

    sections = [*estimate_sections(summary), ...]
"""

from __future__ import annotations

from typing import Any

from pipeline.report import charts

MAX_INTERVAL_ROWS = 40  # whole-list rows first, then the largest strata


def estimate_sections(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """[(title, html)] for a sampled run, [] otherwise."""
    rows = summary.get("estimates") or []
    whole = [r for r in rows if r["stratum"] is None and r["share"] is not None]
    if not whole:
        return []
    title = "Estimated for the whole list (sample, 95% intervals)"
    return [(title, _lead(whole) + _whole_list_table(whole) + _intervals_chart(rows))]


def _lead(whole: list[dict[str, Any]]) -> str:
    sampled = max(int(r["sample"]) for r in whole)
    listed = max(int(r["population"]) for r in whole)
    return (
        f"<p>Each channel's reachable share of the whole list ({listed:,} contacts), "
        f"estimated from a random sample of {sampled:,}, with its 95% interval, and the "
        "reachable contacts that share is of the list. The sections below count the "
        "sample's own targets.</p>"
    )


def _whole_list_table(whole: list[dict[str, Any]]) -> str:
    headers = ["channel", "reachable (estimate)", "95% interval", "reachable contacts"]
    headers += ["95% interval", "list", "sampled", "no response (counted as not reachable)"]
    return charts.table(
        headers,
        [
            [
                r["channel"],
                f"{float(r['share']):.1%}",
                f"{float(r['low']):.1%} - {float(r['high']):.1%}",
                int(r["reachable_estimate"]),
                f"{int(r['reachable_low']):,} - {int(r['reachable_high']):,}",
                int(r["population"]),
                int(r["sample"]),
                f"{int(r['no_response']):,} ({float(r['no_response_share']):.1%})",
            ]
            for r in whole
        ],
    )


def _interval_label(row: dict[str, Any]) -> str:
    return f"{row['channel']} {row['stratum'] or 'whole list'}"


def _intervals_chart(rows: list[dict[str, Any]]) -> str:
    ordered = sorted(rows, key=lambda r: (r["stratum"] is not None, -int(r["population"])))
    shown = [r for r in ordered if r["share"] is not None][:MAX_INTERVAL_ROWS]
    return charts.intervals(
        [
            (
                _interval_label(r),
                float(r["share"]),
                float(r["low"]),
                float(r["high"]),
                f"{float(r['share']):.1%} [{float(r['low']):.1%}, {float(r['high']):.1%}] "
                f"n={int(r['sample']):,}",
            )
            for r in shown
        ],
        label="estimated reachable share with 95% intervals",
    )
