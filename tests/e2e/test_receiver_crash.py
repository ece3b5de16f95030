"""The receiver under fire: kill -9 mid-burst, two receivers on one directory, SIGTERM flush."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from pathlib import Path

import aiohttp
import duckdb
import httpx
import orjson

from pipeline.landing.ingest import ingest_landing
from pipeline.landing.segments import OPEN_SUFFIX, list_segments
from pipeline.warehouse import open_warehouse
from tests.conftest import receiver, signed

Key = tuple[str, str, str]


def notification(n: int) -> tuple[Key, bytes]:
    key = (f"req-{n:06d}", "SMS", f"4670{n:07d}")
    body = orjson.dumps(
        {
            "app_id": "a",
            "project_id": "p",
            "event_time": "2026-11-25T02:00:00Z",
            "capability_notification": {
                "request_id": key[0],
                "channel": key[1],
                "identity": key[2],
                "capability_status": "CAPABILITY_FULL",
            },
        }
    )
    return key, body


async def burst(
    urls: list[str], numbers: list[int], senders: int = 32, acked: set[Key] | None = None
) -> set[Key]:
    """Deliver each notification once (round robin over `urls`); the keys acknowledged 2xx
    (added to `acked` as they are, if given)."""
    acked = set() if acked is None else acked
    pending = iter(numbers)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def sender(index: int) -> None:
            for n in pending:
                key, body = notification(n)
                url = urls[(n + index) % len(urls)]
                try:
                    async with session.post(url, data=body, headers=signed(body)) as response:
                        if response.status == 200:
                            acked.add(key)
                except (aiohttp.ClientError, TimeoutError):
                    continue

        await asyncio.gather(*(sender(i) for i in range(senders)))
    return acked


def landed_keys(warehouse: Path, landing: Path) -> tuple[set[Key], int]:
    with open_warehouse(warehouse) as conn:
        ingest_landing(conn, landing)
        ingest_landing(conn, landing)  # a second ingest changes nothing
        rows = conn.execute("SELECT request_id, channel, identity FROM notifications").fetchall()
        deliveries = conn.execute("SELECT sum(deliveries) FROM notifications").fetchone()
    return {tuple(r) for r in rows}, int(deliveries[0] or 0)  # type: ignore[misc]


def kill_during(urls: list[str], numbers: list[int], victims: list[str], after: int) -> set[Key]:
    """Run a burst and kill -9 the `victims` receivers once `after` callbacks are acknowledged
    (a count, not a time: on a busy machine the burst may take seconds to get going)."""
    acked: set[Key] = set()
    thread = threading.Thread(target=lambda: asyncio.run(burst(urls, numbers, acked=acked)))
    pids = [httpx.get(f"{v}/healthz").json()["pid"] for v in victims]
    thread.start()
    deadline = time.monotonic() + 60
    while len(acked) < after and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    thread.join()
    return acked


# A longer group-commit window keeps more callbacks waiting in each batch, so a receiver that
# acknowledged before writing would lose some at the kill and fail these tests every time.
SLOW_COMMIT = {"CAPAUDIT_RECEIVER__GROUP_COMMIT_MS": "20"}


def test_kill_9_mid_burst_loses_no_acknowledged_callback(tmp_path: Path) -> None:
    landing, numbers = tmp_path / "landing", list(range(30_000))
    with receiver(None, "--landing-dir", str(landing), **SLOW_COMMIT) as url:
        acked = kill_during([f"{url}/callbacks/sinch"], numbers, [url], after=3_000)
    assert 0 < len(acked) < len(numbers), "the kill should land mid-burst"
    keys, _ = landed_keys(tmp_path / "w.duckdb", landing)
    assert acked <= keys  # every acknowledged callback survived the kill
    assert any(s.path.name.endswith(OPEN_SUFFIX) for s in list_segments(landing))
    # Sinch re-delivers what was not acknowledged: a restarted receiver takes the rest.
    unacked = [n for n in numbers if notification(n)[0] not in acked]
    with receiver(None, "--landing-dir", str(landing)) as url:
        again = asyncio.run(burst([f"{url}/callbacks/sinch"], unacked))
    assert len(again) == len(unacked)
    keys, _ = landed_keys(tmp_path / "w.duckdb", landing)
    assert keys == {notification(n)[0] for n in numbers}


def test_two_receivers_on_one_directory_one_killed(tmp_path: Path) -> None:
    landing, numbers = tmp_path / "landing", list(range(20_000))
    with (
        receiver(None, "--landing-dir", str(landing), **SLOW_COMMIT) as first,
        receiver(None, "--landing-dir", str(landing), **SLOW_COMMIT) as second,
    ):
        urls = [f"{first}/callbacks/sinch", f"{second}/callbacks/sinch"]
        writers = {httpx.get(f"{u}/healthz").json()["writer"] for u in (first, second)}
        acked = kill_during(urls, numbers, [first], after=2_000)
    assert len(writers) == 2
    assert {s.segment_id.rsplit("-", 1)[0] for s in list_segments(landing)} == writers
    keys, _ = landed_keys(tmp_path / "w.duckdb", landing)
    assert acked <= keys


def test_duplicated_and_reordered_deliveries_land_once(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    numbers = [n for n in range(300) for _ in range(3)]  # every notification three times
    random.Random(4).shuffle(numbers)
    with receiver(None, "--landing-dir", str(landing)) as url:
        asyncio.run(burst([f"{url}/callbacks/sinch"], numbers, senders=8))
    keys, deliveries = landed_keys(tmp_path / "w.duckdb", landing)
    assert keys == {notification(n)[0] for n in range(300)}
    assert deliveries == 900


def test_sigterm_flushes_and_seals_the_segment(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    with receiver(None, "--landing-dir", str(landing)) as url:
        acked = asyncio.run(burst([f"{url}/callbacks/sinch"], list(range(500)), senders=8))
    # child_service stops the receiver with SIGTERM: graceful shutdown seals its segment.
    segments = list_segments(landing)
    assert segments
    assert all(s.closed for s in segments)
    keys, _ = landed_keys(tmp_path / "w.duckdb", landing)
    assert keys == acked
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT bool_and(closed) FROM landing_files").fetchone() == (True,)
