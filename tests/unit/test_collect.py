"""collect: callbacks ingested as they land; outstanding targets struck off, never miscounted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest

from pipeline import steps
from pipeline.landing.segments import CLOSED_SUFFIX, KIND_CAPABILITY, encode_line
from pipeline.settings import Settings
from pipeline.warehouse import open_warehouse
from tests.conftest import add_targets

CONTACTS = ("A", "B", "C")
CHANNELS = ("SMS", "RCS")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        now = datetime.now(UTC)
        connection.execute(
            "INSERT INTO runs (run_id, started_at, status) VALUES ('r', ?, 'running')", [now]
        )
        for row, key in enumerate(CONTACTS):
            for channel in CHANNELS:
                add_targets(
                    connection,
                    "SELECT 'r' AS run_id, ?::VARCHAR AS contact_key, ?::VARCHAR AS channel, "
                    "?::VARCHAR AS identity, 'in.csv' AS source, ?::BIGINT AS row_number",
                    [key, channel, f"4670000000{row}", row + 2],
                )
            connection.execute(
                "INSERT INTO requests (run_id, request_id, contact_key, body, "
                "channels, state, planned_at, accepted_at) "
                "VALUES ('r', ?, ?, '{}', ?, 'accepted', ?, ?)",
                [f"q{key}", key, list(CHANNELS), now, now],
            )
        yield connection


def land(landing: Path, name: str, answers: list[tuple[str, str]]) -> None:
    """A closed segment holding one callback per (request, channel); '' = the whole request."""
    lines = b""
    for request, channel in answers:
        body = {
            "capability_notification": {
                "request_id": request,
                "channel": channel,
                "identity": "46700000000",
                "capability_status": "NO_CAPABILITY",
            }
        }
        lines += encode_line(
            orjson.dumps(body), f"{request}-{channel}", "w", KIND_CAPABILITY, datetime.now(UTC)
        )
    landing.mkdir(exist_ok=True)
    (landing / f"w-{name}{CLOSED_SUFFIX}").write_bytes(lines)


def notify(conn: duckdb.DuckDBPyConnection, *answers: tuple[str, str]) -> None:
    for request, channel in answers:
        conn.execute(
            "INSERT INTO notifications (request_id, channel, identity, received_at, "
            "deliveries) VALUES (?, ?, '', now(), 1)",
            [request, channel],
        )


def test_struck_off_count_equals_the_full_count(conn: duckdb.DuckDBPyConnection) -> None:
    tracker = steps.OutstandingTargets(conn, "r")
    assert tracker.count(answers_landed=False, requests_changed=False) == 6
    notify(conn, ("qA", "SMS"), ("qB", ""), ("qX", "RCS"))
    assert tracker.count(answers_landed=False, requests_changed=False) == 6  # not looked yet
    assert tracker.count(answers_landed=True, requests_changed=False) == 3
    assert steps.outstanding_targets(conn, "r") == 3
    # A re-query of C's SMS: C's SMS now waits for the new request, so the count starts over.
    notify(conn, ("qC", "SMS"))
    conn.execute(
        "INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, "
        "planned_at, accepted_at) VALUES ('r', 'qC2', 'C', '{}', ['SMS'], 'accepted', "
        "now(), now())"
    )
    assert tracker.count(answers_landed=True, requests_changed=True) == 3
    assert steps.outstanding_targets(conn, "r") == 3
    tracker.close()


@pytest.mark.timed  # under 10 s
def test_collect_ingests_callbacks_as_they_land_until_all_answered(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    land(landing, "000001", [("qA", "SMS"), ("qA", "RCS"), ("qB", "")])
    settings = Settings().replace("receiver", landing_dir=str(landing))
    settings = settings.replace("collect", poll_interval_seconds=0.05)

    async def main() -> steps.CollectSummary:
        async def later() -> None:
            await asyncio.sleep(0.3)
            land(landing, "000002", [("qC", "SMS"), ("qC", "RCS")])

        arrival = asyncio.create_task(later())
        summary = await steps.collect(
            conn, "r", settings, deadline_seconds=30, stop=asyncio.Event(), console=False
        )
        await arrival
        return summary

    started = time.monotonic()
    summary = asyncio.run(main())
    assert summary.outstanding == 0
    assert not summary.deadline_passed
    assert summary.ingested.notifications_new == 5
    assert time.monotonic() - started < 10


def test_collect_stops_at_the_deadline_with_what_landed(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    land(landing, "000001", [("qA", "SMS")])
    settings = Settings().replace("receiver", landing_dir=str(landing))
    summary = asyncio.run(
        steps.collect(
            conn, "r", settings, deadline_seconds=0.5, stop=asyncio.Event(), console=False
        )
    )
    assert summary.deadline_passed
    assert summary.outstanding == steps.outstanding_targets(conn, "r") == 5


def collect_for(
    conn: duckdb.DuckDBPyConnection, landing: Path, seconds: float, later: list[str]
) -> steps.CollectSummary:
    """Collect until `seconds` after the requests were accepted; at 0.3 s each contact in
    `later` has its SMS answered."""
    settings = Settings().replace("receiver", landing_dir=str(landing))
    settings = settings.replace("collect", poll_interval_seconds=0.05)

    async def main() -> steps.CollectSummary:
        async def arrive() -> None:
            await asyncio.sleep(0.3)
            land(landing, "000002", [(f"q{key}", "SMS") for key in later])

        arrival = asyncio.create_task(arrive())
        summary = await steps.collect(
            conn, "r", settings, deadline_seconds=seconds, stop=asyncio.Event(), console=False
        )
        await arrival
        return summary

    return asyncio.run(main())


@pytest.mark.timed  # builds within a 3 s deadline
def test_collect_builds_while_waiting_so_the_build_after_redoes_only_the_latest(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.steps")
    landing = tmp_path / "landing"
    land(landing, "000001", [("qA", "SMS"), ("qA", "RCS")])
    conn.execute("UPDATE requests SET accepted_at = now()")
    summary = collect_for(conn, landing, 3.0, later=["B"])
    assert summary.deadline_passed
    assert summary.provisional_builds >= 1
    caplog.clear()
    steps.build(conn, "r")
    (built,) = [r.getMessage() for r in caplog.records if "run built" in r.getMessage()]
    # B's answer landed after the first provisional build: rebuilt now, unless a second one
    # (due when building took under a tenth of the time waited) already read it.
    assert built.endswith(("contacts_rebuilt=1", "contacts_rebuilt=0"))
    statuses = dict(
        conn.execute(
            "SELECT contact_key || channel, status FROM capability WHERE run_id = 'r'"
        ).fetchall()
    )
    assert statuses == {
        "ASMS": "NO_CAPABILITY",
        "ARCS": "NO_CAPABILITY",
        "BSMS": "NO_CAPABILITY",
        "BRCS": "NO_RESPONSE",
        "CSMS": "NO_RESPONSE",
        "CRCS": "NO_RESPONSE",
    }


def test_no_provisional_build_when_it_would_not_end_well_before_the_deadline(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    land(landing, "000001", [("qA", "SMS")])
    steps.build(conn, "r")
    conn.execute("UPDATE build_state SET seconds = 60")  # the run's last build took a minute
    conn.execute("UPDATE requests SET accepted_at = now()")
    summary = collect_for(conn, landing, 1.0, later=["B"])
    assert summary.deadline_passed
    assert summary.provisional_builds == 0


@pytest.mark.timed  # under 5 s
def test_a_stop_interrupts_a_provisional_build(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def endless_build(cursor: duckdb.DuckDBPyConnection, run_id: str) -> None:
        cursor.execute("SELECT count(*) FROM range(1000000000000)").fetchall()

    monkeypatch.setattr(steps, "build_models", endless_build)
    landing = tmp_path / "landing"
    land(landing, "000001", [("qA", "SMS")])
    settings = Settings().replace("receiver", landing_dir=str(landing))

    async def main() -> steps.CollectSummary:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.5, stop.set)
        return await steps.collect(
            conn, "r", settings, deadline_seconds=600, stop=stop, console=False
        )

    started = time.monotonic()
    summary = asyncio.run(main())
    assert time.monotonic() - started < 5
    assert summary.provisional_builds == 0  # interrupted: not counted
