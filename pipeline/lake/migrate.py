"""Migration from the single-file warehouse (before the lake, `data/warehouse.duckdb` held
everything): on the first run of this version the old file becomes the working state and its
whole history is published to the lake, then the catalog takes its place.

1. `adopt_single_file`: copy the old file to `state_path` (under a staging name, with a marker
   row saying the lake migration is pending, fsynced, renamed): the old file stays untouched,
   so analysts holding it keep reading it, and a crash leaves either no state or a whole one.
2. `finish_migration`: publish every run in it, oldest first, then mark the migration done.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import duckdb

from pipeline.errors import WarehouseError
from pipeline.files import fsync_file, replace_durably
from pipeline.lake.publish import publish_runs
from pipeline.logs import log_fields
from pipeline.private import private_file
from pipeline.settings import Settings
from pipeline.warehouse import ensure_schema

log = logging.getLogger(__name__)
MIGRATION = "lake"


def adopt_single_file(settings: Settings) -> bool:
    """Make a single-file warehouse at `[warehouse] path` the state database, if there is one
    and no state database yet. True when it did."""
    state, old = settings.warehouse.state, settings.warehouse.catalog
    if state.exists() or not old.exists() or not _is_single_file(old):
        return False
    staged = state.with_name(f"{state.name}.migrating-{os.getpid()}")
    shutil.copyfile(old, staged)
    private_file(staged)
    conn = duckdb.connect(str(staged))
    try:
        ensure_schema(conn, settings.reports.channel_preference)
        conn.execute("INSERT OR REPLACE INTO migrations VALUES ($name, NULL)", {"name": MIGRATION})
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    fsync_file(staged)
    replace_durably(staged, state)
    log_fields(log, "single-file warehouse adopted as the working state", old=old, state=state)
    return True


def _is_single_file(path: Path) -> bool:
    """Whether `path` is a warehouse of the single-file era (it has the ledger, not the
    catalog's marker). Opened read-write once, so a WAL it has is folded in before the copy."""
    try:
        conn = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise WarehouseError(
            f"{path}: migrating this warehouse to the lake needs it once without other "
            f"connections; close them and run again ({exc})"
        ) from exc
    try:
        names = {
            str(r[0])
            for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        conn.execute("CHECKPOINT")
    finally:
        conn.close()
    return "requests" in names and "capaudit_catalog" not in names


def finish_migration(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Publish the adopted history if that is still pending (resumable: publishing is)."""
    pending = conn.execute(
        "SELECT count(*) FROM migrations WHERE name = $name AND done_at IS NULL",
        {"name": MIGRATION},
    ).fetchone()
    if not (pending and pending[0]):
        return
    runs = [str(r[0]) for r in conn.execute("SELECT run_id FROM runs").fetchall()]
    summary = publish_runs(conn, settings, runs)
    conn.execute("UPDATE migrations SET done_at = now() WHERE name = $name", {"name": MIGRATION})
    log_fields(log, "history published to the lake", runs=len(summary.runs))
