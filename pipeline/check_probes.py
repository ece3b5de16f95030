"""`capaudit check`'s network probes: a token, the API, the app, the webhook, the receiver.

They only read: nothing is created or changed at Sinch, and no capability query is sent. The
token and the webhook list are fetched once and shared by the probes that need them; a probe
whose inputs are placeholders (pipeline/check_config.py) is not tried at all.

    probes = sinch_probes(SinchReads(client), settings, placeholders(settings))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import httpx

from pipeline.check_runner import Check, NotTried, Probe
from pipeline.errors import CapauditError
from pipeline.settings import Settings
from pipeline.sinch.apps import read_app_profile
from pipeline.sinch.auth import OAuth2Auth
from pipeline.sinch.client import SinchClient

T = TypeVar("T")
# The keys each probe's request is built from: a placeholder among them and it is not tried.
API_KEYS = ("[sinch] base_url", "[sinch] project_id", "[sinch] app_id", "[sinch] token_url")
TOKEN_KEYS = ("[sinch] token_url",)
RECEIVER_KEYS = ("[receiver] public_url",)


class SinchReads:
    """The reads several probes share, each made once: the token and the app's webhooks."""

    def __init__(self, client: SinchClient) -> None:
        self.client = client
        self._shared: dict[str, asyncio.Future[Any]] = {}

    async def token(self) -> str:
        return str(await self._once("token", self.client.auth.authorization))

    def awaited(self) -> str:
        """What the probes needing a token still wait for: "" once it is there (or failed)."""
        token = self._shared.get("token")
        return "" if token is not None and token.done() else "a token (see the token line)"

    async def authorized(self) -> None:
        """Wait for the token; without one, the probes that need it are not tried."""
        try:
            await self.token()
        except (CapauditError, httpx.HTTPError, OSError) as exc:
            raise NotTried("no token (see the token line)") from exc

    async def webhooks(self) -> list[dict[str, Any]]:
        await self.authorized()
        found: list[dict[str, Any]] = await self._once("webhooks", self.client.list_webhooks)
        return found

    async def _once(self, name: str, read: Callable[[], Awaitable[T]]) -> T:
        if name not in self._shared:
            self._shared[name] = asyncio.ensure_future(read())
        result: T = await self._shared[name]
        return result


def sinch_probes(reads: SinchReads, settings: Settings, left: Collection[str]) -> list[Probe]:
    """token, api, app, webhook: in this order, each with the request it makes."""
    app_url = f"{reads.client.project_url}/apps/{reads.client.app_id}"
    token_url = settings.sinch.token_url
    waiting = reads.awaited
    probes = [
        (Probe("token", "POST", token_url, lambda: _token(reads, token_url)), TOKEN_KEYS),
        (Probe("api", "GET", f"{app_url}/webhooks", lambda: _api(reads), waiting), API_KEYS),
        (Probe("app", "GET", app_url, lambda: _app(reads, settings), waiting), API_KEYS),
        (
            Probe(
                "webhook", "GET", f"{app_url}/webhooks", lambda: _webhook(reads, settings), waiting
            ),
            API_KEYS + RECEIVER_KEYS,
        ),
    ]
    return [_unless_placeholder(probe, keys, left) for probe, keys in probes]


def receiver_probe(settings: Settings, left: Collection[str], budget_seconds: float) -> Probe:
    url = settings.receiver.public_url
    health = settings.collect.health_url(settings.receiver)
    probe = Probe("receiver", "GET", url, lambda: _receiver(url, health, budget_seconds))
    return _unless_placeholder(probe, RECEIVER_KEYS, left)


def _unless_placeholder(probe: Probe, keys: tuple[str, ...], left: Collection[str]) -> Probe:
    named = [key for key in keys if key in left]
    if not named:
        return probe

    async def not_tried() -> str:
        raise NotTried(f"placeholder in {', '.join(named)} (see the config line)")

    return Probe(probe.name, probe.method, probe.url, not_tried)


async def _token(reads: SinchReads, token_url: str) -> str:
    await reads.token()
    if isinstance(reads.client.auth, OAuth2Auth):
        return f"obtained an OAuth2 token from {token_url}"
    return "basic auth: no token needed"


async def _api(reads: SinchReads) -> str:
    webhooks = await reads.webhooks()
    return f"{reads.client.project_url} answers; the app has {len(webhooks)} webhook(s)"


async def _app(reads: SinchReads, settings: Settings) -> str | Check:
    await reads.authorized()
    profile = await read_app_profile(reads.client)
    expected = settings.collect.callback_rate_per_second
    if profile.webhook_rate is None:
        rate = "webhook rate limit not shown (Sinch's default is 25/s)"
    else:
        rate = f"webhook rate limit {profile.webhook_rate:g}/s"
    detail = f"app {reads.client.app_id}: processing mode {profile.processing_mode}, {rate}"
    if profile.webhook_rate is not None and expected > profile.webhook_rate:
        warning = (
            f"{detail}; [collect] callback_rate_per_second = {expected:g} is above it: "
            "estimates and lag warnings will expect callbacks faster than Sinch sends them"
        )
        return Check("app", True, warning, warning=True)
    return detail


async def _webhook(reads: SinchReads, settings: Settings) -> str:
    """Only compares: `capaudit webhooks ensure` (or a run) is what registers it."""
    target = settings.receiver.public_url
    for webhook in await reads.webhooks():
        if webhook.get("target") == target and "CAPABILITY" in webhook.get("triggers", []):
            return f"webhook {webhook.get('id')} sends CAPABILITY callbacks to {target}"
    raise CapauditError(
        f"no CAPABILITY webhook points at {target}: run `capaudit webhooks ensure --target "
        f"{target}` (capaudit run also registers it)"
    )


async def _receiver(public_url: str, health: str, seconds: float) -> str:
    """The receiver answers a GET on its callback path with 405 (it only takes POST), or
    200 at its health URL."""
    async with httpx.AsyncClient(timeout=seconds) as http:
        answer = await _get(http, public_url)
        if answer.status_code == 405:
            return f"{public_url} answers (405 to GET, as a callback endpoint should)"
        healthy = await _get(http, health)
    if healthy.status_code != 200:
        raise CapauditError(
            f"GET {public_url}: {answer.status_code} (a callback endpoint answers 405), and "
            f"GET {health}: {healthy.status_code}"
        )
    return f"{health} is healthy"


async def _get(http: httpx.AsyncClient, url: str) -> httpx.Response:
    try:
        return await http.get(url)
    except httpx.HTTPError as exc:
        raise CapauditError(f"GET {url}: {type(exc).__name__}: {exc}") from exc
