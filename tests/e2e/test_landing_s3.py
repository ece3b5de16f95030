"""Landing on S3 in-process against the real server: one object per group-committed batch,
acknowledged only once stored, 503 while the store does not answer, recovery on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from pipeline.landing.objects import KEY
from pipeline.receiver import CALLBACK_PATH, create_app
from pipeline.settings import ReceiverSettings, Secret
from pipeline.storage.embedded import EmbeddedS3
from pipeline.storage.settings import StorageSettings
from tests.conftest import WEBHOOK_SECRET, asgi_client, signed
from tests.unit.test_receiver import callback_body

Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


@pytest.fixture
def aws(s3: EmbeddedS3, monkeypatch: pytest.MonkeyPatch) -> EmbeddedS3:
    """The server's credentials in the environment: the standard chain finds them there."""
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return s3


def storage(server: EmbeddedS3, **changes: Any) -> StorageSettings:
    return StorageSettings(endpoint_url=server.endpoint, **changes)


def with_receiver(url: str, store: StorageSettings, scenario: Scenario, **settings: Any) -> None:
    receiver = ReceiverSettings(landing_url=url, **settings)

    async def main() -> None:
        app = create_app(receiver, (Secret(WEBHOOK_SECRET),), store)
        async with asgi_client(app) as client:
            await scenario(client)

    asyncio.run(main())


def landed(server: EmbeddedS3, bucket_name: str, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Relative key -> the landing lines of each object under `prefix`."""
    store = server.store()
    found = {}
    for info in store.objects(bucket_name, prefix):
        lines = store.get(bucket_name, info.key)[0].splitlines()
        found[info.key.removeprefix(prefix)] = [orjson.loads(line) for line in lines]
    return found


async def post(client: httpx.AsyncClient, request_id: str) -> int:
    body = callback_body(request_id)
    response = await client.post(CALLBACK_PATH, content=body, headers=signed(body))
    return response.status_code


def test_each_batch_is_one_object_acknowledged_once_stored(aws: EmbeddedS3, bucket: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        statuses = await asyncio.gather(*(post(client, f"r{n}") for n in range(200)))
        assert set(statuses) == {200}
        # Acknowledged means stored already: every line is in an object now.
        objects = landed(aws, bucket, "landing/")
        assert sorted(line["body"] for lines in objects.values() for line in lines) == sorted(
            callback_body(f"r{n}").decode() for n in range(200)
        )
        assert len(objects) < 200  # batched: several callbacks share an object
        assert all(KEY.fullmatch(key) for key in objects)
        health = (await client.get("/healthz")).json()
        assert health["ok"]
        assert health["segment"] in objects

    with_receiver(f"s3://{bucket}/landing/", storage(aws), scenario, group_commit_ms=20)


@pytest.mark.timed  # asserts what happens within the store's timeouts
def test_storage_down_gets_503_then_recovers_by_itself(aws: EmbeddedS3, bucket: str) -> None:
    quick = storage(aws, read_timeout_seconds=0.5, connect_timeout_seconds=0.5, max_attempts=2)

    async def scenario(client: httpx.AsyncClient) -> None:
        assert await post(client, "before") == 200
        aws.pause()
        try:
            assert await post(client, "during") == 503
            assert (await client.get("/healthz")).status_code == 503
        finally:
            aws.resume()
        deadline = time.monotonic() + 15  # an idle probe finds the store back
        while (await client.get("/healthz")).status_code != 200:
            assert time.monotonic() < deadline, "the receiver did not recover"
            await asyncio.sleep(0.2)
        assert await post(client, "after") == 200

    with_receiver(f"s3://{bucket}/landing/", quick, scenario)
    bodies = [line["body"] for lines in landed(aws, bucket, "landing/").values() for line in lines]
    assert callback_body("before").decode() in bodies
    assert callback_body("after").decode() in bodies


def test_a_taken_name_is_read_back_own_retry_counts_a_clash_moves_on(
    aws: EmbeddedS3, bucket: str
) -> None:
    from datetime import UTC, datetime

    from pipeline.landing.objects import ObjectLanding, object_name
    from pipeline.landing.s3writer import ObjectWriter
    from pipeline.landing.writer import host_name
    from pipeline.storage import parse_s3

    when = datetime(2026, 12, 8, 12, tzinfo=UTC)
    landing = ObjectLanding(aws.store(), parse_s3(f"s3://{bucket}/landing/"))
    store, name = aws.store(), lambda n: "landing/" + object_name(when, host_name(), "w-0", n)
    store.put(bucket, name(1), b"first\n")  # our own earlier attempt, landed after a timeout
    store.put(bucket, name(2), b"someone else\n")  # never seen: a clash all the same

    async def main() -> None:
        writer = ObjectWriter(
            landing, writer_id="w", commit_window_seconds=0, lanes=1, clock=lambda: when
        )
        await writer.start()
        for line in (b"first\n", b"second\n"):
            await writer.append(line)
        await writer.close()

    asyncio.run(main())
    assert store.get(bucket, name(1))[0] == b"first\n"  # counted as written, not written twice
    assert store.get(bucket, name(2))[0] == b"someone else\n"  # left alone
    assert store.get(bucket, name(3))[0] == b"second\n"  # the batch moved to the next name
