"""Sinch's vocabulary (reference §4, §7) and the JSON shapes capaudit sends and receives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# The channels one can ask about, each with the official SDKs whose channel enum names it
# (read 2026-07-21, both repositories' newest commits):
#   java: sinch/sinch-sdk-java  openapi-contracts/src/main/com/sinch/sdk/domains/conversation/
#         models/v1/ConversationChannel.java        (an EnumDynamic: unknown values still parse)
#   node: sinch/sinch-sdk-node  packages/conversation/src/models/v1/conversation-channel/
#         conversation-channel.ts                   (`| string`: open as well)
# Callbacks may name channels not listed here (an open enum): ingestion keeps them as sent.
_JAVA_NODE = frozenset({"java", "node"})
CHANNEL_SOURCES: Mapping[str, frozenset[str]] = {
    "WHATSAPP": _JAVA_NODE,
    "RCS": _JAVA_NODE,
    "SMS": _JAVA_NODE,
    "MESSENGER": _JAVA_NODE,
    "VIBERBM": _JAVA_NODE,
    "MMS": _JAVA_NODE,
    "INSTAGRAM": _JAVA_NODE,
    "TELEGRAM": _JAVA_NODE,
    "KAKAOTALK": _JAVA_NODE,
    "KAKAOTALKCHAT": _JAVA_NODE,
    "LINE": _JAVA_NODE,
    "WECHAT": _JAVA_NODE,
    "APPLEBC": _JAVA_NODE,
}
CHANNELS = tuple(CHANNEL_SOURCES)
# Names the SDKs no longer list -> the channel to use instead. VIBER (the Viber bot channel)
# left the java (6076f6f) and node (b1182a0) enums in 2025-08; only the dotnet SDK keeps it.
RETIRED_CHANNELS: Mapping[str, str] = {"VIBER": "VIBERBM"}
# The channel a callback about the whole request may carry (node and dotnet SDKs), as may an
# empty or missing one: ingestion reads all of them as ''. Never a channel to ask for.
WHOLE_REQUEST_CHANNEL = "CHANNEL_UNSPECIFIED"
# Channels whose identity is an international phone number: normalised to E.164 digits.
PHONE_CHANNELS = frozenset({"SMS", "MMS", "WHATSAPP", "RCS", "VIBERBM"})

CAPABILITY_FULL = "CAPABILITY_FULL"
CAPABILITY_PARTIAL = "CAPABILITY_PARTIAL"
NO_CAPABILITY = "NO_CAPABILITY"
CAPABILITY_UNKNOWN = "CAPABILITY_UNKNOWN"
SINCH_STATUSES = (CAPABILITY_FULL, CAPABILITY_PARTIAL, NO_CAPABILITY, CAPABILITY_UNKNOWN)
# Outcomes capaudit adds so that every target of a run has exactly one status.
NO_RESPONSE = "NO_RESPONSE"
REQUEST_FAILED = "REQUEST_FAILED"
ALL_STATUSES = (*SINCH_STATUSES, NO_RESPONSE, REQUEST_FAILED)
REACHABLE_STATUSES = (CAPABILITY_FULL, CAPABILITY_PARTIAL)

# Callback reasons that describe a failure of the check, not of the contact: worth one re-query.
TRANSIENT_REASONS = frozenset({"RATE_LIMITED", "INTERNAL_ERROR", "CHANNEL_FAILURE"})
CAPABILITY_EVENT_KEY = "capability_notification"


@dataclass(frozen=True)
class ChannelIdentity:
    channel: str
    identity: str


def query_body(
    app_id: str,
    request_id: str,
    *,
    identities: Sequence[ChannelIdentity] = (),
    contact_id: str | None = None,
) -> bytes:
    """The JSON body of one capability:query (reference §1): exactly one kind of recipient."""
    if contact_id is not None and identities:
        raise ValueError("a recipient is a contact_id or channel identities, not both")
    if contact_id is not None:
        recipient: dict[str, Any] = {"contact_id": contact_id}
    elif identities:
        recipient = {
            "identified_by": {
                "channel_identities": [
                    {"channel": i.channel, "identity": i.identity} for i in identities
                ]
            }
        }
    else:
        raise ValueError("a recipient needs a contact_id or at least one identity")
    return orjson.dumps({"app_id": app_id, "recipient": recipient, "request_id": request_id})


def error_body(status: int, grpc_status: str, message: str) -> dict[str, Any]:
    """Sinch's error object (reference §2)."""
    return {"error": {"code": status, "message": message, "status": grpc_status, "details": []}}


def parse_error(body: bytes) -> tuple[str, str]:
    """(status, message) from a Sinch error body; tolerant of anything else."""
    try:
        error = orjson.loads(body).get("error", {})
        return str(error.get("status", "")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")
