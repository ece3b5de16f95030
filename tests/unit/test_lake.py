"""Publication on a real state database and real files, without a live run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from pipeline.cli import main
from pipeline.errors import UsageError, WarehouseError
from pipeline.lake import scan
from pipeline.lake.partitions import early_dir, stage_early
from pipeline.lake.publish import publish_runs
from pipeline.settings import Settings
from pipeline.warehouse import open_warehouse
from tests.conftest import add_targets

T0 = datetime(2026, 11, 20, 2, tzinfo=UTC)


@pytest.fixture
def lake_settings(tmp_path: Path) -> Settings:
    return Settings().replace("warehouse", path=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def state(lake_settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(lake_settings.warehouse.state) as conn:
        yield conn


def add_run(conn: duckdb.DuckDBPyConnection, run_id: str, night: int, status: str) -> None:
    """A run whose two contacts got `status` on SMS, checked that night."""
    at = T0 + timedelta(days=night)
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status) VALUES ($r, $t, 'succeeded')",
        {"r": run_id, "t": at},
    )
    conn.execute(
        "INSERT INTO capability (run_id, contact_key, channel, identity, status, checked_at, "
        "reused) SELECT $r, 'C' || i, 'SMS', '4670000000' || i, $s, $t, false "
        "FROM range(2) r(i)",
        {"r": run_id, "s": status, "t": at},
    )


def catalog_frame(settings: Settings, sql: str) -> pl.DataFrame:
    with duckdb.connect(str(settings.warehouse.catalog), read_only=True) as conn:
        return conn.sql(sql).pl()


def test_publishing_again_changes_nothing(
    state: duckdb.DuckDBPyConnection, lake_settings: Settings
) -> None:
    add_run(state, "n1", 0, "NO_CAPABILITY")
    add_run(state, "n2", 1, "CAPABILITY_FULL")
    publish_runs(state, lake_settings, ["n1", "n2"])
    first = catalog_frame(lake_settings, "SELECT * FROM capability ORDER BY ALL")
    publish_runs(state, lake_settings, ["n2"])
    again = catalog_frame(lake_settings, "SELECT * FROM capability ORDER BY ALL")
    assert_frame_equal(again, first)
    assert first.height == 4
    latest = scan("capability_latest", root=lake_settings.warehouse.lake).collect()
    assert latest.sort("contact_key")["status"].to_list() == ["CAPABILITY_FULL"] * 2
    assert not list(lake_settings.warehouse.catalog.parent.glob("warehouse.duckdb.new-*"))


def test_targets_written_early_are_moved_into_place_only_while_unchanged(
    state: duckdb.DuckDBPyConnection, lake_settings: Settings
) -> None:
    lake = lake_settings.warehouse.lake
    for night, run_id in enumerate(("kept", "changed")):
        add_run(state, run_id, night, "CAPABILITY_FULL")
        add_targets(
            state,
            f"SELECT '{run_id}' AS run_id, 'C' || i AS contact_key, 'SMS' AS channel, "
            "'4670000000' || i AS identity, 'in.csv' AS source, i AS row_number FROM range(3) r(i)",
        )
        stage_early(state, lake, run_id)
    early = early_dir(lake, "kept") / "targets/run_id=kept/data_0.parquet"
    written = early.stat().st_ino
    state.execute("DELETE FROM targets WHERE run_id = 'changed' AND row_number = 0")
    publish_runs(state, lake_settings, ["kept", "changed"])
    assert (lake / "targets/run_id=kept/data_0.parquet").stat().st_ino == written  # moved
    published = catalog_frame(
        lake_settings, "SELECT run_id, count(*) AS n FROM targets GROUP BY ALL ORDER BY ALL"
    )
    assert published.rows() == [("changed", 2), ("kept", 3)]  # written again: it changed
    assert not (lake / "_early").exists()
    assert state.execute("SELECT count(*) FROM lake_early").fetchone() == (0,)


def test_a_table_added_to_the_state_is_published_and_an_absent_one_skipped(
    state: duckdb.DuckDBPyConnection, lake_settings: Settings
) -> None:
    add_run(state, "n1", 0, "CAPABILITY_FULL")
    # `routing` and `estimates` are in the list of published tables; this state has the first,
    # of its own shape, and not the second.
    state.execute("DROP TABLE IF EXISTS routing")
    state.execute("DROP TABLE IF EXISTS estimates")
    state.execute("CREATE TABLE routing (run_id VARCHAR, first_channel VARCHAR, contacts BIGINT)")
    state.execute("INSERT INTO routing VALUES ('n1', 'SMS', 2), ('other', 'RCS', 9)")
    publish_runs(state, lake_settings, ["n1"])
    routing = catalog_frame(lake_settings, "SELECT * FROM routing")
    assert routing.rows() == [("n1", "SMS", 2)]
    with pytest.raises(WarehouseError, match="no published partition of estimates"):
        scan("estimates", root=lake_settings.warehouse.lake)


def test_bad_requests_are_refused_with_the_reason(
    state: duckdb.DuckDBPyConnection, lake_settings: Settings
) -> None:
    with pytest.raises(UsageError, match="there is no run nope"):
        publish_runs(state, lake_settings, ["nope"])
    add_run(state, "../escape", 0, "CAPABILITY_FULL")
    with pytest.raises(WarehouseError, match="cannot name a lake partition"):
        publish_runs(state, lake_settings, ["../escape"])
    with pytest.raises(WarehouseError, match="no published run yet"):
        scan("capability", root=lake_settings.warehouse.lake)
    with pytest.raises(WarehouseError, match="no published table 'nothing'"):
        scan("nothing", root=lake_settings.warehouse.lake)


def test_the_catalog_is_never_opened_as_working_state(
    state: duckdb.DuckDBPyConnection, lake_settings: Settings
) -> None:
    add_run(state, "n1", 0, "CAPABILITY_FULL")
    publish_runs(state, lake_settings, ["n1"])
    with (
        pytest.raises(WarehouseError, match="is the published catalog"),
        open_warehouse(lake_settings.warehouse.catalog, lock=False),
    ):
        pass


def test_publish_command_exits_2_for_an_unknown_run(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[warehouse]\npath = "{tmp_path}/w.duckdb"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["publish", "--config", str(config), "--run-id", "nope"])
    assert result.exit_code == 2
    assert "there is no run nope" in result.output
    assert (tmp_path / "state.duckdb").exists()  # the working state sits beside the catalog


def add_answer(conn: duckdb.DuckDBPyConnection, run_id: str, sub_code: str | None) -> None:
    """A request of the run and its callback."""
    conn.execute(
        "INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, "
        "planned_at) VALUES ($r, 'q-' || $r, 'C0', '{}', ['SMS'], 'accepted', $t)",
        {"r": run_id, "t": T0},
    )
    columns = "request_id, channel, identity, reason_code, received_at, deliveries"
    values = "'q-' || $r, 'SMS', '46700000000', 'RECIPIENT_NOT_REACHABLE', $t, 1"
    if sub_code is not None:
        columns, values = f"{columns}, reason_sub_code", f"{values}, $s"
    conn.execute(
        f"INSERT INTO notifications ({columns}) VALUES ({values})",
        {"r": run_id, "t": T0} | ({"s": sub_code} if sub_code is not None else {}),
    )


def test_partitions_published_before_a_column_was_added_still_read(
    state: duckdb.DuckDBPyConnection, lake_settings: Settings
) -> None:
    add_run(state, "before", 0, "NO_CAPABILITY")
    # Published by a version whose notifications had no reason_sub_code / reason_channel_code.
    state.execute("ALTER TABLE notifications DROP COLUMN reason_sub_code")
    state.execute("ALTER TABLE notifications DROP COLUMN reason_channel_code")
    add_answer(state, "before", None)
    publish_runs(state, lake_settings, ["before"])
    state.execute("ALTER TABLE notifications ADD COLUMN reason_sub_code VARCHAR")
    state.execute("ALTER TABLE notifications ADD COLUMN reason_channel_code VARCHAR")
    add_run(state, "after", 1, "NO_CAPABILITY")
    add_answer(state, "after", "INACTIVE_SENDER")
    publish_runs(state, lake_settings, ["after"])
    expected = [("after", "INACTIVE_SENDER", None), ("before", None, None)]
    query = "SELECT run_id, reason_sub_code, reason_channel_code FROM notifications ORDER BY 1"
    assert catalog_frame(lake_settings, query).rows() == expected
    notifications = scan("notifications", root=lake_settings.warehouse.lake).collect()
    picked = notifications.select("run_id", "reason_sub_code", "reason_channel_code")
    assert picked.sort("run_id").rows() == expected
