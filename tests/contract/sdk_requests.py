"""The request models of Sinch's SDKs, written out by hand for the contract tests (DESIGN §7 rule 9).

Read from sinch-sdk-node (packages/conversation/src/models/v1, rest/v1, sdk-client's query
serialisation) and sinch-sdk-java (openapi-contracts/.../conversation/models/v1), 2026-12.
Deliberately written apart from `pipeline/`: a name or an enum value capaudit got wrong must not
be copied into the schema that checks it. Where the two SDKs differ the narrower reading is
kept (a trigger only one SDK spells that way is left out).

    endpoint, problems = request_problems(captured_httpx_request)
    problems(body, CONTACT_CREATE)   # [] when the body fits ContactCreateRequest
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson


def _words(*rows: str) -> frozenset[str]:
    return frozenset(word for row in rows for word in row.split())


# ConversationChannel: "must be one of the enum values except 'CHANNEL_UNSPECIFIED'".
CHANNELS = _words(
    "WHATSAPP RCS SMS MESSENGER VIBERBM MMS INSTAGRAM TELEGRAM KAKAOTALK KAKAOTALKCHAT LINE",
    "WECHAT APPLEBC",
)
WEBHOOK_TRIGGERS = _words(
    "MESSAGE_DELIVERY MESSAGE_SUBMIT MESSAGE_INBOUND EVENT_DELIVERY EVENT_INBOUND",
    "MESSAGE_INBOUND_SMART_CONVERSATION_REDACTION CONVERSATION_START CONVERSATION_STOP",
    "CONVERSATION_DELETE CONTACT_CREATE CONTACT_DELETE CONTACT_MERGE CONTACT_UPDATE",
    "CONTACT_IDENTITIES_DUPLICATION UNSUPPORTED OPT_IN OPT_OUT CHANNEL_EVENT CAPABILITY",
    "RECORD_NOTIFICATION",
)
WEBHOOK_TARGET_TYPES = frozenset({"HTTP", "DISMISS"})
LANGUAGES = _words(
    "AF SQ AR AZ BN BG CA ZH ZH_CN ZH_HK ZH_TW HR CS DA NL EN EN_GB EN_US ET FIL FI FR DE EL GU",
    "HA HE HI HU ID GA IT JA KN KK KO LO LV LT MK MS ML MR NB FA PL PT PT_BR PT_PT PA RO RU SR",
    "SK SL ES ES_AR ES_ES ES_MX SW SV TA TE TH TR UK UR UZ VI ZU UNSPECIFIED",
)
WEBHOOK_FIELDS = frozenset(
    {"app_id", "target", "target_type", "triggers", "secret", "client_credentials"}
)


@dataclass(frozen=True)
class Text:
    non_empty: bool = False
    max_length: int | None = None


@dataclass(frozen=True)
class Enum:
    values: frozenset[str]


@dataclass(frozen=True)
class ListOf:
    item: Spec
    min_items: int = 0


@dataclass(frozen=True)
class FieldMask:
    """A comma-separated list of field paths, as the node SDK writes `update_mask`."""

    fields: frozenset[str]


@dataclass(frozen=True)
class Model:
    name: str
    required: Mapping[str, Spec]
    optional: Mapping[str, Spec] = field(default_factory=dict)
    exactly_one_of: tuple[str, ...] = ()

    @property
    def fields(self) -> dict[str, Spec]:
        return {**self.required, **self.optional}


Spec = Text | Enum | ListOf | FieldMask | Model

CHANNEL_RECIPIENT_IDENTITY = Model(
    "ChannelRecipientIdentity", {"channel": Enum(CHANNELS), "identity": Text(non_empty=True)}
)
RECIPIENT = Model(
    "Recipient",
    required={},
    optional={
        "contact_id": Text(non_empty=True),
        "identified_by": Model(
            "IdentifiedBy",
            {"channel_identities": ListOf(CHANNEL_RECIPIENT_IDENTITY, min_items=1)},
        ),
    },
    exactly_one_of=("contact_id", "identified_by"),
)
LOOKUP_CAPABILITY = Model(
    "LookupCapabilityRequest",
    required={"app_id": Text(non_empty=True), "recipient": RECIPIENT},
    optional={"request_id": Text()},
)
CLIENT_CREDENTIALS = Model(
    "ClientCredentials",
    required={
        "client_id": Text(non_empty=True),
        "client_secret": Text(non_empty=True),
        "endpoint": Text(non_empty=True),
    },
    optional={
        "scope": Text(max_length=1024),
        "response_type": Text(max_length=64),
        "token_request_type": Text(),  # "unrecognized: BASIC": not an enum that refuses
    },
)
_WEBHOOK_OPTIONAL: dict[str, Spec] = {
    "triggers": ListOf(Enum(WEBHOOK_TRIGGERS)),
    "secret": Text(),
    "target_type": Enum(WEBHOOK_TARGET_TYPES),
    "client_credentials": CLIENT_CREDENTIALS,
}
TARGET = Text(non_empty=True, max_length=742)
CREATE_WEBHOOK = Model(
    "CreateWebhookRequestBody",
    required={"app_id": Text(non_empty=True), "target": TARGET},
    optional=_WEBHOOK_OPTIONAL,
)
UPDATE_WEBHOOK = Model(
    "UpdateWebhookRequestBody",
    required={"target": TARGET},
    optional={"app_id": Text(), **_WEBHOOK_OPTIONAL},
)
CHANNEL_IDENTITY = Model(
    "ChannelIdentity",
    required={"channel": Enum(CHANNELS), "identity": Text(non_empty=True)},
    optional={"app_id": Text()},
)
CONTACT_CREATE = Model(
    "ContactCreateRequest",
    required={
        "channel_identities": ListOf(CHANNEL_IDENTITY, min_items=1),
        "language": Enum(LANGUAGES),
    },
    optional={
        "channel_priority": ListOf(Enum(CHANNELS)),
        "display_name": Text(),
        "email": Text(),
        "external_id": Text(),
        "metadata": Text(max_length=1024),
    },
)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # a regular expression over the URL path
    body: Model | None = None
    query: Mapping[str, Spec] = field(default_factory=dict)
    together: tuple[str, ...] = ()  # query parameters that are given all or none
    form: Mapping[str, Spec] | None = None
    auth: str = "Bearer"  # or Basic


PROJECT = r"/v1/projects/[^/]+"
ENDPOINTS = (
    Endpoint(
        "token",
        "POST",
        r"/oauth2/token",
        form={"grant_type": Enum(frozenset({"client_credentials"}))},
        auth="Basic",
    ),
    Endpoint("capability query", "POST", rf"{PROJECT}/capability:query", LOOKUP_CAPABILITY),
    Endpoint("webhook create", "POST", rf"{PROJECT}/webhooks", CREATE_WEBHOOK),
    Endpoint(
        "webhook update",
        "PATCH",
        rf"{PROJECT}/webhooks/[^/]+",
        UPDATE_WEBHOOK,
        query={"update_mask": FieldMask(WEBHOOK_FIELDS)},
    ),
    Endpoint("webhook list", "GET", rf"{PROJECT}/apps/[^/]+/webhooks"),
    Endpoint("webhook delete", "DELETE", rf"{PROJECT}/webhooks/[^/]+"),
    Endpoint("app get", "GET", rf"{PROJECT}/apps/[^/]+"),
    Endpoint(
        "contact find",
        "GET",
        rf"{PROJECT}/contacts",
        query={
            "channel": Enum(CHANNELS),
            "identity": Text(non_empty=True),
            "page_size": Text(),
            "page_token": Text(),
        },
        together=("channel", "identity"),
    ),
    Endpoint("contact create", "POST", rf"{PROJECT}/contacts", CONTACT_CREATE),
)


def endpoint_of(request: httpx.Request) -> Endpoint | None:
    for endpoint in ENDPOINTS:
        if request.method == endpoint.method and re.fullmatch(endpoint.path, request.url.path):
            return endpoint
    return None


def request_problems(request: httpx.Request) -> tuple[str, list[str]]:
    """Which SDK operation `request` is, and where it departs from the SDK's model."""
    endpoint = endpoint_of(request)
    if endpoint is None:
        return "", [f"{request.method} {request.url.path} is no operation of the SDKs"]
    found = _auth_problems(request, endpoint)
    query = {k: request.url.params.get_list(k) for k in request.url.params}
    found += _query_problems(query, endpoint)
    if endpoint.form is not None:
        form = parse_qs(request.content.decode())
        found += _query_problems(form, Endpoint("", "", "", query=endpoint.form))
        found += [f"form: {k} is required" for k in endpoint.form if k not in form]
    elif endpoint.body is not None:
        found += problems(orjson.loads(request.content), endpoint.body)
    elif request.content:
        found.append("a body where the operation takes none")
    return endpoint.name, found


def _auth_problems(request: httpx.Request, endpoint: Endpoint) -> list[str]:
    scheme = request.headers.get("authorization", "").partition(" ")[0]
    allowed = {endpoint.auth} if endpoint.auth == "Basic" else {"Bearer", "Basic"}
    return [] if scheme in allowed else [f"Authorization scheme {scheme!r}"]


def _query_problems(query: Mapping[str, list[str]], endpoint: Endpoint) -> list[str]:
    found = [f"unknown query parameter {k!r}" for k in query if k not in endpoint.query]
    for name, values in query.items():
        spec = endpoint.query.get(name)
        if spec is not None:
            found += [p for v in values for p in problems(v, spec, f"?{name}")]
    given = [name in query for name in endpoint.together]
    if any(given) and not all(given):
        found.append(f"{' and '.join(endpoint.together)} go together")
    return found


def problems(value: Any, spec: Spec, where: str = "") -> list[str]:
    """Where `value` departs from `spec`: [] when it fits."""
    at = where or "body"
    if isinstance(spec, Text):
        return _text_problems(value, spec, at)
    if isinstance(spec, Enum):
        return [] if value in spec.values else [f"{at}: {value!r} is not an enum value"]
    if isinstance(spec, FieldMask):
        paths = [] if not isinstance(value, str) else value.split(",")
        return [f"{at}: unknown field path {p!r}" for p in paths if p not in spec.fields]
    if isinstance(spec, ListOf):
        return _list_problems(value, spec, at)
    return _model_problems(value, spec, where)


def _text_problems(value: Any, spec: Text, at: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{at}: not a string"]
    if spec.non_empty and not value:
        return [f"{at}: empty"]
    if spec.max_length is not None and len(value) > spec.max_length:
        return [f"{at}: longer than {spec.max_length}"]
    return []


def _list_problems(value: Any, spec: ListOf, at: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{at}: not a list"]
    if len(value) < spec.min_items:
        return [f"{at}: fewer than {spec.min_items} items"]
    return [p for i, item in enumerate(value) for p in problems(item, spec.item, f"{at}[{i}]")]


def _model_problems(value: Any, spec: Model, where: str) -> list[str]:
    at = where or spec.name
    if not isinstance(value, dict):
        return [f"{at}: not an object"]
    prefix = f"{where}." if where else ""
    found = [f"{prefix}{k}: not a field of {spec.name}" for k in value if k not in spec.fields]
    found += [f"{prefix}{k}: required" for k in spec.required if k not in value]
    if spec.exactly_one_of and sum(k in value for k in spec.exactly_one_of) != 1:
        found.append(f"{at}: exactly one of {', '.join(spec.exactly_one_of)}")
    for key, item in value.items():
        if key in spec.fields:
            found += problems(item, spec.fields[key], f"{prefix}{key}")
    return found
