"""The steps of an audit run, one function each: load, plan, submit, collect, build, report.

`capaudit run` chains them (see `audit.py`); `capaudit load|plan|...` call them one at a time
under the same `--run-id`. Each takes an open warehouse connection and returns a summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
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
from pipeline.landing.tail import landing_tail
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
from pipeline.warehouse import FIRST_SEEN, model_count, run_models
from pipeline.window import WindowSpec, fit_window_to_rate

log = logging.getLogger(__name__)
# Each append to the ledger costs ~1.5 ms of DuckDB CPU whatever its size (statement, commit):
# at 4 a second that was 3-4% of the dispatcher's CPU at 800 queries/s. A crash forgets at most
# the last second's outcomes: `--resume` sends those requests again with the same request_id,
# except the ones whose callbacks landed (`prepare_resume`).
LEDGER_FLUSH_SECONDS = 1.0
INGEST_WHILE_SENDING_SECONDS = 5.0
MIN_CALLBACKS_FOR_RATE = 200  # fewer say nothing reliable about a callback rate


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
    """Ingests landed callbacks now and then while requests go out: the progress shows how
    many arrived, and collect has less left to do."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, landing: Landing) -> None:
        self._cursor = conn.cursor()
        self._landing = landing
        self.received = 0

    async def run(self, done: asyncio.Event) -> None:
        while not await _wait(done, INGEST_WHILE_SENDING_SECONDS):
            stats = await asyncio.to_thread(ingest_landing, self._cursor, self._landing)
            self.received += stats.notifications_new

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
) -> SubmitSummary:
    """Send every planned request of the run; outcomes go to the ledger as they come. `pacer`:
    one shared with other calls to Sinch (collect's re-queries and contact creations)."""
    landing = configured_landing(settings)
    summary = SubmitSummary(accepted_by_callback=prepare_resume(conn, run_id, landing))
    buffer, watch = EventBuffer(conn, run_id), CallbackWatch(conn, landing)
    budget = _callback_budget(conn, settings)
    started = time.monotonic()
    async with SinchClient(
        settings.sinch, settings.secrets, max_connections=settings.dispatch.max_in_flight
    ) as client:
        summary.refused = await refuse_for_processing_mode(conn, run_id, client)
        total = summary.planned = ledger.request_counts(conn, run_id).get(ledger.PLANNED, 0)
        dispatcher = Dispatcher(
            client, settings.dispatch, record=buffer.add, budget=budget, pacer=pacer
        )
        done = asyncio.Event()
        helpers = [asyncio.create_task(buffer.run(done)), asyncio.create_task(watch.run(done))]
        if budget is not None:
            tail = landing_tail(landing)
            helpers.append(asyncio.create_task(follow_callbacks(budget, tail, done)))
        progress = asyncio.create_task(_show_progress(dispatcher.stats, watch, total, console))
        try:
            stats = await dispatcher.run(ledger.pending_requests(conn, run_id), stop)
        finally:
            done.set()
            progress.cancel()
            await asyncio.gather(*helpers, progress, return_exceptions=True)
            await buffer.flush()  # the helpers have returned: no other flush is running
            buffer.close()
            watch.close()
    ledger.fold_events(conn, run_id)
    summary.accepted, summary.failed = stats.accepted, stats.failed
    summary.not_sent = total - stats.accepted - stats.failed
    summary.answers = dict(stats.answers)
    summary.seconds = time.monotonic() - started
    summary.rate_per_second = stats.sending_rate()
    summary.rate_cuts = dispatcher.pacer.rate_cuts
    summary.interrupted = stop.is_set() and summary.not_sent > 0
    if budget is not None:
        _note_pace(summary, budget)
    counts = {"accepted": summary.accepted, "failed": summary.failed, "not_sent": summary.not_sent}
    log_fields(log, "submit finished", **counts, rate=f"{summary.rate_per_second:.1f}/s")
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
# A target waits for the newest request that asked for its channel (a re-query replaces the
# first ask); it is outstanding while that request is accepted and its callback has not landed.
OUTSTANDING_ROWS_SQL = f"""
WITH latest AS (
    SELECT t.contact_key, t.channel, max(r.request_id) AS request_id,
        arg_max(r.state, r.request_id) AS state
    FROM targets t
    JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
        AND list_contains(r.channels, t.channel)
    WHERE t.run_id = $run_id AND t.action = 'query'
    GROUP BY t.contact_key, t.channel
)
SELECT l.contact_key, l.channel, l.request_id FROM latest l
WHERE l.state = 'accepted' AND NOT {ANSWERED}
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

    def close(self) -> None:
        self._conn.execute(f"DROP TABLE IF EXISTS {self.TABLE}")


def _last_acceptance(conn: duckdb.DuckDBPyConnection, run_id: str) -> float:
    row = conn.execute(
        "SELECT epoch(max(accepted_at)) FROM requests WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    return float(row[0]) if row and row[0] is not None else 0.0


class ProvisionalBuilds:
    """Builds of the run while `collect` waits for callbacks, so that the build after it redoes
    only the contacts answered since (pipeline/build_scope.py): at 10M targets about 6 s
    instead of 18. One is due when answers landed that no build has read, building has taken at
    most `SHARE` of the time waited (so the machine stays mostly idle, whatever its speed), and
    the run's last build took under half the time left before the deadline (one still running
    at the deadline would delay the final build instead of shortening it). It runs on a cursor
    of its own in a thread, so the event loop stays responsive; a stop interrupts it."""

    SHARE = 0.1

    def __init__(self, conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
        self._conn = conn
        self._run_id = run_id
        last = last_build(conn, run_id)
        self._last_seconds = last.seconds
        self._unread = not last.read_every_notification
        self._started = time.monotonic()
        self._building = 0.0
        self.count = 0

    def landed(self, notifications: int) -> None:
        self._unread = self._unread or notifications > 0

    def due(self, remaining_seconds: float) -> bool:
        waited = time.monotonic() - self._started
        fits = self._last_seconds is None or 2 * self._last_seconds < remaining_seconds
        return self._unread and fits and self._building <= self.SHARE * waited

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
    wait_from: float = 0.0,
) -> CollectSummary:
    """Ingest landed callbacks until every accepted target is answered or the deadline passes.

    The deadline counts from the last accepted request, or from `wait_from` (epoch seconds)
    when later: a resumed run keeps collecting for a whole deadline. With `requery` (a live
    Sinch session), channels whose answer reported a transient failure are asked once more and
    waited for.
    """
    deadline = settings.collect.deadline_seconds if deadline_seconds is None else deadline_seconds
    landing = configured_landing(settings)
    summary = CollectSummary()
    started = time.monotonic()
    expected = None
    tracker = OutstandingTargets(conn, run_id)
    builds = ProvisionalBuilds(conn, run_id)
    pacer = project_pacer(settings.dispatch)  # re-queries and contact creations share it
    with StepProgress("collect", None, console=console) as progress:
        while True:
            ingested = ingest_landing(conn, landing)
            summary.ingested.add(ingested)
            builds.landed(ingested.notifications_new)
            requeried = 0
            if requery and settings.dispatch.requery_transient:
                requeried = await _requery_transient(conn, run_id, settings, stop, pacer)
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
            if builds.due(remaining):
                await builds.build(stop)
                continue
            # Wake at the deadline itself, not up to a poll interval after it.
            await asyncio.sleep(min(settings.collect.poll_interval_seconds, remaining))
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


async def _requery_transient(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    settings: Settings,
    stop: asyncio.Event,
    pacer: Pacer,
) -> int:
    planned = ledger.plan_requeries(conn, run_id, settings.sinch.app_id, now=datetime.now(UTC))
    if planned:
        log_fields(log, "re-querying transient failures once", requests=planned)
        await submit(conn, run_id, settings, stop=stop, console=False, pacer=pacer)
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
        await submit(conn, run_id, settings, stop=stop, console=False, pacer=pacer)
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
