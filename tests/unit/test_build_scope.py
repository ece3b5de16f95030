"""A build after an earlier one redoes only the contacts with notifications since
(pipeline/build_scope.py): what it leaves must be exactly what a whole build leaves, and any
other change to what the build reads must make it a whole build."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline import steps
from pipeline.landing.correlate import new_batch
from pipeline.warehouse import open_warehouse
from tests.conftest import MART_TABLES, add_targets

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
CHANNELS = ("RCS", "SMS", "WHATSAPP")
STATUSES = ("CAPABILITY_FULL", "CAPABILITY_PARTIAL", "NO_CAPABILITY", "CAPABILITY_UNKNOWN")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        yield connection


def plan_a_run(conn: duckdb.DuckDBPyConnection, rng: random.Random, contacts: int) -> list[tuple]:
    """Last night's answers, tonight's targets (some reusing last night's) and requests (some
    failed, some re-queried, some by contact id); returns tonight's possible notifications
    (request, channel, identity, status, reason, event offset), shuffled."""
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status) VALUES "
        "('prev', $t - INTERVAL 1 DAY, 'succeeded'), ('now', $t, 'running')",
        {"t": T0},
    )
    notifications = []
    for i in range(contacts):
        key, phone = f"c{i}", f"4670{i:07d}"
        channels = rng.sample(CHANNELS, rng.randint(1, 3))
        for channel in channels:
            conn.execute(
                "INSERT INTO capability (run_id, contact_key, channel, identity, status, "
                "checked_at, reused) VALUES ('prev', ?, ?, ?, ?, ?, false)",
                [key, channel, phone, rng.choice(STATUSES), T0 - timedelta(days=1)],
            )
            reuse = rng.random() < 0.1
            add_targets(
                conn,
                "SELECT 'now' AS run_id, ?::VARCHAR AS contact_key, ?::VARCHAR AS channel, "
                "?::VARCHAR AS identity, 'in.csv' AS source, ?::BIGINT AS row_number, "
                "'SE' AS country, ?::VARCHAR AS reuse_run_id",
                [key, channel, phone, i, "prev" if reuse else None],
            )
        by_contact_id = rng.random() < 0.1
        body = (
            json.dumps({"recipient": {"contact_id": key}}, separators=(",", ":"))
            if by_contact_id
            else "{}"
        )
        for suffix in ("a", "b") if rng.random() < 0.15 else ("a",):
            accepted = rng.random() < 0.9
            conn.execute(
                "INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, "
                "error, planned_at, accepted_at) VALUES ('now', ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    f"r{i}{suffix}",
                    key,
                    body,
                    sorted(channels),
                    "accepted" if accepted else "failed",
                    None if accepted else "400 INVALID_ARGUMENT",
                    T0,
                    T0 if accepted else None,
                ],
            )
            for channel in (*channels, ""):
                identities = (phone, f"4671{i:07d}") if by_contact_id else (phone,)
                for identity in identities if channel else ("",):
                    if rng.random() < (0.05 if channel == "" else 0.8):
                        reason = "CONTACT_NOT_FOUND" if channel == "" else None
                        status = "NO_CAPABILITY" if channel == "" else rng.choice(STATUSES)
                        offset = rng.randint(1, 60)  # arrival order is not event order
                        notifications.append(
                            (f"r{i}{suffix}", channel, identity, status, reason, offset)
                        )
    rng.shuffle(notifications)
    return notifications


def land(conn: duckdb.DuckDBPyConnection, notifications: list[tuple]) -> None:
    """Insert notifications as an ingest does: one batch number for them all."""
    batch = new_batch(conn)
    for request, channel, identity, status, reason, offset in notifications:
        at = T0 + timedelta(seconds=offset)
        conn.execute(
            "INSERT INTO notifications (request_id, channel, identity, capability_status, "
            "reason_code, channel_capabilities, event_time, received_at, deliveries, batch) "
            "VALUES (?, ?, ?, ?, ?, ['TEXT'], ?, ?, 1, ?)",
            [request, channel, identity, status, reason, at, at + timedelta(seconds=2), batch],
        )


def marts(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    return {t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in MART_TABLES}


def rebuilt(caplog: pytest.LogCaptureFixture) -> str:
    """How many contacts the last build redid ('all': a whole build), from its log line."""
    (line,) = [r.getMessage() for r in caplog.records if "run built" in r.getMessage()][-1:]
    caplog.clear()
    return line.split("contacts_rebuilt=")[1].split()[0]


def whole_build(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[object, ...]]]:
    conn.execute("DELETE FROM build_state")  # no earlier build known: a whole one
    steps.build(conn, "now")
    return marts(conn)


def build_as_a_whole_build_would(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> str:
    """Build the run, check it left what a whole build leaves, and say how many contacts it
    redid ('all': it was a whole build)."""
    caplog.clear()
    steps.build(conn, "now")
    redone = rebuilt(caplog)
    after = marts(conn)
    assert whole_build(conn) == after
    return redone


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_build_after_more_notifications_equals_a_whole_build(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    rng = random.Random(seed)
    notifications = plan_a_run(conn, rng, contacts=120)
    steps.build(conn, "now")  # before any callback: everything NO_RESPONSE or REQUEST_FAILED
    assert rebuilt(caplog) == "all"
    cuts = sorted(rng.sample(range(1, len(notifications)), 3))
    for start, end in zip([0, *cuts], [*cuts, len(notifications)], strict=True):
        land(conn, notifications[start:end])
        scoped = build_as_a_whole_build_would(conn, caplog)
        asked = {request for request, *_ in notifications[start:end]}
        assert 0 < int(scoped) <= len(asked)


def test_nothing_new_rebuilds_no_contact_and_changes_nothing(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    land(conn, plan_a_run(conn, random.Random(4), contacts=30))
    steps.build(conn, "now")
    first = marts(conn)
    caplog.clear()
    steps.build(conn, "now")
    assert rebuilt(caplog) == "0"
    assert marts(conn) == first


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE targets SET country = 'NO' WHERE contact_id = 'c3'",
        "INSERT INTO late_answers VALUES ('now', 'prev', 'c4', 'SMS', NULL, 'CAPABILITY_FULL', "
        "NULL, NULL, 'r', now())",
        "DELETE FROM capability WHERE run_id = 'now' AND contact_key = 'c5'",
        # a run whose answers are reused is built again
        "UPDATE build_state SET built_at = built_at + INTERVAL 1 SECOND WHERE run_id = 'prev'",
    ],
)
def test_any_other_change_makes_a_whole_build(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    notifications = plan_a_run(conn, random.Random(5), contacts=30)
    conn.execute("UPDATE targets SET reuse_run_id = 'prev' WHERE contact_id = 'c6'")
    conn.execute("INSERT INTO build_state VALUES ('prev', 'x', 0, 0, 1.0, now() - INTERVAL 1 DAY)")
    land(conn, notifications[:20])
    steps.build(conn, "now")
    land(conn, notifications[20:])
    conn.execute(change)
    assert build_as_a_whole_build_would(conn, caplog) == "all"


@pytest.mark.parametrize(
    "change",
    [
        # a re-query
        "INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, "
        "planned_at, accepted_at, requery_of) SELECT 'now', 'again', contact_key, body, "
        "channels, 'accepted', now(), now(), request_id FROM requests WHERE request_id = 'r1a'",
        # an outcome folded in
        "UPDATE requests SET state = 'failed', error = 'x', accepted_at = NULL "
        "WHERE request_id = 'r2a'",
        "DELETE FROM requests WHERE request_id = 'r3a'",
    ],
)
def test_a_request_added_changed_or_gone_rebuilds_its_contact(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    land(conn, plan_a_run(conn, random.Random(8), contacts=30))
    steps.build(conn, "now")
    conn.execute(change)
    assert build_as_a_whole_build_would(conn, caplog) == "1"


def test_a_build_that_fails_halfway_leaves_the_next_one_whole(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    notifications = plan_a_run(conn, random.Random(6), contacts=30)
    land(conn, notifications[:20])
    steps.build(conn, "now")
    land(conn, notifications[20:])
    conn.execute("ALTER TABLE reasons RENAME TO reasons_away")  # a mart after capability fails
    with pytest.raises(Exception, match="reasons"):
        steps.build(conn, "now")
    conn.execute("ALTER TABLE reasons_away RENAME TO reasons")
    caplog.clear()
    steps.build(conn, "now")
    assert rebuilt(caplog) == "all"


def test_a_notification_inserted_without_a_batch_is_still_built(
    conn: duckdb.DuckDBPyConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    plan_a_run(conn, random.Random(7), contacts=5)
    conn.execute("UPDATE targets SET reuse_run_id = NULL")
    steps.build(conn, "now")
    conn.execute(
        "INSERT INTO notifications (request_id, channel, identity, capability_status, "
        "event_time, received_at, deliveries) "
        "SELECT 'r0a', channel, identity, 'CAPABILITY_FULL', now(), now(), 1 "
        "FROM targets WHERE contact_id = 'c0' LIMIT 1"
    )
    assert build_as_a_whole_build_would(conn, caplog) == "1"
    assert conn.execute(
        "SELECT count(*) FROM capability WHERE run_id = 'now' AND request_id = 'r0a'"
    ).fetchone() == (1,)
