"""The Sinch Conversation API client: capability queries, the app, webhooks and contacts.

The network is a constructor argument (`transport=`): production uses `AiohttpTransport`, unit
tests pass `httpx.MockTransport` or `httpx.ASGITransport(simulator_app)`.

    async with SinchClient(settings.sinch, settings.secrets) as sinch:
        answer = await sinch.query(query_body(app_id, request_id, identities=[...]))
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from pipeline.errors import ConfigError, SinchApiError, SinchTransportError
from pipeline.settings import Secrets, SinchSettings
from pipeline.sinch.auth import TOKEN_DEADLINE_SECONDS, Auth, BasicAuth, OAuth2Auth
from pipeline.sinch.models import CAPABILITY_TRIGGER, parse_error
from pipeline.sinch.retry import RETRYABLE_STATUSES, backoff_seconds
from pipeline.sinch.transport import AiohttpTransport, RawResponse

JSON = {"Content-Type": "application/json"}
ADMIN_ATTEMPTS = 4
ADMIN_BACKOFF_SECONDS = 0.25
ADMIN_BACKOFF_MAX_SECONDS = 4.0
Gate = Callable[[], Awaitable[None]]
# Contacts capaudit creates exist to be asked about, not written to; both SDKs make `language`
# required, and EN_US is the value Sinch's own SDK tests create contacts with.
CONTACT_LANGUAGE = "EN_US"


@dataclass(frozen=True)
class QueryAnswer:
    """What Sinch said to one capability:query; the dispatcher decides what it means."""

    status: int
    body: bytes
    retry_after: float | None = None

    @property
    def accepted(self) -> bool:
        """Any 2xx: Sinch documents 200, and every SDK takes any 2xx as success (a 202 or an
        empty 204 from a proxy or a later API version is an accepted query, not a failure)."""
        return 200 <= self.status < 300

    def error_text(self) -> str:
        code, message = parse_error(self.body)
        return f"{self.status} {code}: {message}".strip()


class SinchClient:
    def __init__(
        self,
        sinch: SinchSettings,
        secrets: Secrets,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        retry: bool = True,
    ) -> None:
        """`retry=False` tries admin calls and the token once: `capaudit check` wants the
        first failure as it is, within its budget, not after minutes of back-off."""
        if secrets.key_id is None or secrets.key_secret is None:
            raise ConfigError("SINCH_KEY_ID and SINCH_KEY_SECRET must be set in the environment")
        self._transport = transport or AiohttpTransport(max_connections=max_connections)
        self._timeout = httpx.Timeout(sinch.timeout_seconds).as_dict()
        self._http = httpx.AsyncClient(transport=self._transport, timeout=sinch.timeout_seconds)
        self._admin_attempts = ADMIN_ATTEMPTS if retry else 1
        self.auth: Auth = (
            OAuth2Auth(
                self._http,
                sinch.token_url,
                secrets.key_id,
                secrets.key_secret,
                deadline_seconds=TOKEN_DEADLINE_SECONDS if retry else 0.0,
            )
            if sinch.auth == "oauth2"
            else BasicAuth(secrets.key_id, secrets.key_secret)
        )
        self.app_id = sinch.app_id
        self.project_url = f"{sinch.api_base_url()}/v1/projects/{sinch.project_id}"
        self._query_url = f"{self.project_url}/capability:query"

    async def __aenter__(self) -> SinchClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- capability ---------------------------------------------------------------------------

    async def query(self, body: bytes, *, gate: Gate | None = None) -> QueryAnswer:
        """Send one capability:query; HTTP errors are answers, no answer raises.

        `gate` is awaited right before each request goes out (after authentication), so a
        pacer sees the moment of sending, token fetches and renewals included.
        """
        response = await self._send("POST", self._query_url, body, gate)
        return QueryAnswer(response.status_code, response.content, retry_after_seconds(response))

    # -- the app (reference §10) ----------------------------------------------------------------

    async def get_app(self) -> dict[str, Any]:
        """The app as Sinch shows it: `processing_mode`, `rate_limits`, ... (sinch/apps.py)."""
        return await self._call("GET", f"{self.project_url}/apps/{self.app_id}")

    # -- webhooks (reference §6) --------------------------------------------------------------

    async def list_webhooks(self) -> list[dict[str, Any]]:
        answer = await self._call("GET", f"{self.project_url}/apps/{self.app_id}/webhooks")
        return list(answer.get("webhooks", []))

    async def create_webhook(self, target: str, secret: str) -> dict[str, Any]:
        body = {
            "app_id": self.app_id,
            "target": target,
            "target_type": "HTTP",
            "triggers": [CAPABILITY_TRIGGER],
            "secret": secret,
        }
        return await self._call("POST", f"{self.project_url}/webhooks", body)

    async def update_webhook(
        self, webhook_id: str, webhook: dict[str, Any], update_mask: Sequence[str]
    ) -> dict[str, Any]:
        """Change the fields `update_mask` names. `webhook` is the whole webhook (`target` is
        required in the update model); the mask goes as the node SDK sends it, `a,b`."""
        query = urllib.parse.urlencode({"update_mask": ",".join(update_mask)}, safe=",")
        url = f"{self.project_url}/webhooks/{webhook_id}?{query}"
        return await self._call("PATCH", url, webhook)

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._call("DELETE", f"{self.project_url}/webhooks/{webhook_id}")

    # -- contacts (reference §8) --------------------------------------------------------------

    async def create_contact(
        self, channel_identities: list[dict[str, str]], *, language: str = CONTACT_LANGUAGE
    ) -> dict[str, Any]:
        body = {"channel_identities": channel_identities, "language": language}
        return await self._call("POST", f"{self.project_url}/contacts", body)

    async def find_contacts(self, channel: str, identity: str) -> list[dict[str, Any]]:
        """The contacts that have this channel identity (usually none or one)."""
        query = urllib.parse.urlencode({"channel": channel, "identity": identity})
        answer = await self._call("GET", f"{self.project_url}/contacts?{query}")
        return list(answer.get("contacts") or [])

    async def get_contact(self, contact_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{self.project_url}/contacts/{contact_id}")

    # -- plumbing ---------------------------------------------------------------------------

    async def _call(self, method: str, url: str, body: Any = None) -> dict[str, Any]:
        """An admin call (webhooks, contacts): retried briefly on 429, 5xx and lost answers."""
        content = orjson.dumps(body) if body is not None else b""
        for attempt in range(1, self._admin_attempts + 1):
            try:
                response = await self._send(method, url, content)
            except SinchTransportError:
                if attempt == self._admin_attempts:
                    raise
                await asyncio.sleep(_admin_backoff(attempt))
                continue
            if response.status_code not in RETRYABLE_STATUSES or attempt == self._admin_attempts:
                break
            wait = retry_after_seconds(response)
            await asyncio.sleep(wait if wait is not None else _admin_backoff(attempt))
        if response.status_code >= 400:
            code, message = parse_error(response.content)
            raise SinchApiError(response.status_code, message, code=code, body=response.text[:2000])
        if not response.content:
            return {}
        answer: dict[str, Any] = orjson.loads(response.content)
        return answer

    async def _exchange(
        self, method: str, url: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response | RawResponse:
        if isinstance(self._transport, AiohttpTransport):  # no httpx objects: see transport.py
            return await self._transport.exchange(method, str(url), headers, content, self._timeout)
        request = httpx.Request(
            method, url, content=content, headers=headers, extensions={"timeout": self._timeout}
        )
        # Straight to the transport: the client layer would add cookie handling, auth and
        # redirect flows the API never needs, about a third of the CPU of a request.
        response = await self._transport.handle_async_request(request)
        await response.aread()
        return response

    async def _send(
        self, method: str, url: str, content: bytes, gate: Gate | None = None
    ) -> httpx.Response | RawResponse:
        """One request with the current credentials; a 401 for an expired token renews once."""
        for attempt in (1, 2):
            authorization = await self.auth.authorization()
            headers = {**JSON, "Authorization": authorization}
            if gate is not None:
                await gate()
            try:
                response = await self._exchange(method, url, content, headers)
            except httpx.TransportError as exc:
                raise SinchTransportError(
                    f"{method} {_without_query(url)}: {type(exc).__name__} {exc}"
                ) from exc
            if attempt == 1 and _token_expired(response) and self.auth.expired(authorization):
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover


def _without_query(url: str) -> str:
    """The URL an error names: whole, so the reader knows which host failed, but without its
    query, where contact look-ups carry phone numbers."""
    return str(httpx.URL(url).copy_with(query=None))


def _admin_backoff(attempt: int) -> float:
    return backoff_seconds(attempt, ADMIN_BACKOFF_SECONDS, ADMIN_BACKOFF_MAX_SECONDS)


def _token_expired(response: httpx.Response | RawResponse) -> bool:
    return (
        response.status_code == 401
        and "expired" in response.headers.get("www-authenticate", "").lower()
    )


def retry_after_seconds(
    response: httpx.Response | RawResponse, now: float | None = None
) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when absent/bad."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
