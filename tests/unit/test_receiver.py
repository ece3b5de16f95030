"""The receiver app: verify, land durably, acknowledge; refuse everything else with a reason."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pipeline.errors import ConfigError
from pipeline.landing.segments import list_segments
from pipeline.receiver import CALLBACK_PATH, NONCE_HORIZON_SECONDS, NonceMemory, create_app
from pipeline.settings import ReceiverSettings, Secret
from tests.conftest import WEBHOOK_SECRET, asgi_client, signed
from tests.unit.test_signing import VECTOR_BODY, VECTOR_SECRET, vector_headers


def callback_body(request_id: str = "r1", channel: str = "SMS") -> bytes:
    return orjson.dumps(
        {
            "app_id": "app",
            "project_id": "p",
            "event_time": "2026-11-25T10:00:00Z",
            "capability_notification": {
                "request_id": request_id,
                "channel": channel,
                "identity": "46701234567",
                "capability_status": "CAPABILITY_FULL",
            },
        }
    )


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


def with_receiver(
    landing: Path, scenario: Scenario, secret: str = WEBHOOK_SECRET, **settings: Any
) -> None:
    """Run `scenario` against a receiver app (lifespan included) landing into `landing`;
    `settings` are ReceiverSettings fields."""
    receiver = ReceiverSettings(landing_dir=str(landing), **settings)

    async def main() -> None:
        app = create_app(receiver, (Secret(secret),))
        async with asgi_client(app) as client:
            await scenario(client)

    asyncio.run(main())


def landed_lines(landing: Path) -> list[dict[str, object]]:
    lines = []
    for segment in list_segments(landing):
        lines += [orjson.loads(line) for line in segment.path.read_bytes().splitlines()]
    return lines


def test_signed_callback_is_landed_then_acknowledged(landing: Path) -> None:
    body = callback_body()

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post(CALLBACK_PATH, content=body, headers=signed(body))
        assert response.status_code == 200
        # Acknowledged means on disk already, before the response was sent.
        [line] = landed_lines(landing)
        assert line["body"] == body.decode()
        assert line["kind"] == "capability"

    with_receiver(landing, scenario)


def test_the_public_test_vector_is_accepted_with_its_secret(landing: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        headers = vector_headers() | {"content-type": "application/json"}
        response = await client.post(CALLBACK_PATH, content=VECTOR_BODY, headers=headers)
        assert response.status_code == 200

    # The vector was signed in 2021: a right signature is not refused for its age by default.
    with_receiver(landing, scenario, secret=VECTOR_SECRET)
    [line] = landed_lines(landing)
    assert line["kind"] == "other"  # a contact event, not a CAPABILITY one: kept apart


@pytest.mark.parametrize("tamper", ["flipped_byte", "wrong_secret", "missing_header"])
def test_bad_signatures_get_401_and_land_nothing(landing: Path, tamper: str) -> None:
    body = callback_body()
    headers = signed(body)
    if tamper == "flipped_byte":
        body = body.replace(b"r1", b"r2")
    elif tamper == "wrong_secret":
        headers = signed(body, secret="wrong")
    else:
        del headers["x-sinch-webhook-signature"]

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post(CALLBACK_PATH, content=body, headers=headers)
        assert response.status_code == 401

    with_receiver(landing, scenario)
    assert landed_lines(landing) == []


def stale_counts(metrics: str) -> dict[str, int]:
    """`capaudit_receiver_stale_signatures_total` by "outcome/direction"."""
    found = re.findall(
        r'capaudit_receiver_stale_signatures_total\{outcome="(\w+)",direction="(\w+)"\} (\d+)',
        metrics,
    )
    return {f"{outcome}/{direction}": int(count) for outcome, direction, count in found}


def test_old_and_future_signatures_are_accepted_counted_and_logged(
    landing: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time())
    ages = {"two-hours": 7200, "ten-minutes": 600, "fresh": 5, "ahead": -900}

    async def scenario(client: httpx.AsyncClient) -> None:
        for name, age in ages.items():
            body = callback_body(name)
            headers = signed(body, nonce=name, timestamp=now - age)
            assert (
                await client.post(CALLBACK_PATH, content=body, headers=headers)
            ).status_code == 200
        counts = stale_counts((await client.get("/metrics")).text)
        assert counts == {
            "accepted/past": 2,
            "accepted/future": 1,
            "refused/past": 0,
            "refused/future": 0,
        }

    with caplog.at_level(logging.INFO, logger="pipeline.receiver"):
        with_receiver(landing, scenario)
    assert len(landed_lines(landing)) == 4
    # One line for the first stale signature; the next ones within the minute are only counted.
    [line] = [r.getMessage() for r in caplog.records if "correctly signed" in r.getMessage()]
    assert line.startswith("accepted a correctly signed callback signed 2 h 00 min ago")
    assert "(nonce two-hours)" in line


def test_an_age_limit_refuses_old_signatures_with_401_and_counts_them(landing: Path) -> None:
    now = int(time.time())

    async def scenario(client: httpx.AsyncClient) -> None:
        for name, age, status in [("old", 301, 401), ("ahead", -400, 401), ("ok", 200, 200)]:
            body = callback_body(name)
            headers = signed(body, nonce=name, timestamp=now - age)
            response = await client.post(CALLBACK_PATH, content=body, headers=headers)
            assert response.status_code == status, name
        metrics = (await client.get("/metrics")).text
        assert 'capaudit_receiver_callbacks_refused_total{reason="stale_timestamp"} 2' in metrics
        assert stale_counts(metrics)["refused/past"] == 1
        assert stale_counts(metrics)["refused/future"] == 1

    with_receiver(landing, scenario, max_signature_age_seconds=300)
    assert [
        orjson.loads(str(line["body"]))["capability_notification"]["request_id"]
        for line in landed_lines(landing)
    ] == ["ok"]


def test_nonces_are_remembered_for_an_hour_without_an_age_limit(landing: Path) -> None:
    receiver = create_app(ReceiverSettings(landing_dir=str(landing)), (Secret("s"),))
    assert receiver.state.receiver.nonces.horizon == NONCE_HORIZON_SECONDS
    limited = ReceiverSettings(landing_dir=str(landing), max_signature_age_seconds=86400)
    assert create_app(limited, (Secret("s"),)).state.receiver.nonces.horizon == 2 * 86400


def test_nonce_memory_is_bounded_by_age_and_count() -> None:
    memory = NonceMemory(horizon_seconds=60, capacity=3)
    for n, nonce in enumerate("abcd"):
        assert memory.first_time(nonce, now=float(n))
    assert memory.first_time("a", now=4.0)  # the oldest made room for the fourth
    assert not memory.first_time("d", now=5.0)
    assert memory.first_time("e", now=200.0)  # past the horizon: the others are forgotten
    assert memory.first_time("d", now=201.0)


def test_repeated_nonce_is_acknowledged_but_landed_once(landing: Path) -> None:
    body = callback_body()
    headers = signed(body, nonce="same-nonce")

    async def scenario(client: httpx.AsyncClient) -> None:
        for _ in range(2):
            assert (
                await client.post(CALLBACK_PATH, content=body, headers=headers)
            ).status_code == 200

    with_receiver(landing, scenario)
    assert len(landed_lines(landing)) == 1


def test_refusals_by_kind(landing: Path) -> None:
    body = callback_body()
    big = b"{" + b" " * 300_000 + b"}"
    broken = b'{"app_id": '

    async def scenario(client: httpx.AsyncClient) -> None:
        post = client.post
        assert (await post(CALLBACK_PATH, content=big, headers=signed(big))).status_code == 413
        plain = signed(body) | {"content-type": "text/plain"}
        assert (await post(CALLBACK_PATH, content=body, headers=plain)).status_code == 415
        assert (
            await post(CALLBACK_PATH, content=broken, headers=signed(broken))
        ).status_code == 400
        assert (await client.get(CALLBACK_PATH)).status_code == 405
        metrics = (await client.get("/metrics")).text
        for reason in ("body_too_large", "unsupported_media_type", "malformed_json"):
            assert f'reason="{reason}"' in metrics

    with_receiver(landing, scenario)
    assert landed_lines(landing) == []


def test_receiver_refuses_to_start_without_a_secret(landing: Path) -> None:
    with pytest.raises(ConfigError, match="CAPAUDIT_WEBHOOK_SECRET"):
        create_app(ReceiverSettings(landing_dir=str(landing)), ())


def test_healthz(landing: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/healthz")).json()["ok"] is True

    with_receiver(landing, scenario)


def test_copies_arriving_together_are_acknowledged_once_durable(landing: Path) -> None:
    body = callback_body("together")
    headers = signed(body, nonce="same-nonce-at-once")

    async def scenario(client: httpx.AsyncClient) -> None:
        posts = [client.post(CALLBACK_PATH, content=body, headers=headers) for _ in range(5)]
        for answer in asyncio.as_completed(posts):
            assert (await answer).status_code == 200
            assert len(landed_lines(landing)) == 1  # on disk before any of the answers

    with_receiver(landing, scenario, group_commit_ms=50)
