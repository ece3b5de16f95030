"""Self-pacing to callbacks: never ask faster than Sinch can answer (issue 14, DESIGN §7).

Sinch answers a capability query with one callback per channel, delivered at the app's webhook
rate (25/s by default). Queries sent faster than that only queue answers at Sinch, and the
run's deadline turns the queue into NO_RESPONSE. So the dispatcher bounds the answers it still
waits for (targets of accepted requests whose callback has not landed) by what the measured
callback rate clears in `callback_backlog_seconds`:

    bound = 0.95 * measured callbacks per second * callback_backlog_seconds   (targets)

A request goes out only when its channels fit under the bound. The query rate then settles at
callbacks/s divided by channels a request, with no tuning, and rises when callbacks come faster:
a faster callback rate clears the backlog sooner and raises the measured rate, hence the bound.
The Pacer still caps the rate at `rate_per_second` (and Sinch's 800/s).

Why a bound on what is awaited rather than a rate: a rate controller must guess the delivery
rate from a backlog it cannot see; the count of answers still awaited *is* that backlog, and
the measured rate says how long it takes to clear. It cannot overshoot by more than the bound.

- The rate is measured from the receiver's arrival times of the callbacks landing now (any
  callback of the app counts: they all share its webhook rate), over the last
  RATE_WINDOW_SECONDS. Below capacity it measures our own pace times channels, which keeps the
  bound far above what is awaited (callbacks take well under a second), so it does not hold us
  back; at capacity it measures the capacity.
- The 5% (RATE_MARGIN) absorbs the noise of the measurement (a percent or two over ten
  seconds, deliveries come in small bursts): the bound is a promise, not a target.
- Before any callback has landed, the bound comes from the expected rate (the previous run's
  measurement, else the configured one): a small initial window.
- An answer awaited longer than EXPIRY_BACKLOGS backlogs is presumed lost (Sinch drops
  callbacks it cannot deliver) and stops counting, or lost answers would shrink the window
  for good. Collect still waits for it.
- If nothing lands for one backlog while answers are awaited (from the first query on, or
  since the last callback), the receiver is down, not writing where we read, or no webhook is
  registered: pacing to callbacks is switched off with a warning rather than stalling the run
  (the completeness gate then says what is missing, and `--resume` asks again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence

import duckdb

from pipeline.landing.tail import LandedCallback, Tail
from pipeline.logs import log_fields
from pipeline.readable import duration
from pipeline.settings import Settings

log = logging.getLogger(__name__)
RATE_WINDOW_SECONDS = 10.0
MIN_RATE_SAMPLES = 20  # fewer callbacks say nothing reliable about a rate
MIN_RATE_SPAN_SECONDS = 2.0
POLL_SECONDS = 0.25
LOG_EVERY_SECONDS = 15.0
EXPIRY_BACKLOGS = 4.0
RATE_MARGIN = 0.95


class CallbackBudget:
    """The answers still awaited, the measured callback rate, and the bound they give."""

    def __init__(
        self,
        backlog_seconds: float,
        expected_rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backlog_seconds = backlog_seconds
        self.expected_rate = expected_rate
        self.clock = clock
        self.active = True
        self.outstanding = 0  # targets awaited
        self.measured_rate: float | None = None  # callbacks per second
        self.limited = False  # whether the bound ever held a request back
        self.landed_total = 0
        self.presumed_lost = 0
        self._awaited: dict[str, tuple[float, set[str]]] = {}  # request_id -> (since, channels)
        self._arrivals: deque[float] = deque()  # receiver times within the rate window
        self._sends: deque[float] = deque()  # our clock, within the rate window
        self._first_send = 0.0
        self._last_landed = 0.0  # our clock
        self._changed = asyncio.Event()

    @property
    def bound(self) -> int:
        """Targets that may be awaited at once."""
        rate = self.expected_rate if self.measured_rate is None else self.measured_rate
        return max(1, math.floor(RATE_MARGIN * rate * self.backlog_seconds))

    def query_rate(self) -> float:
        """Requests reserved per second over the last RATE_WINDOW_SECONDS."""
        self._trim_sends(self.clock())
        if len(self._sends) < 2 or self._sends[-1] <= self._sends[0]:
            return 0.0
        return (len(self._sends) - 1) / (self._sends[-1] - self._sends[0])

    async def reserve(self, request_id: str, channels: Sequence[str], stop: asyncio.Event) -> None:
        """Wait until the request's channels fit under the bound (or `stop`), then count them."""
        need = max(1, len(channels))
        # Something must always be awaited or nothing would ever land to raise the bound.
        while self.active and self.outstanding > 0 and self.outstanding + need > self.bound:
            self.limited = True
            if stop.is_set():
                return
            self._changed.clear()
            await self._changed.wait()
        now = self.clock()
        self._first_send = self._first_send or now
        self._sends.append(now)
        self._awaited[request_id] = (now, set(channels) or {""})
        self.outstanding += need

    def release(self, request_id: str) -> None:
        """The request was not accepted (failed, or not sent): nothing to await for it."""
        entry = self._awaited.pop(request_id, None)
        if entry is not None:
            self.outstanding -= len(entry[1])
            self._changed.set()

    def quiet_seconds(self) -> float:
        """Seconds since a callback last landed (or since the first request, before any)."""
        since = self._last_landed or self._first_send
        return self.clock() - since if since else 0.0

    def landed(self, callbacks: Sequence[LandedCallback]) -> None:
        """Count landed callbacks against what is awaited, and measure their rate."""
        for callback in callbacks:
            entry = self._awaited.get(callback.request_id)
            if entry is None:  # another run's, a duplicate, or one presumed lost
                continue
            waiting = entry[1]
            before = len(waiting)
            if callback.channel in waiting:
                waiting.discard(callback.channel)
            elif not callback.channel or "" in waiting:  # answers the whole request
                waiting.clear()
            self.outstanding -= before - len(waiting)
            if not waiting:
                del self._awaited[callback.request_id]
        self.landed_total += len(callbacks)
        if callbacks:
            self._last_landed = self.clock()
        self._measure(sorted(c.received for c in callbacks))
        self._changed.set()

    def tick(self) -> None:
        """Forget answers awaited too long; give up pacing when nothing lands any more."""
        now = self.clock()
        limit = now - EXPIRY_BACKLOGS * self.backlog_seconds
        lost = []
        for request_id, (since, _) in self._awaited.items():
            if since > limit:
                break  # reserved in order: the rest are younger
            lost.append(request_id)
        for request_id in lost:
            self.presumed_lost += len(self._awaited[request_id][1])
            self.release(request_id)
        quiet_since = max(self._first_send, self._last_landed)
        quiet = quiet_since and now - quiet_since > self.backlog_seconds
        if self.active and quiet and self.outstanding > 0:
            self.active = False
            self._changed.set()
            log.warning(
                "no callback landed for %s while %d answers are awaited: is the receiver "
                "up, writing to this landing directory, and is the webhook registered? Pacing "
                "at the fixed rate_per_second from now on",
                duration(self.backlog_seconds),
                self.outstanding,
            )

    def _measure(self, received: list[float]) -> None:
        self._arrivals.extend(received)
        if not self._arrivals:
            return
        newest = self._arrivals[-1]
        while self._arrivals[0] < newest - RATE_WINDOW_SECONDS:
            self._arrivals.popleft()
        span = newest - self._arrivals[0]
        # A short span overstates the rate: deliveries start with a burst.
        if len(self._arrivals) >= MIN_RATE_SAMPLES and span >= MIN_RATE_SPAN_SECONDS:
            self.measured_rate = (len(self._arrivals) - 1) / span

    def _trim_sends(self, now: float) -> None:
        while self._sends and self._sends[0] < now - RATE_WINDOW_SECONDS:
            self._sends.popleft()


async def follow_callbacks(budget: CallbackBudget, tail: Tail, done: asyncio.Event) -> None:
    """Feed landed callbacks to the budget every POLL_SECONDS until `done`; log the pace."""
    logged = budget.clock()
    while not done.is_set():
        budget.landed(await asyncio.to_thread(tail.read_new))
        budget.tick()
        if budget.clock() - logged >= LOG_EVERY_SECONDS:
            logged = budget.clock()
            log_pace(budget, "pacing to callbacks")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), POLL_SECONDS)


def log_pace(budget: CallbackBudget, message: str) -> None:
    rate = budget.measured_rate
    log_fields(
        log,
        message,
        queries_per_second=f"{budget.query_rate():.1f}",
        callbacks_per_second=f"{rate:.1f}" if rate is not None else "not yet measured",
        awaited=budget.outstanding,
        bound=budget.bound,
        held_back=budget.limited,
    )


def configured_callback_rate(settings: Settings) -> float:
    """The configured callback rate: the simulator's when embedded, else `[collect]
    callback_rate_per_second` (Sinch's default 25/s)."""
    if settings.sinch.embedded:
        return settings.simulator.webhook_rate
    return settings.collect.callback_rate_per_second


def expected_callback_rate(
    conn: duckdb.DuckDBPyConnection, settings: Settings, *, run_id: str = ""
) -> tuple[float, str]:
    """(callbacks per second to plan with, where the figure comes from): the newest earlier
    run's measurement (not `run_id`'s, not a failed run's), else the configured rate.

    A run the callbacks held back measured the app's capacity. One they never held back
    measured only its own pace, a floor: the configured rate is used when higher.
    """
    row = conn.execute(
        """
        SELECT run_id, json_extract_string(counts, '$.submit.callback_rate_per_second')::DOUBLE,
            coalesce(json_extract_string(counts, '$.submit.callback_limited')::BOOLEAN, false)
        FROM runs
        WHERE json_extract_string(counts, '$.submit.callback_rate_per_second') IS NOT NULL
          AND run_id <> $run_id AND status <> 'failed'
        ORDER BY started_at DESC LIMIT 1
        """,
        {"run_id": run_id},
    ).fetchone()
    configured = configured_callback_rate(settings)
    if row is None or row[1] is None or row[1] <= 0:
        return configured, "configuration"
    measured = float(row[1])
    if row[2] or measured > configured:
        return measured, f"measured by run {row[0]}"
    # Said without brackets: the terminal shows it in brackets after the rate.
    return configured, f"configuration, as run {row[0]} was not held back by callbacks"


def run_callback_rate(conn: duckdb.DuckDBPyConnection, run_id: str) -> float | None:
    """The callback rate a run measured while sending (`runs.counts.submit`), if any."""
    row = conn.execute(
        "SELECT json_extract_string(counts, '$.submit.callback_rate_per_second')::DOUBLE "
        "FROM runs WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    return float(row[0]) if row and row[0] and row[0] > 0 else None
