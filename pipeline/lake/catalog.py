"""The catalog analysts open: a small DuckDB file of views over the lake, swapped in whole.

Built as `<catalog>.new-<pid>`, checkpointed and closed (so no `.wal` is left beside it),
fsynced and renamed over the old catalog. DuckDB keeps an open database on the file it opened,
so an analyst holding the old catalog (read-only or read-write) keeps the old views, which list
the old run's files by name, until they reconnect; the new file is a new inode nobody holds a
lock on, so nothing they hold can make the job wait. Each view names its Parquet files with
absolute paths, so the catalog works from any working directory.

The file is written with storage compatibility v1.4.0, so DuckDB 1.4 and newer clients open it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline import __version__
from pipeline.db import sql_literal
from pipeline.errors import WarehouseError
from pipeline.files import fsync_file, replace_durably, write_text_durably
from pipeline.lake.tables import LATEST, TABLES
from pipeline.private import connect, make_private_dirs
from pipeline.run_kinds import KINDS

log = logging.getLogger(__name__)
STORAGE_VERSION = "v1.4.0"
MANIFEST = "_published.json"


@dataclass(frozen=True)
class Published:
    """What the lake publishes now: per table its files (oldest run first), and the newest
    `capability_latest` snapshot."""

    files: dict[str, list[tuple[str, str, int]]]  # table -> [(run_id, relative path, rows)]
    newest_run: str | None


def published(conn: duckdb.DuckDBPyConnection) -> Published:
    rows = conn.execute(
        "SELECT table_name, run_id, path, rows FROM lake_partitions WHERE retired_at IS NULL "
        "ORDER BY run_started_at, run_id"
    ).fetchall()
    files: dict[str, list[tuple[str, str, int]]] = {}
    for table, run_id, path, count in rows:
        files.setdefault(str(table), []).append((str(run_id), str(path), int(count)))
    latest = files.get(LATEST, [])
    return Published(files, latest[-1][0] if latest else None)


def build_catalog(catalog: Path, lake: Path, current: Published, channel_order_sql: str) -> None:
    """Write the manifest and a new catalog for `current`, and swap the catalog in."""
    lake = lake.resolve()
    make_private_dirs(catalog.parent)
    staged = catalog.with_name(f"{catalog.name}.new-{os.getpid()}")
    for stale in catalog.parent.glob(f"{catalog.name}.new-*"):
        stale.unlink()  # a killed publication's; the run lock says no one else is publishing
    try:
        _write_catalog(staged, lake, current, channel_order_sql)
    except duckdb.Error as exc:
        raise WarehouseError(f"{staged}: building the catalog failed: {exc}") from exc
    if staged.with_name(staged.name + ".wal").exists():
        raise WarehouseError(f"{staged}: a .wal is left after closing; not publishing it")
    fsync_file(staged)
    write_text_durably(lake / MANIFEST, json.dumps(manifest(current), indent=1))
    replace_durably(staged, catalog)
    wal = catalog.with_name(catalog.name + ".wal")
    if wal.exists():  # an analyst wrote to the old catalog: new connections fail until they stop
        log.warning(
            "%s: someone wrote to the catalog and is still connected; nobody can open "
            "the new catalog until they disconnect",
            wal,
        )


def _write_catalog(staged: Path, lake: Path, current: Published, channel_order_sql: str) -> None:
    conn = connect(staged, {"storage_compatibility_version": STORAGE_VERSION})
    try:
        for table in TABLES:
            files = current.files.get(table.name)
            if files and table.name == LATEST:
                conn.execute(latest_view_sql(lake / files[-1][1]))
            elif files:
                conn.execute(view_sql(table.name, table.partition, [lake / f[1] for f in files]))
        if "capability" in current.files:
            conn.execute(channel_order_sql)
        _describe(conn, lake, current)
        conn.execute("CHECKPOINT")
    finally:
        conn.close()


def _paths(paths: Sequence[Path | str]) -> str:
    return sql_literal([str(p) for p in paths])


def view_sql(name: str, partition: str, paths: Sequence[Path | str]) -> str:
    """The view of a table over its published files (paths or s3:// URLs)."""
    # The run's files by name, not a glob: a run being published is invisible to this catalog.
    return (
        f"CREATE VIEW {name} AS SELECT {partition}, * EXCLUDE ({partition}) FROM read_parquet("
        f"{_paths(paths)}, hive_partitioning = true, hive_types = {{'{partition}': VARCHAR}}, "
        "union_by_name = true)"
    )


def latest_view_sql(newest: Path | str) -> str:
    # Only the newest snapshot: the cost of asking for the latest answers does not grow.
    files = _paths([newest])
    return f"CREATE VIEW {LATEST} AS SELECT * FROM read_parquet({files}, hive_partitioning = false)"


def _describe(conn: duckdb.DuckDBPyConnection, lake: Path, current: Published) -> None:
    about = {"at": datetime.now(UTC), "run": current.newest_run, "lake": str(lake)}
    newest = newest_of_each_kind("runs" in current.files)
    conn.execute(
        "CREATE TABLE capaudit_catalog AS SELECT $at::TIMESTAMPTZ AS published_at, "
        f"$run AS newest_run_id, {newest}, $lake AS lake_dir, "
        f"'{__version__}' AS capaudit_version",
        about,
    )
    conn.execute(
        "CREATE TABLE lake_files (table_name VARCHAR, run_id VARCHAR, path VARCHAR, rows BIGINT)"
    )
    rows = [
        (table, run_id, str(lake / path), count)
        for table, files in current.files.items()
        for run_id, path, count in files
    ]
    if rows:
        conn.executemany("INSERT INTO lake_files VALUES (?, ?, ?, ?)", rows)


def newest_of_each_kind(has_runs: bool) -> str:
    """SQL columns `newest_<kind>_run_id`: the newest published run of each kind, by start
    time (pipeline/run_kinds.py); runs of versions before `kind` read as full."""
    return ", ".join(
        f"(SELECT arg_max(run_id, started_at) FROM runs WHERE coalesce(kind, 'full') = '{kind}')"
        f" AS newest_{kind}_run_id"
        if has_runs
        else f"NULL::VARCHAR AS newest_{kind}_run_id"
        for kind in KINDS
    )


def manifest(current: Published) -> dict[str, object]:
    """The same list for readers without DuckDB (`pipeline.lake.scan`): paths relative to the
    lake, so a copied or mounted lake still reads."""
    return {
        "published_at": datetime.now(UTC).isoformat(),
        "newest_run": current.newest_run,
        "tables": {
            table: [{"run_id": r, "path": p, "rows": n} for r, p, n in files]
            for table, files in current.files.items()
        },
    }
