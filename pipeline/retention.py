"""Retention: `capaudit purge --older-than DAYS` removes old runs, lake partitions and landing
segments.

A run older than the cutoff goes with all its rows (targets, rejects, requests, outcomes,
capability, reachability and by country, reasons, routing, changes, estimates) and its report
directory; notifications that no remaining request refers to go too, and so do callbacks without
request_id kept unmatched since before the cutoff. A landing segment goes only when it is closed,
fully ingested and older than the cutoff, and so does a landing object on S3
(`landing/s3retention.py`): nothing not yet in the warehouse is ever deleted. The
newest successful run is always kept, so freshness reuse still has answers to reuse, and so is
any run whose answers a kept run reuses. Their lake partitions leave the catalog now and the
disk at the next purge (`pipeline.lake.publish.retire_runs`), so an analyst holding the previous
catalog never loses a file it reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from pipeline.db import transaction
from pipeline.lake.publish import retire_runs
from pipeline.landing.objects import ObjectLanding
from pipeline.landing.place import Landing, configured_landing
from pipeline.landing.s3retention import delete_objects, old_objects
from pipeline.landing.segments import list_segments
from pipeline.progress import ticking
from pipeline.settings import Settings
from pipeline.state import open_state

RUN_TABLES = (
    "targets",
    "target_files",
    "rejects",
    "requests",
    "request_events",
    "capability",
    "reachability",
    "reasons",
    "capability_changes",
    "reachability_by_country",
    "routing",
    "estimates",
    "sample_frame",
    "sample_members",
    "late_answers",
    "build_state",
    "build_requests",
)

# Runs started before the cutoff, except the newest successful one and any whose answers a kept
# run reuses (its rebuild would need them).
OLD_RUNS = """
SELECT run_id FROM runs WHERE started_at < $cutoff AND run_id <> coalesce(
    (SELECT run_id FROM runs WHERE status = 'succeeded' ORDER BY started_at DESC LIMIT 1), '')
  AND run_id NOT IN (SELECT DISTINCT reuse_run_id FROM targets t
                     JOIN runs r USING (run_id)
                     WHERE r.started_at >= $cutoff AND reuse_run_id IS NOT NULL)
ORDER BY started_at
"""


@dataclass
class PurgeSummary:
    runs: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    lake_partitions_retired: int = 0
    lake_files_deleted: int = 0
    dry_run: bool = False


def purge(
    conn: duckdb.DuckDBPyConnection,
    *,
    older_than_days: float,
    landing_dir: Landing,
    reports_dir: Path,
    dry_run: bool = False,
    now: datetime | None = None,
    console: bool = False,
    lake: Settings | None = None,
) -> PurgeSummary:
    """With `lake` (the settings), the runs' lake partitions are retired too."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=older_than_days)
    summary = PurgeSummary(dry_run=dry_run)
    rows = conn.execute(OLD_RUNS, {"cutoff": cutoff}).fetchall()
    summary.runs = [str(r[0]) for r in rows]
    summary.segments = _old_segments(conn, landing_dir, cutoff)
    if dry_run:
        return summary
    # Each table's rows, the orphaned notifications, the report directories, the segments.
    with ticking("purge", len(RUN_TABLES) + 6, console=console) as tick:
        _delete_runs(conn, summary, cutoff, tick)
        if lake is not None:
            retired = retire_runs(conn, lake, summary.runs)
            summary.lake_partitions_retired, summary.lake_files_deleted = retired
        tick(removed="lake partitions")
        for run_id in summary.runs:
            shutil.rmtree(reports_dir / run_id, ignore_errors=True)
        tick(removed="reports")
        _delete_segments(conn, landing_dir, summary.segments)
        tick(removed="segments")
    return summary


def purge_configured(
    settings: Settings, *, older_than_days: float, dry_run: bool, console: bool = False
) -> PurgeSummary:
    """`purge` on the configured working state, lake, landing and reports directories."""
    with open_state(settings) as conn:
        return purge(
            conn,
            older_than_days=older_than_days,
            dry_run=dry_run,
            landing_dir=configured_landing(settings),
            reports_dir=Path(settings.reports.dir),
            console=console,
            lake=settings,
        )


def _delete_runs(
    conn: duckdb.DuckDBPyConnection,
    summary: PurgeSummary,
    cutoff: datetime,
    tick: Callable[..., None],
) -> None:
    runs = {"runs": summary.runs}
    with transaction(conn):
        for table in (*RUN_TABLES, "runs"):
            row = conn.execute(
                f"DELETE FROM {table} WHERE run_id IN (SELECT unnest($runs))", runs
            ).fetchone()
            summary.rows[table] = int(row[0]) if row else 0
            tick(removed=table)
        row = conn.execute(
            "DELETE FROM notifications n WHERE NOT EXISTS "
            "(SELECT 1 FROM requests r WHERE r.request_id = n.request_id)"
        ).fetchone()
        summary.rows["notifications"] = int(row[0]) if row else 0
        tick(removed="notifications")
        row = conn.execute(
            "DELETE FROM unmatched_notifications WHERE received_at < $cutoff", {"cutoff": cutoff}
        ).fetchone()
        summary.rows["unmatched_notifications"] = int(row[0]) if row else 0
        tick(removed="unmatched_notifications")


def _delete_segments(conn: duckdb.DuckDBPyConnection, landing: Landing, names: list[str]) -> None:
    if isinstance(landing, ObjectLanding):
        delete_objects(conn, landing, names)
        return
    for name in names:
        (landing / name).unlink(missing_ok=True)


def _old_segments(
    conn: duckdb.DuckDBPyConnection, landing_dir: Landing, cutoff: datetime
) -> list[str]:
    if isinstance(landing_dir, ObjectLanding):
        return old_objects(conn, landing_dir, cutoff)
    ingested = dict(
        conn.execute("SELECT segment_id, bytes_ingested FROM landing_files WHERE closed").fetchall()
    )
    old = []
    for segment in list_segments(landing_dir):
        modified = datetime.fromtimestamp(segment.path.stat().st_mtime, UTC)
        whole = ingested.get(segment.segment_id) == segment.size
        if segment.closed and whole and modified < cutoff:
            old.append(segment.path.name)
    return old
