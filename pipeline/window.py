"""Nightly windows: a run that fits a time budget (`capaudit run --window 6h`, `[plan] window`).

Sinch answers at its callback rate (25/s per app by default, one callback a channel), so a
night answers a known number of targets. After fresh answers are marked for reuse, the plan
asks, contact by contact, in this order until the callbacks the window can take are used up:

1. targets never answered (no earlier run has a Sinch status for them),
2. targets whose answer is past its TTL, oldest answer first,
3. targets whose last answer reported a transient failure.

Every other target keeps its last answer (reused, its age visible in `checked_at`); one that
was never answered and does not fit waits for a later night (it is not in this run's targets,
and `deferred` counts it). Consecutive nights thus roll through the whole list, stalest first.
The expected callback rate is the one measured by the newest earlier run (`runs` column or
step field `callback_rate_per_second`), else `[collect] callback_rate_per_second` (the
embedded simulator's `webhook_rate` when embedded).

    spec = WindowSpec(seconds=6 * 3600, ends_at=time.time() + 6 * 3600, reserve_seconds=60)
    fitted = fit_window(conn, run_id, spec, rate=25.0, query_rate=8.0, now=now)
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from pipeline.errors import UsageError
from pipeline.logs import log_fields
from pipeline.settings import Settings
from pipeline.sinch.models import SINCH_STATUSES, TRANSIENT_REASONS
from pipeline.submit.backlog import expected_callback_rate
from pipeline.warehouse import FIRST_SEEN

log = logging.getLogger(__name__)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
NEVER, STALE, TRANSIENT = 0, 1, 2


@dataclass(frozen=True)
class WindowSpec:
    seconds: float
    ends_at: float  # epoch seconds: the run (collecting included) ends by then
    # The window's last seconds, not counted for answering: their first half is for starting
    # (embedded services) and the last callbacks' delay, the second half for the build and the
    # report. Collecting stops half-way through it.
    reserve_seconds: float = 60.0

    @property
    def collect_until(self) -> float:
        return self.ends_at - self.reserve_seconds / 2

    @classmethod
    def starting_now(cls, seconds: float, reserve_seconds: float) -> WindowSpec:
        return cls(seconds, time.time() + seconds, reserve_seconds)


@dataclass
class WindowPlan:
    window_seconds: float = 0.0
    callback_rate_per_second: float = 0.0
    rate_source: str = ""
    budget_targets: int = 0
    queried_targets: int = 0
    queried_contacts: int = 0
    reused_stale: int = 0
    deferred: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)


def parse_duration(text: str, where: str = "--window") -> float:
    """'6h', '90m', '1h30m', '45s', '2d' or plain seconds -> seconds."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", cleaned):
        seconds = float(cleaned)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", cleaned)
        if not parts or "".join(n + u for n, u in parts) != cleaned:
            raise UsageError(f"{where} {text!r}: not a duration (e.g. 6h, 90m, 1h30m, 3600)")
        seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise UsageError(f"{where} {text!r}: the window must be longer than zero")
    return seconds


# The queried targets of the run with their last earlier answer (same identity), if any.
HISTORY_SQL = f"""
CREATE OR REPLACE TEMP TABLE window_targets AS
WITH answers AS (
    SELECT run_id, contact_key, channel, identity, reason_code, checked_at FROM capability
    WHERE run_id <> $run_id AND status IN {tuple(SINCH_STATUSES)} AND checked_at IS NOT NULL
    UNION ALL
    SELECT origin_run_id, contact_key, channel, identity, reason_code, checked_at
    FROM late_answers WHERE run_id = $run_id
),
last AS (
    SELECT a.contact_key, a.channel, a.identity, arg_max(a.run_id, a.checked_at) AS run_id,
        max(a.checked_at) AS checked_at,
        arg_max(coalesce(a.reason_code, ''), a.checked_at) IN {tuple(sorted(TRANSIENT_REASONS))}
            AS transient
    FROM answers a
    SEMI JOIN (SELECT contact_key FROM targets WHERE run_id = $run_id AND action = 'query') q
        USING (contact_key)
    GROUP BY ALL
)
SELECT t.contact_key, t.channel, t.file_index, t.row_number, l.run_id AS last_run_id, l.checked_at,
    CASE WHEN l.run_id IS NULL THEN {NEVER} WHEN l.transient THEN {TRANSIENT} ELSE {STALE} END
        AS priority
FROM targets t
LEFT JOIN last l ON l.contact_key = t.contact_key AND l.channel = t.channel
    AND l.identity IS NOT DISTINCT FROM t.identity
WHERE t.run_id = $run_id AND t.action = 'query'
"""

# Contacts in the order the window asks them, with the callbacks each needs.
PICK_SQL = f"""
CREATE OR REPLACE TEMP TABLE window_picked AS
SELECT contact_key FROM (
    SELECT contact_key, sum(targets) OVER (ORDER BY priority, oldest NULLS FIRST, first_seen,
            contact_key ROWS UNBOUNDED PRECEDING) AS callbacks,
        row_number() OVER (ORDER BY priority, oldest NULLS FIRST, first_seen,
            contact_key) AS requests
    FROM (
        SELECT contact_key, min(priority) AS priority,
            min(checked_at) FILTER (WHERE priority = {STALE}) AS oldest,
            {FIRST_SEEN} AS first_seen, count(*) AS targets
        FROM window_targets GROUP BY contact_key
    )
)
WHERE callbacks <= $budget AND requests <= $max_requests
"""


def budget(spec: WindowSpec, rate: float, now: float | None = None) -> int:
    """Callbacks (= targets) the rest of the window can take at `rate`."""
    left = spec.ends_at - (time.time() if now is None else now) - spec.reserve_seconds
    return max(0, math.floor(left * rate))


def fit_window(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    spec: WindowSpec,
    *,
    rate: float,
    query_rate: float,
    now: datetime,
) -> WindowPlan:
    """Keep as `query` what the window can answer; reuse or defer the rest (see the module)."""
    params = {"run_id": run_id}
    plan = WindowPlan(window_seconds=spec.seconds, callback_rate_per_second=rate)
    plan.budget_targets = budget(spec, rate, now.timestamp())
    max_requests = max(0, math.floor((spec.ends_at - now.timestamp()) * query_rate))
    conn.execute(HISTORY_SQL, params)
    conn.execute(PICK_SQL, {"budget": plan.budget_targets, "max_requests": max_requests})
    priorities = conn.execute(
        "SELECT priority, count(*) FROM window_targets SEMI JOIN window_picked USING "
        "(contact_key) GROUP BY priority"
    ).fetchall()
    names = {NEVER: "never_answered", STALE: "past_ttl", TRANSIENT: "transient"}
    plan.by_priority = {names[int(p)]: int(n) for p, n in priorities}
    plan.queried_targets = sum(plan.by_priority.values())
    plan.reused_stale, plan.deferred = _reuse_or_defer(conn, run_id)
    row = conn.execute("SELECT count(*) FROM window_picked").fetchone()
    plan.queried_contacts = int(row[0]) if row else 0
    conn.execute("DROP TABLE IF EXISTS window_targets")
    conn.execute("DROP TABLE IF EXISTS window_picked")
    return plan


def _reuse_or_defer(conn: duckdb.DuckDBPyConnection, run_id: str) -> tuple[int, int]:
    """Targets that do not fit: reuse their last answer, or (never answered) defer them."""
    params = {"run_id": run_id}
    conn.execute(
        """
        UPDATE targets t SET reuse_run_id = w.last_run_id
        FROM window_targets w
        WHERE t.run_id = $run_id AND t.contact_key = w.contact_key AND t.channel = w.channel
          AND w.last_run_id IS NOT NULL
          AND w.contact_key NOT IN (SELECT contact_key FROM window_picked)
        """,
        params,
    )
    reused = conn.execute(
        "SELECT count(*) FROM window_targets WHERE last_run_id IS NOT NULL "
        "AND contact_key NOT IN (SELECT contact_key FROM window_picked)"
    ).fetchone()
    deferred = conn.execute(
        "SELECT count(*) FROM window_targets WHERE last_run_id IS NULL "
        "AND contact_key NOT IN (SELECT contact_key FROM window_picked)"
    ).fetchone()
    conn.execute(
        """
        DELETE FROM targets t USING window_targets w
        WHERE t.run_id = $run_id AND t.contact_key = w.contact_key AND t.channel = w.channel
          AND w.last_run_id IS NULL
          AND w.contact_key NOT IN (SELECT contact_key FROM window_picked)
        """,
        params,
    )
    return (int(reused[0]) if reused else 0), (int(deferred[0]) if deferred else 0)


def fit_window_to_rate(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    spec: WindowSpec,
    *,
    now: datetime,
) -> WindowPlan:
    """fit_window at the expected callback rate; logs what the night will and will not ask."""
    rate, source = expected_callback_rate(conn, settings, run_id=run_id)
    plan = fit_window(
        conn, run_id, spec, rate=rate, query_rate=settings.dispatch.rate_per_second, now=now
    )
    plan.rate_source = source
    log_fields(
        log,
        "window fitted",
        window_seconds=spec.seconds,
        callback_rate=rate,
        rate_source=source,
        budget=plan.budget_targets,
        query=plan.queried_targets,
        reused_stale=plan.reused_stale,
        deferred=plan.deferred,
    )
    return plan


def collect_deadline(spec: WindowSpec, last_acceptance: float, configured: float) -> float:
    """Seconds after the last accepted request collect may wait: until the first half of the
    reserve at most, leaving the second half for building and writing the report."""
    return max(0.0, min(configured, spec.collect_until - last_acceptance))
