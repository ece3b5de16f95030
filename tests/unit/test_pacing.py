"""The pacer's 429 logic with an injected clock: one episode pauses, persistence slows down."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.submit.pacing import MAX_MARGIN, SPREAD_MEMORY_SECONDS, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_retry_after_pauses_every_worker() -> None:
    clock = Clock()
    pacer = Pacer(100, clock=clock)
    pacer.too_many_requests(2.5, 0.1, sent_at=clock.now - 0.05)
    assert pacer.paused_until == clock.now + 2.5
    assert pacer.rate == 100  # one episode is not persistence


def test_without_retry_after_the_back_off_is_the_pause() -> None:
    clock = Clock()
    pacer = Pacer(100, clock=clock)
    pacer.too_many_requests(None, 0.7, sent_at=clock.now)
    assert pacer.paused_until == clock.now + 0.7


def test_429s_of_requests_sent_before_the_reaction_are_one_episode() -> None:
    clock = Clock()
    pacer = Pacer(100, clock=clock)
    sent = clock.now - 0.1
    for _ in range(50):  # every request in flight gets its 429
        pacer.too_many_requests(1.0, 0.1, sent_at=sent)
        clock.now += 0.001
    assert (pacer.episodes, pacer.rate_cuts, pacer.rate) == (1, 0, 100)


def test_persistent_429s_cut_the_rate_and_quiet_restores_it() -> None:
    clock = Clock()
    pacer = Pacer(100, clock=clock)
    pacer.too_many_requests(1.0, 0.1, sent_at=clock.now)
    clock.now += 1.5  # the pause is over; a request sent now is refused again
    pacer.too_many_requests(1.0, 0.1, sent_at=clock.now)
    assert pacer.rate_cuts == 1
    assert pacer.rate == 70
    clock.now += 3.0  # quiet: additive recovery of 5% of the configured rate per second
    pacer._recover()
    assert 84 <= pacer.rate <= 86
    clock.now += 10.0
    pacer._recover()
    assert pacer.rate == 100


@pytest.mark.timed  # the real clock
def test_the_window_guard_admits_at_most_the_rate_per_window() -> None:
    readings: list[float] = []

    def clock() -> float:  # the real clock; its last reading in acquire() is the slot's time
        readings.append(time.monotonic())
        return readings[-1]

    async def main() -> list[float]:
        pacer = Pacer(50, window_margin=0.0, clock=clock)
        sent = []
        for _ in range(120):
            await pacer.acquire()
            # The slot as the guard counted it: a time read after acquire() returns can be
            # microseconds late, so two reads on the window's edge would look < 1 s apart.
            sent.append(readings[-1])
        return sent

    sent = asyncio.run(main())
    most = max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent)
    assert most <= 50


def test_the_window_margin_follows_the_measured_spread_of_round_trips() -> None:
    clock = Clock()
    pacer = Pacer(100, window_margin=0.002, clock=clock)
    assert pacer.window == 1.002  # nothing measured: the floor
    for delay in (0.100, 0.101, 0.102):  # a quiet path: the margin stays small
        pacer.round_trip(clock.now - delay)
    assert abs(pacer.window - 1.004) < 1e-9
    clock.now += 0.5
    pacer.round_trip(clock.now - 0.140)  # one request reached the server 40 ms late
    assert abs(pacer.window - 1.042) < 1e-9
    pacer.round_trip(clock.now - 3.0)  # a stall: capped, the rate pays at most MAX_MARGIN
    assert abs(pacer.window - (1.002 + MAX_MARGIN)) < 1e-9
    clock.now += SPREAD_MEMORY_SECONDS + 1  # quiet again: the stall is forgotten
    pacer.round_trip(clock.now - 0.100)
    pacer.round_trip(clock.now - 0.103)
    assert abs(pacer.window - 1.005) < 1e-9
