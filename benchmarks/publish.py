"""Publication timings for `make bench-warehouse` (its `build` phase calls `measure_publish`):
the run published to a local lake, and the same run published with `[warehouse] lake_url` to a
bucket of a SeaweedFS server started for the benchmark (the local lake and catalog, then the
uploads, the views script and the conditional manifest).

Prints nothing itself; `publish_s3_ratio` = bucket ÷ local (DESIGN §8).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

BUCKET = "bench-lake"


def lake_settings(folder: Path) -> Any:
    from pipeline.settings import Settings

    shutil.rmtree(folder, ignore_errors=True)
    return Settings().replace("warehouse", path=str(folder / "warehouse.duckdb"))


def timed_publication(conn: duckdb.DuckDBPyConnection, settings: Any) -> tuple[float, float]:
    """Publish last night's run (not timed: its snapshot is what tonight's merges with), write
    tonight's early partitions as `plan` does (timed apart: the run then waits on callbacks),
    then time publishing tonight's: every table's partitions and the catalog swap. Returns
    (publish seconds, early seconds)."""
    from pipeline.lake.partitions import stage_early
    from pipeline.lake.publish import publish_runs

    publish_runs(conn, settings, ["previous"])
    started = time.perf_counter()
    stage_early(conn, settings.warehouse.lake, "bench")
    early_seconds = time.perf_counter() - started
    started = time.perf_counter()
    publish_runs(conn, settings, ["bench"])
    return time.perf_counter() - started, early_seconds


def measure_publish(conn: duckdb.DuckDBPyConnection, work: Path) -> dict[str, float]:
    """publish_seconds and early_publish_seconds locally, then publish_s3_seconds."""
    from pipeline.storage.embedded import embedded_s3

    local, early = timed_publication(conn, lake_settings(work / "published"))
    shutil.rmtree(work / "s3", ignore_errors=True)
    with embedded_s3(work / "s3") as server:
        server.store().create_bucket(BUCKET)
        os.environ.update(server.env())  # the AWS chain, as a deployment has it
        settings = lake_settings(work / "published-s3").replace(
            "warehouse", lake_url=f"s3://{BUCKET}/lake/"
        )
        # The same two publications from the start: the state forgets the first lake's.
        conn.execute("DELETE FROM lake_partitions")
        on_s3, _ = timed_publication(conn, settings)
    return {"publish_seconds": local, "early_publish_seconds": early, "publish_s3_seconds": on_s3}
