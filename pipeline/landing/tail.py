"""Follow the landing directory: the capability callbacks that land from now on, as they land.

    tail = LandingTail(Path("data/landing"))
    for callback in tail.read_new():  # call every fraction of a second
        callback.request_id, callback.channel, callback.received

The dispatcher paces itself by these (pipeline/submit/backlog.py). It reads the files the receivers
write rather than a receiver's /metrics: the landing directory is what every receiver shares
(one or several, restarted or not, on this host or over a shared volume), its lines carry the
receiver's own arrival time, and each names the request and channel it answers. Only complete
lines count, as for ingest; the warehouse is not touched (ingest keeps its own offsets).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from pipeline.landing.segments import KIND_CAPABILITY, complete_end, list_segments, open_segment
from pipeline.sinch.models import CAPABILITY_EVENT_KEY

if TYPE_CHECKING:
    from pipeline.landing.place import Landing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandedCallback:
    received: float  # epoch seconds by the receiver's clock
    request_id: str
    channel: str  # '' when the notification names no channel


class Tail(Protocol):
    def read_new(self) -> list[LandedCallback]: ...


def landing_tail(landing: Landing) -> Tail:
    """A tail of segment files, or of objects on S3 (`s3tail.py`)."""
    if isinstance(landing, Path):
        return LandingTail(landing)
    from pipeline.landing.s3tail import ObjectTail

    return ObjectTail(landing)


class LandingTail:
    """Reads the landing segments from where they end when it is created."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._offsets: dict[str, int] = {}
        for segment in list_segments(directory):
            try:
                self._offsets[segment.segment_id] = (
                    segment.size if segment.closed else complete_end(segment.path, 0, segment.size)
                )
            except FileNotFoundError:  # closed (renamed) just now: its end is its size
                self._offsets[segment.segment_id] = segment.size

    def read_new(self) -> list[LandedCallback]:
        """Capability callbacks in complete lines written since the last call."""
        found: list[LandedCallback] = []
        for segment in list_segments(self.directory):
            start = self._offsets.get(segment.segment_id, 0)
            if segment.size <= start:
                continue
            try:
                with open_segment(segment) as handle:
                    handle.seek(start)
                    data = handle.read(segment.size - start)
            except FileNotFoundError:  # removed (retention): nothing more will land there
                continue
            end = data.rfind(b"\n") + 1
            self._offsets[segment.segment_id] = start + end
            found += parse_lines(data[:end])
        return found


def parse_lines(data: bytes) -> list[LandedCallback]:
    """The capability callbacks among complete landing lines; others are ingest's business."""
    found = []
    for line in data.splitlines():
        try:
            record = orjson.loads(line)
            if record.get("kind") != KIND_CAPABILITY:
                continue
            note = orjson.loads(record["body"]).get(CAPABILITY_EVENT_KEY) or {}
            received = datetime.fromisoformat(record["received_at"]).timestamp()
            channel = note.get("channel") or ""
            found.append(LandedCallback(received, str(note["request_id"]), channel))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.debug("landing line not understood while pacing; ingest will report it")
    return found
