"""The lake and the analysts' catalog published to S3 (`[warehouse] lake_url`), beside the
local lake and catalog, which stay as they are for the batch machine.

    s3://audit/lake/<table>/run_id=<id>/data_0.parquet     the same hive layout as data/lake
    s3://audit/lake/_catalog.sql                           CREATE VIEWs over the listed files
    s3://audit/lake/_published.json                        what the catalog lists (polars)

Order, after the local publication: upload each partition the catalog lists and the bucket
does not hold yet, under its final name (a PUT creates an object whole: no staging, no
renames), then `_catalog.sql`, then `_published.json` with a conditional PUT (`If-Match` the
manifest read before, `If-None-Match: *` for the first), so a second publisher racing this one
fails loudly instead of overwriting it. A file the manifest does not list is invisible to the
catalog's readers; a kill anywhere leaves the last publication whole, and publishing again
finishes the job.

Why a script of views and not a DuckDB catalog file in the bucket (docs/design.md): a view over
`s3://` files can only be created by a DuckDB that has httpfs loaded, and the project's DuckDB
2.0 cannot load it on these machines. The analyst's DuckDB (1.4+, with httpfs) runs the script
into its own session, where the views are created with httpfs at hand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from pipeline import __version__
from pipeline.db import sql_literal
from pipeline.errors import WarehouseError
from pipeline.lake.catalog import (
    MANIFEST,
    Published,
    latest_view_sql,
    manifest,
    newest_of_each_kind,
    view_sql,
)
from pipeline.lake.tables import LATEST, TABLES
from pipeline.settings import Settings
from pipeline.storage.client import ObjectNotFound, ObjectStore, PreconditionFailed, shared_store
from pipeline.storage.location import S3Location, parse_s3

log = logging.getLogger(__name__)
CATALOG_SCRIPT = "_catalog.sql"


def bucket_lake(settings: Settings) -> tuple[ObjectStore, S3Location] | None:
    """The store and the lake's location in it, or None when the lake is local only."""
    if not settings.warehouse.lake_url:
        return None
    where = parse_s3(settings.warehouse.lake_url, "[warehouse] lake_url")
    return shared_store(settings.storage), where


def publish_to_bucket(
    settings: Settings,
    current: Published,
    channel_order_sql: str,
    *,
    local_lake: Path,
    fresh: Collection[str] = (),
) -> int:
    """Make the bucket show `current`: upload what it lacks and the partitions of the `fresh`
    runs (published just now, maybe again), then the script, then the manifest. Returns how
    many partition files were uploaded."""
    target = bucket_lake(settings)
    if target is None:
        return 0
    store, where = target
    listed, etag = _read_manifest(store, where)
    uploads = [
        (path, rows)
        for files in current.files.values()
        for run_id, path, rows in files
        if run_id in fresh or listed.get(path) != rows
    ]
    for path, _rows in uploads:
        store.put_file(where.bucket, where.key(path), local_lake / path)
    script = catalog_script(where, current, channel_order_sql)
    store.put(where.bucket, where.key(CATALOG_SCRIPT), script.encode("utf-8"))
    body = json.dumps(manifest(current), indent=1).encode("utf-8")
    try:
        if etag is None:
            if not store.put_if_absent(where.bucket, where.key(MANIFEST), body):
                raise PreconditionFailed(where.url(MANIFEST))
        else:
            store.put(where.bucket, where.key(MANIFEST), body, if_match=etag)
    except PreconditionFailed as exc:
        raise WarehouseError(
            f"{where.url(MANIFEST)} changed while this run published: another job publishes "
            "to the same lake_url; each lake needs one job"
        ) from exc
    return len(uploads)


def remove_from_bucket(settings: Settings, paths: list[str]) -> None:
    """Delete retired partition files (a catalog that no longer lists them is published)."""
    target = bucket_lake(settings)
    if target is not None and paths:
        store, where = target
        store.delete(where.bucket, [where.key(p) for p in paths])


def catalog_script(where: S3Location, current: Published, channel_order_sql: str) -> str:
    """The analysts' views over the published files, as one SQL script."""
    statements = []
    for table in TABLES:
        files = current.files.get(table.name)
        if files and table.name == LATEST:
            statements.append(latest_view_sql(where.url(files[-1][1])))
        elif files:
            urls = [where.url(f[1]) for f in files]
            statements.append(view_sql(table.name, table.partition, urls))
    statements = [s.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1) for s in statements]
    if "capability" in current.files:
        statements.append(channel_order_sql.strip().rstrip(";"))
    statements.append(_describe(where, current))
    header = f"-- capaudit {__version__}: the published runs of {where.url()}\n"
    return header + ";\n".join(statements) + ";\n"


def _describe(where: S3Location, current: Published) -> str:
    newest = newest_of_each_kind("runs" in current.files)
    published_at = datetime.now(UTC).isoformat()
    return (
        "CREATE OR REPLACE VIEW capaudit_catalog AS SELECT "
        f"{sql_literal(published_at)}::TIMESTAMPTZ AS published_at, "
        f"{sql_literal(current.newest_run) if current.newest_run else 'NULL'}::VARCHAR "
        f"AS newest_run_id, {newest}, "
        f"{sql_literal(where.url())} AS lake_dir, '{__version__}' AS capaudit_version"
    )


def _read_manifest(store: ObjectStore, where: S3Location) -> tuple[dict[str, int], str | None]:
    """Partition path -> rows of what the bucket's manifest lists, and the manifest's ETag."""
    try:
        body, etag = store.get(where.bucket, where.key(MANIFEST))
    except ObjectNotFound:
        return {}, None
    tables = json.loads(body).get("tables", {})
    return {f["path"]: int(f["rows"]) for files in tables.values() for f in files}, etag
