"""Callbacks without request_id: matched to their outstanding query, or kept and reported."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from pipeline import ledger, steps
from pipeline.landing.correlate import unmatched_counts
from pipeline.landing.ingest import ingest_landing
from pipeline.landing.segments import KIND_CAPABILITY, encode_line
from pipeline.warehouse import open_warehouse
from tests.conftest import add_targets

APP = "01EB37KMH2M6SV18ASNS3G135H"
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
# The Capability Query page's example notification, verbatim (no request_id).
PAGE_EXAMPLE = (
    '{"contact_id": "{{CONTACT_ID}}", "identity": "46712312312", "channel": "WHATSAPP", '
    '"capability_status": "CAPABILITY_FULL"}'
)
NUMBER = "46712312312"
ONE = [("c1", NUMBER)]
TWO_SAME_NUMBER = [("c1", NUMBER), ("c2", NUMBER)]


def envelope(notification: str, event_time: str = "2026-11-25T02:00:05Z") -> bytes:
    """Sinch's callback envelope (reference §4) around a notification given as JSON text."""
    return (
        f'{{"app_id": "{APP}", "project_id": "c36f3d3d-1513-4edd-ae42-11995557ff61", '
        f'"accepted_time": "{event_time}", "event_time": "{event_time}", '
        f'"message_metadata": "", "correlation_id": "", '
        f'"capability_notification": {notification}}}'
    ).encode()


def notification(**fields: Any) -> str:
    return orjson.dumps(fields).decode()


class Audit:
    """A warehouse with runs loaded and planned, and a landing directory to drop callbacks in."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, tmp: Path) -> None:
        self.conn = conn
        self.landing = tmp / "landing"
        self.landing.mkdir()
        self.segments = 0

    def plan(self, run_id: str, contacts: list[tuple[str, str | None]]) -> list[str]:
        """Targets (contact id, phone digits or None to ask by contact id) on WHATSAPP and SMS,
        written as given (the page's number is not one libphonenumber calls valid), planned."""
        rows = [
            (contact_id, channel, phone, n)
            for n, (contact_id, phone) in enumerate(contacts)
            for channel in ("SMS", "WHATSAPP")
        ]
        add_targets(
            self.conn,
            "SELECT $run_id AS run_id, contact_key, channel, identity, 'given' AS source, "
            "row_number FROM (SELECT unnest($rows, recursive := true))",
            {
                "run_id": run_id,
                "rows": [
                    dict(zip(("contact_key", "channel", "identity", "row_number"), r, strict=True))
                    for r in rows
                ],
            },
        )
        ledger.plan_requests(self.conn, run_id, APP, now=T0)
        self.conn.execute(
            "INSERT INTO runs (run_id, started_at, status) VALUES (?, ?, 'running')", [run_id, T0]
        )
        rows = self.conn.execute(
            "SELECT request_id FROM requests WHERE run_id = ? ORDER BY contact_key", [run_id]
        ).fetchall()
        return [str(r[0]) for r in rows]

    def accept(self, run_id: str, request_id: str, seconds: float = 1.0) -> None:
        """What the dispatcher records (not yet folded into `requests`)."""
        sent = T0 + timedelta(seconds=seconds)
        event = ledger.RequestEvent(
            request_id,
            ledger.ACCEPTED,
            1,
            200,
            sent_at=sent,
            accepted_at=sent + timedelta(milliseconds=20),
        )
        ledger.record_events(self.conn, run_id, [event])

    def land(self, *bodies: bytes, seconds: float = 5.0) -> steps.IngestStats:
        self.segments += 1
        received = T0 + timedelta(seconds=seconds)
        lines = b"".join(
            encode_line(body, f"n{self.segments}-{i}", "w1", KIND_CAPABILITY, received)
            for i, body in enumerate(bodies)
        )
        (self.landing / f"w1-{self.segments:06d}.ndjson").write_bytes(lines)
        return self.ingest()

    def ingest(self) -> steps.IngestStats:
        return ingest_landing(self.conn, self.landing)

    def notifications(self) -> list[tuple[Any, ...]]:
        return self.conn.execute(
            "SELECT request_id, channel, identity, capability_status, matched_by, deliveries "
            "FROM notifications ORDER BY received_at, request_id"
        ).fetchall()

    def unmatched(self) -> list[tuple[Any, ...]]:
        return self.conn.execute(
            "SELECT channel, identity, problem, candidate_runs, deliveries "
            "FROM unmatched_notifications ORDER BY received_at"
        ).fetchall()


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Audit]:
    with open_warehouse(tmp_path / "w.duckdb") as conn:
        yield Audit(conn, tmp_path)


def test_the_api_pages_example_is_joined_to_its_query(audit: Audit) -> None:
    [request] = audit.plan("r1", ONE)
    audit.accept("r1", request)
    stats = audit.land(envelope(PAGE_EXAMPLE))
    assert audit.notifications() == [
        (request, "WHATSAPP", "46712312312", "CAPABILITY_FULL", "identity", 1)
    ]
    assert (stats.notifications_new, stats.matched_by_identity, stats.other_events) == (1, 1, 0)
    ledger.fold_events(audit.conn, "r1")
    steps.build(audit.conn, "r1")
    statuses = audit.conn.execute(
        "SELECT channel, status, request_id FROM capability ORDER BY channel"
    ).fetchall()
    assert statuses == [("SMS", "NO_RESPONSE", None), ("WHATSAPP", "CAPABILITY_FULL", request)]


def test_a_callback_ingested_before_the_acceptance_is_matched_on_a_later_ingest(
    audit: Audit,
) -> None:
    [request] = audit.plan("r1", ONE)
    stats = audit.land(envelope(PAGE_EXAMPLE))  # the ledger flush has not happened yet
    assert (stats.without_request_id, stats.notifications_new) == (1, 0)
    assert audit.unmatched() == [("WHATSAPP", "46712312312", "no_outstanding_query", None, 1)]
    assert unmatched_counts(audit.conn) == {"no_outstanding_query": 1, "ambiguous": 0}
    audit.ingest()  # nothing changed since: not tried again
    assert audit.conn.execute("SELECT attempts FROM unmatched_notifications").fetchall() == [(1,)]
    audit.accept("r1", request)
    later = audit.ingest()  # nothing new landed: the notification put aside is tried again
    assert (later.segments, later.matched_by_identity, later.notifications_new) == (0, 1, 1)
    assert audit.notifications()[0][:1] + audit.notifications()[0][4:] == (request, "identity", 1)
    assert audit.unmatched() == []


def test_a_repeated_delivery_appears_once_even_after_it_was_matched(audit: Audit) -> None:
    # Two contacts with the same number: two queries wait for the same identity.
    first, second = audit.plan("r1", TWO_SAME_NUMBER)
    audit.accept("r1", first, seconds=1)
    audit.accept("r1", second, seconds=2)
    body = envelope(PAGE_EXAMPLE)
    audit.land(body, body)
    assert audit.notifications() == [
        (second, "WHATSAPP", "46712312312", "CAPABILITY_FULL", "identity", 2)  # most recent
    ]
    again = audit.land(body, seconds=9)  # Sinch retries once more, later
    assert (again.notifications_repeated, again.notifications_new) == (1, 0)
    assert [row[0] for row in audit.notifications()] == [second]  # not taken for `first`
    assert audit.notifications()[0][5] == 3
    # The other contact's own answer (another event) then takes the query still waiting.
    audit.land(envelope(PAGE_EXAMPLE, "2026-11-25T02:00:06Z"), seconds=10)
    assert [row[0] for row in audit.notifications()] == [second, first]


def test_two_answers_in_one_ingest_take_one_query_each(audit: Audit) -> None:
    first, second = audit.plan("r1", TWO_SAME_NUMBER)
    audit.accept("r1", first, seconds=1)
    audit.accept("r1", second, seconds=2)
    stats = audit.land(envelope(PAGE_EXAMPLE), envelope(PAGE_EXAMPLE, "2026-11-25T02:00:06Z"))
    assert stats.matched_by_identity == 2
    assert sorted(row[0] for row in audit.notifications()) == sorted([first, second])


def test_two_runs_waiting_for_one_identity_is_ambiguous_and_kept(
    audit: Audit, caplog: pytest.LogCaptureFixture
) -> None:
    [old] = audit.plan("r1", ONE)
    [new] = audit.plan("r2", ONE)
    audit.accept("r1", old)
    audit.accept("r2", new, seconds=2)
    stats = audit.land(envelope(PAGE_EXAMPLE))
    assert (stats.notifications_new, stats.without_request_id) == (0, 1)
    assert audit.unmatched() == [("WHATSAPP", "46712312312", "ambiguous", ["r1", "r2"], 1)]
    assert unmatched_counts(audit.conn) == {"no_outstanding_query": 0, "ambiguous": 1}
    ledger.fold_events(audit.conn, "r2")
    steps.build(audit.conn, "r2")  # reported, and r2's target stays unanswered: not guessed
    assert "0 with no outstanding query, 1 ambiguous" in caplog.text
    assert audit.conn.execute(
        "SELECT status FROM capability WHERE run_id = 'r2' AND channel = 'WHATSAPP'"
    ).fetchall() == [("NO_RESPONSE",)]
    # Once r1 has finished (here: failed) it waits for nothing: the callback is r2's.
    audit.conn.execute("UPDATE runs SET status = 'failed' WHERE run_id = 'r1'")
    audit.ingest()
    assert [row[0] for row in audit.notifications()] == [new]


def test_a_query_sent_after_the_callback_was_received_is_not_its_query(audit: Audit) -> None:
    [request] = audit.plan("r1", ONE)
    audit.accept("r1", request, seconds=30)
    audit.land(envelope(PAGE_EXAMPLE), seconds=5)
    assert audit.unmatched()[0][2] == "no_outstanding_query"


def test_an_old_callback_replayed_after_a_newer_query_does_not_answer_it(audit: Audit) -> None:
    # The callback's event happened at 02:00:05; the query was sent an hour later, and the
    # callback was re-delivered (or replayed) an hour after that: it cannot be that query's.
    [request] = audit.plan("r1", ONE)
    audit.accept("r1", request, seconds=3600)
    audit.land(envelope(PAGE_EXAMPLE, "2026-11-25T02:00:05Z"), seconds=7200)
    assert audit.notifications() == []
    assert audit.unmatched()[0][2] == "no_outstanding_query"


def test_event_time_bounds_to_the_second_and_the_receive_time_without_one(audit: Audit) -> None:
    same_second, without_time, unreadable = audit.plan(
        "r1", [("c1", "46700000001"), ("c2", "46700000002"), ("c3", "46700000003")]
    )
    # Sent at 02:00:05.3: an event_time of 02:00:05 (whole seconds) may be its answer.
    audit.accept("r1", same_second, seconds=5.3)
    audit.accept("r1", without_time, seconds=3600)
    audit.accept("r1", unreadable, seconds=3600)

    def answer(number: str) -> str:
        return notification(channel="SMS", identity=number, capability_status="CAPABILITY_FULL")

    in_that_second = envelope(answer("46700000001"), "2026-11-25T02:00:05Z")
    no_event_time = envelope(answer("46700000002")).replace(
        b'"event_time": "2026-11-25T02:00:05Z", ', b""
    )
    bad_event_time = envelope(answer("46700000003"), "yesterday")
    assert b"event_time" not in no_event_time
    stats = audit.land(in_that_second, no_event_time, bad_event_time, seconds=7200)
    assert stats.matched_by_identity == 3
    assert audit.unmatched() == []


def test_a_request_id_answer_leaves_the_query_answered(audit: Audit) -> None:
    [request] = audit.plan("r1", ONE)
    audit.accept("r1", request)
    with_id = notification(
        request_id=request,
        channel="WHATSAPP",
        identity="46712312312",
        capability_status="NO_CAPABILITY",
    )
    audit.land(envelope(with_id), envelope(PAGE_EXAMPLE, "2026-11-25T02:00:07Z"))
    assert [(r[0], r[4]) for r in audit.notifications()] == [(request, "request_id")]
    assert audit.unmatched()[0][2] == "no_outstanding_query"


def test_reason_as_a_string_and_contact_id_queries(audit: Audit) -> None:
    phone, by_id = audit.plan("r1", [("c1", NUMBER), ("c2", None)])
    audit.accept("r1", phone)
    audit.accept("r1", by_id)
    string_reason = notification(
        channel="SMS",
        identity="+46 71 231 23 12",
        capability_status="NO_CAPABILITY",
        reason="RECIPIENT_NOT_REACHABLE",
        channel_capabilities=[],
    )
    not_found = notification(
        contact_id="c2",
        channel="",
        identity="",
        capability_status="NO_CAPABILITY",
        reason={"code": "CONTACT_NOT_FOUND", "description": "no contact"},
    )
    stats = audit.land(envelope(string_reason), envelope(not_found))
    assert (stats.matched_by_identity, stats.matched_by_contact_id) == (1, 1)
    rows = audit.conn.execute(
        "SELECT request_id, channel, reason_code, reason_description, channel_capabilities, "
        "matched_by FROM notifications ORDER BY matched_by"
    ).fetchall()
    assert rows == [
        (by_id, "", "CONTACT_NOT_FOUND", "no contact", None, "contact_id"),
        (phone, "SMS", "RECIPIENT_NOT_REACHABLE", None, [], "identity"),
    ]


def test_an_unknown_app_is_not_matched(audit: Audit) -> None:
    [request] = audit.plan("r1", ONE)
    audit.accept("r1", request)
    audit.land(envelope(PAGE_EXAMPLE).replace(APP.encode(), b"ANOTHER-APP"))
    assert audit.notifications() == []
    assert audit.unmatched()[0][2] == "no_outstanding_query"


def test_contact_id_queries_take_each_identity_and_identity_queries_come_first(
    audit: Audit,
) -> None:
    by_phone, by_id = audit.plan("r1", [("c1", NUMBER), ("c2", None)])
    audit.accept("r1", by_phone)
    audit.accept("r1", by_id)
    # The contact asked by id has two WhatsApp numbers: Sinch answers each.
    first, second = (
        notification(
            contact_id="c2",
            channel="WHATSAPP",
            identity=identity,
            capability_status="CAPABILITY_FULL",
        )
        for identity in ("46700000001", "46700000002")
    )
    # Names contact c2 but carries c1's number, asked by identity: the identity query wins.
    both = notification(
        contact_id="c2", channel="WHATSAPP", identity=NUMBER, capability_status="NO_CAPABILITY"
    )
    stats = audit.land(envelope(first), envelope(second), envelope(both))
    assert (stats.matched_by_contact_id, stats.matched_by_identity) == (2, 1)
    rows = audit.conn.execute(
        "SELECT request_id, identity, matched_by FROM notifications ORDER BY identity"
    ).fetchall()
    assert rows == [
        (by_id, "46700000001", "contact_id"),
        (by_id, "46700000002", "contact_id"),
        (by_phone, NUMBER, "identity"),
    ]


def test_capability_events_that_name_nothing_are_other_events(audit: Audit) -> None:
    empty = envelope("{}")
    not_an_object = envelope('"CAPABILITY_FULL"')
    stats = audit.land(empty, not_an_object, envelope(PAGE_EXAMPLE))
    assert (stats.other_events, stats.without_request_id) == (2, 1)
    assert audit.notifications() == []


def test_purge_drops_unmatched_notifications_older_than_the_cutoff(audit: Audit) -> None:
    from pipeline.retention import purge

    audit.land(envelope(PAGE_EXAMPLE), seconds=5)
    audit.land(envelope(PAGE_EXAMPLE, "2026-12-30T00:00:00Z"), seconds=40 * 86400)
    summary = purge(
        audit.conn,
        older_than_days=30,
        landing_dir=audit.landing,
        reports_dir=audit.landing / "reports",
        now=T0 + timedelta(days=45),
    )
    assert summary.rows["unmatched_notifications"] == 1
    assert len(audit.unmatched()) == 1


@pytest.mark.parametrize(
    "channel",
    [{"channel": "CHANNEL_UNSPECIFIED"}, {"channel": None}, {"channel": ""}, {}],
    ids=["CHANNEL_UNSPECIFIED", "null", "empty", "missing"],
)
def test_a_whole_request_answer_has_channel_empty_and_matches_by_contact_id(
    audit: Audit, channel: dict[str, Any]
) -> None:
    [by_id] = audit.plan("r1", [("c2", None)])
    audit.accept("r1", by_id)
    not_found = notification(
        contact_id="c2",
        capability_status="NO_CAPABILITY",
        reason={"code": "CONTACT_NOT_FOUND"},
        **channel,
    )
    with_id = notification(request_id="r-known", **channel, capability_status="NO_CAPABILITY")
    stats = audit.land(envelope(not_found), envelope(with_id))
    assert stats.matched_by_contact_id == 1
    rows = audit.conn.execute(
        "SELECT request_id, channel, identity, matched_by FROM notifications ORDER BY ALL"
    ).fetchall()
    assert rows == [(by_id, "", "", "contact_id"), ("r-known", "", "", "request_id")]
    ledger.fold_events(audit.conn, "r1")
    steps.build(audit.conn, "r1")  # the models read '' as an answer for every channel asked
    assert audit.conn.execute(
        "SELECT DISTINCT status, reason_code FROM capability WHERE run_id = 'r1'"
    ).fetchall() == [("NOT_A_CONTACT", "CONTACT_NOT_FOUND")]


def test_reason_sub_code_and_channel_code_are_kept(audit: Audit) -> None:
    [request] = audit.plan("r1", ONE)
    audit.accept("r1", request)
    reason = {
        "code": "RECIPIENT_NOT_REACHABLE",
        "description": "not on WhatsApp",
        "sub_code": "UNSPECIFIED_SUB_CODE",
        "channel_code": "131026",
    }
    without_id = notification(
        channel="WHATSAPP", identity=NUMBER, capability_status="NO_CAPABILITY", reason=reason
    )
    with_id = notification(
        request_id=request,
        channel="SMS",
        identity=NUMBER,
        capability_status="NO_CAPABILITY",
        reason=reason | {"sub_code": "INACTIVE_SENDER", "channel_code": None},
    )
    audit.land(envelope(without_id), envelope(with_id))
    rows = audit.conn.execute(
        "SELECT channel, reason_code, reason_description, reason_sub_code, reason_channel_code "
        "FROM notifications ORDER BY channel"
    ).fetchall()
    assert rows == [
        ("SMS", "RECIPIENT_NOT_REACHABLE", "not on WhatsApp", "INACTIVE_SENDER", None),
        (
            "WHATSAPP",
            "RECIPIENT_NOT_REACHABLE",
            "not on WhatsApp",
            "UNSPECIFIED_SUB_CODE",
            "131026",
        ),
    ]
