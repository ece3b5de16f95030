"""The landing writer on S3: each group-committed batch becomes one immutable object.

`await writer.append(line)` returns once the object holding the line exists in the bucket (a
conditional PUT answered 200), so the receiver can acknowledge it, as `writer.LandingWriter`
does after fsync. Lines arriving while PUTs are in progress, or within `commit_window` of the
first, share the next object; up to `PUTS_IN_FLIGHT` objects are written at once, each by a
lane of its own (its own folder, `<writer>-<lane>`, and sequence).

When the store fails (no answer, timeouts, 5xx after the client's retries) the batch's
callbacks get OSError (the receiver answers 503 and Sinch delivers them again), `/healthz`
says so, and the writer keeps serving: the next batch, or a probe every second while idle,
finds the store back. The failed batch's name is used again by the next batch; a conflict
(412) on it is read back: our own earlier attempt that did land counts as written, anything
else (never seen: the names are the writer's own) moves on to the next name.

    writer = ObjectWriter(ObjectLanding(store, parse_s3("s3://audit/landing/")))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pipeline.errors import StorageError
from pipeline.landing.objects import ObjectLanding, object_name
from pipeline.landing.writer import MAX_BATCH_LINES, WriterMetrics, host_name, new_writer_id

log = logging.getLogger(__name__)
PROBE_INTERVAL_SECONDS = 1.0
MAX_NAME_CONFLICTS = 5
# PUTs a writer keeps in flight (one per lane). A PUT takes milliseconds to tens of ms (real
# S3: tens); with one at a time, two receivers on a loaded 2-core machine managed ~1,000
# callbacks/s in `make bench-receiver`, the store's latency and not the CPU being the limit.
PUTS_IN_FLIGHT = 4


class ObjectWriter:
    def __init__(
        self,
        landing: ObjectLanding,
        *,
        writer_id: str | None = None,
        commit_window_seconds: float = 0.002,
        lanes: int = PUTS_IN_FLIGHT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.landing = landing
        self.writer_id = writer_id or new_writer_id()
        self.host = host_name()
        self.commit_window = commit_window_seconds
        self.clock = clock
        self.metrics = WriterMetrics()
        self.failure: str | None = None  # the store's last problem, until a write succeeds
        # Each lane writes one batch at a time under names of its own (objects.py: in order
        # within a folder); several lanes keep PUTs in flight while one waits for its answer.
        self._sequences = [1] * lanes
        self._idle_lanes = list(range(lanes))
        self._in_flight: set[asyncio.Task[None]] = set()
        self._lines: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_name = ""

    @property
    def current_name(self) -> str:
        """The last object written (for /healthz)."""
        return self._last_name

    @property
    def healthy(self) -> bool:
        return self.failure is None and self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def append(self, line: bytes) -> None:
        """Queue one complete line; returns when its object is stored (raises OSError if not)."""
        if self._closing or self._task is None or self._task.done():
            raise RuntimeError("landing writer is not running")
        waiter = asyncio.get_running_loop().create_future()
        self._lines.append(line)
        self._waiters.append(waiter)
        self._wakeup.set()
        await waiter

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), PROBE_INTERVAL_SECONDS)
            if self._closing and not self._lines and not self._in_flight:
                return
            if self._lines and self._idle_lanes:
                if self.commit_window > 0 and len(self._lines) < MAX_BATCH_LINES:
                    await asyncio.sleep(self.commit_window)  # let concurrent callbacks join
                self._wakeup.clear()
                self._start_puts()
            else:
                self._wakeup.clear()
                if not self._lines and not self._in_flight and self.failure is not None:
                    await asyncio.to_thread(self._probe)

    def _start_puts(self) -> None:
        """Hand what is queued to idle lanes, one batch each."""
        while self._lines and self._idle_lanes:
            lane = self._idle_lanes.pop()
            lines, waiters = self._lines[:MAX_BATCH_LINES], self._waiters[:MAX_BATCH_LINES]
            del self._lines[:MAX_BATCH_LINES], self._waiters[:MAX_BATCH_LINES]
            task = asyncio.create_task(self._commit(lane, lines, waiters))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _commit(
        self, lane: int, lines: list[bytes], waiters: list[asyncio.Future[None]]
    ) -> None:
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._put, lane, b"".join(lines))
        except StorageError as exc:
            self._failing(str(exc))
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(OSError(f"not stored: {exc}"))
            return
        finally:
            self._idle_lanes.append(lane)
            self._wakeup.set()
        self.metrics.observe_fsync(time.perf_counter() - started)
        if self.failure is not None:
            log.warning("landing on %s works again", self.landing)
            self.failure = None
        self.metrics.lines += len(lines)
        self.metrics.batches += 1
        self.metrics.segments_closed += 1
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _put(self, lane: int, data: bytes) -> None:
        """Store `data` under the lane's next name (runs in a worker thread)."""
        bucket, where, store = self.landing.where.bucket, self.landing.where, self.landing.store
        folder = f"{self.writer_id}-{lane}"
        for _ in range(MAX_NAME_CONFLICTS):
            name = object_name(self.clock(), self.host, folder, self._sequences[lane])
            key = where.key(name)
            if store.put_if_absent(bucket, key, data) or store.get(bucket, key)[0] == data:
                self._sequences[lane] += 1
                self._last_name = name
                self.metrics.bytes += len(data)
                return
            log.warning("%s: taken by another writer; writing the batch under the next name", key)
            self._sequences[lane] += 1
        raise StorageError(f"{where}: {MAX_NAME_CONFLICTS} names in a row were taken")

    def _probe(self) -> None:
        """While failing and idle: is the store back? (So /healthz recovers without traffic.)"""
        try:
            self.landing.store.probe(self.landing.where.bucket, self.landing.where.prefix)
        except StorageError as exc:
            self.failure = str(exc)
            return
        log.warning("landing on %s works again", self.landing)
        self.failure = None

    def _failing(self, problem: str) -> None:
        if self.failure is None:
            log.error(
                "landing on %s failed, answering 503 until it works: %s", self.landing, problem
            )
        self.failure = problem
