"""Submission of capability queries: paced, bounded, retried, recorded (DESIGN §7 rule 5).

    dispatcher = Dispatcher(sinch_client, settings.dispatch, record=ledger_buffer.add)
    stats = await dispatcher.run(pending_requests, stop_event)

Each request gets up to `max_attempts` attempts. 429, 5xx, timeouts and dropped connections are
retried after a capped exponential back-off with full jitter (a 429 also pauses every worker,
see `pacing`); other 4xx answers are final and recorded with Sinch's error text. The outcome of
every finished request goes to `record` (the ledger); a request still retrying when `stop` is
set stays planned, so `--resume` sends it again with the same `request_id`.

With a `budget` (pipeline/submit/backlog.py), a request is started only when the answers it asks for
fit under what the measured callback rate clears: the query rate follows Sinch's callbacks.
The pacer caps it at `rate_per_second`, and never above Sinch's SINCH_MAX_RATE.

Why not a retry library (tenacity): the decision to retry depends on the answer, a 429 must
also pause the other workers and feed the rate controller, and a stop request must end the
retries; written out, that is one short loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.errors import SinchTransportError
from pipeline.ledger import ACCEPTED, FAILED, PendingRequest, RequestEvent
from pipeline.settings import DispatchSettings
from pipeline.sinch.client import QueryAnswer, SinchClient
from pipeline.sinch.retry import RETRYABLE_STATUSES, backoff_seconds
from pipeline.submit.backlog import CallbackBudget
from pipeline.submit.pacing import Pacer

log = logging.getLogger(__name__)
SINCH_MAX_RATE = 800.0  # capability queries per second per project (reference §rate limits)
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections while sending


@dataclass
class DispatchStats:
    total: int = 0
    sent: int = 0
    accepted: int = 0
    failed: int = 0
    retrying: int = 0
    in_flight: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    first_sent: float = 0.0
    last_sent: float = 0.0

    def rate(self) -> float:
        """Requests sent per second so far."""
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def sending_rate(self) -> float:
        """Requests per second over the sending period (first to last send)."""
        span = self.last_sent - self.first_sent
        return (self.sent - 1) / span if self.sent > 1 and span > 0 else 0.0


@contextlib.contextmanager
def steady_timing() -> Iterator[None]:
    """Keep pauses out of the send path.

    A full collection over everything loaded before dispatching takes tens of milliseconds; if
    it falls between taking a pacer slot and writing the request, the request leaves late and
    bunches with the next ones at Sinch's end. Freezing the objects that exist now leaves the
    collector only the short-lived objects of each request.

    Most of those die by reference count within a round trip; collecting the young generation
    every 700 allocations (the default) walked the requests in flight ~500 times in 20,000
    queries and pushed them into older generations that then needed their own collections:
    6-7% of the CPU a query at 800/s. With a young generation of GC_YOUNG_THRESHOLD objects it
    is collected every few seconds (2-3 ms each, within the window margin), older ones not at
    all while sending.
    """
    switch_interval = sys.getswitchinterval()
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    # The ledger's worker threads run some Python: hand the interpreter back to the event
    # loop within 1 ms rather than the default 5 ms.
    sys.setswitchinterval(0.001)
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class Dispatcher:
    def __init__(
        self,
        client: SinchClient,
        settings: DispatchSettings,
        *,
        record: Callable[[RequestEvent], None],
        pacer: Pacer | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        budget: CallbackBudget | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.record = record
        self.budget = budget
        self.pacer = pacer or Pacer(
            min(settings.rate_per_second, SINCH_MAX_RATE),
            window_margin=settings.window_margin_ms / 1000,
        )
        self.sleep = sleep
        self.jitter = jitter
        self.stats = DispatchStats()
        self._in_flight = asyncio.Semaphore(settings.max_in_flight)
        # Tasks alive at once (sending or waiting to retry): bounds memory, not the server load.
        self._live = asyncio.Semaphore(settings.max_in_flight * 2)

    async def run(
        self, requests: AsyncIterable[PendingRequest], stop: asyncio.Event
    ) -> DispatchStats:
        # A task group: should one submission fail unexpectedly, the others are cancelled (their
        # requests stay planned) before anyone records the final state of the ledger.
        with steady_timing():
            async with asyncio.TaskGroup() as group:
                async for request in requests:
                    await self._live.acquire()
                    if self.budget is not None:
                        await self.budget.reserve(request.request_id, request.channels, stop)
                    # The first attempt's slot is taken here, as the bare aiohttp loop does: a
                    # task starts only when it may send, instead of queueing with a hundred
                    # others on the semaphore (whose wake-ups rescan every queued waiter).
                    await self._in_flight.acquire()
                    if stop.is_set():
                        self._in_flight.release()
                        self._live.release()
                        break
                    group.create_task(self._submit(request, stop))
        return self.stats

    def backoff(self, attempt: int) -> float:
        s = self.settings
        return backoff_seconds(attempt, s.backoff_base_seconds, s.backoff_max_seconds, self.jitter)

    async def _submit(self, request: PendingRequest, stop: asyncio.Event) -> None:
        """Send `request` until it has an outcome; holds an in-flight slot for its first attempt."""
        accepted = False
        attempt = 0
        try:
            while not stop.is_set():
                attempt += 1
                sent_at = datetime.now(UTC)
                answer, sent_clock, problem = await self._attempt(request, held=attempt == 1)
                event = self._verdict(request, attempt, sent_at, answer, problem)
                if event is not None:
                    accepted = event.state == ACCEPTED
                    self._finish(event)
                    return
                await self._wait_before_retry(attempt, answer, sent_clock)
        finally:
            if attempt == 0:  # stopped or cancelled before the first attempt took the slot
                self._in_flight.release()
            self._live.release()
            if self.budget is not None and not accepted:  # no callback will come for it
                self.budget.release(request.request_id)

    def _verdict(
        self,
        request: PendingRequest,
        attempt: int,
        sent_at: datetime,
        answer: QueryAnswer | None,
        problem: str,
    ) -> RequestEvent | None:
        """The request's final outcome after this attempt, or None to try again."""
        outcome = functools.partial(
            RequestEvent, request.request_id, attempts=attempt, sent_at=sent_at
        )
        if answer is not None and answer.accepted:
            return outcome(state=ACCEPTED, http_status=answer.status, accepted_at=datetime.now(UTC))
        status = answer.status if answer is not None else None
        if answer is not None and status not in RETRYABLE_STATUSES:
            return outcome(state=FAILED, http_status=status, error=answer.error_text())
        if attempt >= self.settings.max_attempts:
            error = answer.error_text() if answer is not None else problem
            return outcome(
                state=FAILED, http_status=status, error=f"gave up after {attempt} attempts: {error}"
            )
        return None

    async def _attempt(
        self, request: PendingRequest, *, held: bool
    ) -> tuple[QueryAnswer | None, float, str]:
        """One try: (answer or None, when it was sent, what went wrong without an answer).
        `held`: the caller already holds an in-flight slot, which this releases."""
        sent_at = 0.0

        async def gate() -> None:
            nonlocal sent_at
            await self.pacer.acquire()
            sent_at = self.pacer.clock()
            self.stats.sent += 1
            self.stats.first_sent = self.stats.first_sent or sent_at
            self.stats.last_sent = sent_at

        if not held:
            await self._in_flight.acquire()
        self.stats.in_flight += 1
        try:
            answer = await self.client.query(request.body, gate=gate)
        except SinchTransportError as exc:
            self.stats.answers["transport_error"] += 1
            return None, sent_at, str(exc)
        finally:
            self.stats.in_flight -= 1
            self._in_flight.release()
        self.pacer.round_trip(sent_at)
        self.stats.answers[str(answer.status)] += 1
        return answer, sent_at, ""

    async def _wait_before_retry(
        self, attempt: int, answer: QueryAnswer | None, sent_clock: float
    ) -> None:
        delay = self.backoff(attempt)
        if answer is not None and answer.status == 429:
            self.pacer.too_many_requests(answer.retry_after, delay, sent_at=sent_clock)
            delay = max(delay, answer.retry_after or 0.0)
        self.stats.retrying += 1
        try:
            await self.sleep(delay)
        finally:
            self.stats.retrying -= 1

    def _finish(self, event: RequestEvent) -> None:
        if event.state == ACCEPTED:
            self.stats.accepted += 1
        else:
            self.stats.failed += 1
            log.debug("request %s failed: %s", event.request_id, event.error)
        self.record(event)
