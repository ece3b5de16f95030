"""Webhook admin (reference §6), as strict as the SDKs' `Webhook` models.

    POST   /v1/projects/{p}/webhooks                 create: `app_id` and `target` required
    GET    /v1/projects/{p}/apps/{app_id}/webhooks   list
    GET    /v1/projects/{p}/webhooks/{id}            one
    PATCH  /v1/projects/{p}/webhooks/{id}            update: `target` required, `update_mask`
    DELETE /v1/projects/{p}/webhooks/{id}

Every field is checked against the model (types, `target_type` and `triggers` enums, target
length); a field the model does not have is refused rather than ignored, so the simulator is
never more lenient than Sinch. An update changes only the fields its `update_mask` names, given
the way the node SDK sends it (`update_mask=triggers,secret`) or the gRPC-gateway way
(`update_mask.paths=triggers&update_mask.paths=secret`); a masked field the body leaves out is
cleared. Without a mask, Google's convention (AIP-134) applies, as in every API of this
shape: the implied mask is every field the body populates, so nothing the body leaves out or
empty is touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from pipeline.simulator.answers import JSONResponse, invalid_argument, json_object, sinch_error
from pipeline.simulator.apps import unknown_app
from pipeline.simulator.state import SimState, Webhook
from pipeline.sinch.models import (
    MAX_TARGET_LENGTH,
    MAX_WEBHOOKS_PER_APP,
    WEBHOOK_FIELDS,
    WEBHOOK_TARGET_TYPES,
    WEBHOOK_TRIGGERS,
)

CLEARED: dict[str, Any] = {
    "target_type": "HTTP",
    "triggers": [],
    "secret": "",
    "client_credentials": None,
}


class WebhookAdmin:
    """The webhook routes' handlers, over the simulator's state."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def create(self, request: Request) -> Response:
        body, problem = await json_object(request)
        problem = problem or webhook_problem(body, required=("app_id", "target"))
        if problem:
            return invalid_argument(problem)
        refusal = unknown_app(self.state.settings, body["app_id"]) or self._full_app(body["app_id"])
        if refusal:
            return refusal
        fields = {key: body[key] for key in WEBHOOK_FIELDS if key in body}
        webhook = self.state.add_webhook(**{"triggers": [], **fields})
        return JSONResponse(webhook.public())

    async def list(self, request: Request) -> Response:
        app_id = request.path_params["app_id"]
        refusal = unknown_app(self.state.settings, app_id)
        if refusal:
            return refusal
        return JSONResponse({"webhooks": [w.public() for w in self.state.app_webhooks(app_id)]})

    async def one(self, request: Request) -> Response:
        webhook = self.state.webhooks.get(request.path_params["webhook_id"])
        if webhook is None:
            return sinch_error(404, "NOT_FOUND", "Webhook not found")
        if request.method == "DELETE":
            self.state.delete_webhook(webhook.id)
            return JSONResponse({})
        if request.method == "PATCH":
            return await self._update(request, webhook)
        return JSONResponse(webhook.public())

    async def _update(self, request: Request, webhook: Webhook) -> Response:
        body, problem = await json_object(request)
        problem = problem or webhook_problem(body, required=("target",))
        paths, mask_problem = update_mask(request.query_params)
        if problem or mask_problem:
            return invalid_argument(problem or mask_problem)
        if paths is None:
            paths = [key for key in WEBHOOK_FIELDS if body.get(key)]  # AIP-134's implied mask
        if "app_id" in paths and not body.get("app_id"):
            return invalid_argument("app_id is in update_mask: the webhook must name its app")
        changes: dict[str, Any] = {key: body.get(key, CLEARED.get(key)) for key in paths}
        moved = str(changes.get("app_id", webhook.app_id))
        if moved != webhook.app_id:
            refusal = unknown_app(self.state.settings, moved) or self._full_app(moved)
            if refusal:
                return refusal
        updated = dataclasses.replace(webhook, **changes)
        self.state.save_webhook(updated)
        return JSONResponse(updated.public())

    def _full_app(self, app_id: str) -> Response | None:
        if len(self.state.app_webhooks(app_id)) >= MAX_WEBHOOKS_PER_APP:
            message = f"App {app_id} already has {MAX_WEBHOOKS_PER_APP} webhooks, the maximum"
            return invalid_argument(message)
        return None


def update_mask(query: QueryParams) -> tuple[list[str] | None, str]:
    """The field paths of an update's mask (None: no mask), or what is wrong with them."""
    given = query.getlist("update_mask") + query.getlist("update_mask.paths")
    paths = [path.strip() for value in given for path in value.split(",") if path.strip()]
    if not paths:
        return None, ""
    if paths == ["*"]:
        return list(WEBHOOK_FIELDS), ""  # a full replacement
    unknown = [path for path in paths if path not in WEBHOOK_FIELDS]
    if unknown:
        allowed = ", ".join(WEBHOOK_FIELDS)
        return None, f"update_mask: unknown field path '{unknown[0]}' (a webhook has {allowed})"
    return list(dict.fromkeys(paths)), ""


def webhook_problem(body: dict[str, Any], *, required: tuple[str, ...]) -> str:
    """What the SDKs' Webhook model refuses in `body`; '' when it is valid."""
    unknown = sorted(set(body) - {*WEBHOOK_FIELDS, "id"})  # `id` is read-only: ignored
    if unknown:
        return f"unknown field '{unknown[0]}' in the webhook"
    for key in required:
        if not body.get(key):
            return f"{key} is required"
    for key, check in FIELD_CHECKS.items():
        problem = check(body[key]) if key in body else ""
        if problem:
            return f"{key}: {problem}"
    return ""


def _text(value: Any) -> str:
    return "" if isinstance(value, str) else "must be a string"


def _target(value: Any) -> str:
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_TARGET_LENGTH:
        return f"is {len(value)} characters, the maximum is {MAX_TARGET_LENGTH}"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    host = parts.hostname
    if host.startswith("conversation-api.") and host.endswith(".sinch.com"):
        return "the conversation-api.*.sinch.com subdomains are forbidden"
    return ""


def _target_type(value: Any) -> str:
    if value in WEBHOOK_TARGET_TYPES:
        return ""
    return f"unknown target type {value!r} (one of {', '.join(WEBHOOK_TARGET_TYPES)})"


def _triggers(value: Any) -> str:
    if not isinstance(value, list):
        return "must be a list of triggers"
    unknown = [t for t in value if t not in WEBHOOK_TRIGGERS]
    return f"unknown trigger {unknown[0]!r}" if unknown else ""


# ClientCredentials: the required fields, then the optional ones with their longest length
# (token_request_type: "if not set or unrecognized, BASIC is used", so any text).
CREDENTIALS_REQUIRED = ("client_id", "client_secret", "endpoint")
CREDENTIALS_OPTIONAL = {"scope": 1024, "response_type": 64, "token_request_type": None}


def _client_credentials(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, dict):
        return "must be an object"
    for key in CREDENTIALS_REQUIRED:
        if not isinstance(value.get(key), str) or not value[key]:
            return f"{key} is required"
    unknown = sorted(set(value) - {*CREDENTIALS_REQUIRED, *CREDENTIALS_OPTIONAL})
    if unknown:
        return f"unknown field '{unknown[0]}'"
    for key, longest in CREDENTIALS_OPTIONAL.items():
        text = value.get(key, "")
        if not isinstance(text, str):
            return f"{key} must be a string"
        if longest is not None and len(text) > longest:
            return f"{key} is longer than {longest} characters"
    return ""


FIELD_CHECKS: dict[str, Callable[[Any], str]] = {
    "app_id": _text,
    "target": _target,
    "target_type": _target_type,
    "triggers": _triggers,
    "secret": _text,
    "client_credentials": _client_credentials,
}
