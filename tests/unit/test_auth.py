"""Token fetches against Sinch's small token bucket: full-jitter back-off and a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from pipeline.errors import SinchApiError, SinchTransportError
from pipeline.settings import Secret
from pipeline.sinch.auth import OAuth2Auth

TOKEN_URL = "http://auth.test/oauth2/token"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that moves only when the code under test sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fetch(
    handler: Handler, fake: FakeTime, jitter: Callable[[float, float], float], **options: float
) -> str:
    async def main() -> str:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            auth = OAuth2Auth(
                http,
                TOKEN_URL,
                Secret("id"),
                Secret("s"),
                clock=fake.clock,
                sleep=fake.sleep,
                jitter=jitter,
                **options,
            )
            return await auth.authorization()

    return asyncio.run(main())


def refusing(times: int, status: int = 429) -> tuple[Handler, list[int]]:
    """A token endpoint that answers `status` (no Retry-After) `times` times, then a token."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= times:
            return httpx.Response(status)
        return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})

    return handler, calls


def test_429s_back_off_with_full_jitter() -> None:
    handler, calls = refusing(4)
    fake, ranges = FakeTime(), []

    def jitter(low: float, high: float) -> float:
        ranges.append((low, high))
        return high * 0.3  # a draw from the range, not its end

    assert fetch(handler, fake, jitter) == "Bearer t"
    assert len(calls) == 5
    # Each wait is drawn from [0, step], the steps doubling: not a fixed 0.5, 1, 2 s schedule.
    assert ranges == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 4.0)]
    assert fake.sleeps == pytest.approx([0.15, 0.3, 0.6, 1.2])


def test_the_steps_are_capped() -> None:
    handler, _ = refusing(7)
    highs: list[float] = []

    def jitter(low: float, high: float) -> float:
        highs.append(high)
        return high

    fetch(handler, FakeTime(), jitter)
    assert highs == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_429_that_does_not_stop_gives_up_at_the_deadline_and_says_so() -> None:
    handler, calls = refusing(10_000)
    fake = FakeTime()
    with pytest.raises(SinchApiError, match=r"no token after \d+ attempts in 30 s") as raised:
        fetch(handler, fake, lambda low, high: high, deadline_seconds=30)
    assert raised.value.status == 429
    assert "10 fetches a second" in str(raised.value)
    assert sum(fake.sleeps) == pytest.approx(30)  # never waits past the deadline
    assert len(calls) > 4  # kept trying while there was time


def test_an_unanswered_token_endpoint_gives_up_at_the_deadline() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake = FakeTime()
    with pytest.raises(SinchTransportError, match=r"no answer: .*connection refused"):
        fetch(handler, fake, lambda low, high: high, deadline_seconds=10)
    assert sum(fake.sleeps) == pytest.approx(10)


def test_a_refused_access_key_is_not_retried() -> None:
    handler, calls = refusing(1, status=401)
    with pytest.raises(SinchApiError, match="refused the access key") as raised:
        fetch(handler, FakeTime(), lambda low, high: high)
    assert (raised.value.status, len(calls)) == (401, 1)
