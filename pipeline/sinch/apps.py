"""What capaudit needs to know about the Conversation app (reference §10).

    profile = await read_app_profile(client)
    profile.processing_mode   # "CONVERSATION" or "DISPATCH"
    profile.webhook_rate      # callbacks per second Sinch delivers to the app, None if not shown

Tolerant of what the answer leaves out: every field of the SDKs' AppResponse is optional.
A missing `processing_mode` reads as CONVERSATION: neither SDK has an UNSPECIFIED value for it,
so CONVERSATION is the enum's zero value, which proto3 JSON leaves out of an answer. A missing
or unusable `rate_limits.webhooks` is None (not Sinch's default of 25/s, which it may not be).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.sinch.client import SinchClient
from pipeline.sinch.models import CONVERSATION_MODE


@dataclass(frozen=True)
class AppProfile:
    processing_mode: str
    webhook_rate: float | None


async def read_app_profile(client: SinchClient) -> AppProfile:
    """GET the app and keep what capaudit uses."""
    return app_profile(await client.get_app())


def app_profile(app: dict[str, Any]) -> AppProfile:
    mode = app.get("processing_mode")
    limits = app.get("rate_limits")
    return AppProfile(
        processing_mode=mode if isinstance(mode, str) and mode else CONVERSATION_MODE,
        webhook_rate=_rate(limits.get("webhooks") if isinstance(limits, dict) else None),
    )


def _rate(value: Any) -> float | None:
    """A positive rate; proto3 JSON writes 64-bit integers as strings, so "25" counts too."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        rate = float(value)
    except ValueError:
        return None
    return rate if rate > 0 and rate != float("inf") else None
