"""ensure_webhook against the strict simulator: whole webhook, a mask of what changed, or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from pipeline.settings import SimulatorSettings
from pipeline.simulator.app import create_app
from pipeline.sinch.client import SinchClient
from pipeline.webhooks import changed_fields, ensure_webhook
from tests.conftest import asgi_client
from tests.unit.test_simulator import KEYS, SINCH

TARGET = "https://capaudit.example.com/callbacks/sinch"


class Recording(httpx.AsyncBaseTransport):
    """Passes requests on and keeps them, to see what went over the wire."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    def patches(self) -> list[httpx.Request]:
        return [r for r in self.sent if r.method == "PATCH"]


def with_client(scenario: Callable[[SinchClient, Recording, Any], Awaitable[None]]) -> None:
    async def main() -> None:
        app = create_app(SimulatorSettings(latency_ms=0))
        async with asgi_client(app):
            wire = Recording(httpx.ASGITransport(app))
            async with SinchClient(SINCH, KEYS, transport=wire) as client:
                await scenario(client, wire, app.state.simulator)

    asyncio.run(main())


def test_ensuring_twice_creates_then_sends_nothing() -> None:
    async def scenario(client: SinchClient, wire: Recording, sim: Any) -> None:
        first = await ensure_webhook(client, TARGET, "s1")
        again = await ensure_webhook(client, TARGET, "s1")
        assert (first.action, again.action) == ("created", "unchanged")
        assert again.webhook["id"] == first.webhook["id"]
        assert wire.patches() == []
        assert len(sim.state.webhooks) == 1

    with_client(scenario)


def test_a_new_secret_sends_the_whole_webhook_with_a_mask_of_secret() -> None:
    async def scenario(client: SinchClient, wire: Recording, sim: Any) -> None:
        await ensure_webhook(client, TARGET, "s1")
        done = await ensure_webhook(client, TARGET, "s2")
        assert done.action == "updated"
        [patch] = wire.patches()
        assert patch.url.params.get_list("update_mask") == ["secret"]
        sent = orjson.loads(patch.content)
        assert set(sent) == {"app_id", "target", "target_type", "triggers", "secret"}
        assert (sent["target"], sent["secret"]) == (TARGET, "s2")
        [kept] = sim.state.webhooks.values()
        assert (kept.secret, kept.triggers) == ("s2", ["CAPABILITY"])

    with_client(scenario)


def test_triggers_added_by_others_stay_and_capability_is_added() -> None:
    async def scenario(client: SinchClient, wire: Recording, sim: Any) -> None:
        sim.state.add_webhook(SINCH.app_id, TARGET, ["OPT_IN"], "s1")
        done = await ensure_webhook(client, TARGET, "s1")
        assert done.action == "updated"
        assert wire.patches()[0].url.params["update_mask"] == "triggers"
        assert sorted(done.webhook["triggers"]) == ["CAPABILITY", "OPT_IN"]

    with_client(scenario)


def test_a_secret_the_api_does_not_show_is_always_in_the_mask() -> None:
    current = {
        "id": "w",
        "app_id": "app",
        "target": TARGET,
        "target_type": "HTTP",
        "triggers": ["CAPABILITY"],
    }
    wanted = {**current, "secret": "s1"}
    del wanted["id"]
    assert changed_fields(current, wanted) == ["secret"]
    assert changed_fields({**current, "secret": "s1"}, wanted) == []
    assert changed_fields({**current, "triggers": ["CAPABILITY"] * 2}, wanted) == ["secret"]
