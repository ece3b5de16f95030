"""Self-pacing to callbacks against real servers: the simulator delivers 50 callbacks/s.

Three channels a contact and rate_per_second 800: the query rate must settle near 50 / 3 per
second by itself, the simulator's backlog of callbacks must stay under the bound (callback rate
times `callback_backlog_seconds`), every accepted query must be answered before the deadline,
and raising the callback rate mid-run must raise the query rate. Scaled: a backlog of 3 s
instead of 30 s, so the whole test takes about half a minute.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest

from pipeline import steps
from pipeline.audit import register_webhook
from pipeline.settings import Settings
from pipeline.warehouse import open_warehouse
from tests.conftest import receiver, simulator, write_config
from tests.e2e.test_audit import small_sample

pytestmark = pytest.mark.timed  # measures query rates and backlogs over seconds

SLOW, FAST = 50.0, 150.0  # callbacks per second before and after the raise
BACKLOG_SECONDS = 3.0
RAISE_AT, STOP_AT = 14.0, 28.0  # seconds after sending starts


@dataclass
class Sample:
    at: float
    queries: int
    pending: int


async def watch_simulator(sim_url: str, started: float, samples: list[Sample]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            stats = (await http.get(f"{sim_url}/_sim/stats")).json()
            samples.append(
                Sample(
                    time.monotonic() - started,
                    stats["queries_received"],
                    stats["callbacks_pending"],
                )
            )
            await asyncio.sleep(0.2)


def query_rate(samples: list[Sample], start: float, end: float) -> float:
    inside = [s for s in samples if start <= s.at <= end]
    first, last = inside[0], inside[-1]
    return (last.queries - first.queries) / (last.at - first.at)


async def paced_submit(
    conn: duckdb.DuckDBPyConnection, settings: Settings, sim_url: str, samples: list[Sample]
) -> steps.SubmitSummary:
    """Submit the run; raise the callback rate at RAISE_AT and stop sending at STOP_AT."""
    stop = asyncio.Event()
    started = time.monotonic()
    monitor = asyncio.create_task(watch_simulator(sim_url, started, samples))

    async def script() -> None:
        await asyncio.sleep(RAISE_AT)
        async with httpx.AsyncClient() as http:
            await http.post(f"{sim_url}/_sim/control", json={"webhook_rate": FAST})
        await asyncio.sleep(STOP_AT - RAISE_AT)
        stop.set()

    scripted = asyncio.create_task(script())
    try:
        return await steps.submit(conn, "paced", settings, stop=stop, console=False)
    finally:
        scripted.cancel()
        monitor.cancel()


def test_query_rate_settles_at_what_callbacks_clear_and_follows_a_raise(
    tmp_path: Path, settings: Settings
) -> None:
    contacts = small_sample(tmp_path, 2000)
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        simulator={"webhook_rate": SLOW, "callback_delay_ms": 100, "latency_ms": 10},
    )
    settings = settings.replace(
        "dispatch", rate_per_second=800.0, callback_backlog_seconds=BACKLOG_SECONDS
    )
    samples: list[Sample] = []
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        settings = settings.replace(
            "sinch", base_url=sim_url, token_url=f"{sim_url}/oauth2/token"
        ).replace("receiver", public_url=f"{receiver_url}/callbacks/sinch")
        asyncio.run(register_webhook(settings))
        with open_warehouse(Path(settings.warehouse.path)) as conn:
            steps.load(conn, "paced", settings, [str(contacts)])
            steps.plan(conn, "paced", settings)
            summary = asyncio.run(paced_submit(conn, settings, sim_url, samples))
            collected = asyncio.run(
                steps.collect(
                    conn,
                    "paced",
                    settings,
                    deadline_seconds=2 * BACKLOG_SECONDS,
                    stop=asyncio.Event(),
                    console=False,
                )
            )

    settled = query_rate(samples, RAISE_AT - 6, RAISE_AT)
    raised = query_rate(samples, STOP_AT - 6, STOP_AT)
    print(
        f"settled {settled:.1f}/s, raised {raised:.1f}/s, max pending "
        f"{max(s.pending for s in samples if s.at < RAISE_AT)} then "
        f"{max(s.pending for s in samples)}"
    )
    assert abs(settled - SLOW / 3) <= 0.2 * SLOW / 3, (settled, samples)
    assert raised >= 2 * settled, raised
    assert abs(raised - FAST / 3) <= 0.2 * FAST / 3, raised
    # The simulator never holds more callbacks than the bound (with the rate it had then).
    slow_bound, fast_bound = SLOW * BACKLOG_SECONDS, FAST * BACKLOG_SECONDS
    assert max(s.pending for s in samples if s.at < RAISE_AT) <= slow_bound, samples
    assert max(s.pending for s in samples) <= fast_bound
    # Every accepted query was answered before the deadline: none ends NO_RESPONSE.
    assert summary.accepted > 0
    assert summary.not_sent > 0  # stopped while the list lasted
    assert collected.outstanding == 0
    assert not collected.deadline_passed
    assert summary.callback_limited
    assert summary.callback_rate_per_second is not None
    assert abs(summary.callback_rate_per_second - FAST) <= 0.2 * FAST
