"""polars over the lake, for analysts: the published runs of a table as a LazyFrame.

    from pipeline.lake import scan
    latest = scan("capability_latest", root="data/lake")
    latest.filter(pl.col("channel") == "WHATSAPP").collect()
    scan("capability", root="s3://audit/lake/")   # a lake published to a bucket (lake_url)

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
from pipeline.lake.scan_s3 import bucket_manifest, storage_options
from pipeline.lake.tables import LATEST, by_name
from pipeline.storage.location import is_s3
from pipeline.storage.settings import StorageSettings


def scan(
    table: str, root: str | Path = "data/lake", *, storage: StorageSettings | None = None
) -> pl.LazyFrame:
    """The published rows of `table` under the lake at `root` (a directory, or an `s3://` URL
    reached as `storage` says, credentials from the AWS chain); `capability_latest` is the
    newest snapshot only (one row per contact and channel)."""
    try:
        partition = by_name(table).partition
    except KeyError as exc:
        raise WarehouseError(str(exc.args[0])) from exc
    options: dict[str, str] | None = None
    if is_s3(root):
        storage = storage or StorageSettings()
        where, manifest = bucket_manifest(str(root), storage)
        base: str = where.url()
        options = storage_options(storage)
    else:
        base = f"{root}/"
        manifest = _manifest(Path(root))
    files = manifest["tables"].get(table) or []
    if not files:
        raise WarehouseError(f"{root}: no published partition of {table}")
    paths = [base + f["path"] for f in files]
    if table == LATEST:
        return pl.scan_parquet(paths[-1], hive_partitioning=False, storage_options=options)
    return pl.scan_parquet(
        paths,
        hive_partitioning=True,
        hive_schema={partition: pl.String},
        schema=_union_schema(paths, options),
        missing_columns="insert",
        storage_options=options,
    ).select(partition, pl.exclude(partition))


def _union_schema(paths: list[str], options: dict[str, str] | None) -> pl.Schema:
    """Every column of the files (their footers only), in the newest file's order, then the
    columns only older ones have; a column's type is the newest file's."""
    columns: dict[str, pl.DataType] = {}
    for path in reversed(paths):
        schema = pl.scan_parquet(path, storage_options=options).collect_schema()
        for name, dtype in schema.items():
            columns.setdefault(name, dtype)
    return pl.Schema(columns)


def _manifest(lake: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((lake / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WarehouseError(f"{lake}: no published run yet (no {MANIFEST})") from exc
    return manifest
