"""The dispatcher against a real simulator process: pacing, 429s, 5xx, drops, expiry, give-up."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from pipeline.ledger import ACCEPTED, FAILED, PendingRequest, RequestEvent
from pipeline.settings import DispatchSettings, Secret, Secrets, SinchSettings
from pipeline.sinch.client import SinchClient
from pipeline.sinch.models import ChannelIdentity, query_body
from pipeline.submit.backlog import CallbackBudget
from pipeline.submit.dispatch import GC_YOUNG_THRESHOLD, Dispatcher, steady_timing
from tests.conftest import KEY_ID, KEY_SECRET, sim_stats, simulator

KEYS = Secrets(Secret(KEY_ID), Secret(KEY_SECRET), ())


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with simulator(None, "--latency-ms", "5") as url:
        yield url


def configure(url: str, **knobs: Any) -> None:
    defaults = {
        "latency_ms": 5,
        "rate_limit": 800,
        "retry_after": True,
        "fault_5xx_rate": 0.0,
        "fault_drop_rate": 0.0,
    }
    httpx.post(f"{url}/_sim/control", json=defaults | knobs).raise_for_status()
    httpx.post(f"{url}/_sim/reset").raise_for_status()


async def requests(count: int) -> AsyncIterator[PendingRequest]:
    for n in range(count):
        identity = ChannelIdentity("SMS", f"4670{n:07d}")
        yield PendingRequest(f"req-{n}", query_body("app", f"req-{n}", identities=[identity]))


async def fast_sleep(seconds: float) -> None:
    """Back-off without the wait: the behaviour is under test, not the clock."""
    await asyncio.sleep(min(seconds, 0.01))


def dispatch(
    url: str, count: int, *, during: Any = None, **settings: Any
) -> tuple[Dispatcher, list[RequestEvent]]:
    options = {"rate_per_second": 200.0, "max_in_flight": 16, "max_attempts": 8} | settings
    events: list[RequestEvent] = []

    async def main() -> Dispatcher:
        sinch = SinchSettings(base_url=url, token_url=f"{url}/oauth2/token", timeout_seconds=5)
        async with SinchClient(sinch, KEYS) as client:
            dispatcher = Dispatcher(
                client,
                DispatchSettings(**options),
                record=events.append,
                sleep=fast_sleep,
                jitter=lambda low, high: high,
            )
            work = asyncio.create_task(dispatcher.run(requests(count), asyncio.Event()))
            if during is not None:
                await asyncio.sleep(0.3)
                await asyncio.to_thread(during)
            await work
            return dispatcher

    return asyncio.run(main()), events


def states(events: list[RequestEvent]) -> dict[str, int]:
    found: dict[str, int] = {}
    for event in events:
        found[event.state] = found.get(event.state, 0) + 1
    return found


@pytest.mark.timed  # requests per 1 s window
def test_rate_and_concurrency_are_never_exceeded(sim_url: str) -> None:
    configure(sim_url, latency_ms=60, rate_limit=40)
    _dispatcher, events = dispatch(sim_url, 100, rate_per_second=40, max_in_flight=3)
    stats = sim_stats(sim_url)
    assert states(events) == {ACCEPTED: 100}
    assert stats["max_requests_in_1s_window"] <= 40
    assert stats["queries_refused"].get("429", 0) == 0
    assert stats["max_requests_in_flight"] <= 3


@pytest.mark.timed  # a 30/s client against a 10/s limit
def test_429_with_retry_after_pauses_everyone_then_succeeds(sim_url: str) -> None:
    configure(sim_url, rate_limit=10, retry_after=True)
    dispatcher, events = dispatch(sim_url, 30, rate_per_second=30)
    assert states(events) == {ACCEPTED: 30}
    assert dispatcher.stats.answers["429"] > 0
    assert dispatcher.pacer.episodes >= 1
    # Every pause lasted the Retry-After the simulator sent (at least one second).
    assert dispatcher.stats.last_sent - dispatcher.stats.first_sent >= 1.0


@pytest.mark.timed  # a 30/s client against a 10/s limit
def test_429_without_retry_after_backs_off_then_succeeds(sim_url: str) -> None:
    configure(sim_url, rate_limit=10, retry_after=False)
    dispatcher, events = dispatch(sim_url, 30, rate_per_second=30)
    assert states(events) == {ACCEPTED: 30}
    assert dispatcher.stats.answers["429"] > 0


@pytest.mark.timed  # a 40/s client against a 10/s limit
def test_persistent_429s_slow_the_rate_down(sim_url: str, caplog: pytest.LogCaptureFixture) -> None:
    configure(sim_url, rate_limit=10, retry_after=False)
    with caplog.at_level(logging.WARNING, logger="pipeline.submit.pacing"):
        dispatcher, events = dispatch(sim_url, 30, rate_per_second=40)
    assert states(events) == {ACCEPTED: 30}
    assert dispatcher.pacer.rate_cuts >= 1
    assert dispatcher.pacer.rate < 40
    assert "429s keep coming: slowing down" in caplog.text


def test_a_burst_of_503s_is_retried(sim_url: str) -> None:
    configure(sim_url, fault_5xx_rate=0.5)
    dispatcher, events = dispatch(sim_url, 60, max_attempts=12)
    assert states(events) == {ACCEPTED: 60}
    assert dispatcher.stats.answers["503"] > 10


def test_connections_reset_mid_request_are_retried(sim_url: str) -> None:
    configure(sim_url, fault_drop_rate=0.3)
    dispatcher, events = dispatch(sim_url, 60, max_attempts=12)
    assert states(events) == {ACCEPTED: 60}
    assert dispatcher.stats.answers["transport_error"] > 5
    # The dropped answers were for accepted queries: Sinch ran those checks twice.
    assert sim_stats(sim_url)["request_ids_repeated"] > 0


@pytest.mark.timed  # the expiry must land mid-run
def test_token_expiry_mid_run_renews_once(sim_url: str) -> None:
    configure(sim_url)
    before = sim_stats(sim_url)["tokens_issued"]
    expire = lambda: httpx.post(f"{sim_url}/_sim/expire-tokens").raise_for_status()  # noqa: E731
    _dispatcher, events = dispatch(sim_url, 120, rate_per_second=100, during=expire)
    assert states(events) == {ACCEPTED: 120}
    assert sim_stats(sim_url)["tokens_issued"] - before == 2


def test_every_attempt_failing_gives_up_with_the_reason(sim_url: str) -> None:
    configure(sim_url, fault_5xx_rate=1.0)
    _dispatcher, events = dispatch(sim_url, 5, max_attempts=3)
    assert states(events) == {FAILED: 5}
    for event in events:
        assert event.attempts == 3
        assert event.http_status == 503
        assert "gave up after 3 attempts: 503 UNAVAILABLE" in (event.error or "")


def test_client_errors_are_final_and_keep_sinch_s_message(sim_url: str) -> None:
    configure(sim_url)

    async def bad() -> AsyncIterator[PendingRequest]:
        yield PendingRequest("bad", b'{"recipient": {"contact_id": "x"}}')

    async def main() -> list[RequestEvent]:
        events: list[RequestEvent] = []
        sinch = SinchSettings(base_url=sim_url, token_url=f"{sim_url}/oauth2/token")
        async with SinchClient(sinch, KEYS) as client:
            await Dispatcher(client, DispatchSettings(), record=events.append).run(
                bad(), asyncio.Event()
            )
        return events

    [event] = asyncio.run(main())
    assert (event.state, event.attempts, event.http_status) == (FAILED, 1, 400)
    assert "app_id is required" in (event.error or "")


def test_a_callback_budget_keeps_accepted_requests_awaited_and_releases_failed_ones(
    sim_url: str,
) -> None:
    configure(sim_url, fault_5xx_rate=0.5)
    budget = CallbackBudget(60.0, 100.0)  # room for all: the accounting is under test
    events: list[RequestEvent] = []

    async def main() -> None:
        sinch = SinchSettings(base_url=sim_url, token_url=f"{sim_url}/oauth2/token")
        async with SinchClient(sinch, KEYS) as client:
            # 200/s: the default 8/s would only make the 40 requests take 5 s
            settings = DispatchSettings(rate_per_second=200.0, max_attempts=1)
            dispatcher = Dispatcher(client, settings, record=events.append, budget=budget)
            await dispatcher.run(requests(40), asyncio.Event())

    asyncio.run(main())
    configure(sim_url)
    accepted = states(events).get(ACCEPTED, 0)
    assert 0 < accepted < 40  # each request asks for one channel (no names: one slot)
    assert budget.outstanding == accepted


def test_retries_take_an_in_flight_slot_like_first_attempts(sim_url: str) -> None:
    configure(sim_url, latency_ms=30, fault_5xx_rate=0.5)
    dispatcher, events = dispatch(sim_url, 60, max_in_flight=3, max_attempts=12)
    assert states(events) == {ACCEPTED: 60}
    assert dispatcher.stats.answers["503"] > 10
    assert sim_stats(sim_url)["max_requests_in_flight"] <= 3


@pytest.mark.timed  # stopped after 0.2 s, mid-run
def test_a_stopped_run_leaves_no_in_flight_slot_taken(sim_url: str) -> None:
    configure(sim_url, latency_ms=50)
    events: list[RequestEvent] = []

    async def main() -> Dispatcher:
        sinch = SinchSettings(base_url=sim_url, token_url=f"{sim_url}/oauth2/token")
        async with SinchClient(sinch, KEYS) as client:
            settings = DispatchSettings(rate_per_second=100.0, max_in_flight=2)
            dispatcher = Dispatcher(client, settings, record=events.append)
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.2, stop.set)
            await dispatcher.run(requests(100), stop)
            stopped_after = len(events)
            assert 0 < stopped_after < 100
            # Every slot is free again: the same dispatcher sends the rest (it would wait for
            # ever on a slot a stopped task kept).
            await asyncio.wait_for(dispatcher.run(requests(10), asyncio.Event()), 10)
            assert len(events) == stopped_after + 10
            return dispatcher

    dispatcher = asyncio.run(main())
    assert dispatcher.stats.in_flight == 0


def test_steady_timing_restores_the_collector_and_switch_interval() -> None:
    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    with steady_timing():
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert sys.getswitchinterval() == 0.001
    assert gc.get_threshold() == thresholds
    assert sys.getswitchinterval() == interval
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, json={"request_id": "req-0"}),
        httpx.Response(202, json={"request_id": "req-0"}),
        httpx.Response(204),  # no body at all
    ],
    ids=["201", "202", "204-empty"],
)
def test_any_2xx_is_an_accepted_query(answer: httpx.Response) -> None:
    """The SDKs take any 2xx as success: such a query is accepted once, never re-sent."""
    calls: list[httpx.Request] = []

    def sinch(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(answer.status_code, content=answer.content)

    events: list[RequestEvent] = []

    async def main() -> None:
        sinch_settings = SinchSettings(base_url="http://sinch.test", auth="basic")
        async with SinchClient(
            sinch_settings, KEYS, transport=httpx.MockTransport(sinch)
        ) as client:
            assert (await client.query(b"{}")).accepted
            dispatcher = Dispatcher(
                client, DispatchSettings(max_attempts=3), record=events.append, sleep=fast_sleep
            )
            await dispatcher.run(requests(1), asyncio.Event())

    asyncio.run(main())
    assert [(e.state, e.http_status, e.attempts) for e in events] == [
        (ACCEPTED, answer.status_code, 1)
    ]
    assert len(calls) == 2  # the direct query above, then one attempt by the dispatcher
