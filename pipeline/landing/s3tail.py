"""Follow landing objects on S3: the capability callbacks that land from now on, as they land.

The S3 counterpart of `tail.LandingTail` (the dispatcher paces itself by these): it remembers
the last key read in each writer's folder and lists only what came after (`objects.py`), over
yesterday, today and tomorrow. Pacing is best effort: a store that does not answer for a moment
gives no callbacks this time, not a failed submit.

    tail = ObjectTail(ObjectLanding(store, parse_s3("s3://audit/landing/")))
    tail.read_new()
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pipeline.errors import StorageUnavailable
from pipeline.landing.objects import ObjectLanding, folder_of, listing_days, new_objects
from pipeline.landing.tail import LandedCallback, parse_lines

log = logging.getLogger(__name__)


class ObjectTail:
    def __init__(self, landing: ObjectLanding) -> None:
        self.landing = landing
        self._read_up_to: dict[str, str] = {}
        for key, _ in new_objects(landing, self._days(), {}):
            self._read_up_to[folder_of(key)] = key  # what is there already is not new

    def read_new(self) -> list[LandedCallback]:
        """Capability callbacks in objects written since the last call."""
        found: list[LandedCallback] = []
        bucket = self.landing.where.bucket
        try:
            for key, info in new_objects(self.landing, self._days(), self._read_up_to):
                data = self.landing.store.get(bucket, info.key)[0]
                self._read_up_to[folder_of(key)] = key
                found += parse_lines(data)
        except StorageUnavailable as exc:
            log.warning("following landed callbacks: %s; trying again", exc)
        return found

    def _days(self) -> list[str]:
        return listing_days(datetime.now(UTC).date().isoformat(), self.landing)
