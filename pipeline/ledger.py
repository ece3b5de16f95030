"""The requests ledger (an outbox); the run records are in `runs.py`.

Planning writes every request, with its client-chosen `request_id` and the exact body, before
anything is sent (DESIGN §7 rule 4). Sending appends outcomes to `request_events` (cheap,
append-only, committed in small batches); `fold_events` writes the latest outcome of each request
into `requests`. A resumed run sends exactly the requests that are still `planned` after the
fold: accepted ones are never re-sent, planned ones never forgotten, and one that was in flight
at a crash is re-sent with the same `request_id` (Sinch does not de-duplicate; the landing
merge absorbs the repeated callbacks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from pipeline.db import sql_literal
from pipeline.settings import FreshnessSettings
from pipeline.sinch.models import SINCH_STATUSES, TRANSIENT_REASONS

PLANNED, ACCEPTED, FAILED = "planned", "accepted", "failed"
PAGE = 5_000
EVENT_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("request_id", pa.string()),
        ("state", pa.string()),
        ("attempts", pa.int32()),
        ("http_status", pa.int32()),
        ("error", pa.string()),
        ("sent_at", pa.timestamp("us", tz="UTC")),
        ("accepted_at", pa.timestamp("us", tz="UTC")),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("error_details", pa.string()),  # Sinch's error `details`, as JSON
        ("failure_reason", pa.string()),  # CONTACT_NOT_FOUND, DISPATCH_MODE (sinch/models.py)
    ]
)


@dataclass(frozen=True)
class PendingRequest:
    request_id: str
    body: bytes
    channels: tuple[str, ...] = ()  # the channels it asks for: one callback each


@dataclass
class RequestEvent:
    request_id: str
    state: str
    attempts: int
    http_status: int | None = None
    error: str | None = None
    sent_at: datetime | None = None
    accepted_at: datetime | None = None
    error_details: str | None = None
    failure_reason: str | None = None


@dataclass
class PlanSummary:
    targets: int = 0
    reused: int = 0
    to_query: int = 0
    requests: int = 0
    new_requests: int = 0
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    late_answers: int = 0  # answers that landed after their run's deadline, kept for reuse
    window: dict[str, Any] = field(default_factory=dict)  # what a nightly window fitted


def ttl_sql(freshness: FreshnessSettings, channel: str) -> str:
    """SQL for the freshness TTL (an INTERVAL) of the channel named by the `channel` column."""
    ttl = f"INTERVAL ({freshness.ttl_days * 86400}) SECOND"
    if freshness.channels:
        overrides = " ".join(
            f"WHEN {sql_literal(name)} THEN INTERVAL ({float(days) * 86400}) SECOND"
            for name, days in freshness.channels.items()
        )
        ttl = f"CASE {channel} {overrides} ELSE {ttl} END"
    return ttl


def mark_reuse(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    freshness: FreshnessSettings,
    *,
    refresh: bool,
    now: datetime,
) -> None:
    """Mark targets whose last real answer is younger than the TTL: reused, not re-queried.

    Only Sinch's own statuses count as answers; an answer that reported a transient failure, a
    NO_RESPONSE or a REQUEST_FAILED is always asked again.
    """
    params = {"run_id": run_id}
    conn.execute(
        "UPDATE targets SET reuse_run_id = NULL WHERE run_id = $run_id "
        "AND reuse_run_id IS NOT NULL",
        params,
    )
    if refresh:
        return
    ttl = ttl_sql(freshness, "c.channel")
    conn.execute(
        f"""
        UPDATE targets t SET reuse_run_id = fresh.run_id
        FROM (
            SELECT c.contact_key, c.channel, c.identity, arg_max(c.run_id, c.checked_at) AS run_id
            FROM (
                SELECT run_id, contact_key, channel, identity, status, reason_code, checked_at
                FROM capability WHERE run_id <> $run_id
                UNION ALL  -- answers that landed after their run's deadline (pipeline/late.py)
                SELECT origin_run_id, contact_key, channel, identity, status, reason_code,
                    checked_at
                FROM late_answers WHERE run_id = $run_id
            ) c
            WHERE c.status IN {sql_literal(tuple(SINCH_STATUSES))}
              AND coalesce(c.reason_code, '') NOT IN {sql_literal(tuple(sorted(TRANSIENT_REASONS)))}
              AND c.checked_at >= $now - {ttl}
            GROUP BY ALL
        ) fresh
        WHERE t.run_id = $run_id AND t.contact_key = fresh.contact_key
          AND t.channel = fresh.channel AND t.identity IS NOT DISTINCT FROM fresh.identity
        """,
        params | {"now": now},
    )


# One request per contact and kind of recipient (reference §1): its identities, and, for
# channels it has no identity for, its contact_id.
INSERT_REQUESTS = """
INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, planned_at,
    requery_of)
SELECT $run_id, request_id, contact_key,
    json_object('app_id', $app_id, 'recipient', recipient, 'request_id', request_id),
    channels, 'planned', $now, requery_of
FROM (
    SELECT contact_key, uuidv7()::VARCHAR AS request_id, any_value(requery_of) AS requery_of,
        CASE WHEN count(identity) > 0 THEN json_object('identified_by', json_object(
            'channel_identities', to_json(list({'channel': channel, 'identity': identity}
                ORDER BY channel) FILTER (WHERE identity IS NOT NULL))))
        ELSE json_object('contact_id', any_value(contact_id)) END AS recipient,
        list(channel ORDER BY channel) AS channels
    FROM (ASKED)
    GROUP BY contact_key, identity IS NULL
)
"""

# Targets to query that have no request yet.
FIRST_ASKS = """
SELECT contact_key, contact_id, channel, identity, NULL::VARCHAR AS requery_of
FROM targets t
WHERE run_id = $run_id AND action = 'query' AND NOT EXISTS (
    SELECT 1 FROM requests r WHERE r.run_id = $run_id AND r.contact_key = t.contact_key)
"""

# Targets whose first answer reported a transient failure and that were not re-asked yet.
TRANSIENT_ASKS = f"""
SELECT t.contact_key, t.contact_id, t.channel, t.identity, r.request_id AS requery_of
FROM targets t
JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key AND r.requery_of IS NULL
JOIN notifications n ON n.request_id = r.request_id AND n.channel IN (t.channel, '')
WHERE t.run_id = $run_id AND t.action = 'query'
  AND n.reason_code IN {sql_literal(tuple(sorted(TRANSIENT_REASONS)))}
  AND NOT EXISTS (SELECT 1 FROM requests q WHERE q.run_id = $run_id AND q.requery_of = r.request_id)
"""


def insert_requests(
    conn: duckdb.DuckDBPyConnection, asked: str, run_id: str, app_id: str, now: datetime
) -> int:
    """Plan one request per contact (and kind of recipient) for the targets `asked` (a query
    with the columns of FIRST_ASKS); returns how many were planned."""
    count_sql = "SELECT count(*) FROM requests WHERE run_id = $run_id"
    before = _count(conn, count_sql, {"run_id": run_id})
    conn.execute(
        INSERT_REQUESTS.replace("ASKED", asked),
        {"run_id": run_id, "app_id": app_id, "now": now},
    )
    return _count(conn, count_sql, {"run_id": run_id}) - before


def plan_requests(
    conn: duckdb.DuckDBPyConnection, run_id: str, app_id: str, *, now: datetime
) -> int:
    """One request per contact with targets to query and no request yet; returns how many."""
    return insert_requests(conn, FIRST_ASKS, run_id, app_id, now)


def plan_requeries(
    conn: duckdb.DuckDBPyConnection, run_id: str, app_id: str, *, now: datetime
) -> int:
    """Ask once more, within the run, for channels whose answer reported a transient failure
    (RATE_LIMITED, INTERNAL_ERROR, CHANNEL_FAILURE); a re-query is never re-queried."""
    return insert_requests(conn, TRANSIENT_ASKS, run_id, app_id, now)


def accept_answered(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Mark planned requests that already have callbacks as accepted (a crash came between
    Sinch accepting them and the ledger hearing of it): they must not be sent again."""
    row = conn.execute(
        """
        INSERT INTO request_events
        SELECT r.run_id, r.request_id, 'accepted', greatest(r.attempts, 1), 200,
            NULL, NULL, min(n.received_at), now(), NULL, NULL
        FROM requests r JOIN notifications n ON n.request_id = r.request_id
        WHERE r.run_id = $run_id AND r.state = 'planned'
        GROUP BY ALL
        """,
        {"run_id": run_id},
    ).fetchone()
    return int(row[0]) if row else 0


def callback_lag(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float | None]:
    """Seconds from acceptance to callback (p50, p95), the callback arrival rate and the rate
    queries were accepted at (every accepted query of the run: it runs after the deadline, and
    counting the distinct answered ones cost 1.3 s of 2 at 10M callbacks)."""
    row = conn.execute(
        """
        WITH accepted AS (
            SELECT request_id, accepted_at FROM requests
            WHERE run_id = $run_id AND state = 'accepted'
        )
        SELECT lags[1], lags[2], callbacks, span,
            (SELECT count(*) FROM accepted),
            (SELECT epoch(max(accepted_at)) - epoch(min(accepted_at)) FROM accepted)
        FROM (
            SELECT quantile_cont(epoch(n.received_at) - epoch(r.accepted_at), [0.5, 0.95]) AS lags,
                count(*) AS callbacks, epoch(max(n.received_at)) - epoch(min(n.received_at)) AS span
            FROM accepted r JOIN notifications n ON n.request_id = r.request_id
        )
        """,
        {"run_id": run_id},
    ).fetchone()
    if not row or not row[2]:
        return {
            "callbacks": 0,
            "p50_seconds": None,
            "p95_seconds": None,
            "callbacks_per_second": None,
            "queries_per_second": None,
        }
    callbacks, span, requests, sending = int(row[2]), row[3] or 0.0, int(row[4]), row[5] or 0.0
    return {
        "callbacks": callbacks,
        "p50_seconds": round(float(row[0]), 3),
        "p95_seconds": round(float(row[1]), 3),
        "callbacks_per_second": round(callbacks / span, 1) if span > 0 else None,
        "queries_per_second": round(requests / sending, 1) if sending > 0 else None,
    }


def plan_summary(conn: duckdb.DuckDBPyConnection, run_id: str) -> PlanSummary:
    params = {"run_id": run_id}
    summary = PlanSummary()
    rows = conn.execute(
        "SELECT channel, action, count(*) FROM targets WHERE run_id = $run_id GROUP BY ALL", params
    ).fetchall()
    for channel, action, count in rows:
        summary.by_channel.setdefault(channel, {"query": 0, "reuse": 0})[action] = int(count)
        summary.targets += int(count)
        if action == "reuse":
            summary.reused += int(count)
        else:
            summary.to_query += int(count)
    summary.requests = _count(
        conn, "SELECT count(*) FROM requests WHERE run_id = $run_id AND requery_of IS NULL", params
    )
    return summary


def pending_page(conn: duckdb.DuckDBPyConnection, run_id: str, after: str) -> list[PendingRequest]:
    """The next page of the run's requests still to send, in request_id order."""
    rows = conn.execute(
        "SELECT request_id, body, channels FROM requests WHERE run_id = $run_id "
        "AND state = 'planned' "
        "AND request_id > $after ORDER BY request_id LIMIT $page",
        {"run_id": run_id, "after": after, "page": PAGE},
    ).fetchall()
    return [
        PendingRequest(request_id, body.encode(), tuple(channels))
        for request_id, body, channels in rows
    ]


async def pending_requests(
    conn: duckdb.DuckDBPyConnection, run_id: str
) -> AsyncIterator[PendingRequest]:
    """The run's requests still to send, never all in memory. The next page is read in a worker
    thread (with its own cursor) while this one is sent, so the event loop, and with it the
    pacing, never waits for the database."""
    cursor = conn.cursor()
    try:
        page = await asyncio.to_thread(pending_page, cursor, run_id, "")
        while page:
            following = asyncio.create_task(
                asyncio.to_thread(pending_page, cursor, run_id, page[-1].request_id)
            )
            for request in page:
                yield request
            page = await following
    finally:
        cursor.close()


def record_events(
    conn: duckdb.DuckDBPyConnection, run_id: str, events: Sequence[RequestEvent]
) -> None:
    """Append outcomes in one commit (called in batches while sending)."""
    if not events:
        return
    recorded = datetime.now(UTC)
    table = pa.Table.from_pylist(
        [
            {
                "run_id": run_id,
                "request_id": e.request_id,
                "state": e.state,
                "attempts": e.attempts,
                "http_status": e.http_status,
                "error": e.error,
                "sent_at": e.sent_at,
                "accepted_at": e.accepted_at,
                "recorded_at": recorded,
                "error_details": e.error_details,
                "failure_reason": e.failure_reason,
            }
            for e in events
        ],
        schema=EVENT_SCHEMA,
    )
    conn.register("new_events", table)
    try:
        conn.execute("INSERT INTO request_events SELECT * FROM new_events")
    finally:
        conn.unregister("new_events")


def fold_events(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Write each request's latest outcome into `requests` (idempotent)."""
    conn.execute(
        """
        UPDATE requests r SET state = e.state, attempts = e.attempts,
            http_status = e.http_status, error = e.error, error_details = e.error_details,
            failure_reason = e.failure_reason, sent_at = coalesce(e.sent_at, r.sent_at),
            accepted_at = e.accepted_at
        FROM (
            SELECT request_id, arg_max(COLUMNS(* EXCLUDE (run_id, request_id, recorded_at)),
                recorded_at)
            FROM request_events WHERE run_id = $run_id GROUP BY request_id
        ) e
        WHERE r.run_id = $run_id AND r.request_id = e.request_id
        """,
        {"run_id": run_id},
    )


def request_counts(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT state, count(*) FROM requests WHERE run_id = $run_id GROUP BY state",
        {"run_id": run_id},
    ).fetchall()
    return {str(state): int(count) for state, count in rows}


def _count(conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> int:
    row = conn.execute(sql, params).fetchone()
    return int(row[0]) if row else 0


# -- run records --------------------------------------------------------------------------------


def has_requests(conn: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """Whether the run was planned (it has requests in the ledger)."""
    return (
        _count(conn, "SELECT count(*) FROM requests WHERE run_id = $run_id", {"run_id": run_id}) > 0
    )
