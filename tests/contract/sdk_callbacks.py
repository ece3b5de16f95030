"""Callback shapes capaudit must accept, written from Sinch's SDK models (not copied from them).

The models (read 2026-07-21, newest commits):

- envelope: `ConversationCallbackEvent` (sinch-sdk-node, packages/conversation/src/models/v1/
  mod-callback-events/conversation-callback-event/) and the java SDK's `CapabilityEvent`
  (openapi-contracts/.../conversation/models/v1/sinchevents/capability/): `app_id`,
  `project_id`, `accepted_time`, `event_time`, `message_metadata`, `correlation_id`, and one key
  naming the event (`capability_notification` here; other triggers use other keys).
- `capability_notification`: node `CapabilityNotification`, java `CapabilityEventNotification`:
  `request_id`, `contact_id`, `channel`, `identity`, `capability_status`, `channel_capabilities`,
  `reason` — every field optional.
- `reason`: `code`, `description`, `sub_code` (both SDKs), `channel_code` (java). Codes are an
  open set: node lists 31, java 27, and new ones must parse.
- `channel`: an open enum (java `EnumDynamic`, node `| string`); node adds CHANNEL_UNSPECIFIED.

Each case says what must land in `notifications` (the columns named in `lands`), or that the
callback is another trigger's event kept in `other_events` (`lands` None). A case without
`request_id` names the query (`asked`) it must be matched to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

APP_ID = "01CONTRACTAPP00000000000000"
PROJECT_ID = "c36f3d3d-1513-4edd-ae42-11995557ff61"
ACCEPTED_TIME = "2026-11-25T02:00:05.724083Z"
EVENT_TIME = "2026-11-25T02:00:05Z"


@dataclass(frozen=True)
class Asked:
    """A query of the contract run: by `identity` on `channels`, or by contact id (identity
    None); `contact_key` is its contact."""

    contact_key: str
    channels: tuple[str, ...]
    identity: str | None = None


@dataclass(frozen=True)
class CallbackCase:
    name: str
    body: dict[str, Any]
    lands: dict[str, Any] | None  # notification columns it must land with; None: other event
    asked: Asked | None = None  # the query it answers when it carries no request_id


def envelope(notification: Any, **fields: Any) -> dict[str, Any]:
    """Every envelope field the models name, around `notification`; `fields` change them."""
    return {
        "app_id": APP_ID,
        "project_id": PROJECT_ID,
        "accepted_time": ACCEPTED_TIME,
        "event_time": EVENT_TIME,
        "message_metadata": "",
        "correlation_id": "",
        "capability_notification": notification,
    } | fields


def expected(request_id: str | None, **columns: Any) -> dict[str, Any]:
    """The notification row: every reason column None unless given; matched by request_id."""
    row = {
        "request_id": request_id,
        "contact_id": None,
        "reason_code": None,
        "reason_description": None,
        "reason_sub_code": None,
        "reason_channel_code": None,
        "channel_capabilities": None,
        "matched_by": "request_id",
    }
    return row | columns


def answer(name: str, **fields: Any) -> dict[str, Any]:
    """A notification with its own request_id, an SMS answer unless `fields` say otherwise."""
    return {
        "request_id": f"req-{name}",
        "channel": "SMS",
        "identity": "46700000001",
        "capability_status": "CAPABILITY_FULL",
    } | fields


def case(name: str, notification: dict[str, Any], **lands: Any) -> CallbackCase:
    """A callback with a request_id; `lands` gives the columns that differ from `answer`'s."""
    columns = {
        "channel": notification.get("channel"),
        "identity": notification.get("identity"),
        "capability_status": notification.get("capability_status"),
    }
    return CallbackCase(
        name, envelope(notification), expected(notification["request_id"], **columns | lands)
    )


FULL_REASON = {
    "code": "RECIPIENT_NOT_OPTED_IN",
    "description": "the recipient has not opted in",
    "sub_code": "UNSPECIFIED_SUB_CODE",
    "channel_code": "470",
}
FULL_REASON_COLUMNS = {f"reason_{key}": value for key, value in FULL_REASON.items()}
# What `answer` lands as, unless a case changes it.
SMS_ANSWER = {"channel": "SMS", "identity": "46700000001", "capability_status": "CAPABILITY_FULL"}

ENVELOPES = [
    # Every field of both models, as the java SDK's own test fixture has them.
    CallbackCase(
        "every-field",
        envelope(
            answer(
                "every-field",
                contact_id="01EKA07N79THJ20ZSN6AS30TMW",
                channel="RCS",
                capability_status="CAPABILITY_PARTIAL",
                channel_capabilities=["RICHCARD_STANDALONE", "ACTION_DIAL"],
                reason=FULL_REASON,
            ),
            message_metadata="metadata value",
            correlation_id="correlation id value",
        ),
        expected(
            "req-every-field",
            channel="RCS",
            identity="46700000001",
            contact_id="01EKA07N79THJ20ZSN6AS30TMW",
            capability_status="CAPABILITY_PARTIAL",
            channel_capabilities=["RICHCARD_STANDALONE", "ACTION_DIAL"],
            **FULL_REASON_COLUMNS,
            app_id=APP_ID,
            event_time=datetime(2026, 11, 25, 2, 0, 5, tzinfo=UTC),
        ),
    ),
    # No envelope field at all: each is optional.
    CallbackCase(
        "bare-notification",
        {"capability_notification": answer("bare-notification")},
        expected(
            "req-bare-notification",
            channel="SMS",
            identity="46700000001",
            capability_status="CAPABILITY_FULL",
            app_id=None,
            event_time=None,
        ),
    ),
    CallbackCase(
        "envelope-nulls",
        envelope(
            answer("envelope-nulls"),
            app_id=None,
            project_id=None,
            accepted_time=None,
            event_time=None,
            message_metadata=None,
            correlation_id=None,
        ),
        expected("req-envelope-nulls", **SMS_ANSWER, app_id=None, event_time=None),
    ),
    # Fields the models do not name (yet): ignored, never a reason to refuse.
    CallbackCase(
        "unknown-fields",
        envelope(
            answer("unknown-fields", future_field={"nested": [1, 2]}, reason=FULL_REASON | {"x": 1})
            | {"metadata_json": {"k": "v"}},
            trigger="CAPABILITY",
            future_top_level="value",
        ),
        expected("req-unknown-fields", **SMS_ANSWER | FULL_REASON_COLUMNS),
    ),
]

WHOLE_REQUEST = {"channel": "", "identity": "", "contact_id": "c-1"}
CHANNELS = [
    # A callback about the whole request names no channel, in any of four ways: all read ''.
    case(
        "channel-missing",
        {"request_id": "req-channel-missing", "contact_id": "c-1"},
        **WHOLE_REQUEST,
    ),
    *(
        case(
            f"channel-{label}",
            {"request_id": f"req-channel-{label}", "channel": value, "contact_id": "c-1"},
            **WHOLE_REQUEST,
        )
        for label, value in [("null", None), ("empty", ""), ("unspecified", "CHANNEL_UNSPECIFIED")]
    ),
    # Only a request_id and a status: an answer about the whole request.
    case(
        "request-id-only",
        {
            "request_id": "req-request-id-only",
            "capability_status": "NO_CAPABILITY",
            "reason": {"code": "CONTACT_NOT_FOUND"},
        },
        channel="",
        identity="",
        reason_code="CONTACT_NOT_FOUND",
    ),
    # A channel no SDK lists today (an open enum): kept as sent, identity untouched.
    case(
        "unknown-channel",
        answer("unknown-channel", channel="SINCH_CHAT", identity="Opaque-Id+7"),
    ),
    # Phone channels are matched on digits: a `+` and spaces are dropped.
    case(
        "phone-with-plus",
        answer("phone-with-plus", channel="WHATSAPP", identity="+46 70 000 00 01"),
        identity="46700000001",
    ),
]


def reason_case(name: str, reason: Any, **lands: Any) -> CallbackCase:
    notification = answer(name, capability_status="NO_CAPABILITY", reason=reason)
    return case(name, notification, **lands)


REASONS = [
    reason_case(
        "reason-code-only",
        {"code": "RECIPIENT_NOT_REACHABLE"},
        reason_code="RECIPIENT_NOT_REACHABLE",
    ),
    reason_case(
        "reason-with-sub-code",
        {"code": "CHANNEL_REJECT", "sub_code": "INACTIVE_SENDER"},
        reason_code="CHANNEL_REJECT",
        reason_sub_code="INACTIVE_SENDER",
    ),
    reason_case(
        "reason-with-channel-code",
        {"code": "CHANNEL_FAILURE", "channel_code": "131026"},
        reason_code="CHANNEL_FAILURE",
        reason_channel_code="131026",
    ),
    reason_case("reason-every-field", FULL_REASON, **FULL_REASON_COLUMNS),
    # Open sets: a code or sub-code from a later API version parses and is kept.
    reason_case(
        "reason-unknown-code",
        {"code": "A_CODE_FROM_2030", "sub_code": "A_SUB_FROM_2030"},
        reason_code="A_CODE_FROM_2030",
        reason_sub_code="A_SUB_FROM_2030",
    ),
    reason_case(
        "reason-node-only-code",
        {"code": "DELIVERY_REPORT_TIME_OUT"},
        reason_code="DELIVERY_REPORT_TIME_OUT",
    ),
    # Outside the models, but seen: the code as a plain string.
    reason_case("reason-as-string", "RATE_LIMITED", reason_code="RATE_LIMITED"),
    reason_case("reason-null", None),
    reason_case("reason-empty", {}),
]

STATUSES = [
    case(
        "status-partial",
        answer(
            "status-partial",
            capability_status="CAPABILITY_PARTIAL",
            channel="RCS",
            channel_capabilities=["ACTION_OPEN_URL"],
        ),
        channel_capabilities=["ACTION_OPEN_URL"],
    ),
    case(
        "status-no-capability",
        answer("status-no-capability", capability_status="NO_CAPABILITY", channel_capabilities=[]),
        channel_capabilities=[],
    ),
    case(
        "status-unknown",
        answer("status-unknown", capability_status="CAPABILITY_UNKNOWN", channel_capabilities=None),
    ),
    case("status-missing", answer("status-missing", capability_status=None)),
]


def unasked(name: str, notification: dict[str, Any], asked: Asked, **lands: Any) -> CallbackCase:
    """A callback without request_id, to be matched to the query `asked`; `lands` gives the
    columns that differ from the notification's own."""
    own = {key: notification.get(key) for key in ("channel", "identity", "contact_id")}
    columns = own | {"capability_status": notification["capability_status"]} | lands
    return CallbackCase(name, envelope(notification), expected(None, **columns), asked)


# Without request_id (the Capability Query page's own example has none): matched to the
# query of the contract run that asked for it.
WITHOUT_REQUEST_ID = [
    unasked(
        "page-example",
        {
            "contact_id": "c-page",
            "identity": "46700000101",
            "channel": "WHATSAPP",
            "capability_status": "CAPABILITY_FULL",
        },
        Asked("c-page", ("SMS", "WHATSAPP"), "46700000101"),
        matched_by="identity",
    ),
    unasked(
        "request-id-empty",
        {
            "request_id": "",
            "identity": "+46700000102",
            "channel": "SMS",
            "capability_status": "NO_CAPABILITY",
            "reason": {"code": "UNKNOWN"},
        },
        Asked("c-empty-id", ("SMS",), "46700000102"),
        identity="46700000102",
        reason_code="UNKNOWN",
        matched_by="identity",
    ),
    unasked(
        "contact-not-found",
        {
            "contact_id": "c-missing",
            "channel": "CHANNEL_UNSPECIFIED",
            "capability_status": "NO_CAPABILITY",
            "reason": {"code": "CONTACT_NOT_FOUND", "description": "no such contact"},
        },
        Asked("c-missing", ("SMS", "WHATSAPP")),
        channel="",
        identity="",
        reason_code="CONTACT_NOT_FOUND",
        reason_description="no such contact",
        matched_by="contact_id",
    ),
    unasked(
        "contact-id-one-channel",
        {
            "contact_id": "c-by-id",
            "channel": "RCS",
            "identity": "46700000103",
            "capability_status": "CAPABILITY_FULL",
        },
        Asked("c-by-id", ("RCS",)),
        matched_by="contact_id",
    ),
]


# Another trigger on the same webhook, or a capability event naming nothing: kept apart.
OTHER_EVENTS = [
    CallbackCase("capability-notification-empty", envelope({}), None),
    CallbackCase("capability-notification-null", envelope(None), None),
    CallbackCase(
        "message-delivery-report",
        {k: v for k, v in envelope(None).items() if k != "capability_notification"}
        | {
            "message_delivery_report": {
                "message_id": "01M",
                "status": "DELIVERED",
                "channel_identity": {"channel": "SMS", "identity": "46700000001"},
            }
        },
        None,
    ),
    CallbackCase(
        "contact-create-notification",
        {
            "app_id": "",
            "accepted_time": ACCEPTED_TIME,
            "project_id": PROJECT_ID,
            "contact_create_notification": {
                "contact": {
                    "id": "01C",
                    "channel_identities": [
                        {"channel": "SMS", "identity": "46700000001", "app_id": ""}
                    ],
                }
            },
            "message_metadata": "",
        },
        None,
    ),
]

CASES: list[CallbackCase] = [
    *ENVELOPES,
    *CHANNELS,
    *REASONS,
    *STATUSES,
    *WITHOUT_REQUEST_ID,
    *OTHER_EVENTS,
]
