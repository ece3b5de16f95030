"""What the commands print for people: the end-of-run summary, the plan, webhook lists.

Nothing here is rich markup: the text holds config keys like `[collect] deadline_seconds`,
which markup would swallow, so the console has markup off and styles are given as `Text`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.audit import STEPS, RunResult
from pipeline.console_estimates import estimates_note, estimates_table
from pipeline.contacts.load import LoadSummary
from pipeline.lake.publish import PublishSummary
from pipeline.ledger import PlanSummary
from pipeline.readable import counted, duration, figure, rate_of
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
    console = Console(highlight=False, soft_wrap=True, markup=False)
    if not console.is_terminal:  # logs and CI: wide enough that tables never truncate
        console = Console(highlight=False, soft_wrap=True, markup=False, width=132)
    return console


def print_run(result: RunResult, by_channel: list[dict[str, Any]]) -> None:
    console = out()
    for step in ("load", "plan", "submit", "collect"):
        _print_step(console, result, step)
    _estimates(console, result)  # what a sampled run is for, before the sample's own counts
    for line in rolling_lines(result):
        console.print(line)
    _reachability(console, result.run_id, by_channel, sampled=bool(result.estimates))
    if result.completeness is not None and not result.completeness.complete:
        console.print(Text.assemble(("INCOMPLETE", "bold red"), f": {result.message}"))
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
        _estimates(console, result)
        sampled = bool(result.estimates)
        _reachability(console, result.run_id, result.channels, sampled=sampled)
    elif step == "collect" and result.collect is not None:
        built = result.statuses.get("NO_RESPONSE", 0) if result.statuses else None
        if text := _collect(result.collect, built):
            console.print(text)
    elif step == "report" and result.report is not None:
        console.print(f"Report:    {result.report.index}\nSummary:   {result.report.summary}")
    elif step in SENTENCES and (summary := getattr(result, step)) is not None:
        text = SENTENCES[step](summary)
        if text:
            console.print(text)


def _load(load: LoadSummary) -> str:
    loaded = (
        f"Loaded {counted(load.rows, 'row')} from {counted(len(load.sources), 'file')}: "
        f"{counted(load.contacts, 'contact')}, {counted(load.targets, 'target')}, "
        f"{load.rejects:,} rejected"
    )
    reasons = load.rejects_by_reason.items()
    return "\n".join([loaded, *(f"  rejected {n:,} as {reason}" for reason, n in reasons)])


def _plan(plan: PlanSummary) -> str:
    return (
        f"Planned {counted(plan.targets, 'target')}: {plan.reused:,} reused, "
        f"{plan.to_query:,} to query in {counted(plan.requests, 'request')}"
    )


def _submit(sent: SubmitSummary) -> str:
    count = sent.accepted + sent.failed
    rate = rate_of(count, sent.seconds, sent.rate_per_second)
    text = (
        f"Sent {counted(count, 'request')} in {duration(sent.seconds)}"
        f"{f' ({rate})' if rate else ''}: {sent.accepted:,} accepted, {sent.failed:,} failed"
    )
    if sent.refused:
        text += (
            f"\n  {counted(sent.refused, 'request')} by contact_id not sent: the app is in "
            "DISPATCH processing mode, which takes only identified_by queries"
        )
    return text


def _collect(collected: CollectSummary, built_no_response: int | None = None) -> str:
    """What collecting did; `built_no_response`: the NO_RESPONSE targets of the build that
    followed it (None when it has not run yet), which answers landing late make fewer than
    those unanswered at the deadline."""
    lines = []
    p50, p95 = collected.lag.get("p50_seconds"), collected.lag.get("p95_seconds")
    if p50 is not None:
        lines.append(
            f"Callbacks: lag from acceptance p50 {duration(p50)}, p95 {duration(p95 or 0.0)}; "
            f"{counted(collected.requeried, 'transient failure')} re-queried"
        )
    if collected.contacts:
        made = ", ".join(f"{n:,} {state}" for state, n in sorted(collected.contacts.items()))
        lines.append(f"Contacts Sinch had none for ([contacts] create_missing): {made}")
    correlation = _correlation(collected.matched_by, collected.unmatched)
    if correlation:
        lines.append(correlation)
    if collected.deadline_passed:
        lines.append(deadline_line(collected.outstanding, built_no_response))
    return "\n".join(lines)


def deadline_line(outstanding: int, built_no_response: int | None) -> str:
    """The deadline's toll, in the words of what the report shows: answers that land between
    the deadline and the build are in the report, so it may count fewer NO_RESPONSE."""
    unanswered = f"{counted(outstanding, 'target')} unanswered at the deadline"
    if built_no_response is None:
        return f"{unanswered}; the build reports those still without an answer as NO_RESPONSE"
    if built_no_response == outstanding:
        return f"{unanswered}, reported as NO_RESPONSE"
    late = "; their answers landed before the build" if built_no_response < outstanding else ""
    return f"{unanswered}; {built_no_response:,} still without an answer in the report{late}"


# The sentences `run` prints for a step, from the step's summary.
SENTENCES: dict[str, Callable[[Any], str]] = {
    "load": _load,
    "plan": _plan,
    "submit": _submit,
    "collect": _collect,
}


def _estimates(console: Console, result: RunResult) -> None:
    table = estimates_table(result.estimates)
    if table is not None:
        console.print(table)
        console.print(estimates_note(result.estimates))


def _reachability(
    console: Console, run_id: str, by_channel: list[dict[str, Any]], *, sampled: bool = False
) -> None:
    what = "the sample's own counts per channel" if sampled else "reachability per channel"
    table = Table(title=f"Run {run_id}: {what}")
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
        console.print(missing)


def _took(console: Console, result: RunResult, steps: Sequence[str]) -> None:
    """The time each step took (the latest time it ran, for a resumed run too)."""
    times = [(s, result.durations[s]) for s in steps if s in result.durations]
    if times:
        each = ", ".join(f"{step} {duration(seconds)}" for step, seconds in times)
        total = f"; {duration(sum(t for _, t in times))} in all" if len(times) > 1 else ""
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
        f"Dry run: nothing was sent. {counted(result.load.rows, 'row')}, "
        f"{result.load.rejects:,} rejected."
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
        f"{counted(plan.targets, 'target')}: {plan.reused:,} reused, {plan.to_query:,} to query "
        f"in {counted(plan.requests, 'request')}.\nEstimated: {duration(est['query_seconds'])} "
        f"to send at the query rate; {duration(est['callback_seconds'])} for the callbacks at "
        f"{figure(est['callback_rate_per_second'])}/s."
    )
    for line in rolling_lines(result):
        console.print(line)
    for warning in result.warnings:  # what the real run would refuse (pipeline/refusal.py)
        console.print(f"Warning: {warning}", markup=False)


def rolling_lines(result: RunResult) -> list[str]:
    """What a window or a sample did (or, in a dry run, would do)."""
    lines = []
    if result.sample is not None:
        s = result.sample
        lines.append(
            f"Sample: {s.sampled_contacts:,} of {s.list_contacts:,} contacts "
            f"({s.sampled_targets:,} of {s.list_targets:,} targets) in "
            f"{counted(len(s.strata), 'stratum', 'strata')} by {s.by}, seed {s.seed}"
        )
    if "sample_half_width" in result.estimate:
        lines.append(
            f"A 95% interval of at most ±{100 * result.estimate['sample_half_width']:.1f} "
            "percentage points (a share near 50%; narrower near 0% or 100%) for each channel's "
            "reachable share."
        )
    window = result.plan.window if result.plan is not None else {}
    if window:
        priorities = ", ".join(
            f"{n:,} {k.replace('_', ' ')}" for k, n in window["by_priority"].items()
        )
        lines.append(
            f"Window {duration(window['window_seconds'])} at "
            f"{figure(window['callback_rate_per_second'])} callbacks/s "
            f"({window['rate_source']}): "
            f"{counted(window['queried_targets'], 'target')} to "
            f"query ({priorities or 'none'}); {window['reused_stale']:,} keep their last answer, "
            f"{window['deferred']:,} never answered wait for a later night"
        )
    if result.plan is not None and result.plan.late_answers:
        lines.append(
            f"{counted(result.plan.late_answers, 'late answer')} (landed after their run ended) "
            "kept"
        )
    return lines


def print_publish(published: PublishSummary) -> None:
    """What `capaudit publish` did, and how an analyst sees it."""
    rows = sum(published.rows.values())
    out().print(
        f"Published {', '.join(published.runs)}: {counted(len(published.rows), 'table')}, "
        f"{counted(rows, 'row')} in {duration(published.seconds)}\n"
        f"Catalog:   {published.catalog}  (reconnect to see it)"
    )
