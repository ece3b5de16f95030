"""The working state's schema across versions: what an earlier version stored still reads the same."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline.warehouse import open_warehouse

# `targets` as earlier versions stored it: the key, the action and the file name as strings.
EARLIER_TARGETS = """
CREATE TABLE targets (
    run_id VARCHAR NOT NULL, contact_key VARCHAR NOT NULL, contact_id VARCHAR,
    channel VARCHAR NOT NULL, identity VARCHAR, source VARCHAR NOT NULL,
    row_number BIGINT NOT NULL, action VARCHAR NOT NULL DEFAULT 'query',
    reuse_run_id VARCHAR, country VARCHAR
)
"""
EARLIER_ROWS = [
    # run_id, contact_key, contact_id, channel, identity, source, row_number, action, reuse, country
    ("mon", "46701", None, "SMS", "46701", "b.csv", 2, "query", None, "SE"),
    ("mon", "c7", "c7", "RCS", None, "a.csv", 9, "query", None, "unknown"),
    ("tue", "46701", None, "SMS", "46701", "b.csv", 2, "reuse", "mon", "SE"),
    ("tue", "c7", "c7", "WHATSAPP", "46702", "c.csv", 3, "query", None, "SE"),
    # a key not made by loading (written by hand): kept, as the contact id
    ("tue", "k9", None, "SMS", "46703", "c.csv", 4, "query", None, "SE"),
]
COLUMNS = (
    "run_id, contact_key, contact_id, channel, identity, source, row_number, action, "
    "reuse_run_id, country"
)


def test_targets_stored_by_an_earlier_version_read_the_same_after_the_upgrade(
    tmp_path: Path,
) -> None:
    database = tmp_path / "state.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute(EARLIER_TARGETS)
        conn.executemany("INSERT INTO targets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", EARLIER_ROWS)
    for _ in range(2):  # opening again changes nothing
        with open_warehouse(database) as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM targets_with_source ORDER BY run_id, row_number"
            ).fetchall()
            files = conn.execute(
                "SELECT run_id, source, file_index FROM target_files ORDER BY ALL"
            ).fetchall()
        kept = [(*r[:2], r[1], *r[3:]) if r[1] == "k9" else r for r in EARLIER_ROWS]
        assert rows == sorted(kept, key=lambda r: (r[0], r[6]))
        assert files == [
            ("mon", "a.csv", 0),
            ("mon", "b.csv", 1),
            ("tue", "b.csv", 0),
            ("tue", "c.csv", 1),
        ]


def test_notifications_stored_by_an_earlier_version_gain_the_reason_columns(
    tmp_path: Path,
) -> None:
    database = tmp_path / "state.duckdb"
    with open_warehouse(database) as conn:  # then made what an earlier version left
        for table in ("notifications", "unmatched_notifications"):
            for column in ("reason_sub_code", "reason_channel_code"):
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("DELETE FROM migrations")
        conn.execute(
            "INSERT INTO notifications (request_id, channel, identity, received_at, deliveries) "
            "VALUES ('r1', 'CHANNEL_UNSPECIFIED', '', now(), 1), ('r2', 'SMS', '4670', now(), 1)"
        )
    for _ in range(2):  # opening again changes nothing
        with open_warehouse(database) as conn:
            columns = [str(row[0]) for row in conn.execute("DESCRIBE notifications").fetchall()]
            rows = conn.execute(
                "SELECT request_id, channel, reason_sub_code FROM notifications ORDER BY ALL"
            ).fetchall()
        assert columns[-2:] == ["reason_sub_code", "reason_channel_code"]
        # Sinch's whole-request channel, as ingestion now reads it.
        assert rows == [("r1", "", None), ("r2", "SMS", None)]
