"""Coverage of a list by fresh answers, for the report (issue 14).

How much of the list the run knows with an answer younger than its TTL, how old the answers it
reports are, and how many nights a full refresh of the list takes at the measured callback rate
(the run's window per night; a day when the run had none).

Every target of the list is counted once: as an answer (one of Sinch's statuses, not a
transient failure) in its age bucket (`ages`), or in `without_answer` with the reason it has
none. The two add up to `list_targets`, so the report's text and its chart cannot disagree.

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
from pipeline.sinch.models import (
    NO_RESPONSE,
    NOT_A_CONTACT,
    REQUEST_FAILED,
    SINCH_STATUSES,
    TRANSIENT_REASONS,
)
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


# Why a target of the list has no answer that counts (`without_answer`), in the report's words.
TRANSIENT, NOT_SAMPLED, DEFERRED = "transient failure", "not in the sample", "deferred"
WITHOUT_ANSWER = {
    NO_RESPONSE: "no response",
    REQUEST_FAILED: "request failed",
    NOT_A_CONTACT: "not a Sinch contact",
}


def _tally_sql(settings: Settings) -> str:
    """The run's capability rows counted by why they are no answer (`missing`, NULL for an
    answer) and, for answers, their age bucket; with how many are younger than their TTL."""
    statuses = ", ".join(f"'{s}'" for s in SINCH_STATUSES)
    transient = ", ".join(f"'{r}'" for r in sorted(TRANSIENT_REASONS))
    missing = " ".join(f"WHEN '{s}' THEN '{why}'" for s, why in WITHOUT_ANSWER.items())
    buckets = " ".join(
        f"WHEN age < {limit} THEN {index}" for index, (limit, _) in enumerate(AGE_BUCKETS[:-1])
    )
    return f"""
    WITH rows AS (
        SELECT CASE
                WHEN status IN ({statuses}) AND coalesce(reason_code, '') IN ({transient})
                    THEN '{TRANSIENT}'
                WHEN status IN ({statuses}) THEN NULL
                ELSE CASE status {missing} ELSE status END
            END AS missing,
            (epoch($now) - epoch(checked_at)) / 86400 AS age,
            checked_at >= $now - {ttl_sql(settings.freshness, "channel")} AS young
        FROM capability WHERE run_id = $run_id
    )
    SELECT missing,
        CASE WHEN missing IS NULL THEN CASE {buckets} ELSE {len(AGE_BUCKETS) - 1} END END,
        count(*), count(*) FILTER (WHERE missing IS NULL AND young)
    FROM rows GROUP BY ALL
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
    targets, fresh, ages, without = _tally(conn, settings, params)
    not_sampled = _not_sampled(conn, run_id)
    without += [{"reason": NOT_SAMPLED, "targets": not_sampled}] if not_sampled else []
    without += [{"reason": DEFERRED, "targets": deferred}] if deferred else []
    listed = targets + deferred + not_sampled
    rate = run_callback_rate(conn, run_id) or float(
        window.get("callback_rate_per_second") or configured_callback_rate(settings)
    )
    night = float(window.get("window_seconds") or 0) or _night_seconds(settings)
    return {
        "list_targets": listed,
        "fresh_targets": fresh,
        "fresh_share": fresh / listed if listed else None,
        "deferred": deferred,
        "ages": ages,
        "without_answer": without,
        "callback_rate_per_second": rate,
        "night_seconds": night,
        "refresh_seconds": listed / rate if rate > 0 else None,
        "nights_to_full_refresh": math.ceil(listed / (rate * night)) if rate > 0 else None,
    }


def _tally(
    conn: duckdb.DuckDBPyConnection, settings: Settings, params: dict[str, Any]
) -> tuple[int, int, list[dict[str, Any]], list[dict[str, Any]]]:
    """(targets, fresh answers, `ages`, `without_answer` of the run's own targets)."""
    tally = conn.execute(_tally_sql(settings), params).fetchall()
    by_bucket = {int(r[1]): int(r[2]) for r in tally if r[0] is None}
    ages = [
        {"age": label, "answers": by_bucket.get(i, 0)} for i, (_, label) in enumerate(AGE_BUCKETS)
    ]
    missing = sorted(
        ((int(r[2]), str(r[0])) for r in tally if r[0] is not None), key=lambda m: (-m[0], m[1])
    )
    without = [{"reason": why, "targets": n} for n, why in missing]
    return sum(int(r[2]) for r in tally), sum(int(r[3]) for r in tally), ages, without


def _not_sampled(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """A sampled run's targets left out of the sample (they are on the list all the same)."""
    row = conn.execute(
        "SELECT coalesce(sum(population - sample), 0) FROM sample_frame WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    return int(row[0]) if row else 0


def _night_seconds(settings: Settings) -> float:
    return parse_duration(settings.plan.window, "[plan] window") if settings.plan.window else DAY
