"""Callback signatures (reference §5): one implementation for the receiver and the simulator.

    signature = base64(HMAC_SHA256(secret, raw_body + "." + nonce + "." + timestamp))

Always computed over the raw bytes received; compared in constant time. The signature says
who sent a callback, not when: none of Sinch's SDKs checks the timestamp, and Sinch's retry
schedule is unpublished, so the age limit is optional (`max_age_seconds`, 0 = none) and checked
only once the signature is known to be right (a forged callback is `bad_signature`, never
`stale_timestamp`). docs/receiver.md says why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TIMESTAMP_HEADER = "x-sinch-webhook-signature-timestamp"
NONCE_HEADER = "x-sinch-webhook-signature-nonce"
ALGORITHM_HEADER = "x-sinch-webhook-signature-algorithm"
SIGNATURE_HEADER = "x-sinch-webhook-signature"
ALGORITHM = "HmacSHA256"
MAX_NONCE_LENGTH = 128


def sign(secret: str, body: bytes, nonce: str, timestamp: str) -> str:
    """The signature Sinch sends for `body`, e.g. sign("s", b"{}", "n", "1") -> base64 text."""
    message = b"".join((body, b".", nonce.encode(), b".", timestamp.encode()))
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_headers(secret: str, body: bytes, nonce: str, timestamp: int) -> dict[str, str]:
    """All four signature headers for one delivery."""
    stamp = str(timestamp)
    return {
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: nonce,
        ALGORITHM_HEADER: ALGORITHM,
        SIGNATURE_HEADER: sign(secret, body, nonce, stamp),
    }


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: `ok`, or the refusal reason (a metric label). `age_seconds` is
    how long ago the delivery was signed (negative: signed in the future, a skewed clock); it
    is set whenever the signature itself was right, also for a `stale_timestamp` refusal."""

    ok: bool
    reason: str = ""
    nonce: str = ""
    timestamp: int = 0
    age_seconds: float = 0.0


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Iterable[str],
    *,
    now: float,
    max_age_seconds: float = 0.0,
) -> Verdict:
    """Check the signature headers of one delivery against every accepted secret; with
    `max_age_seconds` > 0, also refuse a right signature made longer ago than that, or as far
    in the future (a future timestamp would otherwise stay fresh past the limit).

    `headers` must be case-insensitive for lookups or use lower-case keys.
    """
    nonce = headers.get(NONCE_HEADER, "")
    stamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not (nonce and stamp and signature):
        return Verdict(False, "missing_signature")
    if headers.get(ALGORITHM_HEADER, "").lower() != ALGORITHM.lower():
        return Verdict(False, "unsupported_algorithm")
    if (
        len(nonce) > MAX_NONCE_LENGTH
        or not (stamp.isascii() and stamp.isdigit())
        or len(stamp) > 12
    ):
        return Verdict(False, "malformed_signature")
    given = signature.encode("ascii", "replace")
    # Check every secret (no early exit) so timing does not reveal which one matched.
    matched = False
    for secret in secrets:
        expected = sign(secret, body, nonce, stamp).encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        return Verdict(False, "bad_signature")
    timestamp = int(stamp)
    age = now - timestamp
    fresh = max_age_seconds <= 0 or abs(age) <= max_age_seconds
    reason = "" if fresh else "stale_timestamp"
    return Verdict(fresh, reason, nonce=nonce, timestamp=timestamp, age_seconds=age)
