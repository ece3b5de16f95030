"""Request counting over sliding one-second windows: the simulator's strict rate limit."""

from __future__ import annotations

from collections import deque


class SlidingWindowLimit:
    """Admits at most `limit` requests in any window of `window` seconds (sliding, so stricter
    than any fixed-window counter), and records the most requests that arrived in any window."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._admitted: deque[float] = deque()
        self._arrived: deque[float] = deque()
        # The latest arrival times (monotonic clock), for /_sim/arrivals: timing diagnostics.
        self.recent: deque[float] = deque(maxlen=100_000)
        self.max_arrivals_in_window = 0

    def arrive(self, now: float) -> bool:
        """Count one arrival at `now`; True if it is admitted under the limit."""
        self._trim(self._arrived, now)
        self._arrived.append(now)
        self.recent.append(now)
        self.max_arrivals_in_window = max(self.max_arrivals_in_window, len(self._arrived))
        self._trim(self._admitted, now)
        if self.limit > 0 and len(self._admitted) >= self.limit:
            return False
        self._admitted.append(now)
        return True

    def retry_after(self, now: float) -> float:
        """Seconds until the oldest admitted request leaves the window."""
        if not self._admitted:
            return 0.0
        return max(0.0, self._admitted[0] + self.window - now)

    def _trim(self, times: deque[float], now: float) -> None:
        edge = now - self.window
        while times and times[0] <= edge:
            times.popleft()
