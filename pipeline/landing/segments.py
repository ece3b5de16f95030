"""The landing segment format: newline-delimited JSON, one received callback a line.

    {"received_at": "2026-11-25T17:30:00.123456Z", "writer": "host-123-ab12", "nonce": "...",
     "kind": "capability", "body": "<the raw request body, exactly as received>"}

A segment is written by one writer only. While open it is named `<writer>-<seq>.ndjson.open`;
it is closed by an atomic rename to `<writer>-<seq>.ndjson` and never changed after that. Only
complete lines (ending in a newline) count: a torn last line after a crash was never
acknowledged, so readers stop at the last newline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson

OPEN_SUFFIX = ".ndjson.open"
CLOSED_SUFFIX = ".ndjson"
KIND_CAPABILITY = "capability"
KIND_OTHER = "other"


def segment_name(writer_id: str, sequence: int) -> str:
    return f"{writer_id}-{sequence:06d}"


def encode_line(body: bytes, nonce: str, writer_id: str, kind: str, received: datetime) -> bytes:
    """One landing line. `body` must be UTF-8 (it parsed as JSON), so it is kept exactly."""
    record = {
        "received_at": received.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "writer": writer_id,
        "nonce": nonce,
        "kind": kind,
        "body": body.decode("utf-8"),
    }
    return orjson.dumps(record) + b"\n"


@dataclass(frozen=True)
class Segment:
    """A segment on disk as a reader sees it at one moment."""

    segment_id: str
    path: Path
    closed: bool
    size: int


def list_segments(directory: Path) -> list[Segment]:
    """Every segment in `directory`, closed or open, sorted by id."""
    found: dict[str, Segment] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        closed = entry.name.endswith(CLOSED_SUFFIX)
        if not (closed or entry.name.endswith(OPEN_SUFFIX)):
            continue
        segment_id = entry.name.removesuffix(CLOSED_SUFFIX if closed else OPEN_SUFFIX)
        try:
            size = entry.stat().st_size
        except FileNotFoundError:  # closed (renamed) between listing and stat
            continue
        if closed or segment_id not in found:
            found[segment_id] = Segment(segment_id, Path(entry.path), closed, size)
    return [found[key] for key in sorted(found)]


def complete_end(path: Path, start: int, size: int) -> int:
    """The offset just past the last newline in [start, size): where complete lines end."""
    if size <= start:
        return start
    with path.open("rb") as handle:
        position = size
        while position > start:
            chunk_start = max(start, position - 65536)
            handle.seek(chunk_start)
            chunk = handle.read(position - chunk_start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return chunk_start + newline + 1
            position = chunk_start
    return start


def open_segment(segment: Segment) -> BinaryIO:
    """The segment's file; an open one may have been closed (renamed) since it was listed."""
    try:
        return segment.path.open("rb")
    except FileNotFoundError:
        if segment.closed:
            raise
        return segment.path.with_name(segment.segment_id + CLOSED_SUFFIX).open("rb")
