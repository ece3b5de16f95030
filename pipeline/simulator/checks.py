"""The capability check behind an accepted query: what it asks about and the callbacks it makes.

A `contact_id` recipient is checked on the identities of its contact. An `identified_by`
recipient is checked on its own identities, except where Sinch's Capability Query page says
queries run only for existing contacts: with `contacts_must_exist` in CONVERSATION mode, a query
none of whose identities belongs to a contact finds no contact. A DISPATCH app stores no
contacts and looks none up, so it checks `identified_by` identities as they are (and refuses
`contact_id` recipients: simulator/app.py).

A query that finds no contact is answered with one callback about the whole request,
`NO_CAPABILITY` with reason `CONTACT_NOT_FOUND` (the stricter of the plausible readings: no
channel can be used), or refused (`contact_not_found = "error"`: app.py). Its `channel` is
`"CHANNEL_UNSPECIFIED"`, `""` or missing, one of them per request (reference §7); the lenient
default (`contacts_must_exist = false`) keeps the one form, `""`, for an unknown contact id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.simulator.state import SimState
from pipeline.sinch.models import CAPABILITY_EVENT_KEY, DISPATCH_MODE, NO_CAPABILITY

Identity = dict[str, str]


class Checker:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def identities(self, recipient: dict[str, Any]) -> list[Identity] | None:
        """The channel identities the query checks; None when it finds no contact."""
        settings, book = self.state.settings, self.state.contacts
        share = settings.known_contact_share
        contact_id = recipient.get("contact_id")
        if contact_id:
            contact = book.get(contact_id, share)
            return None if contact is None else list(contact["channel_identities"])
        identities: list[Identity] = recipient["identified_by"]["channel_identities"]
        if settings.processing_mode == DISPATCH_MODE or not settings.contacts_must_exist:
            return identities
        if any(book.belongs(i["channel"], i["identity"], share) for i in identities):
            return identities
        return None

    def callbacks(
        self,
        project_id: str,
        app_id: str,
        request_id: str,
        recipient: dict[str, Any],
        identities: list[Identity],
    ) -> list[bytes]:
        """Run the check now, one callback per identity; they are delivered later."""
        contact_id = str(recipient.get("contact_id", ""))
        bodies = []
        for item in identities:
            channel, identity = item["channel"], item["identity"]
            self.state.stats.checks += 1
            nth = self.state.nth_check(channel, identity)
            outcome = self.state.model.check(channel, identity, nth)
            note: dict[str, Any] = {
                "request_id": self._echoed(request_id, channel, identity, nth),
                "contact_id": contact_id,
                "channel": channel,
                "identity": identity,
                "capability_status": outcome.status,
                "channel_capabilities": list(outcome.capabilities),
            }
            if outcome.reason:
                note["reason"] = reason(outcome.reason)
            bodies.append(callback(project_id, app_id, note))
        return bodies

    def contact_not_found(
        self, project_id: str, app_id: str, request_id: str, recipient: dict[str, Any]
    ) -> list[bytes]:
        """The one callback about a whole request that found no contact."""
        contact_id = str(recipient.get("contact_id", ""))
        note: dict[str, Any] = {
            "request_id": self._echoed(request_id, "", contact_id, 1),
            "capability_status": NO_CAPABILITY,
            "reason": reason("CONTACT_NOT_FOUND"),
        }
        if contact_id:
            note["contact_id"] = contact_id
        if not self.state.settings.contacts_must_exist:
            note |= {"channel": "", "identity": ""}
            return [callback(project_id, app_id, note)]
        channel = self.state.model.whole_request_channel(request_id)
        if channel is not None:
            note["channel"] = channel
        return [callback(project_id, app_id, note)]

    def _echoed(self, request_id: str, channel: str, identity: str, nth_check: int) -> str:
        """The request_id the callback carries; '' (left out) for `omit_request_id_share`."""
        share = self.state.settings.omit_request_id_share
        omit = self.state.model.omits_request_id(channel, identity, nth_check, share)
        if omit:
            self.state.stats.callbacks_without_request_id += 1
        return "" if omit else request_id


def reason(code: str) -> dict[str, str]:
    description = code.replace("_", " ").capitalize()
    return {"code": code, "description": description, "sub_code": "UNSPECIFIED_SUB_CODE"}


def callback(project_id: str, app_id: str, note: dict[str, Any]) -> bytes:
    """A CAPABILITY callback body around `note`; an empty request_id is left out."""
    stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if not note.get("request_id"):
        note.pop("request_id", None)
    return orjson.dumps(
        {
            "app_id": app_id,
            "project_id": project_id,
            "accepted_time": stamp,
            "event_time": stamp,
            "message_metadata": "",
            "correlation_id": "",
            CAPABILITY_EVENT_KEY: note,
        }
    )
