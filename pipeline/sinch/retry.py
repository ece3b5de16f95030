"""When to ask Sinch again, and how long to wait first: one list and one rule for every caller
(the dispatcher's capability queries and the client's admin calls).

Reference §2: 429 is rate limiting; 500, 501 and 503 are transient; 502 and 504 come from
proxies in front of the API and are transient too.
"""

from __future__ import annotations

import random
from collections.abc import Callable

RETRYABLE_STATUSES = frozenset({429, 500, 501, 502, 503, 504})


def backoff_seconds(
    attempt: int,
    base: float,
    cap: float,
    jitter: Callable[[float, float], float] = random.uniform,
) -> float:
    """Capped exponential back-off with full jitter after failed attempt number `attempt`
    (1-based): uniform in [0, min(cap, base * 2^(attempt-1))], so clients that failed together
    do not retry together."""
    return jitter(0.0, min(cap, base * 2 ** (attempt - 1)))
