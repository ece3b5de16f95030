"""Ingesting landing objects from the real S3 server: exactly once, resumable after kill -9,
listing only the date folders since the newest read, and retention that deletes only what was
ingested."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.landing.ingest import ingest_landing
from pipeline.landing.objects import ObjectLanding
from pipeline.landing.s3tail import ObjectTail
from pipeline.landing.s3writer import ObjectWriter
from pipeline.retention import purge
from pipeline.storage import parse_s3
from pipeline.storage.embedded import EmbeddedS3
from pipeline.warehouse import open_warehouse
from tests.unit.test_landing import line

NOW = datetime.now(UTC)


def landing_on(server: EmbeddedS3, bucket_name: str) -> ObjectLanding:
    return ObjectLanding(server.store(), parse_s3(f"s3://{bucket_name}/landing/"))


def land(
    landing: ObjectLanding,
    numbers: range,
    *,
    per_object: int = 10,
    when: Callable[[], datetime] = lambda: NOW,
) -> ObjectWriter:
    """Write the lines of `numbers` as objects of `per_object` lines, stamped `when`."""

    async def main() -> ObjectWriter:
        writer = ObjectWriter(landing, commit_window_seconds=0, clock=when)
        await writer.start()
        values = list(numbers)
        for start in range(0, len(values), per_object):
            chunk = values[start : start + per_object]
            await asyncio.gather(*(writer.append(line(n)) for n in chunk))
        await writer.close()
        return writer

    return asyncio.run(main())


def notifications(warehouse: Path) -> dict[str, int]:
    with open_warehouse(warehouse) as conn:
        rows = conn.execute("SELECT request_id, deliveries FROM notifications").fetchall()
    return {str(r): int(d) for r, d in rows}


def test_objects_are_ingested_exactly_once(s3: EmbeddedS3, bucket: str, tmp_path: Path) -> None:
    landing = landing_on(s3, bucket)
    first = land(landing, range(100))
    land(landing, range(100, 150))  # a second writer: another folder
    warehouse = tmp_path / "w.duckdb"
    with open_warehouse(warehouse) as conn:
        stats = ingest_landing(conn, landing)
        assert (stats.notifications_new, stats.segments) == (150, 15)
        assert ingest_landing(conn, landing).notifications_new == 0  # nothing read twice
        land(landing, range(150, 170))
        assert ingest_landing(conn, landing).notifications_new == 20  # only the new objects
    assert notifications(warehouse) == {f"r{n}": 1 for n in range(170)}
    assert first.metrics.batches == 10


def test_only_date_folders_since_the_newest_read_are_listed(
    s3: EmbeddedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    landing = landing_on(s3, bucket)
    land(landing, range(10))
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        assert ingest_landing(conn, landing).notifications_new == 10
        # An object appearing in a date folder a week old is not looked for: ingest lists the
        # folders since the newest it read (a day either side), not every object ever written.
        land(landing, range(10, 12), when=lambda: NOW - timedelta(days=7))
        land(landing, range(12, 14), when=lambda: NOW - timedelta(days=1))
        assert ingest_landing(conn, landing).notifications_new == 2
    # A new working state has read nothing, so it lists every date folder.
    assert len(notifications_after_ingest(landing, tmp_path / "fresh.duckdb")) == 14


def notifications_after_ingest(landing: ObjectLanding, warehouse: Path) -> dict[str, int]:
    with open_warehouse(warehouse) as conn:
        ingest_landing(conn, landing)
    return notifications(warehouse)


INGEST = """
import sys
from pathlib import Path
from pipeline.landing.ingest import ingest_landing
from pipeline.landing.objects import ObjectLanding
from pipeline.storage import ObjectStore, parse_s3
from pipeline.storage.settings import StorageSettings
from pipeline.warehouse import open_warehouse
landing = ObjectLanding(ObjectStore(StorageSettings()), parse_s3(sys.argv[2]))
with open_warehouse(Path(sys.argv[1])) as conn:
    print("ingesting", flush=True)
    ingest_landing(conn, landing)
"""


def test_an_ingest_killed_mid_way_is_finished_by_the_next(
    s3: EmbeddedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    landing = landing_on(s3, bucket)
    # 600 objects from six writers at once: several batches (MAX_OBJECTS_PER_BATCH), each
    # its own transaction, so the kill falls between two of them or inside one.
    with ThreadPoolExecutor(6) as pool:
        list(
            pool.map(lambda w: land(landing, range(w * 300, w * 300 + 300), per_object=3), range(6))
        )
    warehouse = tmp_path / "w.duckdb"
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(warehouse), str(landing.where)],
        env={**os.environ, **s3.env()},
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    with child.stdout:
        child.stdout.readline()
        time.sleep(1.0)
        child.send_signal(signal.SIGKILL)
        child.wait()
    with open_warehouse(warehouse) as conn:
        done = conn.execute("SELECT count(*) FROM landing_files").fetchone()
        ingest_landing(conn, landing)
    assert notifications(warehouse) == {f"r{n}": 1 for n in range(1800)}
    assert done is not None
    assert done[0] < 600, "the kill came after the whole ingest"


def test_purge_deletes_only_old_ingested_objects(
    s3: EmbeddedS3,
    bucket: str,
    tmp_path: Path,
) -> None:
    landing = landing_on(s3, bucket)
    land(landing, range(10), when=lambda: NOW - timedelta(days=40))
    land(landing, range(10, 20), when=lambda: NOW - timedelta(days=1))
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        ingest_landing(conn, landing)
        land(landing, range(20, 30), when=lambda: NOW - timedelta(days=40))  # not ingested yet
        summary = purge(
            conn, older_than_days=30, landing_dir=landing, reports_dir=tmp_path / "reports"
        )
    assert len(summary.segments) == 1
    left = [info.key for info in s3.store().objects(bucket, "landing/")]
    assert len(left) == 2  # the young object and the old one not ingested yet
    assert summary.segments[0] not in {key.removeprefix("landing/") for key in left}


def test_the_tail_follows_only_what_lands_after_it_starts(s3: EmbeddedS3, bucket: str) -> None:
    landing = landing_on(s3, bucket)
    land(landing, range(5))
    tail = ObjectTail(landing)  # what is there already is not new
    assert tail.read_new() == []
    land(landing, range(5, 12))
    assert sorted(c.request_id for c in tail.read_new()) == sorted(f"r{n}" for n in range(5, 12))
    assert tail.read_new() == []
