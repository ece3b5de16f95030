"""An httpx transport that sends over aiohttp.

Why: httpx's own connection pool (httpcore) is CPU-bound at the rates capaudit needs. It rescans
every pooled connection for each request (encode/httpx#3215), so at 80-160 requests in flight,
where 800 queries/s with 100-200 ms network latency put us, it manages only 400-1,000 small
POSTs per second per core. aiohttp's connector does the same work for a fraction of the CPU.
Keeping httpx as the client API (requests, responses, errors, `MockTransport` and
`ASGITransport` in tests) and swapping only the transport keeps the rest of the code unaware.

Responses here are small JSON documents, so the body is read whole before returning.

`exchange` is the same request without httpx's `Request` and `Response` objects: building and
reading them (header normalisation, encodings, byte streams) was a fifth of the dispatcher's CPU
at 800 queries/s, more than the pacing, retries and ledger together. `SinchClient` uses it
when it has this transport; the errors are httpx's either way.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import httpx
from yarl import URL

# aiohttp sets these itself from the URL and the body.
HOP_BY_HOP = frozenset({b"host", b"content-length", b"connection", b"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class RawResponse:
    """The parts of an answer the client reads, named as on `httpx.Response`."""

    status_code: int
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=64)
def _url(url: str) -> URL:
    return URL(url)


@functools.lru_cache(maxsize=16)
def _client_timeout(pool: float | None, connect: float | None, read: float | None) -> Any:
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


class _AsHttpxErrors:
    """aiohttp's errors as the httpx errors callers handle (a class: once a request, cheaper
    than a generator-based context manager)."""

    __slots__ = ("request",)

    def __init__(self, request: httpx.Request | None) -> None:
        self.request = request

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        request = self.request
        if isinstance(exc, TimeoutError):
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise httpx.ConnectError(str(exc), request=request) from exc
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            raise httpx.RemoteProtocolError(
                str(exc) or "connection dropped", request=request
            ) from exc
        if isinstance(exc, aiohttp.ClientError):
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=AiohttpTransport(max_connections=128))`."""

    def __init__(self, *, max_connections: int = 100, keepalive_seconds: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._limits: Mapping[str, float | None] = {}
        self._timeout: Any = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: an aiohttp session belongs to the event loop that is running.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_seconds,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _AsHttpxErrors(request):
            async with self._get_session().request(
                request.method,
                str(request.url),
                headers=[
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in request.headers.raw
                    if name.lower() not in HOP_BY_HOP
                ],
                data=request.content or None,
                allow_redirects=False,
                timeout=_client_timeout(
                    timeout.get("pool"), timeout.get("connect"), timeout.get("read")
                ),
            ) as response:
                content = await response.read()
                return httpx.Response(
                    status_code=response.status,
                    headers=list(response.raw_headers),
                    content=content,
                    request=request,
                )

    async def exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes,
        limits: Mapping[str, float | None],
    ) -> RawResponse:
        """One request, answered whole; `limits`: the timeouts, as httpx's `Timeout.as_dict()`."""
        if limits is not self._limits:  # the client passes the same dict every time
            self._limits = limits
            self._timeout = _client_timeout(
                limits.get("pool"), limits.get("connect"), limits.get("read")
            )
        with _AsHttpxErrors(None):
            async with self._get_session().request(
                method,
                _url(url),
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                return RawResponse(response.status, response.headers, await response.read())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


__all__ = ["AiohttpTransport", "RawResponse"]
