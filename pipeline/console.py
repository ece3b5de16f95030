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
    if result.collect is not None:
        _print_correlation(console, result.collect.matched_by, result.collect.unmatched)
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
    table.add_column("of answered", justify="right")
    for row in by_channel:
        answered = row["reachable_share_of_answered"]
        table.add_row(
            row["channel"],
            f"{row['targets']:,}",
            *[f"{row[s.lower()]:,}" for s in ALL_STATUSES],
            f"{float(row['reachable_share'] or 0):.1%}",
            "n/a" if answered is None else f"{answered:.1%}",
        )
    console.print(table)
    console.print("reachable: share of all targets; of answered: share of answered targets")
    if result.completeness is not None and not result.completeness.complete:
        console.print(f"[bold red]INCOMPLETE[/]: {result.message}")
    for line in rolling_lines(result):
        console.print(line)
    if result.report is not None:
        console.print(f"Report:    {result.report.index}")
        console.print(f"Summary:   {result.report.summary}")
    console.print(f"Warehouse: {result.warehouse}  (duckdb -readonly {result.warehouse})")


def _print_correlation(
    console: Console, matched: dict[str, int], unmatched: dict[str, int]
) -> None:
    """Only when callbacks came without request_id: how they were matched, and what was not."""
    by_identity, by_contact = matched.get("identity", 0), matched.get("contact_id", 0)
    kept = sum(unmatched.values())
    if by_identity or by_contact or kept:
        console.print(
            f"Callbacks without request_id: {by_identity:,} matched by identity, "
            f"{by_contact:,} by contact id; {kept:,} kept unmatched "
            f"({unmatched.get('no_outstanding_query', 0):,} no outstanding query, "
            f"{unmatched.get('ambiguous', 0):,} ambiguous; see unmatched_notifications)"
        )


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
    for line in rolling_lines(result):
        console.print(line)


def rolling_lines(result: RunResult) -> list[str]:
    """What a window or a sample did (or, in a dry run, would do)."""
    lines = []
    if result.sample is not None:
        s = result.sample
        lines.append(
            f"Sample: {s.sampled_contacts:,} of {s.list_contacts:,} contacts "
            f"({s.sampled_targets:,} of {s.list_targets:,} targets) in {len(s.strata)} strata "
            f"by {s.by}, seed {s.seed}"
        )
    if "sample_half_width" in result.estimate:
        lines.append(
            f"A 95% interval of at most ±{result.estimate['sample_half_width']:.2%} "
            "(a share near 50%; narrower near 0% or 100%) for each channel's reachable share."
        )
    window = result.plan.window if result.plan is not None else {}
    if window:
        priorities = ", ".join(
            f"{n:,} {k.replace('_', ' ')}" for k, n in window["by_priority"].items()
        )
        lines.append(
            f"Window {_duration(window['window_seconds'])} at "
            f"{window['callback_rate_per_second']:g} callbacks/s ({window['rate_source']}): "
            f"{window['queried_targets']:,} targets to "
            f"query ({priorities or 'none'}); {window['reused_stale']:,} keep their last answer, "
            f"{window['deferred']:,} never answered wait for a later night"
        )
    if result.plan is not None and result.plan.late_answers:
        lines.append(
            f"{result.plan.late_answers:,} late answers (landed after their run ended) kept"
        )
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
