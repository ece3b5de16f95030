"""Late answers: callbacks that landed after their own run's deadline (issue 14).

The production receiver keeps running after the nightly job ends, so Sinch's backlog lands
anyway. The next run's plan ingests it and keeps, per contact and channel, the newest such
answer whose run had reported the target as NO_RESPONSE and which no successful run has kept
yet. Planning treats it like any earlier answer with its own time (reused while younger than
the TTL, not queried again), the `capability` model reports it as reused, and the run that
asked is never rewritten.

    late = keep_late_answers(conn, run_id, settings, now=now)   # before ledger.mark_reuse
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from pipeline.landing.ingest import ingest_landing
from pipeline.landing.place import configured_landing
from pipeline.settings import Settings
from pipeline.sinch.models import SINCH_STATUSES, TRANSIENT_REASONS

KEEP_LATE_ANSWERS = """
INSERT INTO late_answers
SELECT $run_id, r.run_id, r.contact_key, n.channel, nullif(n.identity, ''),
    n.capability_status, n.reason_code, n.channel_capabilities, n.request_id,
    coalesce(n.event_time, n.received_at) AS checked_at
FROM notifications n
JOIN requests r ON r.request_id = n.request_id AND r.run_id <> $run_id
WHERE n.channel <> '' AND n.capability_status IN STATUSES
  AND coalesce(n.reason_code, '') NOT IN TRANSIENT
  AND coalesce(n.event_time, n.received_at) >= $oldest
  -- its run had no answer for the target when it was built ...
  AND EXISTS (SELECT 1 FROM capability o WHERE o.run_id = r.run_id
      AND o.contact_key = r.contact_key AND o.channel = n.channel AND o.status = 'NO_RESPONSE')
  -- ... and no later run kept it already (the small late_answers, not all of capability)
  AND NOT EXISTS (SELECT 1 FROM late_answers l JOIN runs u ON u.run_id = l.run_id
      WHERE l.run_id <> $run_id AND u.status = 'succeeded'
        AND l.request_id = n.request_id AND l.channel = n.channel)
QUALIFY row_number() OVER (PARTITION BY r.contact_key, n.channel
    ORDER BY checked_at DESC, n.request_id DESC) = 1
"""


def _in_list(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join("'" + v + "'" for v in values) + ")"


def keep_late_answers(
    conn: duckdb.DuckDBPyConnection, run_id: str, settings: Settings, *, now: datetime
) -> int:
    """Ingest what landed, then record the late answers this run may reuse; returns how many."""
    ingest_landing(conn, configured_landing(settings))
    freshness = settings.freshness
    longest_ttl = max([freshness.ttl_days, *freshness.channels.values()])
    conn.execute("DELETE FROM late_answers WHERE run_id = $run_id", {"run_id": run_id})
    sql = KEEP_LATE_ANSWERS.replace("STATUSES", _in_list(SINCH_STATUSES)).replace(
        "TRANSIENT", _in_list(sorted(TRANSIENT_REASONS))
    )
    conn.execute(sql, {"run_id": run_id, "oldest": _days_before(now, longest_ttl)})
    return late_answers_kept(conn, run_id)


def _days_before(now: datetime, days: float) -> datetime:
    return now - timedelta(days=days)


def late_answers_kept(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM late_answers WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    return int(row[0]) if row else 0


def late_answers_used(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """How many of the run's capability rows carry a late answer (the report counts them)."""
    row = conn.execute(
        """
        SELECT count(*) FROM capability c
        JOIN late_answers l ON l.run_id = c.run_id AND l.contact_key = c.contact_key
            AND l.channel = c.channel AND l.request_id = c.request_id
        WHERE c.run_id = $run_id AND c.reused
        """,
        {"run_id": run_id},
    ).fetchone()
    return int(row[0]) if row else 0
