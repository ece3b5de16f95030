"""Pacing for the dispatcher: the configured rate over every one-second window, never more.

Three mechanisms, each for one job:

- a cell-rate schedule (GCRA, the leaky bucket as arithmetic) spreads requests evenly: each
  send is due 1/rate after the previous one, and up to a tenth of a second's sends may go early.
  (Allowing a whole second's burst lets up to twice the rate through in the first second;
  allowing none undershoots through timer granularity; a tenth keeps bursts near 10%.) It is
  two additions a send, where `aiolimiter` (which the simulator still uses for Sinch's per-app
  webhook rate, where a few dozen acquisitions a second cost nothing) needed futures and timers
  at 800/s: the dispatcher's CPU a query is measured against a bare aiohttp loop
  (`make bench-dispatch`).
- a sliding-window guard turns "near" into "never": at most `rate` sends in any window of one
  second plus a margin. Sinch counts arrivals at its end: a request that reaches it late (our
  event loop was busy, the machine is loaded, the network queued it) and one a second later that
  reaches it on time are less than a second apart there. So the margin is the spread of
  send-to-arrival delays, measured as it happens (`DelaySpread`): each round trip bounds its
  request's delay to arrival, and the spread between the fastest and the slowest round trip of
  the last seconds bounds how much two arrivals can move closer together. A fast, quiet machine
  gets a margin of a few milliseconds; a slow or loaded one (or a congested path) gets what it
  needs, up to MAX_MARGIN, with no per-machine constant. `window_margin_ms` is only a floor.
- a shared pause: a 429 stops every worker until its `Retry-After` (or a back-off) has passed;
  when 429s keep coming the rate is cut multiplicatively and recovers additively (AIMD).

The clock and the sleep are injectable so tests run without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
DECREASE_FACTOR = 0.7
RECOVERY_PER_SECOND = 0.05  # of the configured rate
MIN_RATE_SHARE = 0.05
SUBDIVISIONS = 10
EPISODE_MEMORY_SECONDS = 10.0
PERSISTENT_EPISODES = 2
SPREAD_MEMORY_SECONDS = 5.0
MAX_MARGIN = 0.1  # seconds: beyond it the rate pays more than a 429 pause would cost
# The shortest wait slept: event loops time out in whole milliseconds (libuv, epoll), so a
# shorter sleep returned at once and was slept again, ~20 times a query at 800/s (a fifth of
# the dispatcher's CPU). Waking up to 1 ms late never sends early; the schedule catches up.
MIN_SLEEP = 0.001


class DelaySpread:
    """The spread (slowest - fastest) of round trips over the last SPREAD_MEMORY_SECONDS.

    Kept per second (fastest, slowest), so an observation costs O(1), and the spread is only
    recomputed when an observation changes a second's extremes.
    """

    def __init__(self) -> None:
        self._seconds: deque[tuple[int, float, float]] = deque()
        self.spread = 0.0

    def observe(self, now: float, round_trip: float) -> bool:
        """Count one round trip; True if the spread may have changed."""
        second = int(now)
        if self._seconds and self._seconds[-1][0] == second:
            _, fastest, slowest = self._seconds[-1]
            if fastest <= round_trip <= slowest:
                return False
            self._seconds[-1] = (second, min(fastest, round_trip), max(slowest, round_trip))
        else:
            self._seconds.append((second, round_trip, round_trip))
            while self._seconds[0][0] <= second - SPREAD_MEMORY_SECONDS:
                self._seconds.popleft()
        self.spread = max(s[2] for s in self._seconds) - min(s[1] for s in self._seconds)
        return True


class Pacer:
    def __init__(
        self,
        rate: float,
        *,
        window_margin: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.configured_rate = rate
        self.rate = rate
        self.window_margin = window_margin
        self.window = 1.0 + window_margin
        self.delays = DelaySpread()
        self.clock = clock
        self.sleep = sleep
        self.paused_until = 0.0
        self.last_429 = -math.inf
        self.last_decrease = -math.inf
        self.rate_cuts = 0
        self.episodes = 0
        self._reacted_at = -math.inf
        self._recent_episodes: deque[float] = deque()
        self._sends: deque[float] = deque()
        self._due = -math.inf  # when the next send is due on the even schedule
        self._set_rate(rate)
        self._guard = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a send slot: after any shared pause, within the rate, within the window."""
        while (wait := self.paused_until - self.clock()) > 0:
            await self._wait(wait)
        self._recover()
        async with self._guard:
            while (wait := self._due - self._early - self.clock()) > 0:
                await self._wait(wait)
            self._due = max(self._due, self.clock()) + self._interval
            await self._respect_window()
            self._sends.append(self.clock())

    def round_trip(self, sent_at: float) -> None:
        """A response arrived for a request sent at `sent_at`: widen or narrow the window."""
        now = self.clock()
        if self.delays.observe(now, now - sent_at):
            self.window = 1.0 + self.window_margin + min(MAX_MARGIN, self.delays.spread)

    async def _respect_window(self) -> None:
        while True:
            now = self.clock()
            while self._sends and self._sends[0] <= now - self.window:
                self._sends.popleft()
            if len(self._sends) < self.window_capacity:
                return
            await self._wait(self._sends[0] + self.window - now)

    async def _wait(self, seconds: float) -> None:
        await self.sleep(max(seconds, MIN_SLEEP))

    def too_many_requests(
        self, retry_after: float | None, fallback: float, *, sent_at: float
    ) -> None:
        """A 429 for a request sent at `sent_at`: pause everyone; slow down if 429s persist.

        Requests already in flight when we first react were sent under the same conditions, so
        their 429s are one episode. A 429 for a request sent after we reacted means the pause
        did not help: another episode. Two episodes within EPISODE_MEMORY_SECONDS cut the rate.
        """
        now = self.clock()
        pause = retry_after if retry_after is not None else fallback
        self.paused_until = max(self.paused_until, now + pause)
        self.last_429 = now
        if sent_at < self._reacted_at:
            return
        self._reacted_at = now
        self.episodes += 1
        self._recent_episodes.append(now)
        while self._recent_episodes[0] < now - EPISODE_MEMORY_SECONDS:
            self._recent_episodes.popleft()
        log.info("429 from Sinch: every worker pauses %.2f s", pause)
        if len(self._recent_episodes) >= PERSISTENT_EPISODES and now - self.last_decrease > 1.0:
            self._set_rate(max(self.rate * DECREASE_FACTOR, self.configured_rate * MIN_RATE_SHARE))
            self.last_decrease = now
            self.rate_cuts += 1
            log.warning(
                "429s keep coming: slowing down to %.1f requests/s (configured %.1f)",
                self.rate,
                self.configured_rate,
            )

    def _recover(self) -> None:
        if self.rate >= self.configured_rate:
            return
        now = self.clock()
        quiet = now - max(self.last_429, self.last_decrease)
        if quiet < 1.0:
            return
        step = self.configured_rate * RECOVERY_PER_SECOND * quiet
        self._set_rate(min(self.configured_rate, self.rate + step))
        self.last_decrease = now
        if self.rate >= self.configured_rate:
            log.info("rate recovered to %.1f requests/s", self.rate)

    def _set_rate(self, rate: float) -> None:
        self.rate = rate
        self.window_capacity = max(1, math.floor(rate))
        self._interval = 1 / rate
        self._early = (max(1.0, rate / SUBDIVISIONS) - 1) * self._interval
