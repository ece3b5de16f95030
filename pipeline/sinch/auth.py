"""Credentials for the API (reference §3): one OAuth2 token shared by every worker, or Basic.

The token endpoint is throttled, so the token is fetched once, shared, renewed a minute before it
expires, and renewed early only when the API says it expired. Concurrent callers wait for the one
fetch in progress instead of starting their own.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx
import orjson

from pipeline.errors import SinchApiError, SinchTransportError
from pipeline.settings import Secret

log = logging.getLogger(__name__)
RENEW_MARGIN_SECONDS = 60.0
TOKEN_FETCH_ATTEMPTS = 4


class Auth(Protocol):
    async def authorization(self) -> str:
        """The `Authorization` header value to send now."""
        ...

    def expired(self, used: str) -> bool:
        """Forget the credentials `used` after a 401; True if renewing them may help."""
        ...


def basic_header(key_id: Secret, key_secret: Secret) -> str:
    pair = f"{key_id.reveal()}:{key_secret.reveal()}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class BasicAuth:
    """HTTP Basic with the access key (heavily throttled by Sinch; for small runs only)."""

    def __init__(self, key_id: Secret, key_secret: Secret) -> None:
        self._header = basic_header(key_id, key_secret)

    async def authorization(self) -> str:
        return self._header

    def expired(self, used: str) -> bool:
        return False


class OAuth2Auth:
    """Client-credentials token cache: `await auth.authorization()` -> "Bearer ..."."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        token_url: str,
        key_id: Secret,
        key_secret: Secret,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._basic = basic_header(key_id, key_secret)
        self._clock = clock
        self._sleep = sleep
        self._header = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def authorization(self) -> str:
        if self._header and self._clock() < self._renew_at:
            return self._header
        async with self._lock:
            if not self._header or self._clock() >= self._renew_at:
                await self._fetch()
        return self._header

    def expired(self, used: str) -> bool:
        if used == self._header:
            self._renew_at = 0.0
        return True

    async def _fetch(self) -> None:
        for attempt in range(1, TOKEN_FETCH_ATTEMPTS + 1):
            try:
                response = await self._http.post(
                    self._token_url,
                    data={"grant_type": "client_credentials"},
                    headers={"Authorization": self._basic},
                )
            except httpx.TransportError as exc:
                if attempt == TOKEN_FETCH_ATTEMPTS:
                    raise SinchTransportError(f"token endpoint {self._token_url}: {exc}") from exc
            else:
                if response.status_code == 200:
                    self._store(response)
                    return
                if response.status_code not in (429, 500, 502, 503, 504) or (
                    attempt == TOKEN_FETCH_ATTEMPTS
                ):
                    raise SinchApiError(
                        response.status_code,
                        f"token endpoint {self._token_url} refused the access key",
                        body=response.text[:500],
                    )
            await self._sleep(min(2.0**attempt * 0.25, 5.0))

    def _store(self, response: httpx.Response) -> None:
        try:
            answer = orjson.loads(response.content)
            token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in", 3600))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise SinchApiError(200, f"token endpoint {self._token_url}: bad answer") from exc
        self.fetches += 1
        self._header = f"Bearer {token}"
        self._renew_at = self._clock() + max(lifetime - RENEW_MARGIN_SECONDS, lifetime / 2)
        log.debug("oauth2 token obtained, valid %.0f s", lifetime)
