"""Acceptance (issue 27): receivers on several hosts share one S3 prefix, as real processes.

- two receivers under a burst, one killed -9 mid-burst: every acknowledged callback is ingested,
  and no landed line is ingested twice;
- the store frozen for 5 s mid-burst: the receivers answer 503 meanwhile, keep serving, and
  nothing they acknowledged is lost; Sinch's redelivery of the rest lands it all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import pytest

from pipeline.landing.ingest import ingest_landing
from pipeline.landing.objects import ObjectLanding
from pipeline.storage import parse_s3
from pipeline.storage.embedded import EmbeddedS3
from pipeline.warehouse import open_warehouse
from tests.conftest import receiver, signed
from tests.e2e.test_receiver_crash import Key, kill_during, notification


def s3_receiver_env(server: EmbeddedS3, url: str, **extra: str) -> dict[str, str]:
    """A receiver landing on `url`: the store's address and keys come from the AWS chain
    (environment variables here), never from the config file."""
    return {
        **server.env(),
        "CAPAUDIT_RECEIVER__LANDING_URL": url,
        "CAPAUDIT_RECEIVER__GROUP_COMMIT_MS": "20",
        **extra,
    }


def ingested(server: EmbeddedS3, url: str, warehouse: Path) -> tuple[set[Key], int, int]:
    """(keys, deliveries, landed lines) after two ingests of the objects under `url`."""
    landing = ObjectLanding(server.store(), parse_s3(url))
    with open_warehouse(warehouse) as conn:
        ingest_landing(conn, landing)
        ingest_landing(conn, landing)  # a second ingest changes nothing
        rows = conn.execute("SELECT request_id, channel, identity FROM notifications").fetchall()
        totals = conn.execute(
            "SELECT (SELECT sum(deliveries) FROM notifications), "
            "(SELECT sum(lines_ingested) FROM landing_files)"
        ).fetchone()
    assert totals is not None
    return {(str(a), str(b), str(c)) for a, b, c in rows}, int(totals[0]), int(totals[1])


def objects_written(server: EmbeddedS3, bucket_name: str) -> int:
    return sum(1 for _ in server.store().objects(bucket_name, "landing/"))


def test_two_receivers_on_one_prefix_one_killed(
    s3: EmbeddedS3, bucket: str, tmp_path: Path
) -> None:
    url, numbers = f"s3://{bucket}/landing/", list(range(6_000))
    env = s3_receiver_env(s3, url)
    with receiver(None, **env) as first, receiver(None, **env) as second:
        urls = [f"{first}/callbacks/sinch", f"{second}/callbacks/sinch"]
        writers = {httpx.get(f"{u}/healthz").json()["writer"] for u in (first, second)}
        acked = kill_during(urls, numbers, [first], after=1_500)
    assert 0 < len(acked) < len(numbers)
    keys, deliveries, lines = ingested(s3, url, tmp_path / "w.duckdb")
    assert acked <= keys  # every acknowledged callback, from both receivers
    assert deliveries == lines == len(keys)  # each landed line ingested once, none twice
    folders = {k.split("/")[3] for k in (o.key for o in s3.store().objects(bucket, "landing/"))}
    assert {f.rsplit("-", 1)[0] for f in folders} <= writers  # in its own writer's folders


async def burst_counting(
    urls: list[str], numbers: list[int], statuses: Counter[int], acked: set[Key]
) -> None:
    """Deliver each notification once; count the answers and keep what was acknowledged."""
    pending = iter(numbers)
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def sender(index: int) -> None:
            for n in pending:
                key, body = notification(n)
                try:
                    url = urls[(n + index) % len(urls)]
                    async with session.post(url, data=body, headers=signed(body)) as response:
                        statuses[response.status] += 1
                        if response.status == 200:
                            acked.add(key)
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1
                await asyncio.sleep(0.02)  # a steady stream, so the outage falls mid-burst

        await asyncio.gather(*(sender(i) for i in range(16)))


@pytest.mark.timed  # the store's timeouts and a 5 s outage: a busy machine would skew them
def test_storage_stopped_5_s_gets_503s_and_loses_nothing_acknowledged(
    s3: EmbeddedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    url, numbers = f"s3://{bucket}/landing/", list(range(2_500))
    # Short timeouts, so that 503s come within the outage (the defaults give up after ~15 s).
    quick = {"CAPAUDIT_STORAGE__READ_TIMEOUT_SECONDS": "0.5", "CAPAUDIT_STORAGE__MAX_ATTEMPTS": "1"}
    env = s3_receiver_env(s3, url, **quick)
    statuses: Counter[int] = Counter()
    acked: set[Key] = set()
    with receiver(None, **env) as first, receiver(None, **env) as second:
        urls = [f"{first}/callbacks/sinch", f"{second}/callbacks/sinch"]
        thread = threading.Thread(
            target=lambda: asyncio.run(burst_counting(urls, numbers, statuses, acked))
        )
        thread.start()
        while len(acked) < 500 and thread.is_alive():
            time.sleep(0.01)
        s3.pause()  # the store stops answering: SIGSTOP, for 5 s
        try:
            time.sleep(5)
        finally:
            s3.resume()
        thread.join()
        unacked = [n for n in numbers if notification(n)[0] not in acked]
        # Sinch delivers again what got no 2xx: the receivers, still up, take it now.
        asyncio.run(burst_counting(urls, unacked, Counter(), acked))
    assert statuses[503] > 0, statuses  # refused while the store was away
    assert statuses[200] > 500
    keys, deliveries, lines = ingested(s3, url, tmp_path / "w.duckdb")
    assert acked == {notification(n)[0] for n in numbers}
    assert keys == acked
    assert deliveries == lines
