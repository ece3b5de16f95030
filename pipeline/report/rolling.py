"""The report's sections for rolling refreshes and samples (issue 14): estimates with their
intervals, coverage by fresh answers, and late answers used.

    summary.update(rolling_summary(conn, run_id, settings))
    sections += rolling_sections(summary)
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline.coverage import coverage_summary
from pipeline.late import late_answers_used
from pipeline.report import charts
from pipeline.sampling import estimate_rows
from pipeline.settings import Settings

MAX_INTERVAL_ROWS = 40  # whole-list rows first, then the largest strata


def rolling_summary(
    conn: duckdb.DuckDBPyConnection, run_id: str, settings: Settings
) -> dict[str, Any]:
    """summary.json keys: `coverage`, `late_answers` and, for sampled runs, `estimates`."""
    extra: dict[str, Any] = {
        "coverage": coverage_summary(conn, run_id, settings),
        "late_answers": late_answers_used(conn, run_id),
    }
    estimates = estimate_rows(conn, run_id)
    if estimates:
        extra["estimates"] = estimates
    return extra


def rolling_sections(summary: dict[str, Any]) -> list[tuple[str, str]]:
    sections = []
    if summary.get("estimates"):
        title = "Estimated reachable share (sample, 95% intervals)"
        sections.append((title, _estimates_html(summary["estimates"])))
    if "coverage" in summary:
        html = _coverage_html(summary["coverage"], summary.get("late_answers", 0))
        sections.append(("Coverage by fresh answers", html))
    return sections


def _interval_label(row: dict[str, Any]) -> str:
    return f"{row['channel']} {row['stratum'] or 'whole list'}"


def _estimates_html(rows: list[dict[str, Any]]) -> str:
    ordered = sorted(rows, key=lambda r: (r["stratum"] is not None, -int(r["population"])))
    shown = [r for r in ordered if r["share"] is not None][:MAX_INTERVAL_ROWS]
    chart = charts.intervals(
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
    whole = [r for r in rows if r["stratum"] is None]
    headers = ["channel", "sampled", "list", "reachable", "95% interval"]
    headers += ["reachable in the list", "no response (counted as not reachable)"]
    table = charts.table(
        headers,
        [
            [
                r["channel"],
                int(r["sample"]),
                int(r["population"]),
                f"{float(r['share']):.1%}",
                f"{float(r['low']):.1%} - {float(r['high']):.1%}",
                f"{int(r['reachable_low']):,} - {int(r['reachable_high']):,}",
                f"{int(r['no_response']):,} ({float(r['no_response_share']):.1%})",
            ]
            for r in whole
        ],
    )
    return chart + table


def _coverage_html(coverage: dict[str, Any], late: int) -> str:
    share = coverage["fresh_share"]
    nights = coverage["nights_to_full_refresh"]
    night_h = float(coverage["night_seconds"]) / 3600
    deferred = coverage["deferred"]
    waiting = f"; {deferred:,} never answered wait for a later night" if deferred else ""
    text = (
        f"<p>{coverage['fresh_targets']:,} of {coverage['list_targets']:,} targets "
        f"({share or 0:.1%}) have an answer younger than its TTL{waiting}. "
        f"{late:,} answers landed after their own run's deadline and are used here. "
        f"At {float(coverage['callback_rate_per_second']):g} callbacks/s a full refresh of the "
        f"list takes {nights if nights is not None else '?'} night(s) of {night_h:g} h.</p>"
    )
    ages = coverage["ages"]
    top = max((float(a["answers"]) for a in ages), default=0.0)
    chart = charts.horizontal_bars(
        [(a["age"], float(a["answers"]), f"{a['answers']:,}") for a in ages],
        maximum=top,
        label="age of the answers used",
        colour="#7cc68d",
    )
    return text + chart
