"""The steps of an audit run, one function each: load, plan, submit, collect, build, report.

`capaudit run` chains them (see `audit.py`); `capaudit load|plan|...` call them one at a time
under the same `--run-id`. Each takes an open warehouse connection and returns a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from pipeline import ledger
from pipeline.build_scope import build_scope, last_build
from pipeline.contacts.load import LoadProgress, LoadSummary, load_contacts
from pipeline.errors import WarehouseError
from pipeline.landing import correlate
from pipeline.landing.ingest import IngestStats, ingest_landing
from pipeline.landing.place import Landing, configured_landing
from pipeline.landing.tail import Awaited, landing_tail, wait_for_landing
from pipeline.late import keep_late_answers, late_answers_kept
from pipeline.logs import log_fields
from pipeline.progress import StepProgress, ticking
from pipeline.readable import duration, figure
from pipeline.settings import Settings
from pipeline.sinch.client import SinchClient
from pipeline.submit.backlog import (
    CallbackBudget,
    expected_callback_rate,
    follow_callbacks,
    log_pace,
)
from pipeline.submit.contacts import (
    create_missing_contacts,
    creation_counts,
    refuse_for_processing_mode,
)
from pipeline.submit.dispatch import Dispatcher, DispatchStats, project_pacer
from pipeline.submit.pacing import Pacer
from pipeline.submit.stream import ReaskFeed, pending_requests, wait_any
from pipeline.warehouse import FIRST_SEEN, model_count, run_models
from pipeline.window import WindowSpec, fit_window_to_rate

log = logging.getLogger(__name__)
# Each append to the ledger costs ~1.5 ms of DuckDB CPU whatever its size (statement, commit):
# at 4 a second that was 3-4% of the dispatcher's CPU at 800 queries/s. A crash forgets at most
# the last second's outcomes: `--resume` sends those requests again with the same request_id,
# except the ones whose callbacks landed (`prepare_resume`).
LEDGER_FLUSH_SECONDS = 1.0
# While sending, landed callbacks are ingested this often, and their transient answers re-asked
# in the same stream (CallbackWatch); once everything planned is sent, this often, until none
# can come any more, or the answers awaited take HANDOVER_QUIET_SECONDS or more to clear (or
# nothing landed for as long), or HANDOVER_SECONDS passed: then collect takes the rest.
INGEST_WHILE_SENDING_SECONDS = 1.0
INGEST_WHILE_DRAINED_SECONDS = 0.2
HANDOVER_QUIET_SECONDS = 2.0
HANDOVER_SECONDS = 10.0
WATCH_SHARE = 0.1  # of the time the watch may spend ingesting and planning re-asks
MIN_CALLBACKS_FOR_RATE = 200  # fewer say nothing reliable about a callback rate
AWAITED_IN_MEMORY = 10_000  # outstanding answers followed as they land (collect's tail)


def load(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    paths: Sequence[str] | None,
    limit: int | None = None,
    *,
    console: bool = False,
) -> LoadSummary:
    started = time.monotonic()
    with StepProgress("load", None, console=console, counted=False) as progress:

        def show(state: LoadProgress) -> None:
            progress.total = state.bytes_total
            rate = state.rows / max(time.monotonic() - started, 1e-3)
            progress.update(
                state.bytes_read,
                rows=f"{state.rows:,}",
                rejects=state.rejects,
                rate=f"{rate:,.0f}/s",
            )

        summary = load_contacts(conn, run_id, settings.contacts, paths, show)
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
        f"""
        DELETE FROM targets WHERE run_id = $run_id AND contact_key NOT IN (
            SELECT contact_key FROM targets WHERE run_id = $run_id
            GROUP BY contact_key ORDER BY {FIRST_SEEN} LIMIT $limit)
        """,
        {"run_id": run_id, "limit": limit},
    )
    row = conn.execute(
        "SELECT count(*), count(DISTINCT contact_key) FROM targets WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def plan(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    *,
    refresh: bool = False,
    window: WindowSpec | None = None,
    console: bool = False,
) -> ledger.PlanSummary:
    now = datetime.now(UTC)
    fitted = None
    with ticking("plan", 3, console=console) as tick:
        if not ledger.has_requests(conn, run_id):  # on resume the plan stands as it was
            keep_late_answers(conn, run_id, settings, now=now)
            ledger.mark_reuse(conn, run_id, settings.freshness, refresh=refresh, now=now)
            if window is not None:
                fitted = fit_window_to_rate(conn, run_id, settings, window, now=now)
        tick(phase="fresh answers marked")
        created = ledger.plan_requests(conn, run_id, settings.sinch.app_id, now=now)
        tick(phase="requests written", requests=f"{created:,}")
        summary = ledger.plan_summary(conn, run_id)
        tick(phase="counted")
    summary.new_requests = created
    summary.late_answers = late_answers_kept(conn, run_id)
    summary.window = dataclasses.asdict(fitted) if fitted is not None else {}
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

    async def run(self, done: asyncio.Event) -> None:
        """Flush every LEDGER_FLUSH_SECONDS until `done`; returns only between flushes, so no
        worker thread is left writing when the caller makes the final flush."""
        while not await _wait(done, LEDGER_FLUSH_SECONDS):
            await self.flush()

    def close(self) -> None:
        self._cursor.close()


class CallbackWatch:
    """Ingests landed callbacks while requests go out: the progress shows how many arrived,
    collect has less left to do, and, given a `feed`, each ingest's transient answers are
    planned as re-asks at once, for the stream to send next (pipeline/submit/stream.py).

    Once the stream has sent everything planned it waits on the feed; the watch then looks
    every INGEST_WHILE_DRAINED_SECONDS and ends the feed when no re-ask can come any more: the
    ingest that ended with nothing to re-ask started after every answer awaited had landed
    (the callback budget counts them); or none landed for HANDOVER_QUIET_SECONDS, or the
    answers awaited would take that long to clear at the measured callback rate, or it waited
    HANDOVER_SECONDS: collect then takes the rest (re-asking what lands later, watching the
    receiver's health, keeping to the deadline). Without a budget it ends at once."""

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        landing: Landing,
        *,
        run_id: str = "",
        app_id: str = "",
        feed: ReaskFeed | None = None,
        budget: CallbackBudget | None = None,
    ) -> None:
        self._cursor = conn.cursor()
        self._landing = landing
        self._run_id, self._app_id = run_id, app_id
        self._feed, self._budget = feed, budget
        self.since = 0  # the newest batch looked at for re-asks; 0 first: a resume's too
        self._drained_at: float | None = None
        self._round_seconds = 0.0
        self.received = 0
        self.reasked = 0

    async def run(self, done: asyncio.Event) -> None:
        try:
            while not await self._pause(done):
                awaited = self._budget.outstanding if self._budget is not None else None
                started = time.monotonic()
                planned = await asyncio.to_thread(self._ingest)
                self._round_seconds = time.monotonic() - started
                if self._feed is None:
                    continue
                if planned:
                    self._feed.planned()
                elif self._feed.drained.is_set() and self._nothing_more(awaited):
                    self._feed.end()
        except (WarehouseError, duckdb.Error) as exc:  # collect ingests and re-asks, and says
            log.warning("ingesting while sending failed (collect tries again): %s", exc)
        finally:
            if self._feed is not None:
                self._feed.end()

    async def _pause(self, done: asyncio.Event) -> bool:
        """Wait until the next look (sooner once the stream is drained); True when `done`."""
        drained = self._feed is not None and self._feed.drained.is_set()
        if not drained:
            self._drained_at = None
        elif self._drained_at is None:
            self._drained_at = time.monotonic()
        events = [done] if drained or self._feed is None else [done, self._feed.drained]
        # While sending, never more than WATCH_SHARE of the time, however large the state (each
        # ingest and each look for re-asks scans the run's notifications and requests once);
        # once drained, the run waits on nothing else.
        seconds = (
            INGEST_WHILE_DRAINED_SECONDS
            if drained
            else max(INGEST_WHILE_SENDING_SECONDS, self._round_seconds / WATCH_SHARE)
        )
        await wait_any(events, seconds)
        return done.is_set()

    def _ingest(self) -> int:
        """Ingest what landed; with a feed, plan re-asks of its transient answers (a thread)."""
        self.received += ingest_landing(self._cursor, self._landing).notifications_new
        if self._feed is None:
            return 0
        planned, self.since = ledger.plan_requeries(
            self._cursor, self._run_id, self._app_id, now=datetime.now(UTC), since=self.since
        )
        self.reasked += planned
        return planned

    def _nothing_more(self, awaited_before: int | None) -> bool:
        """Whether the stream should end: no re-ask can come any more, or the answers still
        awaited are collect's business (they take long: collect watches the receiver's health,
        keeps to the deadline and builds provisionally meanwhile)."""
        if self._budget is None or awaited_before is None or awaited_before == 0:
            return True
        drained = time.monotonic() - (self._drained_at or time.monotonic())
        rate = self._budget.measured_rate or 0.0
        clears_in = awaited_before / rate if rate > 0 else math.inf
        quiet = self._budget.quiet_seconds()
        return max(quiet, clears_in) >= HANDOVER_QUIET_SECONDS or drained >= HANDOVER_SECONDS

    def close(self) -> None:
        self._cursor.close()


async def _wait(done: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True as soon as `done` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), seconds)
    return done.is_set()


@dataclass
class SubmitSummary:
    planned: int = 0
    accepted: int = 0
    failed: int = 0
    not_sent: int = 0
    accepted_by_callback: int = 0
    refused: int = 0  # by contact_id to an app in DISPATCH mode: never sent (submit/contacts.py)
    answers: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rate_per_second: float = 0.0
    rate_cuts: int = 0
    interrupted: bool = False
    reasked: int = 0  # re-asks of transient answers planned while sending, and sent in the stream
    requery_batch: int = 0  # the newest ingest (notifications.batch) looked at for re-asks
    # Self-pacing (pipeline/submit/backlog.py): the callback rate measured, whether it held queries
    # back, and the query rate it settled at (requests/s over the last seconds of sending).
    callback_rate_per_second: float | None = None
    callback_limited: bool = False
    settled_rate_per_second: float | None = None


def prepare_resume(conn: duckdb.DuckDBPyConnection, run_id: str, landing: Landing) -> int:
    """Before sending: ingest what landed, and never re-send a request Sinch already answered."""
    ingest_landing(conn, landing)
    answered = ledger.accept_answered(conn, run_id)
    ledger.fold_events(conn, run_id)
    return answered


async def submit(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    *,
    stop: asyncio.Event,
    console: bool,
    pacer: Pacer | None = None,
    requery: bool = False,
    prepared: bool = False,
) -> SubmitSummary:
    """Send every planned request of the run; outcomes go to the ledger as they come. `pacer`:
    one shared with other calls to Sinch (collect's re-queries and contact creations). With
    `requery` (and `[dispatch] requery_transient`), transient answers landing meanwhile are
    asked once more in the same stream, and it ends only when none can come any more.
    `prepared`: the caller has just ingested and folded the ledger (collect), so the checks
    for a resumed run are skipped."""
    landing = configured_landing(settings)
    answered = 0 if prepared else prepare_resume(conn, run_id, landing)
    summary = SubmitSummary(accepted_by_callback=answered)
    since = datetime.now(UTC)  # every event recorded before is folded
    budget = _callback_budget(conn, settings)
    feed = ReaskFeed(stop) if requery and settings.dispatch.requery_transient else None
    buffer = EventBuffer(conn, run_id)
    watch = CallbackWatch(
        conn, landing, run_id=run_id, app_id=settings.sinch.app_id, feed=feed, budget=budget
    )
    started = time.monotonic()
    async with SinchClient(
        settings.sinch, settings.secrets, max_connections=settings.dispatch.max_in_flight
    ) as client:
        summary.refused = await refuse_for_processing_mode(conn, run_id, client)
        planned = ledger.request_counts(conn, run_id).get(ledger.PLANNED, 0)
        dispatcher = Dispatcher(
            client, settings.dispatch, record=buffer.add, budget=budget, pacer=pacer
        )
        done = asyncio.Event()
        helpers = [asyncio.create_task(buffer.run(done)), asyncio.create_task(watch.run(done))]
        if budget is not None:
            tail = landing_tail(landing)
            helpers.append(asyncio.create_task(follow_callbacks(budget, tail, done)))
        progress = asyncio.create_task(_show_progress(dispatcher.stats, watch, planned, console))
        try:
            async with contextlib.aclosing(pending_requests(conn, run_id, feed)) as requests:
                stats = await dispatcher.run(requests, stop)
        finally:
            done.set()
            progress.cancel()
            await asyncio.gather(*helpers, progress, return_exceptions=True)
            await buffer.flush()  # the helpers have returned: no other flush is running
            buffer.close()
            watch.close()
    ledger.fold_events(conn, run_id, since=since)
    summary.planned = planned + watch.reasked
    summary.reasked, summary.requery_batch = watch.reasked, watch.since
    summary.accepted, summary.failed = stats.accepted, stats.failed
    summary.not_sent = summary.planned - stats.accepted - stats.failed
    summary.answers = dict(stats.answers)
    summary.seconds = time.monotonic() - started
    summary.rate_per_second = stats.sending_rate()
    summary.rate_cuts = dispatcher.pacer.rate_cuts
    summary.interrupted = stop.is_set() and summary.not_sent > 0
    if budget is not None:
        _note_pace(summary, budget)
    counts = {"accepted": summary.accepted, "failed": summary.failed, "not_sent": summary.not_sent}
    log_fields(
        log,
        "submit finished",
        **counts,
        reasked=summary.reasked,
        rate=f"{summary.rate_per_second:.1f}/s",
    )
    return summary


def _callback_budget(conn: duckdb.DuckDBPyConnection, settings: Settings) -> CallbackBudget | None:
    if not settings.dispatch.pace_to_callbacks:
        return None
    return CallbackBudget(
        settings.dispatch.callback_backlog_seconds, expected_callback_rate(conn, settings)[0]
    )


def _note_pace(summary: SubmitSummary, budget: CallbackBudget) -> None:
    if budget.measured_rate is not None:
        summary.callback_rate_per_second = round(budget.measured_rate, 2)
    summary.callback_limited = budget.limited
    summary.settled_rate_per_second = round(budget.query_rate(), 2)
    log_pace(budget, "settled pace" if budget.limited else "callbacks kept up with the queries")


async def _show_progress(
    stats: DispatchStats, watch: CallbackWatch, total: int, console: bool
) -> None:
    stats.total = total
    with StepProgress("submit", total, console=console) as progress:
        try:
            while True:
                _show_sending(progress, stats, watch)
                await asyncio.sleep(0.5)
        finally:  # cancelled when sending ends: the bar shows where it ended
            _show_sending(progress, stats, watch)


def _show_sending(progress: StepProgress, stats: DispatchStats, watch: CallbackWatch) -> None:
    progress.total = stats.total + watch.reasked
    progress.update(
        stats.accepted + stats.failed,
        rate=f"{stats.rate():.0f}/s",
        accepted=stats.accepted,
        failed=stats.failed,
        retrying=stats.retrying,
        callbacks=watch.received,
    )


# -- collect ------------------------------------------------------------------------------------


@dataclass
class CollectSummary:
    outstanding: int = 0
    requeried: int = 0
    ingested: IngestStats = field(default_factory=IngestStats)
    waited_seconds: float = 0.0
    deadline_passed: bool = False
    lag: dict[str, float | None] = field(default_factory=dict)
    # The run's notifications per way they were matched, and the callbacks without request_id
    # kept unmatched (all runs') per problem: see landing/correlate.py.
    matched_by: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    provisional_builds: int = 0  # builds of the run while waiting (ProvisionalBuilds)
    # `[contacts] create_missing`: contacts per state (found, created, failed; submit/contacts.py)
    contacts: dict[str, int] = field(default_factory=dict)


# Whether the callback of outstanding target `l` has landed (one predicate, used both to find
# the outstanding targets and to strike them off as their callbacks land).
ANSWERED = """EXISTS (
    SELECT 1 FROM notifications n
    WHERE n.request_id = l.request_id AND n.channel IN (l.channel, ''))"""
# A target waits for the newest request that asked for its channel (a re-ask replaces the
# earlier ask); it is outstanding while that request is accepted and its callback has not landed.
# Read from the requests alone, a row per channel asked (the targets they were planned from):
# joining every target to its requests to find the newest took 9-13 s at 3M targets on the
# loaded 2-core machine, this about 2 s.
OUTSTANDING_ROWS_SQL = """
WITH asked AS (
    SELECT request_id, contact_key, state, unnest(channels) AS channel
    FROM requests WHERE run_id = $run_id
),
latest AS (
    SELECT contact_key, channel, max(request_id) AS request_id,
        arg_max(state, request_id) AS state
    FROM asked GROUP BY contact_key, channel
)
SELECT l.contact_key, l.channel, l.request_id FROM latest l
ANTI JOIN notifications n ON n.request_id = l.request_id AND n.channel = l.channel
ANTI JOIN (SELECT request_id FROM notifications WHERE channel = '') w
    ON w.request_id = l.request_id
WHERE l.state = 'accepted'
"""
OUTSTANDING_SQL = f"SELECT count(*) FROM ({OUTSTANDING_ROWS_SQL})"


def outstanding_targets(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    row = conn.execute(OUTSTANDING_SQL, {"run_id": run_id}).fetchone()
    return int(row[0]) if row else 0


class OutstandingTargets:
    """The outstanding targets while collect waits, kept as a temporary table: the first count
    reads every target, later ones only strike off those whose callback has landed since, so
    the check after the deadline costs a probe of `notifications`, not the whole join."""

    TABLE = "collect_outstanding"

    def __init__(self, conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self._conn = conn
        self._run_id = run_id
        self._known = False

    def count(self, *, answers_landed: bool, requests_changed: bool) -> int:
        if requests_changed or not self._known:
            self._conn.execute(
                f"CREATE OR REPLACE TEMP TABLE {self.TABLE} AS {OUTSTANDING_ROWS_SQL}",
                {"run_id": self._run_id},
            )
            self._known = True
        elif answers_landed:
            self._conn.execute(f"DELETE FROM {self.TABLE} l WHERE {ANSWERED}")
        row = self._conn.execute(f"SELECT count(*) FROM {self.TABLE}").fetchone()
        return int(row[0]) if row else 0

    def awaited(self, outstanding: int) -> Awaited | None:
        """The outstanding answers as (request_id, channel) pairs, for `wait_for_landing` to
        strike off as they land; None when there are more than AWAITED_IN_MEMORY."""
        if outstanding > AWAITED_IN_MEMORY:
            return None
        return Awaited(
            self._conn.execute(f"SELECT request_id, channel FROM {self.TABLE}").fetchall()
        )

    def close(self) -> None:
        self._conn.execute(f"DROP TABLE IF EXISTS {self.TABLE}")


class OutstandingPace:
    """How fast the outstanding count falls: when, at that pace, no answer is awaited any more."""

    WINDOW_SECONDS = 5.0

    def __init__(self) -> None:
        self._seen: deque[tuple[float, int]] = deque()

    def seconds_to_none(self, outstanding: int) -> float:
        now = time.monotonic()
        self._seen.append((now, outstanding))
        while now - self._seen[0][0] > self.WINDOW_SECONDS:
            self._seen.popleft()
        then, before = self._seen[0]
        falling = (before - outstanding) / (now - then) if now > then else 0.0
        return outstanding / falling if falling > 0 else math.inf


def _last_acceptance(conn: duckdb.DuckDBPyConnection, run_id: str) -> float:
    row = conn.execute(
        "SELECT epoch(max(accepted_at)) FROM requests WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


class ProvisionalBuilds:
    """Builds of the run while `collect` waits for callbacks, so that the build after it redoes
    only the contacts answered since (pipeline/build_scope.py): at 10M targets about 6 s
    instead of 18. One is due when answers landed that no build has read, building has taken at
    most `SHARE` of the time waited (so the machine stays mostly idle, whatever its speed), the
    run's last build took under half the time left before the deadline (one still running at
    the deadline would delay the final build instead of shortening it), and the answers still
    awaited are not about to be all in: at the pace they land, they take more than twice as
    long as a build (the last one's time, or GUESS_SECONDS_PER_TARGET before any), so the
    last provisional build never holds up the final one. It runs on a cursor of its own in a
    thread, so the event loop stays responsive; a stop interrupts it."""

    SHARE = 0.1
    GUESS_SECONDS_PER_TARGET = 2e-6  # a whole build: 10M targets in about 20 s

    def __init__(self, conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self._conn = conn
        self._run_id = run_id
        last = last_build(conn, run_id)
        self._last_seconds = last.seconds
        self._unread = not last.read_every_notification
        self._started = time.monotonic()
        self._building = 0.0
        self._targets: int | None = None
        self.count = 0

    def landed(self, notifications: int) -> None:
        self._unread = self._unread or notifications > 0

    def due(self, remaining_seconds: float, seconds_to_none: float = math.inf) -> bool:
        """`seconds_to_none`: when the answers awaited will all be in, at the pace they land."""
        waited = time.monotonic() - self._started
        expected = self._expected_seconds()
        fits = 2 * expected < remaining_seconds
        lasts = 2 * expected < seconds_to_none
        return self._unread and fits and lasts and self._building <= self.SHARE * waited

    def _expected_seconds(self) -> float:
        if self._last_seconds is not None:
            return self._last_seconds
        if self._targets is None:
            row = self._conn.execute(
                "SELECT count(*) FROM targets WHERE run_id = $run_id", {"run_id": self._run_id}
            ).fetchone()
            self._targets = int(row[0]) if row else 0
        return self.GUESS_SECONDS_PER_TARGET * self._targets

    async def build(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        self._unread = False
        with self._conn.cursor() as cursor:
            work = asyncio.ensure_future(asyncio.to_thread(build_models, cursor, self._run_id))
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait((work, stopping), return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not work.done():
                cursor.interrupt()  # rolled back; the next build is a whole one
            try:
                await work
            except (WarehouseError, duckdb.Error) as exc:
                if not stop.is_set():  # the final build will say it again, if it still fails
                    log.warning("provisional build of run %s failed: %s", self._run_id, exc)
                return
        self._last_seconds = time.monotonic() - started
        self._building += self._last_seconds
        self.count += 1
        log_fields(log, "provisional build", seconds=round(self._last_seconds, 1))


async def collect(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    *,
    deadline_seconds: float | None = None,
    stop: asyncio.Event,
    console: bool,
    requery: bool = False,
    requery_since: int = 0,
    wait_from: float = 0.0,
) -> CollectSummary:
    """Ingest landed callbacks until every accepted target is answered or the deadline passes.

    The deadline counts from the last accepted request, or from `wait_from` (epoch seconds)
    when later: a resumed run keeps collecting for a whole deadline. With `requery` (a live
    Sinch session), channels whose answer reported a transient failure are asked once more and
    waited for: those in notifications ingested after batch `requery_since` (the stream
    re-asked the earlier ones while sending; 0: all).

    Between looks it sleeps up to `[collect] poll_interval_seconds`, woken as soon as the last
    answer awaited lands (or an answer to ask again): the tail ends with the last callback,
    not a poll interval later.
    """
    deadline = settings.collect.deadline_seconds if deadline_seconds is None else deadline_seconds
    landing = configured_landing(settings)
    summary = CollectSummary()
    started = time.monotonic()
    expected = None
    tracker = OutstandingTargets(conn, run_id)
    builds = ProvisionalBuilds(conn, run_id)
    pacer = project_pacer(settings.dispatch)  # re-queries and contact creations share it
    requeries = Requeries(settings, pacer, requery_since)
    tail = landing_tail(landing)  # what lands from now on: wakes the wait below
    pace = OutstandingPace()
    with StepProgress("collect", None, console=console) as progress:
        while True:
            ingested = ingest_landing(conn, landing)
            summary.ingested.add(ingested)
            builds.landed(ingested.notifications_new)
            requeried = 0
            if requery and settings.dispatch.requery_transient:
                requeried = await requeries.round(conn, run_id, stop)
                summary.requeried += requeried
            # Only when answers landed (the first round looks at the refusals of submit too).
            if (
                requery
                and settings.contacts.create_missing
                and (ingested.notifications_new or expected is None)
            ):
                requeried += await _create_missing(conn, run_id, settings, stop, pacer)
            summary.outstanding = tracker.count(
                answers_landed=ingested.notifications_new > 0, requests_changed=requeried > 0
            )
            expected = max(expected or 0, summary.outstanding)
            progress.total = expected
            progress.update(expected - summary.outstanding, outstanding=summary.outstanding)
            if summary.outstanding == 0 or stop.is_set():
                break
            remaining = max(_last_acceptance(conn, run_id), wait_from) + deadline - time.time()
            if remaining <= 0:
                summary.deadline_passed = True
                break
            if builds.due(remaining, pace.seconds_to_none(summary.outstanding)):
                await builds.build(stop)
                continue
            # Wake at the deadline itself, not up to a poll interval after it.
            await wait_for_landing(
                tail,
                min(settings.collect.poll_interval_seconds, remaining),
                awaited=tracker.awaited(summary.outstanding),
                transient=requery and settings.dispatch.requery_transient,
            )
    tracker.close()
    summary.provisional_builds = builds.count
    summary.contacts = creation_counts(conn, run_id)
    summary.waited_seconds = time.monotonic() - started
    summary.lag = ledger.callback_lag(conn, run_id)
    _warn_if_callbacks_lag(summary.lag, settings)
    summary.matched_by = correlate.matched_by_counts(conn, run_id)
    summary.unmatched = correlate.warn_if_unmatched(conn)
    log_fields(
        log,
        "collect finished",
        outstanding=summary.outstanding,
        notifications=summary.ingested.notifications_new,
        requeried=summary.requeried,
        lag_p50=summary.lag.get("p50_seconds"),
        lag_p95=summary.lag.get("p95_seconds"),
        deadline_passed=summary.deadline_passed,
        provisional_builds=summary.provisional_builds,
        **{f"matched_by_{way}": n for way, n in summary.matched_by.items()},
    )
    return summary


class Requeries:
    """Collect's re-asks of transient answers the stream did not send (answers that landed
    after it ended, or a run without a callback budget): each round looks only at the
    notifications ingested since the last, the first at those since batch `since` (what the
    stream looked at; 0: all)."""

    def __init__(self, settings: Settings, pacer: Pacer, since: int = 0) -> None:
        self._settings = settings
        self._pacer = pacer
        self._since = since
        self.planned = 0

    async def round(self, conn: duckdb.DuckDBPyConnection, run_id: str, stop: asyncio.Event) -> int:
        """Plan and send this round's re-asks; returns how many requests were planned."""
        settings = self._settings
        now = datetime.now(UTC)
        planned, self._since = ledger.plan_requeries(
            conn, run_id, settings.sinch.app_id, now=now, since=self._since
        )
        if planned:
            log_fields(log, "re-querying transient failures once", requests=planned)
            self.planned += planned
            await submit(
                conn, run_id, settings, stop=stop, console=False, pacer=self._pacer, prepared=True
            )
        return planned


async def _create_missing(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    stop: asyncio.Event,
    pacer: Pacer,
) -> int:
    """`[contacts] create_missing`: find or create the contacts Sinch had none for, and ask
    their targets once more (pipeline/submit/contacts.py); returns the requests planned."""
    async with SinchClient(settings.sinch, settings.secrets) as client:
        made = await create_missing_contacts(
            conn, client, run_id, pacer=pacer, max_in_flight=settings.dispatch.max_in_flight
        )
    if made.reasks:
        await submit(conn, run_id, settings, stop=stop, console=False, pacer=pacer, prepared=True)
    return made.reasks


def _warn_if_callbacks_lag(lag: dict[str, float | None], settings: Settings) -> None:
    """Callbacks much slower than queries build a backlog at Sinch (25/s per app by default)."""
    callbacks, queries = lag.get("callbacks_per_second"), lag.get("queries_per_second")
    channels = max(1, len(settings.contacts.phone_channels))
    enough = (lag.get("callbacks") or 0) >= MIN_CALLBACKS_FOR_RATE
    if enough and callbacks and queries and callbacks < 0.5 * queries * channels:
        log.warning(
            "callbacks arrived at %s/s while queries asked for %s/s: Sinch queues the rest "
            "(its default is 25 callbacks/s per app). Lower [dispatch] rate_per_second or raise "
            "the app's webhook rate limit; p95 callback lag %s",
            figure(callbacks),
            figure(queries * channels),
            duration(lag.get("p95_seconds") or 0.0),
        )


# -- build --------------------------------------------------------------------------------------


def _check_every_target_built(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """DESIGN §7 rule 1, checked on every build: one capability row per target."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM targets WHERE run_id = $run_id), "
        "(SELECT count(*) FROM capability WHERE run_id = $run_id)",
        {"run_id": run_id},
    ).fetchone()
    if row is None or row[0] != row[1]:
        raise WarehouseError(f"run {run_id}: {row} targets vs capability rows; not reported")


def build(conn: duckdb.DuckDBPyConnection, run_id: str, *, console: bool = False) -> dict[str, int]:
    """Run the SQL models for the run, saying first what callbacks could not be matched;
    returns the number of capability rows per status."""
    correlate.warn_if_unmatched(conn)
    return build_models(conn, run_id, console=console)


def build_models(
    conn: duckdb.DuckDBPyConnection, run_id: str, *, console: bool = False
) -> dict[str, int]:
    """`build` without its warning (collect's provisional builds, which would repeat it)."""
    reuse_runs = [
        str(row[0])
        for row in conn.execute(
            "SELECT DISTINCT reuse_run_id FROM targets WHERE run_id = $run_id "
            "AND reuse_run_id IS NOT NULL",
            {"run_id": run_id},
        ).fetchall()
    ]
    nothing_sent = not ledger.has_requests(conn, run_id)
    constants: dict[str, Sequence[str] | bool] = {
        "reuse_runs": reuse_runs,
        "nothing_sent": nothing_sent,
    }
    channels = [
        str(row[0])
        for row in conn.execute(
            "SELECT DISTINCT channel FROM targets WHERE run_id = $run_id ORDER BY 1",
            {"run_id": run_id},
        ).fetchall()
    ]
    with (
        build_scope(conn, run_id, constants) as plan,
        ticking("build", model_count(), console=console) as tick,
    ):
        run_models(
            conn,
            run_id,
            constants=constants,
            channels=channels,
            on_model=lambda name: tick(model=name),
        )
        _check_every_target_built(conn, run_id)  # before the build is recorded
    log_fields(log, "run built", contacts_rebuilt="all" if plan.contacts is None else plan.contacts)
    rows = conn.execute(
        "SELECT status, count(*) FROM capability WHERE run_id = $run_id GROUP BY status",
        {"run_id": run_id},
    ).fetchall()
    return {str(status): int(count) for status, count in rows}
