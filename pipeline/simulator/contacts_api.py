"""The Contacts API (reference §8), validated as the SDKs' `ContactCreateRequest`.

    POST /v1/projects/{p}/contacts                          create
    GET  /v1/projects/{p}/contacts?channel=..&identity=..   find by channel identity
    GET  /v1/projects/{p}/contacts[?page_size=&page_token=] list the created contacts
    GET  /v1/projects/{p}/contacts/{contact_id}             one

Contacts belong to the project, not to an app, so these answer the same whatever the app's
processing mode: a DISPATCH app stores no contacts of its own and never looks them up, but
the project's Contacts API still works (simulator/checks.py decides what a query uses).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pipeline.simulator.answers import JSONResponse, invalid_argument, json_object, sinch_error
from pipeline.simulator.contacts import Contact
from pipeline.simulator.state import SimState
from pipeline.sinch.models import CHANNELS, CONTACT_LANGUAGES

TEXT_FIELDS = ("display_name", "email", "external_id", "metadata")
CONTACT_FIELDS = ("channel_identities", "channel_priority", "language", *TEXT_FIELDS)
MAX_METADATA = 1024
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 10, 20


class ContactsApi:
    """The contact routes' handlers, over the simulator's state."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    @property
    def share(self) -> float:
        return self.state.settings.known_contact_share

    async def create(self, request: Request) -> Response:
        body, problem = await json_object(request)
        problem = problem or contact_problem(body)
        if problem:
            return invalid_argument(problem)
        return JSONResponse(self.state.contacts.add(_stored(body)))

    async def one(self, request: Request) -> Response:
        contact = self.state.contacts.get(request.path_params["contact_id"], self.share)
        if contact is None:
            return sinch_error(404, "NOT_FOUND", "Contact not found")
        return JSONResponse(contact)

    async def list(self, request: Request) -> Response:
        query = request.query_params
        channel, identity = query.get("channel"), query.get("identity")
        problem = _list_problem(channel, identity, query.get("external_id"))
        if problem:
            return invalid_argument(problem)
        if channel and identity:
            found = self.state.contacts.find(channel, identity, self.share)
            return _page(found, "", len(found))
        external_id = query.get("external_id")
        if external_id:
            found = self.state.contacts.with_external_id(external_id)
            return _page(found, "", len(found))
        try:
            size = int(query.get("page_size") or DEFAULT_PAGE_SIZE)
            offset = int(query.get("page_token") or 0)
        except ValueError:
            return invalid_argument("page_size and page_token must be numbers")
        if not 0 < size <= MAX_PAGE_SIZE or offset < 0:
            return invalid_argument(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        total = self.state.contacts.created
        next_token = str(offset + size) if offset + size < total else ""
        return _page(self.state.contacts.page(offset, size), next_token, total)


def contact_problem(body: dict[str, Any]) -> str:
    """What the SDKs' ContactCreateRequest refuses in `body`; '' when it is valid."""
    unknown = sorted(set(body) - set(CONTACT_FIELDS))
    if unknown:
        return f"unknown field '{unknown[0]}' in the contact"
    problem = _identities_problem(body.get("channel_identities"))
    if problem:
        return problem
    # Both SDKs make `language` required. UNSPECIFIED is the enum's zero value, which a
    # proto3 service cannot tell from a missing field: refused too (the stricter reading).
    language = body.get("language")
    if language not in CONTACT_LANGUAGES or language == "UNSPECIFIED":
        return "language is required: one of Sinch's language codes, such as EN_US"
    priority = body.get("channel_priority", [])
    if not isinstance(priority, list) or any(c not in CHANNELS for c in priority):
        return "channel_priority must be a list of channels"
    for key in TEXT_FIELDS:
        if not isinstance(body.get(key, ""), str):
            return f"{key} must be a string"
    if len(body.get("metadata", "")) > MAX_METADATA:
        return f"metadata is longer than {MAX_METADATA} characters"
    return ""


def _identities_problem(identities: Any) -> str:
    if not isinstance(identities, list) or not identities:
        return "channel_identities is required and must hold at least one identity"
    for index, item in enumerate(identities):
        where = f"channel_identities[{index}]"
        if not isinstance(item, dict) or not {"channel", "identity"} <= set(item):
            return f"{where} must have 'channel' and 'identity'"
        extra = sorted(set(item) - {"channel", "identity", "app_id"})
        if extra:
            return f"{where}: unknown field '{extra[0]}'"
        if item["channel"] not in CHANNELS:
            return f"{where}.channel: unknown channel {item['channel']!r}"
        if not isinstance(item["identity"], str) or not item["identity"]:
            return f"{where}.identity must be a non-empty string"
        if not isinstance(item.get("app_id", ""), str):
            return f"{where}.app_id must be a string"
    return ""


def _list_problem(channel: str | None, identity: str | None, external_id: str | None) -> str:
    if bool(channel) != bool(identity):
        return "channel and identity must be given together"
    if channel and external_id:
        return "external_id cannot be combined with channel and identity"
    if channel and channel not in CHANNELS:
        return f"channel: unknown channel {channel!r}"
    return ""


def _stored(body: dict[str, Any]) -> Contact:
    """The contact as Sinch keeps it: every field present, 'Unknown' for an empty name."""
    contact: Contact = {
        "channel_identities": [{"app_id": "", **item} for item in body["channel_identities"]],
        "channel_priority": body.get("channel_priority", []),
        "language": body["language"],
    }
    contact.update({key: body.get(key, "") for key in TEXT_FIELDS})
    contact["display_name"] = contact["display_name"] or "Unknown"
    return contact


def _page(contacts: list[Contact], next_token: str, total: int) -> Response:
    return JSONResponse({"contacts": contacts, "next_page_token": next_token, "total_size": total})
