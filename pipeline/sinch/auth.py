"""Credentials for the API (reference §3): one OAuth2 token shared by every worker, or Basic.

The token endpoint is throttled, so the token is fetched once, shared, renewed a minute before it
expires, and renewed early only when the API says it expired. Concurrent callers wait for the one
fetch in progress instead of starting their own.

The endpoint is a small bucket (about 30 fetches, refilling about 10 a second, per the node SDK)
that answers 429 without `Retry-After`. A fetch refused with 429 or 5xx, or unanswered, is tried
again after a full-jitter back-off (uniform between 0 and the capped exponential step), so that
processes started together spread out instead of emptying the bucket again in step, until an
overall deadline, then fails saying so.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx
import orjson

from pipeline.errors import SinchApiError, SinchTransportError
from pipeline.settings import Secret
from pipeline.sinch.retry import RETRYABLE_STATUSES, backoff_seconds

log = logging.getLogger(__name__)
RENEW_MARGIN_SECONDS = 60.0
# Full-jitter back-off for token fetches: steps of 0.5, 1, 2, 4, then 8 s at most, each drawn
# uniformly from [0, step]; the first waits average a quarter second, which the bucket (~10/s)
# refills in, and the whole fetch gives up after TOKEN_DEADLINE_SECONDS.
TOKEN_BACKOFF_BASE_SECONDS = 0.5
TOKEN_BACKOFF_CAP_SECONDS = 8.0
TOKEN_DEADLINE_SECONDS = 60.0


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
        jitter: Callable[[float, float], float] = random.uniform,
        deadline_seconds: float = TOKEN_DEADLINE_SECONDS,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._basic = basic_header(key_id, key_secret)
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._deadline_seconds = deadline_seconds
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
        """Fetch a token, retrying 429, 5xx and no answer with full jitter until the deadline."""
        deadline = self._clock() + self._deadline_seconds
        attempt = 0
        while True:
            attempt += 1
            failure = await self._try_fetch()
            if failure is None:
                return
            left = deadline - self._clock()
            if left <= 0:
                raise self._gave_up(failure, attempt)
            await self._sleep(min(left, self._backoff(attempt)))

    def _backoff(self, attempt: int) -> float:
        return backoff_seconds(
            attempt, TOKEN_BACKOFF_BASE_SECONDS, TOKEN_BACKOFF_CAP_SECONDS, self._jitter
        )

    async def _try_fetch(self) -> SinchApiError | SinchTransportError | None:
        """One request: None once the token is stored, or the failure worth another try. A
        refusal that trying again cannot change (401, 403, 400) is raised at once."""
        try:
            response = await self._http.post(
                self._token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": self._basic},
            )
        except httpx.TransportError as exc:
            return SinchTransportError(f"token endpoint {self._token_url}: {exc!r}")
        if response.status_code == 200:
            self._store(response)
            return None
        refusal = SinchApiError(
            response.status_code,
            f"token endpoint {self._token_url} refused the access key",
            body=response.text[:500],
        )
        if response.status_code not in RETRYABLE_STATUSES:
            raise refusal
        return refusal

    def _gave_up(
        self, failure: SinchApiError | SinchTransportError, attempts: int
    ) -> SinchApiError | SinchTransportError:
        """The last failure, saying that the deadline passed and after how many tries; with
        no deadline (one try asked for), the failure as it is."""
        if self._deadline_seconds <= 0:
            return failure
        why = (
            f"token endpoint {self._token_url}: no token after {attempts} attempts in "
            f"{self._deadline_seconds:.0f} s (the deadline for one fetch)"
        )
        if isinstance(failure, SinchTransportError):
            return SinchTransportError(f"{why}; the last one got no answer: {failure}")
        hint = "; it allows about 10 fetches a second" if failure.status == 429 else ""
        return SinchApiError(failure.status, f"{why}{hint}", body=failure.body)

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
