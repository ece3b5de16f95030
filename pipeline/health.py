"""Watching the receiver's health while a run waits for callbacks.

A receiver that is down does not lose callbacks at once (Sinch retries failed deliveries with
back-off), but a run that waits without knowing it ends with answers missing and no hint why.
The watch polls the receiver's `/healthz` and logs each change: a warning when it stops
answering, and how long it was down when it is back. A proxy in front of the receiver that
keeps `/healthz` private (403, 404, 405) says nothing about the receiver: its health is then
"not checked", never "down".

    async with HealthWatch("http://127.0.0.1:8751/healthz", interval=5.0) as watch:
        ...                       # collect
    watch.outages                 # how many times it went down
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType

import httpx

from pipeline.readable import duration
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# What a proxy answers for a path it does not forward (the nginx example in docs/receiver.md
# forwards only /callbacks/sinch); the receiver itself answers /healthz with 200 or 503.
HIDDEN_STATUSES = frozenset({403, 404, 405})


class HealthWatch:
    """Polls `url` every `interval` seconds in the background while the context is open."""

    def __init__(
        self,
        url: str,
        *,
        interval: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        self.outages = 0
        self.down_seconds = 0.0
        self.checked = True  # False while something in front of the receiver hides /healthz
        self._down_since: float | None = None
        self._client = httpx.AsyncClient(transport=transport, timeout=min(interval, 2.0))
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, settings: Settings) -> HealthWatch:
        """The watch a run's collect uses: `[collect]`'s health URL and interval."""
        url = settings.collect.health_url(settings.receiver)
        return cls(url, interval=settings.collect.health_interval_seconds)

    async def __aenter__(self) -> HealthWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()
        if self._down_since is not None:
            self.down_seconds += time.monotonic() - self._down_since
            log.warning("the receiver at %s was still down when collecting ended", self.url)

    async def _run(self) -> None:
        while True:
            self.observe(await self.check())
            await asyncio.sleep(self.interval)

    async def check(self) -> int | str:
        """The status `/healthz` answered with, or why nothing answered."""
        try:
            response = await self._client.get(self.url)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return response.status_code

    def observe(self, answer: int | str) -> None:
        """Log a change of state: up -> down (warning), down -> up (how long it was down),
        and when the health cannot be checked."""
        hidden = answer in HIDDEN_STATUSES
        if hidden and self.checked:
            log.warning(
                "the receiver's health is not checked: %s answers HTTP %s, as a proxy that keeps "
                "/healthz private does; set [collect] receiver_health_url to a /healthz that "
                "reaches the receiver itself",
                self.url,
                answer,
            )
        self.checked = not hidden
        if hidden or answer == 200:  # a proxy answering for it is no sign of an outage
            self._track(None)
        else:
            self._track(answer if isinstance(answer, str) else f"HTTP {answer}")

    def _track(self, problem: str | None) -> None:
        now = time.monotonic()
        if problem is not None and self._down_since is None:
            self._down_since = now
            self.outages += 1
            log.warning(
                "the receiver at %s is down (%s): callbacks wait at Sinch, which retries them",
                self.url,
                problem,
            )
        elif problem is None and self._down_since is not None:
            down = now - self._down_since
            self.down_seconds += down
            self._down_since = None
            log.warning("the receiver at %s is back after %s down", self.url, duration(down))
