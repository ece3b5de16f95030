"""Acceptance (issue 27): a whole `capaudit run` with landing and lake on S3, then the lake read
from the bucket the ways analysts read it:

- DuckDB 1.5.5 with the registry's httpfs wheel, in an environment of its own
  (`scripts/analyst-duckdb`), runs the documented snippet (docs/warehouse.md, "From a bucket")
  and gets the newest run's `reachability`;
- polars through `pipeline.lake.scan(..., root="s3://...")` reads `capability_latest`;
- Spark reads the same layout through a local mirror of the bucket (its S3 connector is not on
  the registries reachable here), when pyspark is installed.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.lake import scan
from pipeline.storage.embedded import EmbeddedS3
from pipeline.storage.settings import StorageSettings
from tests.conftest import REPO, write_config
from tests.e2e.test_audit import capaudit, small_sample
from tests.e2e.test_doc_examples import BUCKET_MARK, FENCE

RUN_ID = "nightly-on-s3"


@pytest.fixture(scope="module")
def home(s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run landing and publishing to a fresh bucket; (its directory, the bucket)."""
    tmp_path = tmp_path_factory.mktemp("run-s3")
    bucket = "run-s3"
    s3.store().create_bucket(bucket)
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        contacts={"paths": [str(small_sample(tmp_path, 120))]},
        receiver={"landing_url": f"s3://{bucket}/landing/"},
        warehouse={"lake_url": f"s3://{bucket}/lake/"},
    )
    done = capaudit("run", "--config", str(config), "--run-id", RUN_ID, env=s3.env())
    assert done.returncode == 0, done.stderr
    return tmp_path, bucket


def test_callbacks_landed_as_objects_and_the_run_published_to_the_bucket(
    s3: EmbeddedS3, home: tuple[Path, str]
) -> None:
    tmp_path, bucket = home
    store = s3.store()
    assert any(True for _ in store.objects(bucket, "landing/"))
    assert not (tmp_path / "landing").exists()  # nothing landed on local disk
    manifest = json.loads(store.get(bucket, "lake/_published.json")[0])
    assert manifest["newest_run"] == RUN_ID
    for files in manifest["tables"].values():
        for file in files:
            assert store.head(bucket, f"lake/{file['path']}") is not None
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        local = conn.execute("SELECT count(*) FROM capability").fetchone()
    assert local is not None
    assert manifest["tables"]["capability"][0]["rows"] == local[0]  # the local catalog too


def bucket_snippet() -> str:
    text = (REPO / "docs" / "warehouse.md").read_text(encoding="utf-8")
    for block in FENCE.finditer(text):
        if BUCKET_MARK in block.group(0).split("\n", 1)[0]:
            return block.group(2)
    raise AssertionError("docs/warehouse.md has no bucket snippet")


def test_an_analysts_duckdb_opens_the_runs_with_the_documented_snippet(
    s3: EmbeddedS3, home: tuple[Path, str]
) -> None:
    tmp_path, bucket = home
    made = subprocess.run(
        [str(REPO / "scripts" / "analyst-duckdb")], capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, f"cannot make DuckDB 1.5.5 + httpfs: {made.stderr[-2000:]}"
    python = str(REPO / made.stdout.strip())
    code = bucket_snippet().replace("s3://audit/lake/", f"s3://{bucket}/lake/")
    code = code.replace("/tmp/duckext", str(tmp_path / "duckext"))
    ran = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **s3.env()},
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    version = subprocess.run(
        [python, "-c", "import duckdb; print(duckdb.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == "1.5.5"
    rows = ast.literal_eval(ran.stdout.strip().splitlines()[-1])  # the snippet prints tuples
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        local = conn.execute(
            "SELECT channel, targets, reachable_share FROM reachability ORDER BY channel"
        ).fetchall()
    assert rows == local
    assert rows


def test_polars_scan_reads_capability_latest_from_the_bucket(
    s3: EmbeddedS3, home: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp_path, bucket = home
    for name, value in s3.env().items():  # the AWS chain, as an analyst's shell has it
        monkeypatch.setenv(name, value)
    latest = scan("capability_latest", root=f"s3://{bucket}/lake/").collect()
    from_bucket = scan("capability", root=f"s3://{bucket}/lake/", storage=StorageSettings())
    local = scan("capability_latest", root=tmp_path / "lake").collect()
    assert latest.height == local.height > 0
    assert latest.sort("contact_key", "channel").equals(local.sort("contact_key", "channel"))
    assert set(from_bucket.select("run_id").collect()["run_id"]) == {RUN_ID}


def mirror(s3: EmbeddedS3, bucket: str, prefix: str, target: Path) -> Path:
    """A local copy of the objects under `prefix`, as `aws s3 sync` would make one."""
    store = s3.store()
    for info in store.objects(bucket, prefix):
        local = target / info.key.removeprefix(prefix)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(store.get(bucket, info.key)[0])
    return target


def test_spark_reads_the_lake_through_a_local_mirror(
    s3: EmbeddedS3, home: tuple[Path, str]
) -> None:
    pytest.importorskip(
        "pyspark",
        reason="pyspark is an optional extra (pip install '.[spark]'); and its S3 connector "
        "(hadoop-aws) is on no registry reachable here, so it would read a local mirror",
    )
    if shutil.which("java") is None:
        pytest.skip("Spark needs a Java runtime (java on PATH)")
    from tests.e2e.test_lake_readers import spark_counts

    tmp_path, bucket = home
    lake = mirror(s3, bucket, "lake/", tmp_path / "mirror")
    counts = spark_counts(lake)
    expected = (
        pl.read_parquet(lake / "capability" / "**" / "*.parquet", hive_partitioning=True)
        .group_by("run_id", "channel", "status")
        .len()
        .sort("run_id", "channel", "status")
        .rows()
    )
    assert counts == [(str(a), str(b), str(c), n) for a, b, c, n in expected]
