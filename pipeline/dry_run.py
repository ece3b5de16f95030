"""`capaudit run --dry-run`: load and plan under a throw-away run id, say what the run would
ask and how long it would take, and remove every trace.

A plan the real run would refuse (no target, a window that fits nothing: `refusal.py`) is
printed all the same, with the refusal's message as a warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import duckdb

from pipeline import sampling, steps
from pipeline.refusal import empty_input_problem, idle_window_problem
from pipeline.settings import Settings
from pipeline.submit.backlog import configured_callback_rate, expected_callback_rate
from pipeline.submit.dispatch import SINCH_MAX_RATE
from pipeline.window import window_spec

if TYPE_CHECKING:
    from pipeline.audit import RunOptions, RunResult

log = logging.getLogger(__name__)
DRY_RUN_TABLES = (
    "targets",
    "rejects",
    "requests",
    "late_answers",
    "sample_frame",
    "sample_members",
)


def dry_run(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    options: RunOptions,
    result: RunResult,
    console: bool,
) -> RunResult:
    """Load and plan under a throw-away run id, report the plan, and remove every trace."""
    run_id = f"dry-run-{result.run_id}"
    result.window = window_spec(settings, options.window)  # starts with the run, as a run's
    try:
        paths = options.contacts or None
        result.load = steps.load(conn, run_id, settings, paths, options.limit, console=console)
        if options.sample is not None:
            spec = sampling.SampleSpec(options.sample, options.sample_by, options.sample_seed)
            result.sample = sampling.draw_sample(conn, run_id, spec)
            result.estimate["sample_half_width"] = sampling.widest_half_width(conn, run_id)
        callback_rate, _ = expected_callback_rate(conn, settings, run_id=run_id)
        result.plan = steps.plan(
            conn, run_id, settings, refresh=options.refresh, window=result.window, console=console
        )
    finally:
        for table in DRY_RUN_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE run_id = $r", {"r": run_id})
    _warn(result, settings, run_id)
    callback_seconds = result.plan.to_query / callback_rate
    query_seconds = result.plan.requests / min(settings.dispatch.rate_per_second, SINCH_MAX_RATE)
    if settings.dispatch.pace_to_callbacks:  # sending waits for the callbacks
        query_seconds = max(query_seconds, callback_seconds)
    result.estimate |= {
        "query_seconds": query_seconds,
        "callback_seconds": callback_seconds,
        "callback_rate_per_second": round(callback_rate, 2),
        "configured_callback_rate_per_second": configured_callback_rate(settings),
    }
    result.status = "dry-run"
    return result


def _warn(result: RunResult, settings: Settings, run_id: str) -> None:
    """What the real run would refuse, as warnings (logged, and printed with the plan)."""
    assert result.load is not None
    assert result.plan is not None
    problems = [empty_input_problem(result.load)]
    if result.window is not None:
        cap = settings.plan.window_reserve_seconds
        problems.append(idle_window_problem(result.plan.window, result.window, cap))
    result.warnings = [f"the run would be refused (exit 2): {p}" for p in problems if p]
    for warning in result.warnings:
        log.warning("dry run %s: %s", run_id, warning)
