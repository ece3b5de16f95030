"""The app resource, `GET /v1/projects/{p}/apps/{app_id}`, shaped like the SDKs' AppResponse.

What capaudit reads from it is `processing_mode` (CONVERSATION or DISPATCH, reference §10) and
`rate_limits.webhooks`, the callbacks per second Sinch delivers: here the simulator's own
`webhook_rate`, so a client that paces to the app's rate paces to what the simulator does.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from pipeline.settings import SimulatorSettings
from pipeline.simulator.answers import sinch_error

SINCH_DEFAULT_RATE = 25  # Sinch's default for each of the app's rate limits


def app_resource(settings: SimulatorSettings, app_id: str) -> dict[str, Any]:
    return {
        "id": app_id,
        "display_name": "capaudit simulator",
        "channel_credentials": [],
        "conversation_metadata_report_view": "NONE",
        "processing_mode": settings.processing_mode,
        "rate_limits": {
            "inbound": SINCH_DEFAULT_RATE,
            "outbound": SINCH_DEFAULT_RATE,
            "webhooks": _whole_if_whole(settings.webhook_rate),
        },
        "retention_policy": {"retention_type": "MESSAGE_EXPIRE_POLICY", "ttl_days": 180},
        "dispatch_retention_policy": {"retention_type": "MESSAGE_EXPIRE_POLICY", "ttl_days": 0},
        "smart_conversation": {"enabled": False},
    }


def unknown_app(settings: SimulatorSettings, app_id: str) -> Response | None:
    """404 for an app other than the configured one (any app is known when none is)."""
    if settings.app_id and app_id != settings.app_id:
        return sinch_error(404, "NOT_FOUND", f"App {app_id} not found")
    return None


def _whole_if_whole(rate: float) -> float | int:
    """Sinch's rate limits are integers on the wire; the simulator's may be fractional."""
    return int(rate) if rate.is_integer() else rate
