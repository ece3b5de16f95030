"""Callback delivery: signed CAPABILITY callbacks to every registered webhook, paced per app.

Like Sinch: each webhook with the CAPABILITY trigger gets its own copy; deliveries are paced at
the app's webhook rate (Sinch's default 25/s) so a fast query rate builds a backlog; a failed
delivery (non-2xx, no answer) is retried with exponential back-off; order is not kept. Knobs add
duplicates (the same notification delivered twice) and drops (never delivered) for tests.

Deliveries go straight to aiohttp (`AiohttpTransport.exchange`, as `SinchClient` sends its
queries): through httpx's client layer (URL merging, cookies, redirects, auth) a delivery cost
about twice the CPU, and at 800 queries/s the simulator delivers 2,400 callbacks a second on the
same cores as the run it serves (`make bench-e2e`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
from aiolimiter import AsyncLimiter

from pipeline.ids import new_ulid
from pipeline.settings import SimulatorSettings
from pipeline.simulator.state import SimState, Webhook
from pipeline.sinch.signing import signature_headers
from pipeline.sinch.transport import AiohttpTransport

log = logging.getLogger(__name__)
MAX_CONCURRENT_DELIVERIES = 64
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
TIMEOUT = httpx.Timeout(10.0)
TIMEOUT_LIMITS = TIMEOUT.as_dict()  # one dict: the transport caches the timeout made from it


@dataclass(order=True)
class Delivery:
    due: float
    seq: int
    webhook: Webhook = field(compare=False)
    body: bytes = field(compare=False)
    duplicate: bool = field(compare=False, default=False)
    attempt: int = field(compare=False, default=1)


def app_limiter(rate: float) -> AsyncLimiter:
    """Sinch's per-app webhook rate: `rate` deliveries per second as a leaky bucket that lets
    at most a tenth of a second's deliveries through at once, and no more than 10 or a
    hundredth of a second's, whichever is more. (A tenth let 300 deliveries start together at
    3,000/s: the simulator's loop was then busy for tens of milliseconds, and the queries
    waiting meanwhile widened the dispatcher's measured delay spread, hence its window, and
    slowed it: `make bench-e2e`. A bucket of one at 100/s lost every timer's lateness: 93/s.)"""
    burst = max(1.0, min(rate / 10, max(10.0, rate / 100)))
    return AsyncLimiter(burst, burst / rate)


class Deliverer:
    def __init__(
        self,
        state: SimState,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.clock = clock
        self._rng = random.Random(state.settings.seed)
        self._queue: list[Delivery] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._limiters: dict[str, tuple[float, AsyncLimiter]] = {}  # app -> (rate, limiter)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_hand = 0
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._raw: AiohttpTransport | None = None
        # Checks scheduled by the API's thread, taken by the delivery thread (`running_apart`).
        self._inbox: deque[tuple[list[Webhook], list[bytes]]] = deque()
        self._taking = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None

    def schedule(self, app_id: str, bodies: list[bytes]) -> None:
        """Queue the callbacks of one check for every CAPABILITY webhook of the app (from the
        API's thread: handed to the delivery thread, when it runs, through `_inbox`)."""
        self._inbox.append((self.state.capability_webhooks(app_id), bodies))
        loop = self._loop
        if loop is None:
            self._take_inbox()
        else:
            loop.call_soon_threadsafe(self._take_inbox)

    def _take_inbox(self) -> None:
        stats = self.state.stats
        while self._inbox:
            self._taking += 1  # counted as pending while it moves from the inbox to the queue
            webhooks, bodies = self._inbox.popleft()
            for webhook in webhooks:
                for body in bodies:
                    stats.callbacks_generated += 1
                    if self._rng.random() < self.settings.callback_drop_rate:
                        stats.callbacks_dropped += 1
                        continue
                    self._requeue(Delivery(0.0, 0, webhook, body), self._delay())
                    if self._rng.random() < self.settings.callback_duplicate_rate:
                        stats.callbacks_duplicated += 1
                        duplicate = Delivery(0.0, 0, webhook, body, duplicate=True)
                        self._requeue(duplicate, self._delay())
            self._taking -= 1

    @contextlib.contextmanager
    def running_apart(self) -> Iterator[None]:
        """Run the delivery loop in a thread of its own, with its own event loop, for as long
        as the block lasts. Sinch's API does not slow down while it delivers callbacks: in the
        API's event loop, 2,400 deliveries a second held queries up by tens of milliseconds,
        and the dispatcher, which widens its window by the spread of its round trips, sent
        up to 10% slower (`make bench-e2e`)."""
        started = threading.Event()
        thread = threading.Thread(
            target=self._run_apart, args=(started,), name="deliverer", daemon=True
        )
        thread.start()
        started.wait()
        try:
            yield
        finally:
            loop, task = self._loop, self._main
            if loop is not None and task is not None:
                loop.call_soon_threadsafe(task.cancel)
            thread.join()
            self._loop = None

    def _run_apart(self, started: threading.Event) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        self._main = loop.create_task(self.run())
        self._loop = loop
        loop.call_soon(started.set)
        loop.call_soon(self._take_inbox)  # what was scheduled before the loop ran
        try:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._main)
        finally:
            left = asyncio.all_tasks(loop)  # deliveries cancelled by `run`, still unwinding
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def settings(self) -> SimulatorSettings:
        # Read on every use: /_sim/control may change the knobs while the simulator runs.
        return self.state.settings

    @property
    def pending(self) -> int:
        """Deliveries queued, waiting for their pacing slot, or in flight."""
        return len(self._inbox) + self._taking + len(self._queue) + self._in_hand + len(self._tasks)

    async def run(self) -> None:
        """The delivery loop; runs until cancelled."""
        transport = self._transport or AiohttpTransport(max_connections=MAX_CONCURRENT_DELIVERIES)
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as http:
            self._http = http
            self._raw = transport if isinstance(transport, AiohttpTransport) else None
            try:
                while True:
                    delivery = await self._next_due()
                    self._in_hand = 1
                    await self._pace(delivery.webhook.app_id)
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(delivery))
                    self._in_hand = 0
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            finally:
                for task in list(self._tasks):
                    task.cancel()

    async def _next_due(self) -> Delivery:
        while True:
            self._wakeup.clear()
            timeout = None
            if self._queue:
                wait = self._queue[0].due - self.clock()
                if wait <= 0:
                    return heapq.heappop(self._queue)
                timeout = wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _pace(self, app_id: str) -> None:
        rate = self.settings.webhook_rate
        known = self._limiters.get(app_id)
        if known is None or known[0] != rate:  # the rate was changed (POST /_sim/control)
            known = self._limiters[app_id] = (rate, app_limiter(rate))
        await known[1].acquire()

    async def _deliver(self, delivery: Delivery) -> None:
        stats = self.state.stats
        try:
            if await self._post(delivery):
                stats.callbacks_delivered += 1
                stats.duplicates_delivered += delivery.duplicate
                return
            stats.delivery_failures += 1
            if delivery.attempt >= self.settings.delivery_max_attempts:
                stats.callbacks_failed += 1
                return
            backoff = min(RETRY_BASE_SECONDS * 2 ** (delivery.attempt - 1), RETRY_MAX_SECONDS)
            delivery.attempt += 1
            self._requeue(delivery, backoff)
        finally:
            self._slots.release()

    async def _post(self, delivery: Delivery) -> bool:
        assert self._http is not None
        headers = {"Content-Type": "application/json"}
        if delivery.webhook.secret:
            stamp = int(time.time() + self.state.clock_skew_seconds)
            headers |= signature_headers(delivery.webhook.secret, delivery.body, new_ulid(), stamp)
        target, body = delivery.webhook.target, delivery.body
        try:
            if self._raw is not None:
                raw = await self._raw.exchange("POST", target, headers, body, TIMEOUT_LIMITS)
                status = raw.status_code
            else:
                status = (await self._http.post(target, content=body, headers=headers)).status_code
        except httpx.HTTPError as exc:
            log.debug("callback delivery to %s failed: %s", target, exc)
            return False
        return 200 <= status < 300

    def _delay(self) -> float:
        mean = self.settings.callback_delay_ms / 1000
        return self._rng.uniform(0.2 * mean, 1.8 * mean)

    def _requeue(self, delivery: Delivery, delay: float) -> None:
        delivery.due, delivery.seq = self.clock() + delay, next(self._seq)
        heapq.heappush(self._queue, delivery)
        self._wakeup.set()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's, as the API's (uvicorn), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
