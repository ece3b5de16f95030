"""The report's data for rolling refreshes and samples (issue 14): estimates with their
intervals, coverage by fresh answers, and late answers used; and its coverage section (the
estimates section leads the report: pipeline/report/estimates.py).

    summary.update(rolling_summary(conn, run_id, settings))
    sections += coverage_sections(summary)
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline.coverage import coverage_summary
from pipeline.late import late_answers_used
from pipeline.readable import counted, duration, figure
from pipeline.report import charts
from pipeline.sampling import estimate_rows
from pipeline.settings import Settings


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


def coverage_sections(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """[(title, html)]: how much of the list has a fresh answer (a sampled run's estimates lead
    the report instead: pipeline/report/estimates.py)."""
    if "coverage" not in summary:
        return []
    html = _coverage_html(summary["coverage"], summary.get("late_answers", 0))
    return [("Coverage by fresh answers", html)]


def _coverage_html(coverage: dict[str, Any], late: int) -> str:
    """The text and the charts count the same targets: the answers by age, then the targets
    without one (`without_answer`); together, the list."""
    ages = [(a["age"], float(a["answers"]), f"{a['answers']:,}") for a in coverage["ages"]]
    without = [
        (w["reason"], float(w["targets"]), f"{w['targets']:,}")
        for w in coverage.get("without_answer", [])
    ]
    top = max((r[1] for r in ages + without), default=0.0)  # one scale for both charts
    chart = charts.horizontal_bars(
        ages, maximum=top, label="age of the answers used", colour="#7cc68d"
    )
    if without:
        chart += charts.horizontal_bars(
            without, maximum=top, label="targets without an answer in this run", colour="#bbb"
        )
    return f"<p>{_coverage_text(coverage, late)}</p>{chart}"


def _coverage_text(coverage: dict[str, Any], late: int) -> str:
    answers = sum(int(a["answers"]) for a in coverage["ages"])
    fresh, listed = int(coverage["fresh_targets"]), int(coverage["list_targets"])
    text = (
        f"{fresh:,} of {counted(listed, 'target')} on the list "
        f"({coverage['fresh_share'] or 0:.1%}) have an answer younger than its TTL"
    )
    if answers > fresh:
        text += f"; {counted(answers - fresh, 'answer')} older than that"
    without = coverage.get("without_answer", [])
    if without:
        reasons = ", ".join(f"{w['reason']} {w['targets']:,}" for w in without)
        missing = sum(int(w["targets"]) for w in without)
        text += f". {missing:,} have none in this run: {reasons}"
    return f"{text}. {_refresh_text(coverage)} {_late_text(late)}".rstrip()


def _refresh_text(coverage: dict[str, Any]) -> str:
    nights = coverage["nights_to_full_refresh"]
    night = duration(float(coverage["night_seconds"]))
    rate = figure(float(coverage["callback_rate_per_second"]))
    takes = "?" if nights is None else counted(int(nights), "night")
    return f"At {rate} callbacks/s a full refresh of the list takes {takes} of {night}."


def _late_text(late: int) -> str:
    if late == 1:
        return "1 answer landed after its own run's deadline and is used here."
    return (
        f"{late:,} answers landed after their own run's deadline and are used here." if late else ""
    )
