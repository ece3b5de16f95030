"""Every request capaudit sends to Sinch fits the SDKs' request models (DESIGN §7 rule 9).

Each request goes through `SinchClient` onto an `httpx.MockTransport` that keeps it and answers
as Sinch would; tests/contract/sdk_requests.py holds the models.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from pipeline.settings import Secret, Secrets, SinchSettings
from pipeline.sinch.apps import read_app_profile
from pipeline.sinch.client import SinchClient
from pipeline.sinch.models import ChannelIdentity, query_body
from pipeline.webhooks import ensure_webhook
from tests.contract.sdk_requests import ENDPOINTS, endpoint_of, request_problems

SINCH = SinchSettings(base_url="https://eu.conversation.api.sinch.com")
TARGET = "https://capaudit.example.com/callbacks/sinch"
LISTED = {
    "id": "01WEBHOOK",
    "app_id": SINCH.app_id,
    "target": TARGET,
    "target_type": "HTTP",
    "triggers": ["CAPABILITY"],
    "secret": "old-secret",
}


def sinch_answer(request: httpx.Request) -> httpx.Response:
    """What Sinch would answer each operation (enough for the client to go on)."""
    endpoint = endpoint_of(request)
    name = endpoint.name if endpoint else ""
    answers: dict[str, Any] = {
        "token": {"access_token": "t", "token_type": "Bearer", "expires_in": 3600},
        "webhook list": {"webhooks": [LISTED]},
        "webhook create": LISTED,
        "webhook update": LISTED,
        "app get": {"id": SINCH.app_id, "processing_mode": "CONVERSATION"},
        "contact find": {"contacts": [], "next_page_token": "", "total_size": 0},
        "contact create": {"id": "01CONTACT", "channel_identities": []},
        "capability query": {"request_id": "r"},
        "webhook delete": {},
    }
    return httpx.Response(200, json=answers.get(name, {}))


def capture(work: Callable[[SinchClient], Awaitable[Any]], auth: str = "oauth2") -> list[Any]:
    """Run `work` against the mock Sinch; the requests it sent, in order."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return sinch_answer(request)

    async def main() -> None:
        keys = Secrets(Secret("key-id"), Secret("key-secret"), ())
        settings = SinchSettings(base_url=SINCH.base_url, auth=auth)
        async with SinchClient(settings, keys, transport=httpx.MockTransport(handler)) as client:
            await work(client)

    asyncio.run(main())
    return sent


async def everything(client: SinchClient) -> None:
    """Every call capaudit makes to Sinch, once."""
    identities = [ChannelIdentity("WHATSAPP", "46701234567"), ChannelIdentity("RCS", "4670123")]
    await client.query(query_body(client.app_id, "req-1", identities=identities))
    await client.query(query_body(client.app_id, "req-2", contact_id="01CONTACT"))
    await ensure_webhook(client, TARGET, "new-secret")  # list, then update the secret
    await ensure_webhook(client, f"{TARGET}/other", "s")  # list, then create
    await client.delete_webhook("01WEBHOOK")
    await read_app_profile(client)
    await client.find_contacts("SMS", "+46701234567")
    await client.create_contact([{"channel": "SMS", "identity": "46701234567"}])


@pytest.mark.parametrize("auth", ["oauth2", "basic"])
def test_every_request_fits_the_sdk_models(auth: str) -> None:
    sent = capture(everything, auth)
    named = [request_problems(request) for request in sent]
    assert [(name, found) for name, found in named if found] == []
    exercised = {name for name, _ in named}
    expected = {e.name for e in ENDPOINTS} - ({"token"} if auth == "basic" else set())
    assert exercised == expected


def test_capability_queries_carry_exactly_one_kind_of_recipient() -> None:
    queries = [r for r in capture(everything) if r.url.path.endswith("capability:query")]
    recipients = [orjson.loads(r.content)["recipient"] for r in queries]
    assert recipients[0] == {
        "identified_by": {
            "channel_identities": [
                {"channel": "WHATSAPP", "identity": "46701234567"},
                {"channel": "RCS", "identity": "4670123"},
            ]
        }
    }
    assert recipients[1] == {"contact_id": "01CONTACT"}


def test_the_webhook_update_names_only_what_changed_and_sends_the_whole_webhook() -> None:
    [update] = [r for r in capture(everything) if r.method == "PATCH"]
    assert str(update.url).endswith("/webhooks/01WEBHOOK?update_mask=secret")
    body = orjson.loads(update.content)
    assert body == {**{k: v for k, v in LISTED.items() if k != "id"}, "secret": "new-secret"}


def test_contact_requests_use_the_documented_query_and_a_language() -> None:
    sent = capture(everything)
    [find] = [r for r in sent if r.method == "GET" and r.url.path.endswith("/contacts")]
    assert dict(find.url.params) == {"channel": "SMS", "identity": "+46701234567"}
    [create] = [r for r in sent if r.method == "POST" and r.url.path.endswith("/contacts")]
    assert orjson.loads(create.content)["language"] == "EN_US"
