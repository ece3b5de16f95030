"""The simulator's webhook admin is as strict as the SDKs' Webhook models (reference §6)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from pipeline.settings import SimulatorSettings
from pipeline.simulator.app import create_app
from tests.conftest import asgi_client

HOOKS = "/v1/projects/p/webhooks"
TARGET = "https://capaudit.example.com/callbacks/sinch"
Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


def against_simulator(scenario: Scenario, **knobs: Any) -> None:
    """Run `scenario` with an httpx client on an in-process simulator (Basic auth)."""

    async def main() -> None:
        app = create_app(SimulatorSettings(latency_ms=0, **knobs))
        async with asgi_client(app) as http:
            http.auth = httpx.BasicAuth("key", "secret")
            await scenario(http)

    asyncio.run(main())


def webhook(**fields: Any) -> dict[str, Any]:
    return {
        "app_id": "app",
        "target": TARGET,
        "target_type": "HTTP",
        "triggers": ["CAPABILITY"],
        "secret": "s1",
        **fields,
    }


def assert_refused(answer: httpx.Response, status: int, grpc: str, words: str) -> None:
    """Sinch's error envelope, with `words` in its message."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "status", "details"}
    assert (error["code"], error["status"], error["details"]) == (status, grpc, [])
    assert words in error["message"]


async def created(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    answer = await http.post(HOOKS, json=webhook(**fields))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_an_update_without_target_is_refused() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        hook = await created(http)
        answer = await http.patch(f"{HOOKS}/{hook['id']}", json={"secret": "s2"})
        assert_refused(answer, 400, "INVALID_ARGUMENT", "target is required")
        assert (await http.get(f"{HOOKS}/{hook['id']}")).json()["secret"] == "s1"

    against_simulator(scenario)


@pytest.mark.parametrize(
    "mask",
    [
        {"update_mask": "secret"},  # as the node SDK sends it
        {"update_mask.paths": "secret"},  # the gRPC-gateway form
        [("update_mask", "secret,target_type")],
        [("update_mask.paths", "secret"), ("update_mask.paths", "target_type")],
    ],
)
def test_only_the_masked_fields_change(mask: Any) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        hook = await created(http)
        whole = webhook(triggers=["CAPABILITY", "OPT_IN"], secret="s2")
        answer = await http.patch(f"{HOOKS}/{hook['id']}", params=mask, json=whole)
        assert answer.status_code == 200, answer.text
        shown = (await http.get(f"{HOOKS}/{hook['id']}")).json()
        assert (shown["secret"], shown["triggers"]) == ("s2", ["CAPABILITY"])
        assert answer.json() == shown

    against_simulator(scenario)


def test_a_masked_field_left_out_of_the_body_is_cleared() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        hook = await created(http)
        answer = await http.patch(
            f"{HOOKS}/{hook['id']}", params={"update_mask": "secret"}, json={"target": TARGET}
        )
        assert answer.json()["secret"] == ""

    against_simulator(scenario)


def test_without_a_mask_only_the_fields_the_body_populates_change() -> None:
    """Google's convention (AIP-134): no mask is the mask of the populated fields."""

    async def scenario(http: httpx.AsyncClient) -> None:
        hook = await created(http)
        body = {"target": f"{TARGET}/v2", "triggers": [], "secret": "s2"}
        answer = await http.patch(f"{HOOKS}/{hook['id']}", json=body)
        shown = answer.json()
        assert (shown["target"], shown["secret"]) == (f"{TARGET}/v2", "s2")
        assert (shown["triggers"], shown["app_id"]) == (["CAPABILITY"], "app")

    against_simulator(scenario)


def test_an_unknown_field_path_in_the_mask_is_refused() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        hook = await created(http)
        answer = await http.patch(
            f"{HOOKS}/{hook['id']}", params={"update_mask": "secret,colour"}, json=webhook()
        )
        assert_refused(answer, 400, "INVALID_ARGUMENT", "unknown field path 'colour'")

    against_simulator(scenario)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"target": TARGET}, "app_id is required"),
        ({"app_id": "app"}, "target is required"),
        (webhook(target_type="GRPC"), "unknown target type 'GRPC'"),
        (webhook(triggers=["CAPABILITY", "EVERYTHING"]), "unknown trigger 'EVERYTHING'"),
        (webhook(triggers=["UNSPECIFIED_TRIGGER"]), "unknown trigger 'UNSPECIFIED_TRIGGER'"),
        (webhook(target="https://x.test/" + "a" * 728), "743 characters, the maximum is 742"),
        (webhook(target="ftp://x.test/cb"), "must be an http(s) URL"),
        (webhook(callback_url=TARGET), "unknown field 'callback_url'"),
        (webhook(secret=42), "secret: must be a string"),
        (webhook(client_credentials={"client_id": "c"}), "client_secret is required"),
    ],
)
def test_a_create_the_model_refuses_is_refused(body: dict[str, Any], words: str) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        assert_refused(await http.post(HOOKS, json=body), 400, "INVALID_ARGUMENT", words)
        assert (await http.get("/v1/projects/p/apps/app/webhooks")).json() == {"webhooks": []}

    against_simulator(scenario)


def test_a_target_of_742_characters_is_accepted_and_a_sixth_webhook_refused() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        await created(http, target="https://x.test/" + "a" * 727)
        for n in range(4):
            await created(http, target=f"{TARGET}/{n}")
        answer = await http.post(HOOKS, json=webhook())
        assert_refused(answer, 400, "INVALID_ARGUMENT", "already has 5 webhooks")

    against_simulator(scenario)


def test_get_and_list_show_the_secret_as_sinch_does() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        hook = await created(http)
        assert hook["secret"] == "s1"
        assert (await http.get(f"{HOOKS}/{hook['id']}")).json()["secret"] == "s1"
        [listed] = (await http.get("/v1/projects/p/apps/app/webhooks")).json()["webhooks"]
        assert listed == hook

    against_simulator(scenario)


def test_a_configured_app_id_refuses_webhooks_for_other_apps() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        answer = await http.post(HOOKS, json=webhook(app_id="other"))
        assert_refused(answer, 404, "NOT_FOUND", "App other not found")

    against_simulator(scenario, app_id="app")


def test_429_has_no_retry_after_unless_configured() -> None:
    assert SimulatorSettings().retry_after is False

    async def scenario(http: httpx.AsyncClient) -> None:
        answers = [await http.get("/v1/projects/p/apps/app/webhooks") for _ in range(2)]
        assert [a.status_code for a in answers] == [200, 429]
        assert "retry-after" not in answers[1].headers

    against_simulator(scenario, rate_limit=1)
