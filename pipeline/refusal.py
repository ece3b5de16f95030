"""Runs that can do nothing are refused, never reported as a success (DESIGN §7 rule 10).

Two runs look fine on the surface and did nothing: one whose input gave no target (every row
rejected, or an empty list: a broken upstream export), and one whose window fits none of the
targets that need asking (the reserve or the time already gone leaves no room at the expected
callback rate). Each ends with `NothingToAsk`: exit 2 (bad usage or input, the message says
what and where), `runs.status = 'refused'`, nothing published, so the analysts' newest run
stays the last one that did its work. A dry run prints the same message as a warning.

    refuse(empty_input_problem(load), run_id)   # raises NothingToAsk if there is one
"""

from __future__ import annotations

import math
from typing import Any

from pipeline.contacts.load import LoadSummary
from pipeline.errors import NothingToAsk, UsageError
from pipeline.window import RESERVE_SHARE, WindowPlan, WindowSpec


def refuse(problem: str | None, run_id: str) -> None:
    """Raise NothingToAsk with `problem`, if there is one."""
    if problem:
        raise NothingToAsk(f"run {run_id} refused (exit 2, not published): {problem}")


def empty_input_problem(load: LoadSummary) -> str | None:
    """Why the input gave no target at all, or None when it gave some."""
    if load.targets > 0:
        return None
    files = ", ".join(load.sources) or "the contact list"  # a file without rows never loads
    reasons = ", ".join(f"{n:,} {r}" for r, n in sorted(load.rejects_by_reason.items()))
    return (
        f"nothing to audit: {files} gave no target: {load.rows:,} rows, {load.rejects:,} "
        f"rejected ({reasons or 'none'}). Fix the file, or map its columns "
        "in [contacts] (docs/contacts.md); the rejected rows and their reasons are in the "
        "working state's rejects table"
    )


def idle_window_problem(window: dict[str, Any], spec: WindowSpec, cap: float) -> str | None:
    """Why the window asks nothing while targets need asking, or None. `window`: the plan's
    `window` (a WindowPlan as a dict), `cap`: `[plan] window_reserve_seconds`."""
    if not window:
        return None
    plan = WindowPlan(**window)
    if plan.queried_targets > 0 or plan.needing == 0:
        return None
    rate, smallest = plan.callback_rate_per_second, max(1, plan.smallest_contact_targets)
    gone = max(0.0, spec.seconds - spec.reserve_seconds - plan.asking_seconds)
    capped = spec.reserve_seconds >= cap and cap < RESERVE_SHARE * spec.seconds
    kept = (
        f"[plan] window_reserve_seconds = {cap:g}"
        if capped
        else f"{RESERVE_SHARE:.0%} of the window, at most [plan] window_reserve_seconds"
    )
    fix = f"a window of at least {_window_needed(smallest / rate + gone, cap):,} s"
    if capped and smallest / rate <= plan.asking_seconds + spec.reserve_seconds:
        fix += " or a lower [plan] window_reserve_seconds"
    return (
        f"{spec.where} fits nothing: {plan.needing:,} targets need asking, but at {rate:g} "
        f"callbacks/s ({plan.rate_source or 'expected'}) what is left of the window has room "
        f"for {_callbacks(plan.budget_targets)}, and the smallest contact needs "
        f"{_callbacks(smallest)} (one a channel). Of the {spec.seconds:g} s window, "
        f"{spec.reserve_seconds:.1f} s are kept for the last callbacks, the build and the "
        f"report ({kept}) and {gone:.1f} s had passed before the plan (loading, starting "
        f"embedded services), leaving {plan.asking_seconds:.1f} s for asking. Give {fix}, "
        "or raise the callback rate (the app's webhook rate; expected: [collect] "
        "callback_rate_per_second, or what the last run measured)"
    )


def _callbacks(count: int) -> str:
    return f"{count:,} callback" + ("" if count == 1 else "s")


def _window_needed(asking: float, cap: float) -> int:
    """Whole seconds of the shortest window that leaves `asking` seconds after its reserve."""
    proportional = asking / (1 - RESERVE_SHARE)
    if RESERVE_SHARE * proportional <= cap:
        return math.ceil(proportional)
    return math.ceil(asking + cap)


def check_resumable(run_id: str, status: str | None) -> None:
    """A refused run is not continued: what refused it (the input, the options, the window)
    must change, and that is a new run; its targets may be gone (deferred by the window)."""
    if status == NothingToAsk.run_status:
        raise UsageError(
            f"run {run_id} was refused (exit 2; runs.error says why) and cannot be resumed: "
            "fix the cause and start a new run id"
        )
