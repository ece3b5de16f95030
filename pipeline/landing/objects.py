"""Landing objects on S3: names no other writer can produce, and finding the new ones cheaply.

    <prefix><YYYY-MM-DD>/<host>/<writer>-<lane>/<sequence>.ndjson
    s3://audit/landing/2026-12-08/rx1/rx1-4242-a1b2c3-0/0000000017.ndjson

Each object is one group-committed batch of landing lines (the segment format,
`segments.py`), written once with a conditional PUT and never changed. The writer id holds the
host, the process id and random bits (`writer.new_writer_id`); a writer keeps a few PUTs in
flight, one per lane, each lane in a folder of its own; the sequence counts the lane's
batches; the date (the writer's UTC clock when it wrote) and host prefixes keep every listing
small. A lane writes one batch at a time and never skips a sequence number (a failed PUT is tried
again under the same name with the lane's next batch), so within a lane's folder the keys
appear in order: whoever has read a folder up to a key only needs the keys after it
(`StartAfter`), and a reader lists only the dates since the newest it has read, one day of
margin either side for clocks and a PUT crossing midnight.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from pipeline.storage.client import ObjectInfo, ObjectStore
from pipeline.storage.location import S3Location

SUFFIX = ".ndjson"
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A relative key as the bookkeeping (`landing_files.segment_id`) holds it.
KEY = re.compile(r"(\d{4}-\d{2}-\d{2})/[^/]+/[^/]+/\d+\.ndjson")
MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class ObjectLanding:
    """Landing on S3: where the objects are and the store that reaches them."""

    store: ObjectStore
    where: S3Location

    def __str__(self) -> str:
        return str(self.where)


def object_name(when: datetime, host: str, writer_id: str, sequence: int) -> str:
    """The relative key of a writer's `sequence`-th batch, written at `when`."""
    day = when.astimezone(UTC).date().isoformat()
    return f"{day}/{host}/{writer_id}/{sequence:010d}{SUFFIX}"


def folder_of(relative: str) -> str:
    """`<date>/<host>/<writer>/` of a relative key."""
    return relative.rsplit("/", 1)[0] + "/"


def listing_days(since: str | None, landing: ObjectLanding, today: date | None = None) -> list[str]:
    """The date folders worth listing: from a day before `since` (the newest date read) to a
    day after today; every date folder there is when nothing was read yet."""
    if since is None:
        folders = landing.store.prefixes(landing.where.bucket, landing.where.prefix)
        days = [landing.where.relative(f).rstrip("/") for f in folders]
        return [d for d in days if DATE.fullmatch(d)]
    first = date.fromisoformat(since) - MARGIN
    last = (today or datetime.now(UTC).date()) + MARGIN
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def writer_folders(landing: ObjectLanding, days: list[str]) -> list[str]:
    """Every writer folder (relative, ending in "/") under the given date folders."""
    bucket, where = landing.where.bucket, landing.where
    found = []
    for day in days:
        for host in landing.store.prefixes(bucket, where.key(f"{day}/")):
            found += [where.relative(w) for w in landing.store.prefixes(bucket, host)]
    return found


def new_objects(
    landing: ObjectLanding, days: list[str], read_up_to: Mapping[str, str]
) -> Iterator[tuple[str, ObjectInfo]]:
    """(relative key, object) of each landing object after what `read_up_to` (writer folder ->
    last relative key read) says was read, in key order per folder."""
    bucket, where = landing.where.bucket, landing.where
    for folder in writer_folders(landing, days):
        after = read_up_to.get(folder, "")
        listed = landing.store.objects(
            bucket, where.key(folder), start_after=where.key(after) if after else ""
        )
        for info in listed:
            relative = where.relative(info.key)
            if KEY.fullmatch(relative):
                yield relative, info
