"""One run's partitions: written under a staging directory, then renamed into the lake.

    data/lake/_staging/<run_id>/<table>/run_id=<id>/data_0.parquet   while being written
    data/lake/<table>/run_id=<id>/data_0.parquet                     once whole and fsynced
    data/lake/_early/<run_id>/<table>/run_id=<id>/data_0.parquet     written before publication

Tables final once the run is planned (`EARLY`: targets, rejects) are written early, while the
run waits on Sinch's callbacks; staging the run then moves each into place instead of writing
it again, if the table still holds the very rows it was written from (a fingerprint says so).

Readers that list the lake (Spark, a glob) never see a partial file; `_staging` starts with an
underscore, which Spark, polars' and DuckDB's hive readers of `data/lake/<table>` never reach.
Publishing a run again replaces each of its files atomically (same name, same rows).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.db import rows_fingerprint, sql_literal
from pipeline.errors import WarehouseError
from pipeline.files import fsync_dir, fsync_file, make_dirs, replace_durably
from pipeline.lake.tables import LATEST, TABLES, LakeTable
from pipeline.private import private_file

FILE_NAME = "data_0.parquet"
STAGING = "_staging"
EARLY_DIR = "_early"
EARLY = ("targets", "rejects")  # final once the run is planned
# zstd at level 1 (a third faster to write than the default level 3, files a little larger);
# row groups of 122,880 rows, DuckDB's own: written in parallel, a third faster than groups of a
# million, and small enough for readers to skip by their statistics.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 122880"
# A run id becomes a directory name: keep it to characters every filesystem and reader accept.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
REAL_STATUSES = "('CAPABILITY_FULL', 'CAPABILITY_PARTIAL', 'NO_CAPABILITY', 'CAPABILITY_UNKNOWN')"


@dataclass(frozen=True)
class Partition:
    table: str
    run_id: str
    path: str  # relative to the lake root
    rows: int


def partition_path(table: LakeTable, run_id: str) -> str:
    return f"{table.name}/{table.partition}={run_id}/{FILE_NAME}"


def check_run_id(run_id: str) -> None:
    if not RUN_ID.fullmatch(run_id):
        raise WarehouseError(
            f"run id {run_id!r} cannot name a lake partition: use letters, digits and ._:+- only"
        )


def stage_run(
    conn: duckdb.DuckDBPyConnection,
    lake: Path,
    run_id: str,
    previous_latest: Path | None,
    on_table: Callable[[str], None] = lambda name: None,
) -> list[Partition]:
    """Write every published table's rows for `run_id` under the staging directory, fsynced;
    `on_table(name)` after each table."""
    check_run_id(run_id)
    staging = staging_dir(lake, run_id)
    shutil.rmtree(staging, ignore_errors=True)  # what a killed attempt left
    present = _state_tables(conn)
    staged = []
    for table in TABLES:
        if table.name not in present:
            continue
        relative = partition_path(table, run_id)
        target = staging / relative
        if table.name == LATEST:
            rows = _copy_snapshot(conn, previous_latest, target, run_id)
        elif (moved := _take_early(conn, lake, table, run_id, target)) is not None:
            rows = moved
        else:
            rows = _copy(conn, table.select_sql(), target, run_id)
        staged.append(Partition(table.name, run_id, relative, rows))
        on_table(table.name)
    for folder in {p.parent for p in staging.rglob(FILE_NAME)}:
        fsync_dir(folder)
    forget_early(conn, lake, [run_id])
    return staged


def stage_early(conn: duckdb.DuckDBPyConnection, lake: Path, run_id: str) -> None:
    """Write the run's partitions of the `EARLY` tables under `_early/<run_id>/`, fsynced, each
    recorded with the fingerprint of the rows it holds."""
    check_run_id(run_id)
    folder = early_dir(lake, run_id)
    shutil.rmtree(folder, ignore_errors=True)
    present = _state_tables(conn)
    for table in TABLES:
        if table.name not in EARLY or table.name not in present:
            continue
        fingerprint = _fingerprint(conn, table, run_id)
        file = folder / partition_path(table, run_id)
        rows = _copy(conn, table.select_sql(), file, run_id)
        fsync_dir(file.parent)
        conn.execute(
            "INSERT OR REPLACE INTO lake_early VALUES ($run_id, $table, $fingerprint, $rows)",
            {"run_id": run_id, "table": table.name, "fingerprint": fingerprint, "rows": rows},
        )


def forget_early(conn: duckdb.DuckDBPyConnection, lake: Path, run_ids: list[str]) -> None:
    """Remove what `stage_early` wrote for `run_ids` (published, or purged)."""
    for run_id in run_ids:
        shutil.rmtree(early_dir(lake, run_id), ignore_errors=True)
    conn.execute("DELETE FROM lake_early WHERE run_id IN (SELECT unnest($ids))", {"ids": run_ids})
    with contextlib.suppress(OSError):  # other runs' early partitions may be there
        (lake / EARLY_DIR).rmdir()


def early_dir(lake: Path, run_id: str) -> Path:
    return lake / EARLY_DIR / run_id


def _take_early(
    conn: duckdb.DuckDBPyConnection, lake: Path, table: LakeTable, run_id: str, target: Path
) -> int | None:
    """Move the early partition of `table` to `target` if the table still holds the rows it
    was written from; its row count, or None (then it is written now)."""
    file = early_dir(lake, run_id) / partition_path(table, run_id)
    if table.name not in EARLY or not file.exists():
        return None
    row = conn.execute(
        "SELECT fingerprint, rows FROM lake_early WHERE run_id = $run_id AND table_name = $table",
        {"run_id": run_id, "table": table.name},
    ).fetchone()
    if row is None or row[0] != _fingerprint(conn, table, run_id):
        return None
    make_dirs(target.parent)
    os.replace(file, target)  # the same file system: the lake's
    return int(row[1])


def _fingerprint(conn: duckdb.DuckDBPyConnection, table: LakeTable, run_id: str) -> str:
    """The rows `table` publishes for the run, summed up (`rows_fingerprint`)."""
    return rows_fingerprint(conn, table.select_sql(), {"run_id": run_id})


def commit_run(lake: Path, run_id: str, staged: list[Partition]) -> None:
    """Rename the staged files into the lake, each atomically, and drop the staging directory."""
    staging = staging_dir(lake, run_id)
    for partition in staged:
        replace_durably(staging / partition.path, lake / partition.path)
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.suppress(OSError):  # another run's staging may be there
        staging.parent.rmdir()


def staging_dir(lake: Path, run_id: str) -> Path:
    return lake / STAGING / run_id


def _copy(conn: duckdb.DuckDBPyConnection, sql: str, target: Path, run_id: str) -> int:
    make_dirs(target.parent)
    try:
        row = conn.execute(
            f"COPY ({sql}) TO {sql_literal(str(target))} ({PARQUET_OPTIONS})", {"run_id": run_id}
        ).fetchone()
    except duckdb.Error as exc:
        raise WarehouseError(f"publishing run {run_id} to {target} failed: {exc}") from exc
    private_file(target)
    fsync_file(target)
    return int(row[0]) if row else 0


def _state_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    ).fetchall()
    names = {str(r[0]) for r in rows}
    # The snapshot is computed from `capability`, which every state database has.
    return names | ({LATEST} if "capability" in names else set())


SNAPSHOT_COLUMNS = (
    "identity",
    "contact_id",
    "status",
    "reason_code",
    "channel_capabilities",
    "checked_at",
    "run_id",  # the newest run that published the answer
    "answered_run_id",  # the run whose check produced it (provenance, issue 26)
    "request_id",  # that check's request
)
# How `capability` gives each: rows of earlier versions have no answered_run_id of their own.
_FROM_CAPABILITY = {"answered_run_id": "coalesce(answered_run_id, run_id) AS answered_run_id"}
_SNAPSHOT_SELECT = ", ".join(
    ("contact_key", "channel", *(_FROM_CAPABILITY.get(c, c) for c in SNAPSHOT_COLUMNS))
)
_ANSWERED = f"run_id = $run_id AND status IN {REAL_STATUSES} AND checked_at IS NOT NULL"
_ANSWERS = f"SELECT {_SNAPSHOT_SELECT} FROM capability WHERE {_ANSWERED}"


def _previous_select(conn: duckdb.DuckDBPyConnection, previous: Path) -> str:
    """The snapshot columns of a previous snapshot file; one written before a column existed
    gives NULL for it (its answers' provenance is unknown, not guessed)."""
    described = conn.execute(
        f"DESCRIBE SELECT * FROM read_parquet({sql_literal(str(previous))})"
    ).fetchall()
    present = {str(row[0]) for row in described}
    return ", ".join(
        c if c in present else f"NULL AS {c}" for c in ("contact_key", "channel", *SNAPSHOT_COLUMNS)
    )


def _copy_snapshot(
    conn: duckdb.DuckDBPyConnection, previous: Path | None, target: Path, run_id: str
) -> int:
    """The newest real answer per contact and channel: the previous snapshot merged with the
    run's answers (the run wins a tie), so its cost follows the contacts, not the history."""
    if previous is None:
        return _copy(conn, _ANSWERS, target, run_id)
    # Which row wins is decided on the keys alone, then the winners' whole rows are read. A join
    # carrying every column of 10M answers against 10M previous ones spills past the memory
    # limit and took three times as long (15 s against 5 s at 10M in `make bench-warehouse`);
    # picking the exceptions only, not every winner, saves reading a 10M-row list back.
    conn.execute(_SNAPSHOT_PICKS, {"run_id": run_id, "previous": str(previous)})
    try:
        return _copy(
            conn, _snapshot_rows(previous, _previous_select(conn, previous)), target, run_id
        )
    finally:
        conn.execute("DROP TABLE IF EXISTS snapshot_picks")


# Where the newest answer per contact and channel is not the run's: the run's answers beaten by a
# newer one in the previous snapshot (`lost_row`, a rowid of `capability`), and the previous
# snapshot's rows kept (`kept_row`, a row number in its file). Both are few on a usual night:
# the run asks again most of the contacts the snapshot holds.
_SNAPSHOT_PICKS = f"""
CREATE OR REPLACE TEMP TABLE snapshot_picks AS
WITH a AS (
    SELECT contact_key, channel, checked_at, rowid AS answer_row FROM capability
    WHERE {_ANSWERED}),
p AS (
    SELECT contact_key, channel, checked_at, file_row_number AS previous_row
    FROM read_parquet($previous, file_row_number = true)),
picked AS (
    SELECT a.answer_row, p.previous_row,
        p.previous_row IS NULL OR (a.answer_row IS NOT NULL AND a.checked_at >= p.checked_at)
            AS answer_wins
    FROM a FULL JOIN p ON a.contact_key = p.contact_key AND a.channel = p.channel)
SELECT answer_row AS lost_row, previous_row AS kept_row FROM picked WHERE NOT answer_wins
"""


def _snapshot_rows(previous: Path, previous_select: str) -> str:
    return f"""
    {_ANSWERS}
      AND rowid NOT IN (SELECT lost_row FROM snapshot_picks WHERE lost_row IS NOT NULL)
    UNION ALL
    SELECT {previous_select}
    FROM read_parquet({sql_literal(str(previous))}, file_row_number = true)
    WHERE file_row_number IN (SELECT kept_row FROM snapshot_picks)
    """
