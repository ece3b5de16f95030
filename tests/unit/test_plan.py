"""Planning: fresh answers are reused, stale or missing ones re-queried; one request a contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson

from pipeline import ledger, runs, steps
from pipeline.reasks import plan_resume_asks
from pipeline.settings import Settings

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def contacts(tmp_path: Path) -> Path:
    path = tmp_path / "c.csv"
    path.write_text("contact_id,phone\na,+46701234567\nb,+46701234568\nc,+46701234569\n")
    return path


def answer(
    conn: duckdb.DuckDBPyConnection,
    run: str,
    key: str,
    channel: str,
    status: str,
    age_days: float,
    reason: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO capability (run_id, contact_key, channel, identity, status, reason_code, "
        "checked_at, reused) VALUES (?, ?, ?, ?, ?, ?, ?, false)",
        [run, key, channel, None, status, reason, NOW - timedelta(days=age_days)],
    )


def plan(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    path: Path,
    *,
    refresh: bool = False,
) -> dict[tuple[str, str], str]:
    steps.load(conn, "new", settings, [str(path)])
    conn.execute("UPDATE targets SET identity = NULL")  # match the answers inserted above
    ledger.mark_reuse(conn, "new", settings.freshness, refresh=refresh, now=NOW)
    ledger.plan_requests(conn, "new", "app", now=NOW)
    rows = conn.execute("SELECT contact_key, channel, action FROM targets WHERE run_id = 'new'")
    return {(k, c): a for k, c, a in rows.fetchall()}


def test_fresh_answers_are_reused_and_the_rest_queried(tmp_path: Path, settings: Settings) -> None:
    settings = settings.replace("contacts", phone_channels=("SMS", "RCS"))
    settings = settings.replace("freshness", ttl_days=7, channels={"RCS": 1})
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        from pipeline.warehouse import ensure_schema

        ensure_schema(conn)
        answer(conn, "old", "a", "SMS", "CAPABILITY_FULL", age_days=2)  # fresh: reused
        answer(conn, "old", "a", "RCS", "NO_CAPABILITY", age_days=2)  # RCS ttl is 1 day
        answer(conn, "old", "b", "SMS", "CAPABILITY_FULL", age_days=9)  # stale
        answer(conn, "old", "c", "SMS", "NO_RESPONSE", age_days=1)  # not an answer
        answer(conn, "old", "c", "RCS", "CAPABILITY_UNKNOWN", age_days=1, reason="RATE_LIMITED")
        actions = plan(conn, settings, contacts(tmp_path))
        requests = conn.execute(
            "SELECT contact_key, channels, body FROM requests WHERE run_id = 'new' ORDER BY 1"
        ).fetchall()
    assert actions == {
        ("a", "SMS"): "reuse",
        ("a", "RCS"): "query",
        ("b", "SMS"): "query",
        ("b", "RCS"): "query",
        ("c", "SMS"): "query",
        ("c", "RCS"): "query",
    }
    # One request per contact, carrying only what is to be asked.
    assert [(key, channels) for key, channels, _ in requests] == [
        ("a", ["RCS"]),
        ("b", ["RCS", "SMS"]),
        ("c", ["RCS", "SMS"]),
    ]
    body = orjson.loads(requests[1][2])
    assert body["app_id"] == "app"
    assert body["request_id"]
    assert body["recipient"] == {"contact_id": "b"}  # no identities left: asked by contact id


def test_refresh_queries_everything(tmp_path: Path, settings: Settings) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        from pipeline.warehouse import ensure_schema

        ensure_schema(conn)
        answer(conn, "old", "a", "SMS", "CAPABILITY_FULL", age_days=0.5)
        actions = plan(conn, settings, contacts(tmp_path), refresh=True)
    assert set(actions.values()) == {"query"}


def test_slow_callbacks_are_warned_about(settings: Settings, caplog: object) -> None:
    import logging

    lag = {
        "callbacks": 3000,
        "p50_seconds": 40.0,
        "p95_seconds": 95.0,
        "callbacks_per_second": 25.0,
        "queries_per_second": 100.0,
    }
    with caplog.at_level(logging.WARNING):  # type: ignore[attr-defined]
        steps._warn_if_callbacks_lag(lag, settings)
        steps._warn_if_callbacks_lag(lag | {"callbacks": 20}, settings)  # too few to judge
    said = "callbacks arrived at 25/s while queries asked for 300/s"  # not "25.0/s"
    warnings = [r for r in caplog.records if said in r.getMessage()]  # type: ignore[attr-defined]
    assert len(warnings) == 1


def test_a_contact_with_identities_and_an_id_only_row_asks_every_channel(
    tmp_path: Path, settings: Settings
) -> None:
    path = tmp_path / "long.csv"
    path.write_text("contact_id,channel,identity\nC1,WHATSAPP,+46701234567\nC1,,\n")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        from pipeline.warehouse import ensure_schema

        ensure_schema(conn)
        steps.load(conn, "new", settings, [str(path)])
        ledger.plan_requests(conn, "new", "app", now=NOW)
        requests = conn.execute(
            "SELECT channels, body FROM requests WHERE run_id = 'new' ORDER BY channels"
        ).fetchall()
    assert [channels for channels, _ in requests] == [["RCS", "SMS"], ["WHATSAPP"]]
    assert orjson.loads(requests[0][1])["recipient"] == {"contact_id": "C1"}
    assert orjson.loads(requests[1][1])["recipient"]["identified_by"]["channel_identities"] == [
        {"channel": "WHATSAPP", "identity": "46701234567"}
    ]


def test_unanswered_targets_are_asked_again_once_on_resume(
    tmp_path: Path, settings: Settings
) -> None:
    settings = settings.replace("contacts", phone_channels=("SMS", "RCS"))
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        from pipeline.warehouse import ensure_schema

        ensure_schema(conn)
        steps.load(conn, "new", settings, [str(contacts(tmp_path))])
        ledger.plan_requests(conn, "new", "app", now=NOW)
        conn.execute("UPDATE requests SET state = 'accepted', accepted_at = $now", {"now": NOW})
        first = dict(conn.execute("SELECT contact_key, request_id FROM requests").fetchall())
        # a: both channels answered; b: SMS only (RCS landed nothing); c: nothing at all.
        for key, channel in (("a", "SMS"), ("a", "RCS"), ("b", "SMS")):
            conn.execute(
                "INSERT INTO notifications (request_id, channel, identity, capability_status, "
                "received_at, deliveries) VALUES (?, ?, 'x', 'CAPABILITY_FULL', ?, 1)",
                [first[key], channel, NOW],
            )
        assert reask(conn, settings) == 0  # no collect yet: too early
        runs.start_run(conn, "new", config_digest="", inputs=[])
        runs.record_step(conn, "new", "collect", 1.0, {"deadline_passed": False})
        assert reask(conn, settings) == 0  # interrupted while waiting
        runs.record_step(conn, "new", "collect", 1.0, {"deadline_passed": True})
        assert reask(conn, settings) == 2
        conn.execute("UPDATE requests SET state = 'accepted', accepted_at = $now", {"now": NOW})
        assert reask(conn, settings) == 0  # once: a re-ask is not re-asked
        reasks = conn.execute(
            "SELECT contact_key, channels, requery_of, state FROM requests "
            "WHERE requery_of IS NOT NULL ORDER BY 1"
        ).fetchall()
    assert reasks == [
        ("b", ["RCS"], first["b"], "accepted"),
        ("c", ["RCS", "SMS"], first["c"], "accepted"),
    ]


def reask(conn: duckdb.DuckDBPyConnection, settings: Settings, *, embedded: bool = False) -> int:
    return plan_resume_asks(conn, "new", settings, embedded=embedded)


def test_a_resume_with_a_new_embedded_simulator_asks_again_what_the_old_one_owed(
    tmp_path: Path, settings: Settings
) -> None:
    """The embedded simulator that accepted the queries is gone with its session: what it owed
    is asked again at once (no deadline waited out), then again if that session dies too."""
    settings = settings.replace("contacts", phone_channels=("SMS", "RCS"))
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        from pipeline.warehouse import ensure_schema

        ensure_schema(conn)
        steps.load(conn, "new", settings, [str(contacts(tmp_path))])
        ledger.plan_requests(conn, "new", "app", now=NOW)
        # a: answered, RCS with a transient failure whose re-query was lost; b: accepted, RCS
        # never answered; c: never sent (submit sends it)
        conn.execute(
            "UPDATE requests SET state = 'accepted', accepted_at = $now WHERE contact_key <> 'c'",
            {"now": NOW},
        )
        first = dict(conn.execute("SELECT contact_key, request_id FROM requests").fetchall())
        for key, channel, reason in (
            ("a", "SMS", None),
            ("a", "RCS", "RATE_LIMITED"),
            ("b", "SMS", None),
        ):
            conn.execute(
                "INSERT INTO notifications (request_id, channel, identity, capability_status, "
                "reason_code, received_at, deliveries) VALUES (?, ?, 'x', 'CAPABILITY_FULL', ?, ?, 1)",
                [first[key], channel, reason, NOW],
            )
        assert ledger.plan_requeries(conn, "new", "app", now=NOW) == 1
        conn.execute(
            "UPDATE requests SET state = 'accepted', accepted_at = $now WHERE contact_key = 'a'",
            {"now": NOW},
        )
        # b's RCS only: a's transient answer stands (asked again once at most)
        assert reask(conn, settings, embedded=True) == 1  # no collect ran: asked all the same
        assert reask(conn, settings, embedded=True) == 0  # the re-ask is not sent yet
        conn.execute(  # sent, and its session died too: a third session asks once more
            "UPDATE requests SET state = 'accepted', accepted_at = $now "
            "WHERE requery_of IS NOT NULL",
            {"now": NOW},
        )
        assert reask(conn, settings, embedded=True) == 1
        asks = conn.execute(
            "SELECT request_id, channels, requery_of FROM requests WHERE contact_key = 'b' "
            "ORDER BY request_id"
        ).fetchall()
    assert [(channels, of) for _, channels, of in asks] == [
        (["RCS", "SMS"], None),
        (["RCS"], first["b"]),  # the channel that was owed, no other
        (["RCS"], asks[1][0]),
    ]
