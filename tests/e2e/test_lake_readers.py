"""The published lake read four ways: the catalog (DuckDB), polars (`pipeline.lake.scan`),
Spark, and compared with the job's own state. Frames are compared with polars' testing helpers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipeline.lake import scan
from pipeline.lake.tables import LATEST
from tests.conftest import write_config
from tests.e2e.test_audit import capaudit, small_sample

RUNS = ("monday", "tuesday", "wednesday")
PER_RUN = (
    "runs",
    "targets",
    "rejects",
    "capability",
    "reachability",
    "reasons",
    "capability_changes",
)
REAL = ["CAPABILITY_FULL", "CAPABILITY_PARTIAL", "NO_CAPABILITY", "CAPABILITY_UNKNOWN"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three published runs; the second reuses answers, the third asks again with another seed
    (so answers change and the latest snapshot has to merge)."""
    tmp_path = tmp_path_factory.mktemp("lake")
    config = write_config(
        tmp_path / "c.toml", tmp_path, contacts={"paths": [str(small_sample(tmp_path, 120))]}
    )
    for run_id, extra, seed in zip(RUNS, ([], [], ["--refresh"]), ("1", "1", "7"), strict=True):
        done = capaudit(
            "run",
            "--config",
            str(config),
            "--run-id",
            run_id,
            *extra,
            env={"CAPAUDIT_SIMULATOR__SEED": seed},
        )
        assert done.returncode == 0, done.stderr
    return tmp_path


def frame(database: Path, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.sql(sql).pl()


def ordered(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in a canonical order, times in UTC (DuckDB names its session zone Etc/UTC)."""
    df = df.with_columns(pl.col(pl.Datetime(time_zone="*")).dt.convert_time_zone("UTC"))
    keys = [c for c, t in df.schema.items() if not isinstance(t, pl.List)]
    return df.sort(keys, nulls_last=True)


@pytest.mark.parametrize("table", PER_RUN)
def test_the_catalog_publishes_each_run_as_the_state_has_it(home: Path, table: str) -> None:
    published = frame(home / "warehouse.duckdb", f"SELECT * FROM {table}")
    # the state keeps a target's file as a number: the view gives the row as published
    stored = "targets_with_source" if table == "targets" else table
    state = frame(home / "state.duckdb", f"SELECT * FROM {stored}")
    if table == "runs":  # publication is recorded after the run's row is published
        published, state = published.drop("counts", "durations"), state.drop("counts", "durations")
    assert published.columns == state.columns  # same names, same order as documented
    assert set(published["run_id"]) == set(state["run_id"])
    assert published.height > 0
    assert_frame_equal(ordered(published), ordered(state), check_dtypes=False)


@pytest.mark.parametrize("table", [*PER_RUN, "notifications"])
def test_polars_scan_reads_what_the_catalog_shows(home: Path, table: str) -> None:
    lazy = scan(table, root=home / "lake")
    assert isinstance(lazy, pl.LazyFrame)
    catalog = frame(home / "warehouse.duckdb", f"SELECT * FROM {table}")
    assert_frame_equal(ordered(lazy.collect()), ordered(catalog), check_dtypes=False)


def test_polars_scan_prunes_by_run(home: Path) -> None:
    one = scan("capability", root=home / "lake").filter(pl.col("run_id") == "tuesday")
    plan = one.explain()
    assert "tuesday" in plan
    rows = one.collect()
    assert set(rows["run_id"]) == {"tuesday"}
    assert (
        rows.height
        == frame(home / "state.duckdb", "SELECT * FROM capability WHERE run_id = 'tuesday'").height
    )


def test_latest_is_the_newest_answer_over_the_whole_history(home: Path) -> None:
    # From every published capability row, the newest real answer per contact and channel.
    history = (
        scan("capability", root=home / "lake")
        .filter(pl.col("status").is_in(REAL) & pl.col("checked_at").is_not_null())
        .sort("checked_at", "reused", descending=[False, True])
        .group_by("contact_key", "channel")
        .last()
        .select("contact_key", "channel", "identity", "status", "reason_code", "checked_at")
        .collect()
    )
    latest = frame(home / "warehouse.duckdb", f"SELECT * FROM {LATEST}")
    assert latest.columns == [
        "contact_key",
        "channel",
        "identity",
        "contact_id",
        "status",
        "reason_code",
        "channel_capabilities",
        "checked_at",
        "run_id",
        "answered_run_id",
        "request_id",
    ]
    assert set(latest["run_id"]) <= set(RUNS)
    assert "wednesday" in set(latest["run_id"])  # the newest run's answers won
    polars_latest = scan(LATEST, root=home / "lake").collect()
    assert_frame_equal(ordered(polars_latest), ordered(latest), check_dtypes=False)
    picked = latest.select(history.columns)
    assert_frame_equal(ordered(picked), ordered(history), check_dtypes=False)


def test_the_catalog_reads_from_any_directory_and_by_duckdb_1_4(home: Path) -> None:
    catalog = home / "warehouse.duckdb"
    query = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
        "print(c.execute('SELECT count(*) FROM capability').fetchone()[0])"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", query, str(catalog)],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(elsewhere.stdout) == frame(catalog, "SELECT * FROM capability").height
    with duckdb.connect(str(catalog), read_only=True) as conn:
        tags = conn.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = 'warehouse'"
        ).fetchone()
    assert tags == ({"storage_version": "v1.4.0+"},)
    assert not catalog.with_name("warehouse.duckdb.wal").exists()


def spark_counts(lake: Path) -> list[tuple[str, str, str, int]]:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    try:
        rows = (
            spark.read.parquet(str(lake / "capability"))
            .groupBy("run_id", "channel", "status")
            .count()
            .collect()
        )
        return sorted((r["run_id"], r["channel"], r["status"], int(r["count"])) for r in rows)
    finally:
        spark.stop()


def test_spark_reads_the_same_counts_as_duckdb_and_polars(home: Path) -> None:
    pytest.importorskip("pyspark", reason="pyspark is an optional extra: pip install '.[spark]'")
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime (java on PATH)")
    spark = spark_counts(home / "lake")
    duck = [
        tuple(r)
        for r in duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
        .execute(
            "SELECT run_id, channel, status, count(*) FROM capability GROUP BY ALL ORDER BY ALL"
        )
        .fetchall()
    ]
    polars = (
        scan("capability", root=home / "lake")
        .group_by("run_id", "channel", "status")
        .len()
        .sort("run_id", "channel", "status")
        .collect()
        .rows()
    )
    assert spark == duck == polars
    assert {r[0] for r in spark} == set(RUNS)
