"""`capaudit check`: is this installation ready for tonight's run? No capability query is sent.

Each check gives one line; the command exits 0 only when all pass (a warning passes).

    config      the configuration file parses and validates
    secrets     SINCH_KEY_ID, SINCH_KEY_SECRET and CAPAUDIT_WEBHOOK_SECRET are set
    token       an OAuth2 token can be obtained with the access key (skipped for basic auth)
    api         the API answers with these credentials (lists the app's webhooks)
    app         the app's processing mode and webhook rate limit; warns when [collect]
                callback_rate_per_second expects more callbacks per second than the app gets
    webhook     the app has a CAPABILITY webhook pointing at [receiver] public_url
    receiver    the receiver answers at its public URL
    privacy     no data file or directory is open to other users (a warning: permissions.py)
    storage     each s3:// location configured (landing_url, lake_url) answers a listing with
                the credentials of the AWS chain
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from pipeline.errors import CapauditError
from pipeline.permissions import data_permissions
from pipeline.settings import Settings
from pipeline.sinch.apps import read_app_profile
from pipeline.sinch.auth import OAuth2Auth
from pipeline.sinch.client import SinchClient
from pipeline.storage.location import parse_s3


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passed, but something deserves a look


async def run_checks(settings: Settings) -> list[Check]:
    results = [Check("config", True, f"{settings.source} is valid"), data_permissions(settings)]
    missing = [
        name
        for name, value in (
            ("SINCH_KEY_ID", settings.secrets.key_id),
            ("SINCH_KEY_SECRET", settings.secrets.key_secret),
            ("CAPAUDIT_WEBHOOK_SECRET", settings.secrets.webhook_secret),
        )
        if value is None
    ]
    results.append(
        Check(
            "secrets",
            not missing,
            "missing: " + ", ".join(missing) if missing else "all three are set (values not shown)",
        )
    )
    for url in (settings.receiver.landing_url, settings.warehouse.lake_url):
        if url:
            results.append(await _check("storage", functools.partial(_storage, url, settings)))
    if settings.secrets.key_id is None or settings.secrets.key_secret is None:
        return results
    async with SinchClient(settings.sinch, settings.secrets) as client:
        results.append(await _check("token", lambda: _token(client)))
        results.append(await _check("api", lambda: _api(client)))
        results.append(await _check("app", lambda: _app(client, settings)))
        results.append(await _check("webhook", lambda: _webhook(client, settings)))
    results.append(await _check("receiver", lambda: _receiver(settings.receiver.public_url)))
    return results


async def _check(name: str, probe: Callable[[], Awaitable[str | Check]]) -> Check:
    """The probe's finding (a detail, or a whole Check when it warns); its error fails."""
    try:
        found = await probe()
    except (CapauditError, httpx.HTTPError, OSError) as exc:
        return Check(name, False, str(exc) or type(exc).__name__)
    return found if isinstance(found, Check) else Check(name, True, found)


async def _storage(url: str, settings: Settings) -> str:
    from pipeline.storage.client import shared_store

    where = parse_s3(url)
    await asyncio.to_thread(shared_store(settings.storage).probe, where.bucket, where.prefix)
    return f"{url} answers (credentials from the AWS chain, not shown)"


async def _token(client: SinchClient) -> str:
    if not isinstance(client.auth, OAuth2Auth):
        return "basic auth: no token needed"
    await client.auth.authorization()
    return "obtained an OAuth2 token"


async def _api(client: SinchClient) -> str:
    webhooks = await client.list_webhooks()
    return f"{client.project_url} answers; the app has {len(webhooks)} webhook(s)"


async def _app(client: SinchClient, settings: Settings) -> str | Check:
    profile = await read_app_profile(client)
    expected = settings.collect.callback_rate_per_second
    if profile.webhook_rate is None:
        rate = "webhook rate limit not shown (Sinch's default is 25/s)"
    else:
        rate = f"webhook rate limit {profile.webhook_rate:g}/s"
    detail = f"app {client.app_id}: processing mode {profile.processing_mode}, {rate}"
    if profile.webhook_rate is not None and expected > profile.webhook_rate:
        warning = (
            f"{detail}; [collect] callback_rate_per_second = {expected:g} is above it: "
            "estimates and lag warnings will expect callbacks faster than Sinch sends them"
        )
        return Check("app", True, warning, warning=True)
    return detail


async def _webhook(client: SinchClient, settings: Settings) -> str:
    target = settings.receiver.public_url
    for webhook in await client.list_webhooks():
        if webhook.get("target") == target and "CAPABILITY" in webhook.get("triggers", []):
            return f"webhook {webhook.get('id')} sends CAPABILITY callbacks to {target}"
    raise CapauditError(
        f"no CAPABILITY webhook points at {target}: run `capaudit webhooks ensure --target "
        f"{target}` (capaudit run also registers it)"
    )


async def _receiver(public_url: str) -> str:
    """The receiver answers a GET on its callback path with 405 (it only takes POST)."""
    parts = urlsplit(public_url)
    health = urlunsplit((parts.scheme, parts.netloc, "/healthz", "", ""))
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(public_url)
        if answer.status_code == 405:
            return f"{public_url} answers (405 to GET, as a callback endpoint should)"
        answer = await http.get(health)
    if answer.status_code != 200:
        raise CapauditError(f"{public_url}: unexpected answer {answer.status_code}")
    return f"{health} is healthy"
