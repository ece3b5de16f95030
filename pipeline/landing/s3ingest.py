"""Ingest landing objects from S3 exactly once, with a bounded listing.

The bookkeeping is the segments' own (`landing_files`, `ingest.py`): one row per object
(`segment_id` its key relative to the landing prefix, all its bytes, closed), written in the
same transaction as the object's rows, so an ingest killed at any point is resumed by the next
one and nothing is read twice. What to list comes from the same table: the date folders since
the newest one read, and in each writer's folder only the keys after the last one read
(`objects.py` says why that finds every new object). New objects are downloaded into a scratch
directory, eight at a time, in batches of about DuckDB's memory limit, and ingested by the very
code that ingests segment files.

    stats = ingest_objects(conn, ObjectLanding(store, parse_s3("s3://audit/landing/")))
"""

from __future__ import annotations

import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from pipeline.landing.ingest import (
    IngestStats,
    Slice,
    batches,
    ingest_batch,
    memory_limit_bytes,
    retry_unmatched,
)
from pipeline.landing.objects import ObjectLanding, listing_days, new_objects
from pipeline.landing.segments import Segment

log = logging.getLogger(__name__)
DOWNLOADS_AT_ONCE = 8
# Objects per batch (one transaction): a catch-up over thousands of small objects commits as it
# goes, so a kill loses at most this many downloads, and the scratch directory stays small.
MAX_OBJECTS_PER_BATCH = 256
# The newest object read (objects' ids start with their date; segment files' have no "/").
NEWEST_READ = "SELECT max(segment_id) FROM landing_files WHERE segment_id LIKE '____-__-__/%'"
# Per writer folder, the last key read, over the dates still listed (from `$floor` on): the
# bookkeeping grows with the retention window, this stays the size of a few days.
READ_UP_TO = """
SELECT regexp_extract(segment_id, '^(.*/)', 1) AS folder, max(segment_id) AS last_key
FROM landing_files WHERE segment_id >= $floor AND segment_id LIKE '____-__-__/%'
GROUP BY folder
"""


def ingest_objects(conn: duckdb.DuckDBPyConnection, landing: ObjectLanding) -> IngestStats:
    stats = IngestStats()
    found = new_landing_objects(conn, landing)
    if not found:
        retry_unmatched(conn, stats, landing)
        return stats
    for batch in _object_batches(found, memory_limit_bytes(conn)):
        with tempfile.TemporaryDirectory(prefix="capaudit-objects-") as scratch:
            stats.add(ingest_batch(conn, _download(landing, batch, Path(scratch)), landing))
    return stats


def _object_batches(found: list[Slice], batch_bytes: int) -> list[list[Slice]]:
    """`ingest.batches` (about `batch_bytes` each), cut to MAX_OBJECTS_PER_BATCH objects."""
    step = MAX_OBJECTS_PER_BATCH
    return [b[i : i + step] for b in batches(found, batch_bytes) for i in range(0, len(b), step)]


def new_landing_objects(conn: duckdb.DuckDBPyConnection, landing: ObjectLanding) -> list[Slice]:
    """The objects not ingested yet, as slices whose path is still to be downloaded."""
    newest = conn.execute(NEWEST_READ).fetchone()
    since = str(newest[0])[:10] if newest and newest[0] else None
    days = listing_days(since, landing)
    read_up_to = {
        str(folder): str(last)
        for folder, last in conn.execute(READ_UP_TO, {"floor": days[0] if days else ""}).fetchall()
    }
    listed = list(new_objects(landing, days, read_up_to))
    if not listed:
        return []
    known = {
        str(row[0])
        for row in conn.execute(
            "SELECT segment_id FROM landing_files WHERE segment_id IN (SELECT unnest($keys))",
            {"keys": [key for key, _ in listed]},
        ).fetchall()
    }
    return [
        Slice(Segment(key, Path(info.key), True, info.size), 0, info.size)
        for key, info in listed
        if key not in known
    ]


def _download(landing: ObjectLanding, batch: list[Slice], scratch: Path) -> list[Slice]:
    """The batch's objects as local files (their `path` was the object's key)."""

    def fetch(numbered: tuple[int, Slice]) -> Slice:
        number, piece = numbered
        local = scratch / f"{number:06d}.ndjson"
        # A plain GET: objects are one batch each (a few MB at most), too small for the
        # transfer manager's ranged, threaded download to pay for itself.
        local.write_bytes(landing.store.get(landing.where.bucket, str(piece.segment.path))[0])
        segment = Segment(piece.segment.segment_id, local, True, piece.segment.size)
        return Slice(segment, piece.start, piece.end)

    with ThreadPoolExecutor(DOWNLOADS_AT_ONCE) as pool:
        return list(pool.map(fetch, enumerate(batch)))
