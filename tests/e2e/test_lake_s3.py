"""Publication to a bucket (`pipeline/lake/bucket.py`) against the real S3 server: files under
their final names, the views script, the manifest updated only with a conditional PUT, and
retired files deleted."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipeline.errors import WarehouseError
from pipeline.lake.bucket import CATALOG_SCRIPT, publish_to_bucket, remove_from_bucket
from pipeline.lake.catalog import MANIFEST, Published
from pipeline.settings import Settings
from pipeline.storage.client import ObjectStore
from pipeline.storage.embedded import EmbeddedS3
from pipeline.warehouse import render_view

PATHS = {
    "runs": "runs/run_id=r{n}/data_0.parquet",
    "capability": "capability/run_id=r{n}/data_0.parquet",
}


def lake_with(tmp_path: Path, runs: list[int]) -> tuple[Path, Published]:
    """A local lake with `runs` published (a runs row and three capability rows each)."""
    lake = tmp_path / "lake"
    files: dict[str, list[tuple[str, str, int]]] = {"runs": [], "capability": []}
    for n in runs:
        frames = {
            "runs": pl.DataFrame({"started_at": [n], "kind": ["full"]}),
            "capability": pl.DataFrame(
                {"contact_key": list("abc"), "contact_id": list("abc"), "channel": ["SMS"] * 3}
                | {"status": ["CAPABILITY_FULL"] * 3}
            ),
        }
        for table, frame in frames.items():
            path = PATHS[table].format(n=n)
            (lake / path).parent.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(lake / path)
            files[table].append((f"r{n}", path, frame.height))
    return lake, Published(files, f"r{runs[-1]}")


@pytest.fixture
def configured(
    s3: EmbeddedS3, bucket: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    return settings.replace("warehouse", lake_url=f"s3://{bucket}/lake/").replace(
        "storage", endpoint_url=s3.endpoint
    )


def test_the_bucket_shows_what_the_catalog_lists(
    s3: EmbeddedS3, bucket: str, configured: Settings, tmp_path: Path
) -> None:
    lake, current = lake_with(tmp_path, [1, 2])
    order = render_view("channel_order")
    assert publish_to_bucket(configured, current, order, local_lake=lake) == 4
    assert publish_to_bucket(configured, current, order, local_lake=lake) == 0  # all there
    assert publish_to_bucket(configured, current, order, local_lake=lake, fresh={"r2"}) == 2
    store = s3.store()
    script = store.get(bucket, f"lake/{CATALOG_SCRIPT}")[0].decode()
    # The script run against a local copy of the bucket (DuckDB 2.0 here has no httpfs).
    mirror = tmp_path / "mirror"
    for info in store.objects(bucket, "lake/"):
        (mirror / info.key).parent.mkdir(parents=True, exist_ok=True)
        (mirror / info.key).write_bytes(store.get(bucket, info.key)[0])
    with duckdb.connect() as conn:
        conn.execute(script.replace(f"s3://{bucket}/", f"{mirror}/"))
        assert conn.execute("SELECT count(*) FROM capability").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM channel_order").fetchone() == (6,)
        assert conn.execute("SELECT newest_run_id FROM capaudit_catalog").fetchone() == ("r2",)
    remove_from_bucket(configured, [PATHS["capability"].format(n=1)])
    assert store.head(bucket, f"lake/{PATHS['capability'].format(n=1)}") is None


def test_a_manifest_changed_meanwhile_is_not_overwritten(
    s3: EmbeddedS3,
    bucket: str,
    configured: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake, current = lake_with(tmp_path, [1])
    order = render_view("channel_order")
    publish_to_bucket(configured, current, order, local_lake=lake)
    original_put = ObjectStore.put

    def someone_else_publishes(
        self: ObjectStore, bucket_name: str, key: str, body: bytes, *, if_match: str | None = None
    ) -> str:
        if key.endswith(CATALOG_SCRIPT):  # between our read of the manifest and our write
            s3.store().put(bucket_name, f"lake/{MANIFEST}", b'{"tables": {}}')
        return original_put(self, bucket_name, key, body, if_match=if_match)

    monkeypatch.setattr(ObjectStore, "put", someone_else_publishes)
    with pytest.raises(WarehouseError, match="another job"):
        publish_to_bucket(configured, current, order, local_lake=lake)
    monkeypatch.undo()
    assert s3.store().get(bucket, f"lake/{MANIFEST}")[0] == b'{"tables": {}}'
