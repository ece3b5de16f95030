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
# Sinch has no contact for the target (reason CONTACT_NOT_FOUND, in a callback or as the query's
# error) and `[contacts] create_missing` is off: not an answer about the channel, never NO_RESPONSE.
NOT_A_CONTACT = "NOT_A_CONTACT"
ALL_STATUSES = (*SINCH_STATUSES, NO_RESPONSE, REQUEST_FAILED, NOT_A_CONTACT)
# capaudit's statuses that are not answers about a channel (never reused, never a change).
NOT_ANSWERS = (NO_RESPONSE, REQUEST_FAILED, NOT_A_CONTACT)
REACHABLE_STATUSES = (CAPABILITY_FULL, CAPABILITY_PARTIAL)

# Webhooks (reference §6; the Webhook model of sinch-sdk-java and sinch-sdk-node).
CAPABILITY_TRIGGER = "CAPABILITY"
MAX_WEBHOOKS_PER_APP = 5
MAX_TARGET_LENGTH = 742
WEBHOOK_TARGET_TYPES = ("HTTP", "DISMISS")
# The triggers both SDKs list. Left out: UNSPECIFIED_TRIGGER ("using this value will cause
# errors") and SMART_CONVERSATION(S), which each SDK spells differently.
WEBHOOK_TRIGGERS = (
    "MESSAGE_DELIVERY",
    "MESSAGE_SUBMIT",
    "MESSAGE_INBOUND",
    "EVENT_DELIVERY",
    "EVENT_INBOUND",
    "MESSAGE_INBOUND_SMART_CONVERSATION_REDACTION",
    "CONVERSATION_START",
    "CONVERSATION_STOP",
    "CONVERSATION_DELETE",
    "CONTACT_CREATE",
    "CONTACT_DELETE",
    "CONTACT_MERGE",
    "CONTACT_UPDATE",
    "CONTACT_IDENTITIES_DUPLICATION",
    "UNSUPPORTED",
    "OPT_IN",
    "OPT_OUT",
    "CHANNEL_EVENT",
    CAPABILITY_TRIGGER,
    "RECORD_NOTIFICATION",
)
# The webhook fields an update can name in its `update_mask` (`id` is read-only).
WEBHOOK_FIELDS = ("app_id", "target", "target_type", "triggers", "secret", "client_credentials")

# Contacts (reference §8; ContactCreateRequest of both SDKs: `language` is required).
_LANGUAGE_ROWS = (
    "AF SQ AR AZ BN BG CA ZH ZH_CN ZH_HK ZH_TW HR CS DA NL EN EN_GB EN_US ET FIL FI FR DE EL GU",
    "HA HE HI HU ID GA IT JA KN KK KO LO LV LT MK MS ML MR NB FA PL PT PT_BR PT_PT PA RO RU SR",
    "SK SL ES ES_AR ES_ES ES_MX SW SV TA TE TH TR UK UR UZ VI ZU UNSPECIFIED",
)
CONTACT_LANGUAGES = frozenset(code for row in _LANGUAGE_ROWS for code in row.split())
# The apps' processing modes (reference §10).
CONVERSATION_MODE = "CONVERSATION"
DISPATCH_MODE = "DISPATCH"
PROCESSING_MODES = (CONVERSATION_MODE, DISPATCH_MODE)

# Callback reasons that describe a failure of the check, not of the contact: worth one re-query.
TRANSIENT_REASONS = frozenset({"RATE_LIMITED", "INTERNAL_ERROR", "CHANNEL_FAILURE"})
CAPABILITY_EVENT_KEY = "capability_notification"
CONTACT_NOT_FOUND = "CONTACT_NOT_FOUND"
# Why a query was refused, when capaudit can tell (`requests.failure_reason`).
DISPATCH_REFUSED = "DISPATCH_MODE"  # asked by contact_id of an app in DISPATCH processing mode


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


def error_body(
    status: int, grpc_status: str, message: str, details: Sequence[dict[str, str]] = ()
) -> dict[str, Any]:
    """Sinch's error object (reference §2); `details` are `{"type_url", "value"}` entries."""
    error = {"code": status, "message": message, "status": grpc_status, "details": list(details)}
    return {"error": error}


def parse_error(body: bytes) -> tuple[str, str]:
    """(status, message) from a Sinch error body; tolerant of anything else."""
    try:
        error = orjson.loads(body).get("error", {})
        return str(error.get("status", "")), str(error.get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return "", body[:200].decode("utf-8", "replace")


def error_details(body: bytes) -> str | None:
    """The `details` list of a Sinch error body as JSON text (kept in the ledger and published
    in `capability.error_details`); None when there are none or the body is not Sinch's."""
    try:
        details = orjson.loads(body).get("error", {}).get("details")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return orjson.dumps(details).decode() if isinstance(details, list) and details else None


def failure_reason(status: int, body: bytes) -> str | None:
    """What a refused query means when capaudit can tell: CONTACT_NOT_FOUND for Sinch's
    "no such contact" (a 404 NOT_FOUND about a contact, or a detail naming the reason; a 404
    about the project or app is a configuration error instead)."""
    details = error_details(body) or ""
    code, message = parse_error(body)
    if CONTACT_NOT_FOUND in details or CONTACT_NOT_FOUND in message:
        return CONTACT_NOT_FOUND
    if status == 404 and code == "NOT_FOUND" and "contact" in message.lower():
        return CONTACT_NOT_FOUND
    return None
