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

The window's last seconds are kept back (the reserve): their first half for the last callbacks
(later than planned when the expected rate was a little high) and their second half for the
build, the report and publication. Both grow with the window: a rate a few percent off delays
the last callbacks by that share of the window, and what the build and report handle is what
the window asked. So the reserve is RESERVE_SHARE of the window, capped by `[plan]
window_reserve_seconds` (60 s, reached by a 10-minute window: beyond it a minute holds them).
10% is 5% a half: at 100 callbacks/s a 25 s window asks about 2,200 targets, whose build,
report and publication took about 1.2 s (5% of it) on the 2-core test machine, and the rate a
run measured came out up to 3% above the simulator's (deliveries start with a burst).

    spec = WindowSpec.starting_now(6 * 3600, reserve_cap=60)   # reserve: min(60, 10% of 6 h)
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
RESERVE_SHARE = 0.10  # of the window, capped by [plan] window_reserve_seconds (see above)


def reserve_for(seconds: float, cap: float) -> float:
    """The reserve of a window of `seconds`: RESERVE_SHARE of it, at most `cap`."""
    return min(cap, RESERVE_SHARE * seconds)


@dataclass(frozen=True)
class WindowSpec:
    seconds: float
    ends_at: float  # epoch seconds: the run (collecting included) ends by then
    # The window's last seconds, not counted for answering (see the module): collecting stops
    # half-way through it.
    reserve_seconds: float = 60.0
    where: str = "--window"  # where the window was asked for, for messages

    @property
    def collect_until(self) -> float:
        return self.ends_at - self.reserve_seconds / 2

    @classmethod
    def starting_now(
        cls, seconds: float, reserve_cap: float, where: str = "--window"
    ) -> WindowSpec:
        return cls(seconds, time.time() + seconds, reserve_for(seconds, reserve_cap), where)


@dataclass
class WindowPlan:
    window_seconds: float = 0.0
    reserve_seconds: float = 0.0
    asking_seconds: float = 0.0  # what was left of the window for asking when it was fitted
    callback_rate_per_second: float = 0.0
    rate_source: str = ""
    budget_targets: int = 0
    queried_targets: int = 0
    queried_contacts: int = 0
    reused_stale: int = 0
    deferred: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)
    # When nothing fits: the fewest callbacks any contact needing an ask needs (its channels).
    smallest_contact_targets: int = 0

    @property
    def needing(self) -> int:
        """Targets that needed asking: asked, kept with a stale answer, or deferred."""
        return self.queried_targets + self.reused_stale + self.deferred


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


def asking_seconds(spec: WindowSpec, now: float | None = None) -> float:
    """What is left of the window for asking (and answering), the reserve kept back."""
    return max(0.0, spec.ends_at - (time.time() if now is None else now) - spec.reserve_seconds)


def budget(spec: WindowSpec, rate: float, now: float | None = None) -> int:
    """Callbacks (= targets) the rest of the window can take at `rate`."""
    return math.floor(asking_seconds(spec, now) * rate)


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
    asking = asking_seconds(spec, now.timestamp())
    plan = WindowPlan(spec.seconds, spec.reserve_seconds, asking, callback_rate_per_second=rate)
    plan.budget_targets = budget(spec, rate, now.timestamp())
    max_requests = math.floor(asking * query_rate)
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
    if plan.queried_targets == 0:  # only then does the message need it (pipeline/refusal.py)
        row = conn.execute(
            "SELECT min(n) FROM (SELECT count(*) AS n FROM window_targets GROUP BY contact_key)"
        ).fetchone()
        plan.smallest_contact_targets = int(row[0]) if row and row[0] is not None else 0
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
        reserve_seconds=round(spec.reserve_seconds, 1),
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


def window_spec(settings: Settings, given: str | None) -> WindowSpec | None:
    """The run's window, starting now: `given` (--window), else `[plan] window`, else none."""
    text = given or settings.plan.window
    if not text:
        return None
    where = f"--window {text}" if given else f"[plan] window = {text!r}"
    seconds = parse_duration(text, "--window" if given else "[plan] window")
    return WindowSpec.starting_now(seconds, settings.plan.window_reserve_seconds, where)
