"""The Sinch client at its edges: Retry-After forms, regions, Basic auth, error mapping."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import pytest

from pipeline.errors import ConfigError, SinchTransportError
from pipeline.settings import Secret, Secrets, SinchSettings
from pipeline.sinch.auth import BasicAuth
from pipeline.sinch.client import SinchClient, retry_after_seconds

KEYS = Secrets(Secret("id"), Secret("secret"), ())


def answer(retry_after: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": retry_after})


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert retry_after_seconds(answer("7")) == 7.0
    when = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(answer(when), now=1_000_000) == pytest.approx(30.0)
    assert retry_after_seconds(answer("soon")) is None
    assert retry_after_seconds(httpx.Response(429)) is None


def test_region_gives_the_base_url() -> None:
    assert SinchSettings(base_url="", region="us").api_base_url() == (
        "https://us.conversation.api.sinch.com"
    )
    assert SinchSettings(base_url="http://127.0.0.1:9/").api_base_url() == "http://127.0.0.1:9"


def test_basic_auth_sends_the_access_key() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"request_id": "r"})

    async def main() -> None:
        sinch = SinchSettings(base_url="http://sinch.test", auth="basic")
        async with SinchClient(sinch, KEYS, transport=httpx.MockTransport(handler)) as client:
            assert (await client.query(b"{}")).accepted

    asyncio.run(main())
    assert seen == ["Basic aWQ6c2VjcmV0"]  # base64("id:secret")


def test_no_answer_becomes_a_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    async def main() -> None:
        sinch = SinchSettings(base_url="http://sinch.test", auth="basic")
        async with SinchClient(sinch, KEYS, transport=httpx.MockTransport(handler)) as client:
            with pytest.raises(SinchTransportError, match="RemoteProtocolError"):
                await client.query(b"{}")

    asyncio.run(main())


def test_missing_credentials_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="SINCH_KEY_ID"):
        SinchClient(SinchSettings(), Secrets(None, None, ()))


def test_one_token_is_shared_and_renewed_a_minute_before_expiry() -> None:
    from pipeline.sinch.auth import OAuth2Auth

    issued: list[int] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        issued.append(1)
        return httpx.Response(200, json={"access_token": f"t{len(issued)}", "expires_in": 3600})

    now = [0.0]

    async def main() -> list[str]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as http:
            auth = OAuth2Auth(
                http,
                "http://auth.test/oauth2/token",
                Secret("id"),
                Secret("s"),
                clock=lambda: now[0],
            )
            seen = list(await asyncio.gather(*(auth.authorization() for _ in range(50))))
            now[0] = 3600 - 61
            seen.append(await auth.authorization())
            now[0] = 3600 - 59  # within the last minute: renewed before it expires
            seen.append(await auth.authorization())
            return seen

    seen = asyncio.run(main())
    assert set(seen[:51]) == {"Bearer t1"}  # 50 concurrent callers, one fetch
    assert seen[51] == "Bearer t2"
    assert len(issued) == 2


def test_admin_calls_retry_the_same_statuses_as_queries() -> None:
    """501 is transient (reference §2): an admin call retries it as the dispatcher does."""
    answers = [httpx.Response(501), httpx.Response(200, json={"webhooks": [{"id": "w1"}]})]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    async def main() -> list[dict[str, object]]:
        sinch = SinchSettings(base_url="http://sinch.test", auth="basic")
        async with SinchClient(sinch, KEYS, transport=httpx.MockTransport(handler)) as client:
            return await client.list_webhooks()

    assert asyncio.run(main()) == [{"id": "w1"}]
    assert answers == []


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    from pipeline.sinch.retry import backoff_seconds

    ceilings = [backoff_seconds(n, 0.25, 1.0, jitter=lambda low, high: high) for n in (1, 2, 3, 4)]
    assert ceilings == [0.25, 0.5, 1.0, 1.0]
    assert backoff_seconds(3, 0.25, 1.0, jitter=lambda low, high: low) == 0.0


def test_without_retries_each_call_is_tried_once_and_names_its_host_not_its_query() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(f"{request.method} {request.url.path}")
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    async def main() -> tuple[str, str]:
        sinch = SinchSettings(base_url="http://sinch.test", token_url="http://auth.test/token")
        transport = httpx.MockTransport(handler)
        async with SinchClient(sinch, KEYS, transport=transport, retry=False) as client:
            with pytest.raises(SinchTransportError) as token:
                await client.list_webhooks()
            client.auth = BasicAuth(Secret("id"), Secret("secret"))
            with pytest.raises(SinchTransportError) as lookup:
                await client.find_contacts("SMS", "46701234567")
        return str(token.value), str(lookup.value)

    token, lookup = asyncio.run(main())
    assert sent == ["POST /token", "GET /v1/projects/capaudit-demo-project/contacts"]
    assert token == (
        "token endpoint http://auth.test/token: "
        "ConnectError('[Errno -2] Name or service not known')"
    )
    # The whole URL but its query, which carries the phone number.
    assert lookup.startswith("GET http://sinch.test/v1/projects/capaudit-demo-project/contacts: ")
    assert "46701234567" not in lookup
