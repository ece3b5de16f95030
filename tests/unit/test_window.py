"""Nightly windows and late answers as library functions on a real DuckDB warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline import ledger, steps
from pipeline.errors import UsageError
from pipeline.refusal import idle_window_problem
from pipeline.settings import Settings
from pipeline.submit.backlog import expected_callback_rate
from pipeline.warehouse import open_warehouse
from pipeline.window import (
    WindowSpec,
    budget,
    collect_deadline,
    fit_window,
    parse_duration,
    reserve_for,
    window_spec,
)
from tests.conftest import add_targets

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "w.duckdb") as connection:
        yield connection


def targets(conn: duckdb.DuckDBPyConnection, run: str, keys: list[str]) -> None:
    for number, key in enumerate(keys):
        add_targets(
            conn,
            "SELECT ?::VARCHAR AS run_id, ?::VARCHAR AS contact_key, 'SMS' AS channel, "
            "?::VARCHAR AS identity, 'in.csv' AS source, ?::BIGINT AS row_number",
            [run, key, f"4670000{number:04d}", number],
        )


def answer(
    conn: duckdb.DuckDBPyConnection,
    run: str,
    key: str,
    age_days: float,
    status: str = "CAPABILITY_FULL",
    reason: str | None = None,
) -> None:
    number = int(key[1:])
    conn.execute(
        "INSERT INTO capability (run_id, contact_key, channel, identity, status, reason_code, "
        "checked_at, reused) VALUES (?, ?, 'SMS', ?, ?, ?, ?, false)",
        [run, key, f"4670000{number:04d}", status, reason, NOW - timedelta(days=age_days)],
    )


def actions(conn: duckdb.DuckDBPyConnection, run: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT contact_key, action FROM targets WHERE run_id = ? ORDER BY 1", [run]
    ).fetchall()
    return dict(rows)


def test_the_window_asks_never_answered_then_oldest_stale_then_transient(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    keys = [f"c{i}" for i in range(8)]
    targets(conn, "night", keys)
    answer(conn, "old", "c0", age_days=9)  # stale
    answer(conn, "old", "c1", age_days=30)  # stalest
    answer(conn, "old", "c2", age_days=1)  # fresh: reused
    answer(conn, "old", "c3", age_days=2, status="CAPABILITY_UNKNOWN", reason="RATE_LIMITED")
    answer(conn, "old", "c4", age_days=1, status="NO_RESPONSE")  # not an answer: never answered
    # c5, c6, c7: never answered
    ledger.mark_reuse(conn, "night", settings.freshness, refresh=False, now=NOW)
    spec = WindowSpec(seconds=60, ends_at=NOW.timestamp() + 60, reserve_seconds=10)
    plan = fit_window(conn, "night", spec, rate=0.1, query_rate=100, now=NOW)  # 5 callbacks
    assert plan.budget_targets == 5
    assert plan.by_priority == {"never_answered": 4, "past_ttl": 1}
    assert actions(conn, "night") == {
        "c0": "reuse",  # stale, but c1 is older: keeps its last answer tonight
        "c1": "query",
        "c2": "reuse",
        "c3": "reuse",
        "c4": "query",
        "c5": "query",
        "c6": "query",
        "c7": "query",
    }
    assert (plan.reused_stale, plan.deferred) == (2, 0)


def test_what_does_not_fit_and_was_never_answered_waits(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    targets(conn, "night", [f"c{i}" for i in range(10)])
    ledger.mark_reuse(conn, "night", settings.freshness, refresh=False, now=NOW)
    spec = WindowSpec(seconds=100, ends_at=NOW.timestamp() + 100, reserve_seconds=0)
    plan = fit_window(conn, "night", spec, rate=0.03, query_rate=100, now=NOW)
    assert plan.budget_targets == 3
    assert actions(conn, "night") == {"c0": "query", "c1": "query", "c2": "query"}  # input order
    assert plan.deferred == 7


def test_transient_answers_come_last(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    targets(conn, "night", ["c0", "c1"])
    answer(conn, "old", "c0", age_days=1, status="CAPABILITY_UNKNOWN", reason="INTERNAL_ERROR")
    answer(conn, "old", "c1", age_days=8)
    ledger.mark_reuse(conn, "night", settings.freshness, refresh=False, now=NOW)
    spec = WindowSpec(seconds=10, ends_at=NOW.timestamp() + 10, reserve_seconds=0)
    fit_window(conn, "night", spec, rate=0.1, query_rate=100, now=NOW)
    assert actions(conn, "night") == {"c0": "reuse", "c1": "query"}


def test_durations_budget_and_deadline() -> None:
    assert parse_duration("6h") == 21600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    for bad in ("6 parsecs", "0", "h"):
        with pytest.raises(UsageError, match="--window"):
            parse_duration(bad)
    spec = WindowSpec(seconds=100, ends_at=1000.0, reserve_seconds=10)
    assert budget(spec, rate=2.0, now=900.0) == 180
    assert budget(spec, rate=2.0, now=995.0) == 0
    assert collect_deadline(spec, last_acceptance=950.0, configured=900) == 45
    assert collect_deadline(spec, last_acceptance=950.0, configured=20) == 20
    assert collect_deadline(spec, last_acceptance=999.0, configured=20) == 0


def test_the_expected_rate_is_the_newest_earlier_runs_measurement(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    assert expected_callback_rate(conn, settings, run_id="now") == (600.0, "configuration")
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status, counts) VALUES "
        "('a', $t - INTERVAL 2 DAY, 'succeeded', '{\"submit\": {\"callback_rate_per_second\": 24.5, \"callback_limited\": true}}'), "
        "('b', $t - INTERVAL 1 DAY, 'failed', '{\"submit\": {\"callback_rate_per_second\": 3}}')",
        {"t": NOW},
    )
    assert expected_callback_rate(conn, settings, run_id="now") == (24.5, "measured by run a")


def test_a_late_answer_is_reused_with_its_own_time_and_counted_once(
    tmp_path: Path, conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    settings = settings.replace("receiver", landing_dir=str(tmp_path / "landing"))
    now = datetime.now(UTC)
    late_at = now - timedelta(hours=1)
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status) VALUES "
        "('r1', $t - INTERVAL 1 DAY, 'succeeded'), ('r2', $t, 'running')",
        {"t": now},
    )
    targets(conn, "r1", ["c0", "c1"])
    targets(conn, "r2", ["c0", "c1"])
    for key in ("c0", "c1"):
        conn.execute(
            "INSERT INTO requests (run_id, request_id, contact_key, body, channels, "
            "state, planned_at, accepted_at) VALUES ('r1', ?, ?, '{}', ['SMS'], "
            "'accepted', ?, ?)",
            [f"q{key}", key, now, now],
        )
        answer(conn, "r1", key, age_days=1, status="NO_RESPONSE")  # the deadline passed
    conn.execute("UPDATE capability SET checked_at = NULL")
    # c0's callback landed after r1 ended; c1's never came
    conn.execute(
        "INSERT INTO notifications (request_id, channel, identity, capability_status, "
        "event_time, received_at, deliveries) VALUES ('qc0', 'SMS', '46700000000', "
        "'NO_CAPABILITY', ?, ?, 1)",
        [late_at, late_at],
    )
    summary = steps.plan(conn, "r2", settings)
    assert summary.late_answers == 1
    assert actions(conn, "r2") == {"c0": "reuse", "c1": "query"}
    steps.build(conn, "r2")
    row = conn.execute(
        "SELECT status, reused, request_id, checked_at FROM capability "
        "WHERE run_id = 'r2' AND contact_key = 'c0'"
    ).fetchone()
    assert row == ("NO_CAPABILITY", True, "qc0", late_at)
    # r1 is not rewritten; a third run reuses r2's row and does not count it as late again
    assert conn.execute(
        "SELECT status FROM capability WHERE run_id = 'r1' AND contact_key = 'c0'"
    ).fetchone() == ("NO_RESPONSE",)
    conn.execute("UPDATE runs SET status = 'succeeded' WHERE run_id = 'r2'")
    targets(conn, "r3", ["c0"])
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status) VALUES ('r3', ?, 'running')",
        [now + timedelta(seconds=1)],
    )
    assert steps.plan(conn, "r3", settings).late_answers == 0
    assert actions(conn, "r3") == {"c0": "reuse"}


def test_coverage_counts_fresh_answers_ages_and_nights_to_a_full_refresh(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    from pipeline.coverage import coverage_summary

    window = '{"plan": {"window": {"deferred": 10, "window_seconds": 3600, "callback_rate_per_second": 0.001}}}'
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status, counts) VALUES ('n', ?, 'succeeded', ?)",
        [NOW, window],
    )
    keys = [f"c{i}" for i in range(10)]
    for key, age in zip(keys, [1.5] * 5 + [10] * 3 + [40], strict=False):
        answer(conn, "n", key, age_days=age)
    answer(conn, "n", "c9", age_days=0, status="NO_RESPONSE")
    conn.execute("UPDATE capability SET checked_at = NULL WHERE status = 'NO_RESPONSE'")
    coverage = coverage_summary(conn, "n", settings, now=NOW)
    assert (coverage["list_targets"], coverage["fresh_targets"], coverage["deferred"]) == (
        20,
        5,
        10,
    )
    assert coverage["fresh_share"] == 0.25
    assert {a["age"]: a["answers"] for a in coverage["ages"]} == {
        "< 1 day": 0,
        "1-3 days": 5,
        "3-7 days": 0,
        "7-14 days": 3,
        "14-30 days": 0,
        "30 days or more": 1,
    }
    # 20 targets at 0.001 callbacks/s in one-hour nights: 3.6 targets a night
    assert coverage["nights_to_full_refresh"] == 6
    assert coverage["night_seconds"] == 3600


def test_coverage_counts_each_target_once_so_its_text_and_chart_agree(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    """Issue 25: "5,990 of 6,003 ... younger than its TTL" above a chart with all 6,003 under one
    day: the chart counted transient failures and targets Sinch has no contact for."""
    from pipeline.coverage import coverage_summary

    counts = '{"plan": {"window": {"deferred": 2, "window_seconds": 3600}}}'
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status, counts) VALUES ('n', ?, 'succeeded', ?)",
        [NOW, counts],
    )
    answer(conn, "n", "c0", age_days=0.2)
    answer(conn, "n", "c1", age_days=0.5, status="CAPABILITY_UNKNOWN", reason="RATE_LIMITED")
    answer(conn, "n", "c2", age_days=0.1, status="NOT_A_CONTACT", reason="CONTACT_NOT_FOUND")
    answer(conn, "n", "c3", age_days=0, status="NO_RESPONSE")
    conn.execute("UPDATE capability SET checked_at = NULL WHERE status = 'NO_RESPONSE'")
    answer(conn, "n", "c4", age_days=10)  # older than the TTL (7 days)
    answer(conn, "n", "c5", age_days=2, status="NO_CAPABILITY", reason="RECIPIENT_NOT_OPTED_IN")
    coverage = coverage_summary(conn, "n", settings, now=NOW)
    ages = {a["age"]: a["answers"] for a in coverage["ages"]}
    assert (ages["< 1 day"], ages["1-3 days"], ages["7-14 days"]) == (1, 1, 1)
    without = {w["reason"]: w["targets"] for w in coverage["without_answer"]}
    assert without == {
        "transient failure": 1,
        "not a Sinch contact": 1,
        "no response": 1,
        "deferred": 2,
    }
    # every target of the list once: in an age bucket or without an answer, never both
    assert sum(ages.values()) + sum(without.values()) == coverage["list_targets"] == 8
    # and the fresh ones are exactly the answers in the buckets younger than the TTL
    assert coverage["fresh_targets"] == ages["< 1 day"] + ages["1-3 days"] + ages["3-7 days"]


def test_the_reserve_is_a_tenth_of_the_window_at_most_the_configured_seconds(
    settings: Settings,
) -> None:
    assert reserve_for(25, cap=60) == 2.5  # a short window keeps most of itself for asking
    assert reserve_for(6 * 3600, cap=60) == 60
    spec = window_spec(settings.replace("plan", window_reserve_seconds=60), "25s")
    assert spec is not None
    assert (spec.seconds, spec.reserve_seconds, spec.where) == (25, 2.5, "--window 25s")
    assert budget(spec, rate=100.0, now=spec.ends_at - 25) == 2250
    configured = window_spec(settings.replace("plan", window="2h"), None)
    assert configured is not None
    assert (configured.reserve_seconds, configured.where) == (60, "[plan] window = '2h'")


def test_a_window_that_fits_nothing_says_why_with_the_numbers(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> None:
    targets(conn, "night", ["c0", "c1", "c2"])
    ledger.mark_reuse(conn, "night", settings.freshness, refresh=False, now=NOW)
    spec = WindowSpec(10, NOW.timestamp() + 10, reserve_for(10, 60), "--window 10s")
    plan = fit_window(conn, "night", spec, rate=0.1, query_rate=100, now=NOW)
    assert (plan.queried_targets, plan.deferred, plan.smallest_contact_targets) == (0, 3, 1)
    problem = idle_window_problem(asdict(plan), spec, cap=60)
    assert problem is not None
    for figure in (
        "--window 10s fits nothing: 3 targets need asking",
        "at 0.1 callbacks/s",
        "has room for 0 callbacks",
        "the smallest contact needs 1 callback ",
        "1.0 s are kept",
        "10% of the window, at most [plan] window_reserve_seconds",
        "leaving 9.0 s for asking",
        "a window of at least 12 s",
    ):
        assert figure in problem, (figure, problem)
    # the suggested window fits that contact
    bigger = WindowSpec(12, NOW.timestamp() + 12, reserve_for(12, 60))
    assert budget(bigger, rate=0.1, now=NOW.timestamp()) >= 1
    # a capped reserve: lowering it is the other way out
    capped = WindowSpec(100, NOW.timestamp() + 100, reserve_for(100, 5.0), "--window 100s")
    slow = asdict(plan) | {"asking_seconds": 95.0, "callback_rate_per_second": 0.0105}
    message = idle_window_problem(slow, capped, cap=5.0)
    assert message is not None
    assert "5.0 s are kept for the last callbacks, the build and the report ([plan] " in message
    assert "window_reserve_seconds = 5)" in message
    assert "a window of at least 101 s or a lower [plan] window_reserve_seconds" in message
    # everything fresh: nothing needs asking, nothing to say
    assert idle_window_problem(asdict(plan) | {"deferred": 0}, spec, cap=60) is None
