"""The report's exports: per channel and routing, sorted by contact, the routing lists the same
as the `channel_order` view's (which the export no longer reads); the totals read from the
marts, the same as counted in `capability`."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.report.exports import write_exports
from pipeline.report.writer import run_totals
from pipeline.warehouse import open_warehouse, run_model

CHANNELS = ("MESSENGER", "RCS", "SMS", "VIBERBM", "WHATSAPP")
STATUSES = ("CAPABILITY_FULL", "CAPABILITY_PARTIAL", "NO_CAPABILITY", "NO_RESPONSE")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "w.duckdb", preference=("RCS", "SMS")) as connection:
        given(connection)
        yield connection


def given(conn: duckdb.DuckDBPyConnection) -> None:
    """Run 'x': 400 contacts (keys whose text order is not the order they are inserted in),
    each asked on a random set of channels with random statuses; run 'y' a few others."""
    pick = random.Random(7)
    rows = []
    for number in pick.sample(range(10_000), 400):
        key = f"C{number}"
        for channel in pick.sample(CHANNELS, pick.randint(1, len(CHANNELS))):
            contact_id = f"id-{number}" if number % 3 == 0 else None
            rows.append(("x", key, contact_id, channel, pick.choice(STATUSES), number * 0.001))
    rows += [("y", f"C{n}", None, "SMS", "CAPABILITY_FULL", 1.0) for n in range(5)]
    names = ["run_id", "contact_key", "contact_id", "channel", "status", "latency_seconds"]
    conn.register("given_rows", pa.table(list(zip(*rows, strict=True)), names=names))
    conn.execute(
        "INSERT INTO capability (run_id, contact_key, contact_id, channel, identity, status, "
        "channel_capabilities, checked_at, latency_seconds, reused) "
        "SELECT run_id, contact_key, contact_id, channel, '4670' || contact_key[2:], status, "
        "['TEXT'], TIMESTAMPTZ '2026-11-25 02:00:00+00', latency_seconds, false FROM given_rows"
    )
    conn.unregister("given_rows")


def rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql).fetchall()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_routing_export_lists_what_channel_order_lists_sorted_by_contact(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    channels = [r[0] for r in rows(conn, "SELECT DISTINCT channel FROM capability ORDER BY 1")]
    paths = list(write_exports(conn, "x", tmp_path / "out", channels, None))
    assert [p.relative_to(tmp_path / "out").as_posix() for p in paths] == [
        *(f"channels/{c}.{suffix}" for c in CHANNELS for suffix in ("csv", "parquet")),
        "routing.csv",
        "routing.parquet",
    ]
    expected = rows(
        conn,
        "SELECT contact_key, contact_id, first_choice, channels FROM channel_order "
        "WHERE run_id = 'x' ORDER BY contact_key",
    )
    assert len(expected) == 400
    assert {len(r[3]) for r in expected} >= {0, 1, 2, 3}  # unreachable ones and longer lists
    exported = pq.read_table(tmp_path / "out/routing.parquet")
    assert exported.column_names == ["contact_key", "contact_id", "first_channel", "channels"]
    assert [tuple(r.values()) for r in exported.to_pylist()] == expected
    assert read_csv(tmp_path / "out/routing.csv") == [
        ["contact_key", "contact_id", "first_channel", "channels"],
        *([key, cid or "", first or "", " ".join(ranked)] for key, cid, first, ranked in expected),
    ]
    # the export set the setting for its copies only
    assert rows(conn, "SELECT current_setting('preserve_insertion_order')") == [(False,)]


def test_channel_exports_hold_the_channels_targets_sorted_by_contact(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    list(write_exports(conn, "x", tmp_path, ["SMS", "WHATSAPP"], None))
    for channel in ("SMS", "WHATSAPP"):
        expected = rows(
            conn,
            "SELECT contact_key, status, latency_seconds FROM capability "
            f"WHERE run_id = 'x' AND channel = '{channel}' ORDER BY contact_key",
        )
        table = pq.read_table(tmp_path / f"channels/{channel}.parquet")
        got = [(r["contact_key"], r["status"], r["latency_seconds"]) for r in table.to_pylist()]
        assert got == expected
        lines = read_csv(tmp_path / f"channels/{channel}.csv")
        assert lines[0][:3] == ["contact_key", "contact_id", "identity"]
        assert [line[0] for line in lines[1:]] == [key for key, _, _ in expected]
        assert {line[5] for line in lines[1:]} == {"TEXT"}  # channel_capabilities, joined


def test_pseudonymised_routing_is_sorted_by_the_pseudonym(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    list(write_exports(conn, "x", tmp_path, ["SMS"], b"k" * 32))
    keys = [line[0] for line in read_csv(tmp_path / "routing.csv")[1:]]
    assert len(keys) == 400
    assert keys == sorted(keys)
    assert all(len(key) == 64 for key in keys)  # hex HMAC-SHA256, not the contact key


def test_totals_from_the_marts_are_the_counts_in_capability(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    def counted(run_id: str) -> dict[str, int]:
        (targets, contacts, reused) = rows(
            conn,
            "SELECT count(*), count(DISTINCT contact_key), count(*) FILTER (WHERE reused) "
            f"FROM capability WHERE run_id = '{run_id}'",
        )[0]
        return {"targets": targets, "contacts": contacts, "reused": reused}

    conn.execute("UPDATE capability SET reused = true WHERE contact_key LIKE '%7'")
    for model in ("20_reachability.sql", "60_routing.sql"):
        run_model(conn, "marts", model, "x")
    assert run_totals(conn, "x") == counted("x")
    assert counted("x")["contacts"] == 400
    assert counted("x")["reused"] > 0
    assert run_totals(conn, "y") == counted("y")  # not built: counted in capability
    conn.execute("DELETE FROM routing WHERE run_id = 'x'")  # built before routing existed
    assert run_totals(conn, "x") == counted("x")
