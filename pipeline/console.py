"""What the commands print for people: the end-of-run summary, the plan, webhook lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.audit import STEPS, RunResult
from pipeline.contacts.load import LoadSummary
from pipeline.lake.publish import PublishSummary
from pipeline.ledger import PlanSummary
from pipeline.report.missing_contacts import not_a_contact_line
from pipeline.sinch.models import ALL_STATUSES
from pipeline.steps import CollectSummary, SubmitSummary

SHORT = {
    "CAPABILITY_FULL": "full",
    "CAPABILITY_PARTIAL": "partial",
    "NO_CAPABILITY": "none",
    "CAPABILITY_UNKNOWN": "unknown",
    "NO_RESPONSE": "no response",
    "REQUEST_FAILED": "failed",
    "NOT_A_CONTACT": "not a contact",
}


def out() -> Console:
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # logs and CI: wide enough that tables never truncate
        console = Console(highlight=False, soft_wrap=True, width=132)
    return console


def print_run(result: RunResult, by_channel: list[dict[str, Any]]) -> None:
    console = out()
    for step in ("load", "plan", "submit", "collect"):
        _print_step(console, result, step)
    _reachability(console, result.run_id, by_channel)
    if result.completeness is not None and not result.completeness.complete:
        console.print(f"[bold red]INCOMPLETE[/]: {result.message}")
    for line in rolling_lines(result):
        console.print(line)
    _print_step(console, result, "report")
    console.print(f"Warehouse: {result.warehouse}  (duckdb -readonly {result.warehouse})")
    _took(console, result, STEPS)


def print_step(result: RunResult, step: str) -> None:
    """What `run` prints for `step`, and the time it took: the step command's summary."""
    console = out()
    _print_step(console, result, step)
    _took(console, result, (step,))


def _print_step(console: Console, result: RunResult, step: str) -> None:
    if step == "build":
        _reachability(console, result.run_id, result.channels)
    elif step == "report" and result.report is not None:
        console.print(f"Report:    {result.report.index}\nSummary:   {result.report.summary}")
    elif step in SENTENCES and (summary := getattr(result, step)) is not None:
        text = SENTENCES[step](summary)
        if text:
            console.print(text)


def _load(load: LoadSummary) -> str:
    loaded = (
        f"Loaded {load.rows:,} rows from {len(load.sources)} file(s): {load.contacts:,} "
        f"contacts, {load.targets:,} targets, {load.rejects:,} rejected"
    )
    reasons = load.rejects_by_reason.items()
    return "\n".join([loaded, *(f"  rejected {n:,} as {reason}" for reason, n in reasons)])


def _plan(plan: PlanSummary) -> str:
    return (
        f"Planned {plan.targets:,} targets: {plan.reused:,} reused, {plan.to_query:,} to query "
        f"in {plan.requests:,} requests"
    )


def _submit(sent: SubmitSummary) -> str:
    text = (
        f"Sent {sent.accepted + sent.failed:,} requests in {sent.seconds:.1f}s "
        f"({sent.rate_per_second:.1f}/s): {sent.accepted:,} accepted, {sent.failed:,} failed"
    )
    if sent.refused:
        text += (
            f"\n  {sent.refused:,} requests by contact_id not sent: the app is in DISPATCH "
            "processing mode, which takes only identified_by queries"
        )
    return text


def _collect(collected: CollectSummary) -> str:
    lines = []
    lag = collected.lag
    if lag.get("p50_seconds") is not None:
        lines.append(
            f"Callbacks: lag from acceptance p50 {lag['p50_seconds']:.2f}s, "
            f"p95 {lag['p95_seconds']:.2f}s; {collected.requeried:,} transient failures re-queried"
        )
    if collected.contacts:
        made = ", ".join(f"{n:,} {state}" for state, n in sorted(collected.contacts.items()))
        lines.append(escape(f"Contacts Sinch had none for ([contacts] create_missing): {made}"))
    correlation = _correlation(collected.matched_by, collected.unmatched)
    if correlation:
        lines.append(correlation)
    if collected.deadline_passed:
        lines.append(
            f"Deadline passed with {collected.outstanding:,} targets unanswered "
            "(reported as NO_RESPONSE)"
        )
    return "\n".join(lines)


# The sentences `run` prints for a step, from the step's summary.
SENTENCES: dict[str, Callable[[Any], str]] = {
    "load": _load,
    "plan": _plan,
    "submit": _submit,
    "collect": _collect,
}


def _reachability(console: Console, run_id: str, by_channel: list[dict[str, Any]]) -> None:
    table = Table(title=f"Run {run_id}: reachability per channel")
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
    missing = not_a_contact_line(by_channel)
    if missing:
        console.print(missing, markup=False)


def _took(console: Console, result: RunResult, steps: Sequence[str]) -> None:
    """The time each step took (the latest time it ran, for a resumed run too)."""
    times = [(s, result.durations[s]) for s in steps if s in result.durations]
    if times:
        each = ", ".join(f"{step} {_duration(seconds, precise=True)}" for step, seconds in times)
        total = (
            f" ({_duration(sum(t for _, t in times), precise=True)} in all)"
            if len(times) > 1
            else ""
        )
        console.print(f"Took:      {each}{total}")


def _correlation(matched: dict[str, int], unmatched: dict[str, int]) -> str:
    """Only when callbacks came without request_id: how they were matched, and what was not."""
    by_identity, by_contact = matched.get("identity", 0), matched.get("contact_id", 0)
    kept = sum(unmatched.values())
    if not (by_identity or by_contact or kept):
        return ""
    return (
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


def _duration(seconds: float, *, precise: bool = False) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s" if precise else f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_publish(published: PublishSummary) -> None:
    """What `capaudit publish` did, and how an analyst sees it."""
    rows = sum(published.rows.values())
    out().print(
        f"Published {', '.join(published.runs)}: {len(published.rows)} tables, {rows:,} rows "
        f"in {published.seconds:.1f}s\nCatalog:   {published.catalog}  (reconnect to see it)"
    )
