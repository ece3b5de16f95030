"""The simulator's contacts (reference §8): created ones, kept, and virtual ones, never stored.

Sinch keeps a project's contacts, and most numbers an audit asks about already belong to one.
The simulator cannot hold millions of made-up contacts, so a share of phone numbers
(`known_contact_share`) has a *virtual* contact, decided per number from the seed like every
outcome: found by identity, answered by id, never written anywhere. Its id is the number,
masked with the seed, so a restarted simulator answers the same id without remembering it.

Contacts created through the API are indexed by (channel, identity) for O(1) look-ups and, with
a `state_path`, appended one JSON line each to a file beside it (`state.json` ->
`state.contacts.jsonl`), so a restarted simulator still has them: a run that creates thousands
costs one append each, never a rewrite. The lines are not fsynced: they survive the process
(`kill -9` included), not a crash of the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.files import make_dirs
from pipeline.ids import new_ulid
from pipeline.simulator.outcomes import OutcomeModel, plausible_phone
from pipeline.sinch.models import PHONE_CHANNELS

# The channels a virtual contact has its number on: those capaudit asks by default.
VIRTUAL_CHANNELS = ("WHATSAPP", "RCS", "SMS")
VIRTUAL_PREFIX = "01VC"  # + 22 Crockford base32 digits: 26 characters, like a ULID
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_DIGITS = 22
Contact = dict[str, Any]


def contacts_path(state_path: str) -> Path | None:
    """Where created contacts are kept: beside the state file; nowhere without one."""
    if not state_path:
        return None
    state = Path(state_path)
    return state.with_name(f"{state.stem}.contacts.jsonl")


def identity_key(channel: str, identity: str) -> str:
    """The index key of a channel identity; phone numbers match with or without '+'."""
    if channel in PHONE_CHANNELS and identity.startswith("+"):
        identity = identity[1:]
    return f"{channel}|{identity}"


class ContactBook:
    """Every contact of the project: `find`, `get`, `belongs` are O(1), virtual ones included."""

    def __init__(self, path: Path | None, model: OutcomeModel) -> None:
        self.path = path
        self.model = model
        self._by_id: dict[str, Contact] = {}
        self._by_identity: dict[str, list[str]] = {}
        for contact in _read_kept(path):
            self._index(contact)

    @property
    def created(self) -> int:
        return len(self._by_id)

    def add(self, fields: Contact) -> Contact:
        """Create a contact from validated fields; kept before it is answered."""
        contact = {"id": new_ulid(), **fields}
        self._index(contact)
        if self.path is not None:
            _append_line(self.path, json.dumps(contact, separators=(",", ":")))
        return contact

    def find(self, channel: str, identity: str, share: float) -> list[Contact]:
        """The contacts with this channel identity: created ones, then the virtual one."""
        found = [self._by_id[i] for i in self._by_identity.get(identity_key(channel, identity), [])]
        virtual = self._virtual_for(channel, identity, share)
        return found + ([virtual] if virtual else [])

    def belongs(self, channel: str, identity: str, share: float) -> bool:
        """Whether this channel identity belongs to any contact."""
        key = identity_key(channel, identity)
        return key in self._by_identity or self._virtual_for(channel, identity, share) is not None

    def get(self, contact_id: str, share: float) -> Contact | None:
        contact = self._by_id.get(contact_id)
        if contact is not None:
            return contact
        number = self._number_of(contact_id)
        return self._virtual_for(VIRTUAL_CHANNELS[0], number, share) if number else None

    def page(self, offset: int, size: int) -> list[Contact]:
        """Created contacts in creation order (virtual ones are countless: never listed)."""
        return list(self._by_id.values())[offset : offset + size]

    def with_external_id(self, external_id: str) -> list[Contact]:
        """A scan: capaudit never looks contacts up this way, so it is not indexed."""
        return [c for c in self._by_id.values() if c.get("external_id") == external_id]

    # -- virtual contacts -------------------------------------------------------------------

    def _virtual_for(self, channel: str, identity: str, share: float) -> Contact | None:
        number = identity[1:] if identity.startswith("+") else identity
        if channel not in VIRTUAL_CHANNELS or not plausible_phone(number):
            return None
        if not self.model.has_contact(number, share):
            return None
        return _virtual_contact(self._virtual_id(number), number)

    def _virtual_id(self, number: str) -> str:
        value = int(number) ^ self._mask()
        digits = ""
        while value:
            value, rest = divmod(value, 32)
            digits = CROCKFORD[rest] + digits
        return VIRTUAL_PREFIX + digits.rjust(ID_DIGITS, "0")

    def _number_of(self, contact_id: str) -> str:
        """The phone number a virtual contact id stands for; '' for any other id."""
        body = contact_id[len(VIRTUAL_PREFIX) :]
        if not contact_id.startswith(VIRTUAL_PREFIX) or len(body) != ID_DIGITS:
            return ""
        if any(c not in CROCKFORD for c in body):
            return ""
        value = 0
        for char in body:
            value = value * 32 + CROCKFORD.index(char)
        return str(value ^ self._mask())

    def _mask(self) -> int:
        digest = hashlib.blake2b(f"{self.model.seed}|contact-id".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big")

    def _index(self, contact: Contact) -> None:
        self._by_id[contact["id"]] = contact
        for item in contact["channel_identities"]:
            key = identity_key(item["channel"], item["identity"])
            self._by_identity.setdefault(key, []).append(contact["id"])


def _virtual_contact(contact_id: str, number: str) -> Contact:
    return {
        "id": contact_id,
        "channel_identities": [
            {"channel": channel, "identity": number, "app_id": ""} for channel in VIRTUAL_CHANNELS
        ],
        "channel_priority": [],
        "display_name": "Unknown",
        "email": "",
        "external_id": "",
        "metadata": "",
        "language": "UNSPECIFIED",
    }


def _append_line(path: Path, line: str) -> None:
    make_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)  # contact data: rule 11
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _read_kept(path: Path | None) -> list[Contact]:
    """The contacts an earlier run of the simulator created. A last line without its newline
    was being appended when the process was killed: that creation was never answered, so it
    is cut off (later appends then start on a line of their own)."""
    if path is None or not path.exists():
        return []
    text = path.read_bytes()
    whole = text[: text.rfind(b"\n") + 1]
    if len(whole) < len(text):
        os.truncate(path, len(whole))
    kept = []
    for number, line in enumerate(whole.decode("utf-8").splitlines(), 1):
        try:
            kept.append(_parse_contact(line))
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not a simulator contact ({exc})") from exc
    return kept


def _parse_contact(line: str) -> Contact:
    contact = json.loads(line)
    identities = contact.get("channel_identities") if isinstance(contact, dict) else None
    if not isinstance(identities, list) or not isinstance(contact.get("id"), str):
        raise ValueError("no id or channel_identities")
    if not all(isinstance(i, dict) and {"channel", "identity"} <= set(i) for i in identities):
        raise ValueError("a channel identity without channel or identity")
    return dict(contact)
