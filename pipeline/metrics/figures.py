"""The figures a run's metrics carry: how this invocation ended, and what the working state
recorded about the run (step times, targets, shares) and about earlier successes."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from pipeline import runs
from pipeline.completeness import completeness


@dataclass(frozen=True)
class Recorded:
    """What the working state says about one run."""

    steps: dict[str, float] = field(default_factory=dict)
    targets: int | None = None
    unanswered_ratio: float | None = None
    reachable: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFigures:
    run_id: str
    status: str  # as `runs.status`, or "failed" for a run refused before it was recorded
    exit_code: int
    started: float  # Unix seconds of this `capaudit run`
    finished: float
    last_success: float = 0.0  # Unix seconds; 0.0: no success known
    recorded: Recorded = field(default_factory=Recorded)


def state_figures(conn: duckdb.DuckDBPyConnection, run_id: str) -> Recorded:
    """The run's step times, and its targets and shares once it got to them."""
    steps = {name: float(seconds) for name, seconds in runs.step_durations(conn, run_id).items()}
    targets = unanswered = None
    if runs.step_done(conn, run_id, "load"):
        targets = _count(conn, "SELECT count(*) FROM targets WHERE run_id = $r", run_id)
    if runs.step_done(conn, run_id, "build"):
        unanswered = completeness(conn, run_id).share
    return Recorded(steps, targets, unanswered, _reachable(conn, run_id))


def newest_success(conn: duckdb.DuckDBPyConnection) -> float:
    """When the newest succeeded run of this state ended (Unix seconds; 0.0: none)."""
    row = conn.execute(
        "SELECT epoch(max(finished_at)) FROM runs WHERE status = 'succeeded'"
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


def _reachable(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float]:
    rows = conn.execute(
        "SELECT channel, reachable_share FROM reachability "
        "WHERE run_id = $r AND reachable_share IS NOT NULL ORDER BY channel",
        {"r": run_id},
    ).fetchall()
    return {str(channel): float(share) for channel, share in rows}


def _count(conn: duckdb.DuckDBPyConnection, sql: str, run_id: str) -> int:
    row = conn.execute(sql, {"r": run_id}).fetchone()
    return int(row[0]) if row else 0
