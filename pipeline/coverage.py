"""Coverage of a list by fresh answers, for the report (issue 14).

How much of the list the run knows with an answer younger than its TTL, how old the answers it
reports are, and how many nights a full refresh of the list takes at the measured callback rate
(the run's window per night; a day when the run had none).

    coverage_summary(conn, run_id, settings)   # the summary.json key `coverage`
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import duckdb

from pipeline.ledger import ttl_sql
from pipeline.settings import Settings
from pipeline.sinch.models import SINCH_STATUSES, TRANSIENT_REASONS
from pipeline.submit.backlog import configured_callback_rate, run_callback_rate
from pipeline.window import parse_duration

AGE_BUCKETS: tuple[tuple[float, str], ...] = (
    (1, "< 1 day"),
    (3, "1-3 days"),
    (7, "3-7 days"),
    (14, "7-14 days"),
    (30, "14-30 days"),
    (math.inf, "30 days or more"),
)
DAY = 86400.0


def _answers_sql(settings: Settings) -> str:
    statuses = ", ".join(f"'{s}'" for s in SINCH_STATUSES)
    transient = ", ".join(f"'{r}'" for r in sorted(TRANSIENT_REASONS))
    return f"""
    SELECT channel, checked_at,
        status IN ({statuses}) AND coalesce(reason_code, '') NOT IN ({transient})
            AND checked_at >= $now - {ttl_sql(settings.freshness, "channel")} AS fresh
    FROM capability WHERE run_id = $run_id
    """


def _plan_counts(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT json_extract(counts, '$.plan') FROM runs WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    plan = json.loads(row[0]) if row and row[0] else {}
    return plan if isinstance(plan, dict) else {}


def coverage_summary(
    conn: duckdb.DuckDBPyConnection, run_id: str, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """The list's fresh share, the answers' ages, and nights to a full refresh."""
    params = {"run_id": run_id, "now": now or datetime.now(UTC)}
    window = _plan_counts(conn, run_id).get("window") or {}
    deferred = int(window.get("deferred", 0))
    row = conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE fresh) FROM ({_answers_sql(settings)})", params
    ).fetchone()
    targets, fresh = (int(row[0]), int(row[1])) if row else (0, 0)
    listed = targets + deferred + _not_sampled(conn, run_id)
    rate = run_callback_rate(conn, run_id) or float(
        window.get("callback_rate_per_second") or configured_callback_rate(settings)
    )
    night = float(window.get("window_seconds") or 0) or _night_seconds(settings)
    return {
        "list_targets": listed,
        "fresh_targets": fresh,
        "fresh_share": fresh / listed if listed else None,
        "deferred": deferred,
        "ages": _ages(conn, params),
        "callback_rate_per_second": rate,
        "night_seconds": night,
        "refresh_seconds": listed / rate if rate > 0 else None,
        "nights_to_full_refresh": math.ceil(listed / (rate * night)) if rate > 0 else None,
    }


def _not_sampled(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """A sampled run's targets left out of the sample (they are on the list all the same)."""
    row = conn.execute(
        "SELECT coalesce(sum(population - sample), 0) FROM sample_frame WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    return int(row[0]) if row else 0


def _night_seconds(settings: Settings) -> float:
    return parse_duration(settings.plan.window, "[plan] window") if settings.plan.window else DAY


def _ages(conn: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Answers used by the run per age bucket (NO_RESPONSE and REQUEST_FAILED have none)."""
    whens = " ".join(
        f"WHEN age < {limit} THEN {index}" for index, (limit, _) in enumerate(AGE_BUCKETS[:-1])
    )
    rows = conn.execute(
        f"SELECT CASE {whens} ELSE {len(AGE_BUCKETS) - 1} END AS bucket, count(*) FROM ("
        "SELECT (epoch($now) - epoch(checked_at)) / 86400 AS age FROM capability "
        "WHERE run_id = $run_id AND checked_at IS NOT NULL) GROUP BY bucket",
        params,
    ).fetchall()
    counts = {int(bucket): int(n) for bucket, n in rows}
    return [{"age": label, "answers": counts.get(i, 0)} for i, (_, label) in enumerate(AGE_BUCKETS)]
