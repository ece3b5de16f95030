"""polars over the lake, for analysts: the published runs of a table as a LazyFrame.

    from pipeline.lake import scan
    latest = scan("capability_latest", root="data/lake")
    latest.filter(pl.col("channel") == "WHATSAPP").collect()

It reads the files the last publication listed (`_published.json`), like the catalog: never a
run being published, nor one purged. Filters on `run_id` prune whole partitions (hive), other
filters are pushed down into the Parquet reader. Partitions are read by column name, as the
catalog's views are (`union_by_name`): a run published before a column was added has it as
NULL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.errors import WarehouseError
from pipeline.lake.catalog import MANIFEST
from pipeline.lake.tables import LATEST, by_name


def scan(table: str, root: str | Path = "data/lake") -> pl.LazyFrame:
    """The published rows of `table` under the lake at `root`; `capability_latest` is the
    newest snapshot only (one row per contact and channel)."""
    lake = Path(root)
    try:
        partition = by_name(table).partition
    except KeyError as exc:
        raise WarehouseError(str(exc.args[0])) from exc
    files = _manifest(lake)["tables"].get(table) or []
    if not files:
        raise WarehouseError(f"{lake}: no published partition of {table}")
    if table == LATEST:
        return pl.scan_parquet(lake / files[-1]["path"], hive_partitioning=False)
    paths = [lake / f["path"] for f in files]
    return pl.scan_parquet(
        paths,
        hive_partitioning=True,
        hive_schema={partition: pl.String},
        schema=_union_schema(paths),
        missing_columns="insert",
    ).select(partition, pl.exclude(partition))


def _union_schema(paths: list[Path]) -> pl.Schema:
    """Every column of the files (their footers only), in the newest file's order, then the
    columns only older ones have; a column's type is the newest file's."""
    columns: dict[str, pl.DataType] = {}
    for path in reversed(paths):
        for name, dtype in pl.read_parquet_schema(path).items():
            columns.setdefault(name, dtype)
    return pl.Schema(columns)


def _manifest(lake: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((lake / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WarehouseError(f"{lake}: no published run yet (no {MANIFEST})") from exc
    return manifest
