"""Identifiers: ULIDs (Sinch's own id format) and run ids.

new_ulid()  -> '01JDX3Q3ZK6D5R8W2N9V4T7B1M'  (26 chars, time-ordered, 80 random bits)
new_run_id() -> '20261125T173000Z-4f2a'
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_run_id(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{os.urandom(2).hex()}"
