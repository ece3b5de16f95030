"""What the commands print for people: the end-of-run summary, the plan, webhook lists."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from pipeline.audit import RunResult
from pipeline.sinch.models import ALL_STATUSES

SHORT = {
    "CAPABILITY_FULL": "full",
    "CAPABILITY_PARTIAL": "partial",
    "NO_CAPABILITY": "none",
    "CAPABILITY_UNKNOWN": "unknown",
    "NO_RESPONSE": "no response",
    "REQUEST_FAILED": "failed",
}


def out() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # logs and CI: wide enough that tables never truncate
        console = Console(highlight=False, soft_wrap=True, width=132)
    return console


def print_run(result: RunResult, by_channel: list[dict[str, Any]]) -> None:
    console = out()
    if result.load is not None:
        load = result.load
        console.print(
            f"Loaded {load.rows:,} rows from {len(load.sources)} file(s): "
            f"{load.contacts:,} contacts, {load.targets:,} targets, {load.rejects:,} rejected"
        )
        for reason, count in load.rejects_by_reason.items():
            console.print(f"  rejected {count:,} as {reason}")
    if result.submit is not None:
        s = result.submit
        console.print(
            f"Sent {s.accepted + s.failed:,} requests in {s.seconds:.1f}s "
            f"({s.rate_per_second:.1f}/s): {s.accepted:,} accepted, {s.failed:,} failed"
        )
    if result.collect is not None:
        lag = result.collect.lag
        if lag.get("p50_seconds") is not None:
            console.print(
                f"Callbacks: lag from acceptance p50 {lag['p50_seconds']:.2f}s, "
                f"p95 {lag['p95_seconds']:.2f}s; {result.collect.requeried:,} transient "
                "failures re-queried"
            )
    if result.collect is not None and result.collect.deadline_passed:
        console.print(
            f"Deadline passed with {result.collect.outstanding:,} targets unanswered "
            "(reported as NO_RESPONSE)"
        )
    table = Table(title=f"Run {result.run_id}: reachability per channel")
    table.add_column("channel")
    table.add_column("targets", justify="right")
    for status in ALL_STATUSES:
        table.add_column(SHORT[status], justify="right")
    table.add_column("reachable", justify="right")
    for row in by_channel:
        table.add_row(
            row["channel"],
            f"{row['targets']:,}",
            *[f"{row[s.lower()]:,}" for s in ALL_STATUSES],
            f"{float(row['reachable_share'] or 0):.1%}",
        )
    console.print(table)
    if result.report is not None:
        console.print(f"Report:    {result.report.index}")
        console.print(f"Summary:   {result.report.summary}")
    console.print(f"Warehouse: {result.warehouse}  (duckdb -readonly {result.warehouse})")


def print_plan(result: RunResult) -> None:
    console = out()
    plan = result.plan
    assert plan is not None
    assert result.load is not None
    console.print(
        f"Dry run: nothing was sent. {result.load.rows:,} rows, {result.load.rejects:,} rejected."
    )
    table = Table(title="Plan")
    for name in ("channel", "targets", "reuse", "query"):
        table.add_column(name, justify="right" if name != "channel" else "left")
    for channel, counts in sorted(plan.by_channel.items()):
        table.add_row(
            channel,
            f"{sum(counts.values()):,}",
            f"{counts.get('reuse', 0):,}",
            f"{counts.get('query', 0):,}",
        )
    console.print(table)
    est = result.estimate
    console.print(
        f"{plan.targets:,} targets: {plan.reused:,} reused, {plan.to_query:,} to query in "
        f"{plan.requests:,} requests.\nEstimated: {_duration(est['query_seconds'])} to send at "
        f"the query rate; {_duration(est['callback_seconds'])} for the callbacks at "
        f"{est['callback_rate_per_second']:g}/s."
    )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
