"""Follow the landing directory: the capability callbacks that land from now on, as they land.

    tail = LandingTail(Path("data/landing"))
    for callback in tail.read_new():  # call every fraction of a second
        callback.request_id, callback.channel, callback.received

The dispatcher paces itself by these (pipeline/submit/backlog.py), and collect wakes up by them
(`wait_for_landing`): as soon as the last answer awaited lands, or an answer to ask again. It
reads the files the receivers
write rather than a receiver's /metrics: the landing directory is what every receiver shares
(one or several, restarted or not, on this host or over a shared volume), its lines carry the
receiver's own arrival time, and each names the request and channel it answers. Only complete
lines count, as for ingest; the warehouse is not touched (ingest keeps its own offsets).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from pipeline.landing.segments import KIND_CAPABILITY, complete_end, list_segments, open_segment
from pipeline.sinch.models import CAPABILITY_EVENT_KEY, TRANSIENT_REASONS

if TYPE_CHECKING:
    from pipeline.landing.place import Landing

log = logging.getLogger(__name__)
TAIL_POLL_SECONDS = 0.1  # a look costs a directory listing and the new bytes


@dataclass(frozen=True)
class LandedCallback:
    received: float  # epoch seconds by the receiver's clock
    request_id: str
    channel: str  # '' when the notification names no channel
    reason: str = ""  # the reason code, if any


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
            reason = note.get("reason") or ""
            code = str(reason.get("code") or "") if isinstance(reason, dict) else str(reason)
            found.append(LandedCallback(received, str(note["request_id"]), channel, code))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.debug("landing line not understood while pacing; ingest will report it")
    return found


class Awaited:
    """The answers still awaited, as (request_id, channel) pairs, struck off as they land."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._channels: dict[str, set[str]] = {}
        for request_id, channel in pairs:
            self._channels.setdefault(request_id, set()).add(channel)

    def __len__(self) -> int:
        return len(self._channels)

    def strike(self, callbacks: Iterable[LandedCallback]) -> None:
        for callback in callbacks:
            channels = self._channels.get(callback.request_id)
            if channels is None:
                continue
            if callback.channel:
                channels.discard(callback.channel)
            else:  # about the whole request
                channels.clear()
            if not channels:
                del self._channels[callback.request_id]


async def wait_for_landing(
    tail: Tail,
    seconds: float,
    *,
    awaited: Awaited | None = None,
    transient: bool = False,
    poll: float = TAIL_POLL_SECONDS,
) -> None:
    """Sleep up to `seconds`, waking as soon as every answer `awaited` has landed, or (with
    `transient`) an answer reporting a transient failure landed, which is asked again."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        await asyncio.sleep(min(poll, left))
        landed = tail.read_new()
        if awaited is not None:
            awaited.strike(landed)
            if not awaited:
                return
        if transient and any(c.reason in TRANSIENT_REASONS for c in landed):
            return
