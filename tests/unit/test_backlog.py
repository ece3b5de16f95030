"""Self-pacing to callbacks: the bound, its measurement, and reading what lands."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline import runs
from pipeline.landing.segments import encode_line
from pipeline.landing.tail import LandedCallback, LandingTail
from pipeline.settings import Settings
from pipeline.submit.backlog import RATE_MARGIN, CallbackBudget, expected_callback_rate
from pipeline.warehouse import open_warehouse

CHANNELS = ("RCS", "SMS", "WHATSAPP")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def landed(request_id: str, channel: str, at: float) -> LandedCallback:
    return LandedCallback(at, request_id, channel)


async def try_reserve(budget: CallbackBudget, request_id: str) -> bool:
    """Whether the request gets its reservation without waiting."""
    try:
        await asyncio.wait_for(budget.reserve(request_id, CHANNELS, asyncio.Event()), 0.05)
    except TimeoutError:
        return False
    return True


def test_before_any_callback_the_expected_rate_gives_a_small_window() -> None:
    budget = CallbackBudget(10.0, 3.0, clock=Clock())  # 0.95 * 3/s * 10 s = 28 targets

    async def main() -> list[bool]:
        return [await try_reserve(budget, f"r{n}") for n in range(11)]

    assert asyncio.run(main()) == [True] * 9 + [False, False]
    assert budget.outstanding == 27
    assert budget.limited


def test_landed_callbacks_free_the_window_once_per_channel() -> None:
    budget = CallbackBudget(1.0, 4.3, clock=Clock())  # 4 targets: one request of three

    async def main() -> tuple[bool, bool, bool]:
        assert await try_reserve(budget, "a")
        blocked = await try_reserve(budget, "b")
        # A duplicate and another run's callback free nothing.
        budget.landed([landed("a", "SMS", 1.0), landed("a", "SMS", 1.1), landed("x", "SMS", 1.2)])
        still_blocked = await try_reserve(budget, "b")
        budget.landed([landed("a", "RCS", 1.3), landed("a", "WHATSAPP", 1.4)])
        return blocked, still_blocked, await try_reserve(budget, "b")

    assert asyncio.run(main()) == (False, False, True)
    assert budget.outstanding == 3


def test_a_channelless_callback_answers_the_whole_request_and_failures_release() -> None:
    budget = CallbackBudget(100.0, 1.0, clock=Clock())

    async def main() -> None:
        for request_id in ("a", "b"):
            await budget.reserve(request_id, CHANNELS, asyncio.Event())

    asyncio.run(main())
    budget.landed([landed("a", "", 1.0)])
    assert budget.outstanding == 3
    budget.release("b")
    assert budget.outstanding == 0


def test_the_rate_is_measured_from_receiver_times_and_sets_the_bound() -> None:
    budget = CallbackBudget(30.0, 25.0, clock=Clock())
    budget.landed([landed("other-run", "SMS", 5000 + n / 50) for n in range(10)])
    assert budget.measured_rate is None  # too few, too short a span: the expected rate holds
    assert budget.bound == int(RATE_MARGIN * 25 * 30)
    budget.landed([landed("other-run", "SMS", 5000 + n / 50) for n in range(10, 1001)])
    assert budget.measured_rate == pytest.approx(50.0)
    assert budget.bound == int(RATE_MARGIN * 50 * 30)
    # A faster callback rate shows within the rate window and raises the bound.
    budget.landed([landed("other-run", "SMS", 5020 + n / 150) for n in range(1, 1501)])
    assert budget.measured_rate == pytest.approx(150.0)


def test_answers_awaited_too_long_are_presumed_lost() -> None:
    clock = Clock()
    budget = CallbackBudget(2.0, 10.0, clock=clock)

    async def reserve(request_id: str) -> None:
        await budget.reserve(request_id, CHANNELS, asyncio.Event())

    asyncio.run(reserve("old"))
    budget.landed([landed("old", "SMS", 1.0)])
    clock.now += 5.0
    asyncio.run(reserve("young"))
    clock.now += 4.0  # "old" waited 9 s > 4 backlogs of 2 s; "young" 4 s
    budget.landed([landed("elsewhere", "SMS", 9.0)])  # others' callbacks still land
    budget.tick()
    assert (budget.outstanding, budget.presumed_lost, budget.active) == (3, 2, True)


def test_pacing_is_switched_off_when_callbacks_stop_landing() -> None:
    clock = Clock()
    budget = CallbackBudget(2.0, 1.0, clock=clock)  # a bound of one request

    async def main() -> tuple[bool, bool]:
        assert await try_reserve(budget, "a")
        budget.landed([landed("a", "SMS", 1.0)])  # the receiver was up, then goes down
        clock.now += 1.5
        budget.tick()
        held = not await try_reserve(budget, "b")  # still pacing: waits for callbacks
        clock.now += 1.0  # nothing landed for 2.5 s > one backlog, answers awaited
        budget.tick()
        return held, await try_reserve(budget, "c")

    assert asyncio.run(main()) == (True, True)
    assert not budget.active


def test_pacing_is_switched_off_when_nothing_ever_lands() -> None:
    clock = Clock()
    budget = CallbackBudget(2.0, 1.0, clock=clock)

    async def main() -> bool:
        assert await try_reserve(budget, "a")
        clock.now += 2.5
        budget.tick()
        return await try_reserve(budget, "b")

    assert asyncio.run(main())
    assert not budget.active


def landing_line(request_id: str, channel: str, kind: str = "capability") -> bytes:
    body = json.dumps({"capability_notification": {"request_id": request_id, "channel": channel}})
    return encode_line(body.encode(), "n", "w", kind, datetime(2026, 11, 26, tzinfo=UTC))


def test_the_tail_reads_only_complete_lines_landed_since_it_started(tmp_path: Path) -> None:
    old = tmp_path / "w-000001.ndjson"
    old.write_bytes(landing_line("before", "SMS"))
    open_segment = tmp_path / "w-000002.ndjson.open"
    open_segment.write_bytes(landing_line("before", "RCS") + b'{"torn')
    tail = LandingTail(tmp_path)
    assert tail.read_new() == []
    # The torn line is completed, another follows, and the segment is closed (renamed).
    with open_segment.open("ab") as handle:
        handle.write(b'"}\n' + landing_line("r1", "SMS") + landing_line("r1", "x", "other"))
    open_segment.rename(tmp_path / "w-000002.ndjson")
    (tmp_path / "w-000003.ndjson.open").write_bytes(landing_line("r2", "") + b'{"half')
    found = tail.read_new()
    at = datetime(2026, 11, 26, tzinfo=UTC).timestamp()
    assert found == [LandedCallback(at, "r1", "SMS"), LandedCallback(at, "r2", "")]
    assert tail.read_new() == []


def test_the_next_run_expects_the_callback_rate_the_last_one_measured(
    tmp_path: Path, settings: Settings
) -> None:
    live = settings.replace("sinch", base_url="http://127.0.0.1:9")  # not embedded
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        assert expected_callback_rate(conn, live)[0] == 25.0  # nothing measured: Sinch's default
        for run_id, rate, limited in (("r1", 40.0, True), ("r2", 12.0, True)):
            runs.start_run(conn, run_id, config_digest="d", inputs=[])
            submit = {"callback_rate_per_second": rate, "callback_limited": limited}
            runs.record_step(conn, run_id, "submit", 1.0, submit)
        assert expected_callback_rate(conn, live)[0] == 12.0  # the latest, held back: capacity
        runs.start_run(conn, "r3", config_digest="d", inputs=[])
        runs.record_step(conn, "r3", "submit", 1.0, {"callback_rate_per_second": 9.0})
        assert expected_callback_rate(conn, live)[0] == 25.0  # a floor only, below the default
