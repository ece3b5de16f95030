"""The landing writer: group commit into segment files owned by one process.

`await writer.append(line)` returns only once the line is on disk (written and fsynced), so the
receiver can acknowledge it. Lines that arrive while a write is in progress or within
`commit_window` of the first one share one write and one fsync: throughput grows with
concurrency while every acknowledgement still follows its own fsync.

    writer = LandingWriter(Path("data/landing"))
    await writer.start()
    await writer.append(encode_line(...))
    await writer.close()           # flushes, then closes the segment (atomic rename)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.files import fsync_dir
from pipeline.landing.segments import CLOSED_SUFFIX, OPEN_SUFFIX, segment_name
from pipeline.private import make_private_dirs

log = logging.getLogger(__name__)
MAX_BATCH_LINES = 4096
FSYNC_BUCKETS_MS = (0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000)


def host_name() -> str:
    """This host's name as it goes into file and object names."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32]


def new_writer_id() -> str:
    """Unique per process and start: host, pid and random bits (several receivers, restarts)."""
    return f"{host_name()}-{os.getpid()}-{os.urandom(3).hex()}"


@dataclass
class WriterMetrics:
    lines: int = 0
    batches: int = 0
    bytes: int = 0
    segments_closed: int = 0
    fsync_seconds_sum: float = 0.0
    fsync_buckets: list[int] = field(default_factory=lambda: [0] * len(FSYNC_BUCKETS_MS))

    def observe_fsync(self, seconds: float) -> None:
        self.fsync_seconds_sum += seconds
        millis = seconds * 1000
        for index, bound in enumerate(FSYNC_BUCKETS_MS):
            if millis <= bound:
                self.fsync_buckets[index] += 1


class LandingWriter:
    def __init__(
        self,
        directory: Path,
        *,
        writer_id: str | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_seconds: float = 300.0,
        commit_window_seconds: float = 0.002,
        durable: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.writer_id = writer_id or new_writer_id()
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.commit_window = commit_window_seconds
        self.durable = durable
        self.clock = clock
        self.metrics = WriterMetrics()
        self._sequence = 0
        self._fd = -1
        self._segment_bytes = 0
        self._segment_opened = 0.0
        self._lines: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failure: str | None = None

    @property
    def current_name(self) -> str:
        """The segment being written (for /healthz)."""
        return self.segment_path.name

    @property
    def segment_path(self) -> Path:
        return self.directory / (segment_name(self.writer_id, self._sequence) + OPEN_SUFFIX)

    async def start(self) -> None:
        make_private_dirs(self.directory)
        await asyncio.to_thread(self._open_segment)
        self._task = asyncio.create_task(self._flush_loop())

    async def append(self, line: bytes) -> None:
        """Queue one complete line; returns when it is durable (raises OSError if it is not)."""
        if not self.healthy or self._closing:
            raise RuntimeError(self.failure or "landing writer is not running")
        waiter = asyncio.get_running_loop().create_future()
        self._lines.append(line)
        self._waiters.append(waiter)
        self._wakeup.set()
        await waiter

    async def close(self) -> None:
        """Flush what is queued, stop, and close the current segment."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._fd >= 0:
            await asyncio.to_thread(self._close_segment)

    @property
    def healthy(self) -> bool:
        return self.failure is None and self._task is not None and not self._task.done()

    async def _flush_loop(self) -> None:
        try:
            await self._flush_forever()
        except Exception as exc:
            # Whatever broke, nobody may wait forever for an answer that will not come.
            self._fail(f"landing writer stopped: {type(exc).__name__}: {exc}")
            raise

    async def _flush_forever(self) -> None:
        idle_check = min(1.0, self.max_age_seconds / 4)
        while self.failure is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), idle_check)
            if self._closing and not self._lines:
                return
            if self.commit_window > 0 and len(self._lines) < MAX_BATCH_LINES:
                await asyncio.sleep(self.commit_window)  # let concurrent callbacks join the batch
            self._wakeup.clear()
            if self._lines:
                await self._commit()
            if self._segment_due_for_rotation():
                await asyncio.to_thread(self._rotate)

    def _fail(self, reason: str) -> None:
        self.failure = reason
        log.error("%s; callbacks are refused with 503 until the receiver restarts", reason)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(OSError(reason))
        self._lines, self._waiters = [], []

    async def _commit(self) -> None:
        lines, waiters = self._lines, self._waiters
        self._lines, self._waiters = [], []
        try:
            await asyncio.to_thread(self._write, b"".join(lines))
        except OSError as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        self.metrics.lines += len(lines)
        self.metrics.batches += 1
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            if self.durable:
                started = time.perf_counter()
                os.fsync(self._fd)
                self.metrics.observe_fsync(time.perf_counter() - started)
        except OSError:
            self._recover_from_failed_write()
            raise
        self._segment_bytes += len(data)
        self.metrics.bytes += len(data)

    def _recover_from_failed_write(self) -> None:
        """Cut off the part of the failed batch that reached the file and go on in a new
        segment: a later line must never follow half a line, and after a failed fsync the
        kernel may already have dropped the file's unwritten pages. If even that fails, the
        writer stops; every callback then gets 503 and Sinch delivers it again later."""
        try:
            os.ftruncate(self._fd, self._segment_bytes)
            self._rotate()
        except OSError as exc:
            self.failure = f"cannot write to {self.directory}: {exc.strerror or exc}"

    def _segment_due_for_rotation(self) -> bool:
        if self._segment_bytes == 0:
            return False
        too_old = self.clock() - self._segment_opened >= self.max_age_seconds
        return self._segment_bytes >= self.max_bytes or too_old

    def _open_segment(self) -> None:
        self._sequence += 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.segment_path, flags, 0o640)
        self._segment_bytes = 0
        self._segment_opened = self.clock()
        fsync_dir(self.directory)

    def _close_segment(self) -> None:
        """Seal the segment: fsync, then an atomic rename to its closed name."""
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        open_path = self.segment_path
        if self._segment_bytes == 0:
            open_path.unlink()
        else:
            open_path.rename(
                open_path.with_name(open_path.name.replace(OPEN_SUFFIX, CLOSED_SUFFIX))
            )
            self.metrics.segments_closed += 1
        fsync_dir(self.directory)

    def _rotate(self) -> None:
        self._close_segment()
        self._open_segment()
