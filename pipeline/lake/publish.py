"""Publication: the last step of a run. Its partitions go into the lake, then a new catalog.

    publish_runs(conn, settings, ["20261125T020000Z-4f2a"])

Order, so that a run killed at any point leaves what analysts see as it was, and publishing
again finishes the job: stage every partition (fsynced) -> rename each into the lake (a few
renames) -> record them in `lake_partitions` -> build and swap in the catalog. The catalog
names its files, so partitions renamed into the lake before a kill are invisible to it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline.errors import UsageError
from pipeline.files import fsync_dir
from pipeline.lake.bucket import publish_to_bucket, remove_from_bucket
from pipeline.lake.catalog import build_catalog, published
from pipeline.lake.partitions import Partition, commit_run, forget_early, stage_run
from pipeline.lake.tables import LATEST, TABLES
from pipeline.logs import log_fields
from pipeline.progress import ticking
from pipeline.settings import Settings
from pipeline.warehouse import render_view

log = logging.getLogger(__name__)
# Seconds to wait with the run staged and nothing visible changed yet: lets the crash tests
# kill the job mid-publication deterministically. Unset in production.
PAUSE_ENV = "CAPAUDIT_PUBLISH_PAUSE_SECONDS"


@dataclass
class PublishSummary:
    runs: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    catalog: str = ""
    seconds: float = 0.0


def publish_runs(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    run_ids: Sequence[str],
    *,
    console: bool = False,
) -> PublishSummary:
    """Publish `run_ids` (oldest first) to the lake, then swap in a catalog of everything;
    progress: tables written, then the catalog."""
    started = time.monotonic()
    lake = settings.warehouse.lake
    summary = PublishSummary(catalog=str(settings.warehouse.catalog))
    runs = _ordered(conn, run_ids)
    with ticking("publish", len(runs) * len(TABLES) + 1, console=console) as tick:
        for run_id, run_started in runs:
            written = _publish_run(conn, lake, run_id, run_started, lambda name: tick(table=name))
            for partition in written:
                summary.rows[partition.table] = (
                    summary.rows.get(partition.table, 0) + partition.rows
                )
            summary.runs.append(run_id)
        refresh_catalog(conn, settings, fresh=summary.runs)
        tick(table="catalog")
    summary.seconds = time.monotonic() - started
    log_fields(
        log,
        "published",
        runs=len(summary.runs),
        catalog=summary.catalog,
        seconds=f"{summary.seconds:.1f}",
    )
    return summary


def refresh_catalog(
    conn: duckdb.DuckDBPyConnection, settings: Settings, *, fresh: Sequence[str] = ()
) -> None:
    """A new catalog of every published, unretired partition, swapped in; with `[warehouse]
    lake_url`, the bucket then shows the same (`bucket.py`), `fresh` runs uploaded again."""
    channel_order = render_view("channel_order", settings.reports.channel_preference)
    current, lake = published(conn), settings.warehouse.lake
    build_catalog(settings.warehouse.catalog, lake, current, channel_order)
    publish_to_bucket(settings, current, channel_order, local_lake=lake, fresh=fresh)


def _ordered(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[tuple[str, datetime]]:
    rows = conn.execute(
        "SELECT run_id, started_at FROM runs WHERE run_id IN (SELECT unnest($ids)) "
        "ORDER BY started_at, run_id",
        {"ids": list(run_ids)},
    ).fetchall()
    missing = set(run_ids) - {str(r[0]) for r in rows}
    if missing:
        raise UsageError(f"cannot publish: there is no run {sorted(missing)[0]}")
    return [(str(run_id), started) for run_id, started in rows]


def _publish_run(
    conn: duckdb.DuckDBPyConnection,
    lake: Path,
    run_id: str,
    run_started: datetime,
    on_table: Callable[[str], None],
) -> list[Partition]:
    previous = _previous_snapshot(conn, lake, run_started)
    staged = stage_run(conn, lake, run_id, previous, on_table)
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    if pause:
        log_fields(log, "publication paused", run_id=run_id, seconds=pause)
        time.sleep(pause)
    commit_run(lake, run_id, staged)
    _record(conn, staged, run_started)
    return staged


def _previous_snapshot(
    conn: duckdb.DuckDBPyConnection, lake: Path, run_started: datetime
) -> Path | None:
    """The newest published snapshot of a run that started before this one."""
    row = conn.execute(
        "SELECT path FROM lake_partitions WHERE table_name = $latest AND retired_at IS NULL "
        "AND run_started_at < $started ORDER BY run_started_at DESC LIMIT 1",
        {"latest": LATEST, "started": run_started},
    ).fetchone()
    return lake / str(row[0]) if row else None


def _record(
    conn: duckdb.DuckDBPyConnection, staged: list[Partition], run_started: datetime
) -> None:
    now = datetime.now(UTC)
    conn.executemany(
        "INSERT OR REPLACE INTO lake_partitions (table_name, run_id, path, rows, run_started_at, "
        "published_at, retired_at) VALUES (?, ?, ?, ?, ?, ?, NULL)",
        [(p.table, p.run_id, p.path, p.rows, run_started, now) for p in staged],
    )


def retire_runs(
    conn: duckdb.DuckDBPyConnection, settings: Settings, run_ids: Sequence[str]
) -> tuple[int, int]:
    """Retention for the lake, in two phases so a reader holding the previous catalog never
    loses a file it names: delete the files retired by an earlier purge (no catalog since lists
    them), then retire `run_ids`' partitions and swap in a catalog without them. Returns
    (partitions retired now, files deleted now)."""
    lake = settings.warehouse.lake
    forget_early(conn, lake, list(run_ids))
    gone = conn.execute(
        "SELECT table_name, run_id, path FROM lake_partitions WHERE retired_at IS NOT NULL"
    ).fetchall()
    for _table, _run, path in gone:
        _remove_partition(lake / str(path))
    remove_from_bucket(settings, [str(path) for _table, _run, path in gone])
    conn.execute("DELETE FROM lake_partitions WHERE retired_at IS NOT NULL")
    row = conn.execute(
        "UPDATE lake_partitions SET retired_at = now() WHERE run_id IN (SELECT unnest($ids))",
        {"ids": list(run_ids)},
    ).fetchone()
    retired = int(row[0]) if row else 0
    if retired or gone:
        refresh_catalog(conn, settings)
    return retired, len(gone)


def _remove_partition(file: Path) -> None:
    file.unlink(missing_ok=True)
    folder = file.parent
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        fsync_dir(folder.parent)
