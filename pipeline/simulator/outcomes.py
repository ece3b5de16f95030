"""The outcome model: what a capability check finds, seeded and deterministic.

The base answer depends only on (seed, channel, identity), so re-running an audit with the same
seed gives the same answers and another seed gives changes. A transient failure (`RATE_LIMITED`,
`INTERNAL_ERROR`, `CHANNEL_FAILURE`) also depends on how many times this identity was checked,
so a re-query can succeed where the first check failed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.sinch.models import (
    CAPABILITY_FULL,
    CAPABILITY_PARTIAL,
    CAPABILITY_UNKNOWN,
    NO_CAPABILITY,
    PHONE_CHANNELS,
)

# status -> share of identities, per channel; the rest of the channels use DEFAULT_MIX.
STATUS_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "WHATSAPP": ((CAPABILITY_FULL, 0.58), (CAPABILITY_PARTIAL, 0.04), (NO_CAPABILITY, 0.33)),
    "RCS": ((CAPABILITY_FULL, 0.34), (CAPABILITY_PARTIAL, 0.22), (NO_CAPABILITY, 0.38)),
    "SMS": ((CAPABILITY_FULL, 0.93), (NO_CAPABILITY, 0.03)),
    "MMS": ((CAPABILITY_FULL, 0.60), (NO_CAPABILITY, 0.30)),
}
DEFAULT_MIX = ((CAPABILITY_FULL, 0.40), (NO_CAPABILITY, 0.40))  # remainder: CAPABILITY_UNKNOWN
NOT_REACHABLE_REASONS = (
    "RECIPIENT_NOT_REACHABLE",
    "RECIPIENT_NOT_OPTED_IN",
    "NO_PROFILE_AVAILABLE",
)
TRANSIENT_REASONS = ("RATE_LIMITED", "INTERNAL_ERROR", "CHANNEL_FAILURE")
FEATURES: dict[str, tuple[str, ...]] = {
    "RCS": (
        "RICHCARD_STANDALONE",
        "RICHCARD_CAROUSEL",
        "ACTION_DIAL",
        "ACTION_OPEN_URL",
        "ACTION_SHARE_LOCATION",
        "ACTION_VIEW_LOCATION",
        "ACTION_CREATE_CALENDAR_EVENT",
    ),
    "WHATSAPP": ("TEXT", "MEDIA", "TEMPLATE", "INTERACTIVE_LIST", "INTERACTIVE_BUTTONS"),
}
DEFAULT_FEATURES = ("TEXT", "MEDIA")


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str = ""
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutcomeModel:
    seed: int = 1
    transient_rate: float = 0.03

    def check(self, channel: str, identity: str, nth_check: int = 1) -> Outcome:
        """The answer for the `nth_check` check of this identity on this channel."""
        if channel in PHONE_CHANNELS and not plausible_phone(identity):
            return Outcome(NO_CAPABILITY, "RECIPIENT_INVALID_CHANNEL_IDENTITY")
        if self._draw(channel, identity, f"transient-{nth_check}") < self.transient_rate:
            pick = self._draw(channel, identity, f"which-{nth_check}")
            return Outcome(CAPABILITY_UNKNOWN, TRANSIENT_REASONS[int(pick * 3) % 3])
        status = self._status(channel, identity)
        if status == NO_CAPABILITY:
            pick = self._draw(channel, identity, "reason")
            return Outcome(status, NOT_REACHABLE_REASONS[int(pick * 3) % 3])
        if status == CAPABILITY_FULL:
            return Outcome(status, capabilities=FEATURES.get(channel, DEFAULT_FEATURES))
        if status == CAPABILITY_PARTIAL:
            return Outcome(status, capabilities=self._subset(channel, identity))
        return Outcome(status)

    def omits_request_id(self, channel: str, identity: str, nth_check: int, share: float) -> bool:
        """Whether the callback of this check leaves `request_id` out, as the notification on
        Sinch's Capability Query page does: `share` of them, the same ones for the same seed."""
        return share > 0 and self._draw(channel, identity, f"omit-request-id-{nth_check}") < share

    def has_contact(self, number: str, share: float) -> bool:
        """Whether this phone number already belongs to a Sinch contact: `share` of numbers,
        the same ones for the same seed, whatever the channel."""
        return share >= 1 or (share > 0 and self._draw("", number, "known-contact") < share)

    def whole_request_channel(self, request_id: str) -> str | None:
        """The `channel` of a callback about a whole request: all three forms occur on the wire
        (reference §7), one of them per request, the same for the same seed."""
        pick = int(self._draw("", request_id, "whole-request-channel") * 3)
        return ("CHANNEL_UNSPECIFIED", "", None)[pick]

    def _status(self, channel: str, identity: str) -> str:
        draw = self._draw(channel, identity, "status")
        for status, share in STATUS_MIX.get(channel, DEFAULT_MIX):
            if draw < share:
                return status
            draw -= share
        return CAPABILITY_UNKNOWN

    def _subset(self, channel: str, identity: str) -> tuple[str, ...]:
        features = FEATURES.get(channel, DEFAULT_FEATURES)
        picked = tuple(f for f in features if self._draw(channel, identity, f"feature-{f}") < 0.5)
        return picked or features[:1]

    def _draw(self, channel: str, identity: str, salt: str) -> float:
        """A uniform number in [0, 1) fixed by (seed, channel, identity, salt)."""
        key = f"{self.seed}|{channel}|{identity}|{salt}".encode()
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64


def plausible_phone(identity: str) -> bool:
    digits = identity[1:] if identity.startswith("+") else identity
    return digits.isdigit() and 8 <= len(digits) <= 15
