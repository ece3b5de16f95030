"""The steps of an audit run, one function each: load, plan, submit, collect, build, report.

`capaudit run` chains them (see `audit.py`); `capaudit load|plan|...` call them one at a time
under the same `--run-id`. Each takes an open warehouse connection and returns a summary.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline import ledger
from pipeline.contacts.load import LoadSummary, load_contacts
from pipeline.dispatch import Dispatcher, DispatchStats
from pipeline.landing.ingest import IngestStats, ingest_landing
from pipeline.logs import log_fields
from pipeline.progress import StepProgress
from pipeline.settings import Settings
from pipeline.sinch.client import SinchClient
from pipeline.warehouse import run_models

log = logging.getLogger(__name__)
LEDGER_FLUSH_SECONDS = 0.25


def load(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    paths: Sequence[str] | None,
    limit: int | None = None,
) -> LoadSummary:
    summary = load_contacts(conn, run_id, settings.contacts, paths)
    if limit is not None:
        summary.targets, summary.contacts = limit_contacts(conn, run_id, limit)
    log_fields(
        log,
        "contacts loaded",
        rows=summary.rows,
        targets=summary.targets,
        contacts=summary.contacts,
        rejects=summary.rejects,
    )
    return summary


def limit_contacts(conn: duckdb.DuckDBPyConnection, run_id: str, limit: int) -> tuple[int, int]:
    """Keep only the first `limit` contacts (in input order) as the run's targets."""
    conn.execute(
        """
        DELETE FROM targets WHERE run_id = $run_id AND contact_key NOT IN (
            SELECT contact_key FROM targets WHERE run_id = $run_id
            GROUP BY contact_key ORDER BY min(source), min(row_number) LIMIT $limit)
        """,
        {"run_id": run_id, "limit": limit},
    )
    row = conn.execute(
        "SELECT count(*), count(DISTINCT contact_key) FROM targets WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def plan(
    conn: duckdb.DuckDBPyConnection, run_id: str, settings: Settings, *, refresh: bool = False
) -> ledger.PlanSummary:
    now = datetime.now(UTC)
    has_requests = conn.execute(
        "SELECT count(*) > 0 FROM requests WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    if not (has_requests and has_requests[0]):  # on resume the plan stands as it was
        ledger.mark_reuse(conn, run_id, settings.freshness, refresh=refresh, now=now)
    created = ledger.plan_requests(conn, run_id, settings.sinch.app_id, now=now)
    summary = ledger.plan_summary(conn, run_id)
    summary.new_requests = created
    log_fields(
        log,
        "plan ready",
        targets=summary.targets,
        reused=summary.reused,
        to_query=summary.to_query,
        requests=summary.requests,
    )
    return summary


# -- submit -------------------------------------------------------------------------------------


class EventBuffer:
    """Collects request outcomes and appends them to the ledger in small committed batches."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self._cursor = conn.cursor()  # its own connection: flushes run in a worker thread
        self._run_id = run_id
        self._events: list[ledger.RequestEvent] = []

    def add(self, event: ledger.RequestEvent) -> None:
        self._events.append(event)

    async def flush(self) -> None:
        events, self._events = self._events, []
        if events:
            await asyncio.to_thread(ledger.record_events, self._cursor, self._run_id, events)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(LEDGER_FLUSH_SECONDS)
            await self.flush()

    def close(self) -> None:
        self._cursor.close()


@dataclass
class SubmitSummary:
    planned: int = 0
    accepted: int = 0
    failed: int = 0
    not_sent: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rate_per_second: float = 0.0
    interrupted: bool = False


async def submit(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    *,
    stop: asyncio.Event,
    console: bool,
) -> SubmitSummary:
    """Send every planned request of the run; outcomes go to the ledger as they come."""
    ledger.fold_events(conn, run_id)
    total = ledger.request_counts(conn, run_id).get(ledger.PLANNED, 0)
    summary = SubmitSummary(planned=total)
    buffer = EventBuffer(conn, run_id)
    started = time.monotonic()
    async with SinchClient(
        settings.sinch, settings.secrets, max_connections=settings.dispatch.max_in_flight
    ) as client:
        dispatcher = Dispatcher(client, settings.dispatch, record=buffer.add)
        helpers = [
            asyncio.create_task(buffer.run()),
            asyncio.create_task(_show_progress(dispatcher.stats, total, console)),
        ]
        try:
            stats = await dispatcher.run(ledger.pending_requests(conn, run_id), stop)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await buffer.flush()
            buffer.close()
    ledger.fold_events(conn, run_id)
    summary.accepted, summary.failed = stats.accepted, stats.failed
    summary.not_sent = total - stats.accepted - stats.failed
    summary.answers = dict(stats.answers)
    summary.seconds = time.monotonic() - started
    summary.rate_per_second = stats.sending_rate()
    summary.interrupted = stop.is_set() and summary.not_sent > 0
    log_fields(
        log,
        "submit finished",
        accepted=summary.accepted,
        failed=summary.failed,
        not_sent=summary.not_sent,
        rate=f"{summary.rate_per_second:.1f}/s",
    )
    return summary


async def _show_progress(stats: DispatchStats, total: int, console: bool) -> None:
    stats.total = total
    with StepProgress("submit", total, console=console) as progress:
        while True:
            progress.update(
                stats.accepted + stats.failed,
                rate=f"{stats.rate():.0f}/s",
                accepted=stats.accepted,
                failed=stats.failed,
                retrying=stats.retrying,
            )
            await asyncio.sleep(0.5)


# -- collect ------------------------------------------------------------------------------------


@dataclass
class CollectSummary:
    outstanding: int = 0
    ingested: IngestStats = field(default_factory=IngestStats)
    waited_seconds: float = 0.0
    deadline_passed: bool = False


OUTSTANDING_SQL = """
SELECT count(*) FROM targets t
WHERE t.run_id = $run_id AND t.action = 'query'
  AND EXISTS (SELECT 1 FROM requests r
              WHERE r.run_id = $run_id AND r.contact_key = t.contact_key AND r.state = 'accepted')
  AND NOT EXISTS (SELECT 1 FROM requests r JOIN notifications n ON n.request_id = r.request_id
                  WHERE r.run_id = $run_id AND r.contact_key = t.contact_key
                    AND n.channel IN (t.channel, ''))
"""


def outstanding_targets(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    row = conn.execute(OUTSTANDING_SQL, {"run_id": run_id}).fetchone()
    return int(row[0]) if row else 0


def _last_acceptance(conn: duckdb.DuckDBPyConnection, run_id: str) -> float:
    row = conn.execute(
        "SELECT epoch(max(accepted_at)) FROM requests WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


async def collect(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    *,
    deadline_seconds: float | None = None,
    stop: asyncio.Event,
    console: bool,
) -> CollectSummary:
    """Ingest landed callbacks until every accepted target is answered or the deadline passes."""
    deadline = settings.collect.deadline_seconds if deadline_seconds is None else deadline_seconds
    landing = Path(settings.receiver.landing_dir)
    summary = CollectSummary()
    started = time.monotonic()
    ends_at = max(_last_acceptance(conn, run_id), time.time() - 1) + deadline
    expected = None
    with StepProgress("collect", None, console=console) as progress:
        while True:
            _add(summary.ingested, ingest_landing(conn, landing))
            summary.outstanding = outstanding_targets(conn, run_id)
            expected = expected if expected is not None else summary.outstanding
            progress.total = expected
            progress.update(expected - summary.outstanding, outstanding=summary.outstanding)
            if summary.outstanding == 0 or stop.is_set():
                break
            if time.time() >= ends_at:
                summary.deadline_passed = True
                break
            await asyncio.sleep(settings.collect.poll_interval_seconds)
    summary.waited_seconds = time.monotonic() - started
    log_fields(
        log,
        "collect finished",
        outstanding=summary.outstanding,
        notifications=summary.ingested.notifications_new,
        deadline_passed=summary.deadline_passed,
    )
    return summary


def _add(total: IngestStats, more: IngestStats) -> None:
    for name in vars(total):
        setattr(total, name, getattr(total, name) + getattr(more, name))


# -- build --------------------------------------------------------------------------------------


def build(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Run the SQL models for the run; returns the number of capability rows per status."""
    run_models(conn, run_id)
    rows = conn.execute(
        "SELECT status, count(*) FROM capability WHERE run_id = $run_id GROUP BY status",
        {"run_id": run_id},
    ).fetchall()
    return {str(status): int(count) for status, count in rows}
