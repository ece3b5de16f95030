"""The simulator's API answers like Sinch: validation, auth, webhooks, contacts, rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pipeline.errors import ConfigError, UsageError
from pipeline.settings import Secret, Secrets, SimulatorSettings, SinchSettings
from pipeline.simulator.app import create_app
from pipeline.simulator.outcomes import OutcomeModel
from pipeline.simulator.state import SimState
from pipeline.sinch.client import SinchClient
from pipeline.sinch.models import SINCH_STATUSES, ChannelIdentity, query_body
from pipeline.webhooks import ensure_webhook
from tests.conftest import asgi_client

SINCH = SinchSettings(base_url="http://test", token_url="http://test/oauth2/token")
KEYS = Secrets(Secret("key"), Secret("secret"), ())


def with_simulator(scenario: Callable[[SinchClient, Any], Awaitable[None]], **knobs: Any) -> None:
    async def main() -> None:
        app = create_app(SimulatorSettings(latency_ms=0, **knobs))
        async with asgi_client(app):
            client = SinchClient(SINCH, KEYS, transport=httpx.ASGITransport(app))
            async with client:
                await scenario(client, app.state.simulator)

    asyncio.run(main())


def test_valid_query_is_accepted_and_echoed() -> None:
    async def scenario(client: SinchClient, sim: Any) -> None:
        body = query_body("app", "req-1", identities=[ChannelIdentity("SMS", "46701234567")])
        answer = await client.query(body)
        assert answer.status == 200
        assert orjson.loads(answer.body)["request_id"] == "req-1"
        assert sim.state.stats.queries_accepted == 1

    with_simulator(scenario)


def test_invalid_queries_get_sinch_error_bodies() -> None:
    bad = {
        "missing app_id": {"recipient": {"contact_id": "c"}},
        "both recipients": {"app_id": "a", "recipient": {"contact_id": "c", "identified_by": {}}},
        "unknown channel": {
            "app_id": "a",
            "recipient": {
                "identified_by": {"channel_identities": [{"channel": "PIGEON", "identity": "1"}]}
            },
        },
        "extra identity key": {
            "app_id": "a",
            "recipient": {
                "identified_by": {
                    "channel_identities": [{"channel": "SMS", "identity": "1", "x": 1}]
                }
            },
        },
    }

    async def scenario(client: SinchClient, sim: Any) -> None:
        for name, body in bad.items():
            answer = await client.query(orjson.dumps(body))
            assert answer.status == 400, name
            error = orjson.loads(answer.body)["error"]
            assert error["code"] == 400
            assert error["status"] == "INVALID_ARGUMENT"

    with_simulator(scenario)


def test_bad_credentials_get_401() -> None:
    async def main() -> None:
        app = create_app(SimulatorSettings(latency_ms=0, key_id="right"))
        async with asgi_client(app) as http:
            token = await http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, auth=("wrong", "secret")
            )
            assert token.status_code == 401
            query = await http.post(
                "/v1/projects/p/capability:query",
                content=b"{}",
                headers={"Authorization": "Bearer nope"},
            )
            assert query.status_code == 401

    asyncio.run(main())


def test_expired_token_is_renewed_once_by_the_client() -> None:
    async def scenario(client: SinchClient, sim: Any) -> None:
        body = query_body("a", "r", identities=[ChannelIdentity("SMS", "46701234567")])
        assert (await client.query(body)).status == 200
        sim.state.expire_tokens()
        assert (await client.query(body)).status == 200
        assert sim.state.stats.tokens_issued == 2

    with_simulator(scenario)


def test_webhook_admin_and_the_five_webhook_limit() -> None:
    async def scenario(client: SinchClient, sim: Any) -> None:
        first = await ensure_webhook(client, "https://example.test/cb", "s1")
        again = await ensure_webhook(client, "https://example.test/cb", "s2")
        assert (first.action, again.action) == ("created", "updated")
        assert len(await client.list_webhooks()) == 1
        for n in range(4):
            await client.create_webhook(f"https://example.test/{n}", "s")
        with pytest.raises(UsageError, match="already has 5 webhooks, Sinch's maximum"):
            await ensure_webhook(client, "https://example.test/sixth", "s")
        await client.delete_webhook(first.webhook["id"])
        assert len(await client.list_webhooks()) == 4

    with_simulator(scenario)


@pytest.mark.timed  # 5 requests within 1 s
def test_rate_limit_answers_429_with_and_without_retry_after() -> None:
    for retry_after in (True, False):

        async def scenario(client: SinchClient, sim: Any, retry_after: bool = retry_after) -> None:
            body = query_body("a", "r", identities=[ChannelIdentity("SMS", "46701234567")])
            answers = [await client.query(body) for _ in range(5)]
            assert [a.status for a in answers] == [200, 200, 200, 429, 429]
            assert (answers[3].retry_after is not None) is retry_after
            assert orjson.loads(answers[3].body)["error"]["status"] == "RESOURCE_EXHAUSTED"

        # 3 per second; the token request does not count (it is not an API call)
        with_simulator(scenario, rate_limit=3, retry_after=retry_after)


def test_outcome_model_is_deterministic_and_covers_every_status() -> None:
    model = OutcomeModel(seed=3)
    identities = [f"4670{n:07d}" for n in range(2000)]
    first = [model.check("RCS", i) for i in identities]
    assert first == [model.check("RCS", i) for i in identities]
    assert {o.status for o in first} == set(SINCH_STATUSES)
    assert any(o.status == "CAPABILITY_PARTIAL" and o.capabilities for o in first)
    other_seed = [OutcomeModel(seed=4).check("RCS", i) for i in identities]
    assert other_seed != first
    assert model.check("SMS", "12").reason == "RECIPIENT_INVALID_CHANNEL_IDENTITY"


def test_queries_by_contact_id_check_the_contact_s_identities() -> None:
    async def scenario(client: SinchClient, sim: Any) -> None:
        contact = await client.create_contact(
            [
                {"channel": "WHATSAPP", "identity": "46701234567"},
                {"channel": "SMS", "identity": "46701234567"},
            ]
        )
        assert (await client.get_contact(contact["id"]))["id"] == contact["id"]
        answer = await client.query(query_body("app", "by-id", contact_id=contact["id"]))
        assert answer.status == 200
        assert sim.state.stats.checks == 2
        # An unknown contact is accepted too; its one callback says CONTACT_NOT_FOUND.
        bodies = sim.checker.contact_not_found("p", "app", "r", {"contact_id": "01UNKNOWN"})
        [note] = [orjson.loads(b)["capability_notification"] for b in bodies]
        assert note["reason"]["code"] == "CONTACT_NOT_FOUND"
        assert note["channel"] == ""

    with_simulator(scenario)


def test_a_share_of_callbacks_leaves_request_id_out_the_same_ones_for_a_seed() -> None:
    def notes(share: float, seed: int = 1) -> list[dict[str, Any]]:
        async def scenario(client: SinchClient, sim: Any) -> None:
            for n in range(200):
                identity = {"channel": "SMS", "identity": f"467012{n:05d}"}
                recipient = {"identified_by": {"channel_identities": [identity]}}
                bodies = sim.checker.callbacks("p", "app", f"r{n}", recipient, [identity])
                for body in bodies:
                    found.append(orjson.loads(body)["capability_notification"])

        found: list[dict[str, Any]] = []
        with_simulator(scenario, omit_request_id_share=share, seed=seed)
        return found

    none, some, every = notes(0.0), notes(0.3), notes(1.0)
    assert all("request_id" in n for n in none)
    assert not any("request_id" in n for n in every)
    omitted = ["request_id" not in n for n in some]
    assert 30 < sum(omitted) < 90
    assert omitted == ["request_id" not in n for n in notes(0.3)]  # same seed, same callbacks
    assert omitted != ["request_id" not in n for n in notes(0.3, seed=2)]


def test_a_simulator_restarted_on_its_state_file_keeps_webhooks_and_tokens(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "sim" / "state.json")
    first = SimState(SimulatorSettings(state_path=state))
    webhook = first.add_webhook("app", "https://example.test/cb", ["CAPABILITY"], "s")
    token = first.issue_token()
    first.add_webhook("app", "https://example.test/gone", ["CAPABILITY"], "s")
    del first.webhooks[next(w for w in first.webhooks if w != webhook.id)]
    first.keep()
    again = SimState(SimulatorSettings(state_path=state))
    assert list(again.webhooks.values()) == [webhook]
    assert again.token_state(token) == "valid"
    again.expire_tokens()
    assert SimState(SimulatorSettings(state_path=state)).token_state(token) == "expired"
    assert SimState(SimulatorSettings()).webhooks == {}  # no file: in memory only


def test_a_state_file_that_is_not_one_is_refused_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "state.json"
    bad.write_text('{"webhooks": [{"id": 1, "colour": "red"}]}')
    with pytest.raises(ConfigError, match=r"state\.json is not a simulator state file"):
        SimState(SimulatorSettings(state_path=str(bad)))
