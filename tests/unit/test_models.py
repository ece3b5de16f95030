"""The SQL models as data contracts: given rows in, expected rows out, and invariants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipeline import steps
from pipeline.sinch.models import ALL_STATUSES
from pipeline.warehouse import _statements, open_warehouse
from tests.conftest import MART_TABLES, add_targets

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
GIVEN = {
    # contact: (channels, request state, error)
    "A": (("SMS", "RCS"), "accepted", None),  # SMS answered; RCS transient, then re-queried
    "B": (("SMS", "RCS"), "accepted", None),  # accepted, no callback by the deadline
    "C": (("SMS",), "failed", "400 INVALID_ARGUMENT: bad"),
    "D": (("SMS", "RCS"), "accepted", None),  # by contact id: CONTACT_NOT_FOUND
}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "w.duckdb", preference=("RCS", "SMS")) as connection:
        yield connection


def given(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status) VALUES "
        "('older', $t - INTERVAL 2 DAY, 'succeeded'), "
        "('prev', $t - INTERVAL 1 DAY, 'succeeded'), ('now', $t, 'running')",
        {"t": T0},
    )
    # Two nights ago A's RCS was not reachable; last night A had no RCS answer at all.
    conn.execute(
        "INSERT INTO capability (run_id, contact_key, channel, status, checked_at, "
        "reused) VALUES ('older', 'A', 'RCS', 'NO_CAPABILITY', $t - INTERVAL 2 DAY, false)",
        {"t": T0},
    )
    # Yesterday: A's SMS was not reachable; E's SMS fully reachable (reused today).
    conn.execute(
        """INSERT INTO capability (run_id, contact_key, channel, identity, status,
                    checked_at, reused) VALUES
                    ('prev', 'A', 'SMS', '46700000001', 'NO_CAPABILITY', $t - INTERVAL 1 DAY, false),
                    ('prev', 'E', 'SMS', '46700000005', 'CAPABILITY_FULL', $t - INTERVAL 1 DAY, false)
                 """,
        {"t": T0},
    )
    for key, (channels, state, error) in GIVEN.items():
        for channel in channels:
            identity = None if key == "D" else f"4670000000{ord(key) - 64}"
            add_targets(
                conn,
                "SELECT 'now' AS run_id, ?::VARCHAR AS contact_key, ?::VARCHAR AS channel, "
                "?::VARCHAR AS identity, 'in.csv' AS source, ?::BIGINT AS row_number",
                [key, channel, identity, ord(key)],
            )
        conn.execute(
            "INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, "
            "error, planned_at, accepted_at) VALUES ('now', ?, ?, '{}', ?, ?, ?, ?, ?)",
            [
                f"r{key}",
                key,
                sorted(channels),
                state,
                error,
                T0,
                T0 if state == "accepted" else None,
            ],
        )
    add_targets(
        conn,
        "SELECT 'now' AS run_id, 'E' AS contact_key, 'SMS' AS channel, "
        "'46700000005' AS identity, 'in.csv' AS source, 5 AS row_number, 'prev' AS reuse_run_id",
    )
    conn.execute(
        "INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, "
        "planned_at, accepted_at, requery_of) VALUES "
        "('now', 'rA2', 'A', '{}', ['RCS'], 'accepted', $t, $t, 'rA')",
        {"t": T0},
    )
    callbacks = [  # request, channel, identity, status, reason, event offset (s)
        ("rA", "SMS", "46700000001", "CAPABILITY_FULL", None, 5),
        ("rA", "RCS", "46700000001", "CAPABILITY_UNKNOWN", "RATE_LIMITED", 6),
        ("rA2", "RCS", "46700000001", "CAPABILITY_PARTIAL", None, 30),
        ("rD", "", "", "NO_CAPABILITY", "CONTACT_NOT_FOUND", 4),
    ]
    for request, channel, identity, status, reason, offset in callbacks:
        at = T0 + timedelta(seconds=offset)
        conn.execute(
            "INSERT INTO notifications (request_id, channel, identity, capability_status, "
            "reason_code, channel_capabilities, event_time, received_at, deliveries) "
            "VALUES (?, ?, ?, ?, ?, ['TEXT'], ?, ?, 1)",
            [request, channel, identity, status, reason, at, at],
        )


def rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[object, ...]]:
    return conn.execute(sql).fetchall()


def test_capability_given_expected(conn: duckdb.DuckDBPyConnection) -> None:
    given(conn)
    steps.build(conn, "now")
    assert rows(
        conn,
        """
        SELECT contact_key, channel, status, reason_code, reused, error
        FROM capability WHERE run_id = 'now' ORDER BY 1, 2
        """,
    ) == [
        ("A", "RCS", "CAPABILITY_PARTIAL", None, False, None),  # the re-query's answer wins
        ("A", "SMS", "CAPABILITY_FULL", None, False, None),
        ("B", "RCS", "NO_RESPONSE", None, False, None),
        ("B", "SMS", "NO_RESPONSE", None, False, None),
        ("C", "SMS", "REQUEST_FAILED", None, False, "400 INVALID_ARGUMENT: bad"),
        ("D", "RCS", "NOT_A_CONTACT", "CONTACT_NOT_FOUND", False, None),
        ("D", "SMS", "NOT_A_CONTACT", "CONTACT_NOT_FOUND", False, None),
        ("E", "SMS", "CAPABILITY_FULL", None, True, None),
    ]
    latency = rows(
        conn,
        "SELECT latency_seconds FROM capability WHERE contact_key = 'A' "
        "AND channel = 'SMS' AND run_id = 'now'",
    )
    assert latency == [(5.0,)]


def test_every_answer_names_the_run_and_request_of_its_check(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    given(conn)
    conn.execute(
        "UPDATE capability SET request_id = 'req-e' WHERE run_id = 'prev' AND contact_key = 'E'"
    )
    steps.build(conn, "now")
    provenance = rows(
        conn,
        "SELECT contact_key, channel, answered_run_id, request_id IS NOT NULL FROM capability "
        "WHERE run_id = 'now' AND contact_key IN ('A', 'B', 'E') ORDER BY 1, 2",
    )
    assert provenance == [
        ("A", "RCS", "now", True),
        ("A", "SMS", "now", True),
        ("B", "RCS", None, False),  # no answer, no check to name
        ("B", "SMS", None, False),
        ("E", "SMS", "prev", True),  # reused: the check was prev's, not this run's
    ]
    # Reused again by a later run, the answer still names the run that checked it.
    conn.execute("INSERT INTO runs (run_id, started_at, status) VALUES ('next', now(), 'running')")
    conn.execute(
        "INSERT INTO capability (run_id, contact_key, channel, status, checked_at, reused, "
        "request_id, answered_run_id) SELECT 'next', contact_key, channel, status, checked_at, "
        "true, request_id, answered_run_id FROM capability WHERE run_id = 'now' AND contact_key = 'E'"
    )
    assert rows(
        conn,
        "SELECT answered_run_id, request_id, run_id FROM capability_latest "
        "WHERE contact_key = 'E' AND channel = 'SMS'",
    ) == [("prev", "req-e", "next")]


def test_reachability_changes_reasons_and_channel_order(conn: duckdb.DuckDBPyConnection) -> None:
    given(conn)
    steps.build(conn, "now")
    assert rows(
        conn,
        """
        SELECT channel, targets, capability_full, capability_partial,
        no_capability, no_response, request_failed, reachable, reused, not_a_contact
        FROM reachability WHERE run_id = 'now' ORDER BY 1
        """,
    ) == [
        ("RCS", 3, 0, 1, 0, 1, 0, 1, 0, 1),
        ("SMS", 5, 2, 0, 0, 1, 1, 2, 1, 1),
    ]
    # Beside each share of all targets, the share of the answered ones (no NO_RESPONSE,
    # REQUEST_FAILED, NOT_A_CONTACT): SMS has 2 reachable of 5 targets, of 2 answered.
    shares = rows(
        conn,
        "SELECT channel, answered, reachable_share, reachable_share_of_answered, "
        "capability_full_share_of_answered, no_capability_share_of_answered "
        "FROM reachability WHERE run_id = 'now' ORDER BY 1",
    )
    assert shares == [("RCS", 1, 1 / 3, 1.0, 0.0, 0.0), ("SMS", 2, 2 / 5, 1.0, 1.0, 0.0)]
    assert rows(
        conn,
        "SELECT contact_key, channel, previous_run_id, previous_status, new_status, "
        "change FROM capability_changes ORDER BY 1, 2",
    ) == [
        ("A", "RCS", "older", "NO_CAPABILITY", "CAPABILITY_PARTIAL", "gained"),  # further back
        ("A", "SMS", "prev", "NO_CAPABILITY", "CAPABILITY_FULL", "gained"),
    ]
    assert ("SMS", "NOT_A_CONTACT", "CONTACT_NOT_FOUND", 1) in rows(
        conn, "SELECT channel, status, reason_code, targets FROM reasons WHERE run_id = 'now'"
    )
    # FULL before PARTIAL, whatever the preference (RCS first) says.
    assert rows(
        conn,
        "SELECT channels, first_choice FROM channel_order "
        "WHERE run_id = 'now' AND contact_key = 'A'",
    ) == [(["SMS", "RCS"], "SMS")]
    assert rows(
        conn,
        "SELECT channels, first_choice FROM channel_order "
        "WHERE run_id = 'now' AND contact_key = 'B'",
    ) == [([], None)]


def test_reachability_by_country_and_routing(conn: duckdb.DuckDBPyConnection) -> None:
    given(conn)
    conn.execute(
        "UPDATE targets SET country = CASE contact_key WHEN 'A' THEN 'SE' "
        "WHEN 'D' THEN 'unknown' ELSE 'NO' END WHERE run_id = 'now'"
    )
    steps.build(conn, "now")
    assert rows(
        conn,
        """SELECT country, channel, targets, capability_full, capability_partial,
                         no_capability, no_response, request_failed, reachable, reachable_share,
                         not_a_contact
                         FROM reachability_by_country WHERE run_id = 'now' ORDER BY 1, 2""",
    ) == [
        ("NO", "RCS", 1, 0, 0, 0, 1, 0, 0, 0.0, 0),
        ("NO", "SMS", 3, 1, 0, 0, 1, 1, 1, 1 / 3, 0),
        ("SE", "RCS", 1, 0, 1, 0, 0, 0, 1, 1.0, 0),
        ("SE", "SMS", 1, 1, 0, 0, 0, 0, 1, 1.0, 0),
        ("unknown", "RCS", 1, 0, 0, 0, 0, 0, 0, 0.0, 1),
        ("unknown", "SMS", 1, 0, 0, 0, 0, 0, 0, 0.0, 1),
    ]
    # A: SMS is FULL, RCS only PARTIAL, so SMS first despite the preference (RCS, SMS);
    # E: SMS (reused); B, C, D: nothing reaches them.
    assert rows(
        conn,
        "SELECT first_channel, contacts, share FROM routing WHERE run_id = 'now' "
        "ORDER BY 1 NULLS FIRST",
    ) == [(None, 3, 0.6), ("SMS", 2, 0.4)]


def test_building_twice_changes_nothing(conn: duckdb.DuckDBPyConnection) -> None:
    given(conn)
    steps.build(conn, "now")
    first = {t: rows(conn, f"SELECT * FROM {t} ORDER BY ALL") for t in MART_TABLES}
    steps.build(conn, "now")
    assert {t: rows(conn, f"SELECT * FROM {t} ORDER BY ALL") for t in MART_TABLES} == first


def assert_contracts(conn: duckdb.DuckDBPyConnection, *, catalog: bool = False) -> None:
    """Keys unique and not null, statuses allowed, counts adding up: for the state database or
    (`catalog`) the published one, which has no ledger."""
    keys = {
        "capability": "run_id, contact_key, channel",
        "reachability": "run_id, channel",
        "capability_changes": "run_id, contact_key, channel",
        "reasons": "run_id, channel, status, reason_code",
        "targets": "run_id, contact_key, channel",
        "requests": "run_id, request_id",
        "notifications": "request_id, channel, identity",
        "capability_latest": "contact_key, channel",
        "channel_order": "run_id, contact_key",
        "reachability_by_country": "run_id, country, channel",
    }
    if catalog:
        del keys["requests"]
    for table, key in keys.items():
        duplicated = rows(
            conn, f"SELECT {key}, count(*) FROM {table} GROUP BY ALL HAVING count(*) > 1"
        )
        assert duplicated == [], table
        nulls = " OR ".join(f"{k.strip()} IS NULL" for k in key.split(","))
        assert rows(conn, f"SELECT count(*) FROM {table} WHERE {nulls}") == [(0,)], table
    allowed = ", ".join(f"'{s}'" for s in ALL_STATUSES)
    assert rows(conn, f"SELECT count(*) FROM capability WHERE status NOT IN ({allowed})") == [(0,)]
    # Every target exactly once in capability.
    assert rows(
        conn,
        """
        SELECT count(*) FROM targets t FULL JOIN capability c
        USING (run_id, contact_key, channel)
        WHERE (t.run_id IS NULL OR c.run_id IS NULL)
          AND run_id IN (SELECT run_id FROM targets)
        """,
    ) == [(0,)]
    sums = rows(
        conn,
        """
        SELECT bool_and(targets = capability_full + capability_partial
           + no_capability + capability_unknown + no_response + request_failed
           + not_a_contact),
        bool_and(abs(capability_full_share + capability_partial_share
           + no_capability_share + capability_unknown_share + no_response_share
           + request_failed_share + not_a_contact_share - 1) < 1e-9),
        bool_and(reachable = capability_full + capability_partial)
        FROM reachability
        """,
    )
    assert sums == [(True, True, True)]
    answered = rows(
        conn,
        "SELECT bool_and(answered = targets - no_response - request_failed - not_a_contact), "
        "bool_and(answered = 0 OR abs(capability_full_share_of_answered "
        "+ capability_partial_share_of_answered + no_capability_share_of_answered "
        "+ capability_unknown_share_of_answered - 1) < 1e-9) FROM reachability",
    )
    assert answered in ([(True, True)], [(None, None)])
    # Per country adds up to per channel; the routing mix to the run's contacts.
    by_country = rows(
        conn,
        """SELECT count(*) FROM reachability x FULL JOIN (
                                   SELECT run_id, channel, sum(targets) AS targets,
                                       sum(reachable) AS reachable
                                   FROM reachability_by_country GROUP BY ALL) c
                               USING (run_id, channel)
                               WHERE (x.targets IS DISTINCT FROM c.targets
                                  OR x.reachable IS DISTINCT FROM c.reachable)
                                 AND run_id IN (SELECT run_id FROM targets)""",
    )
    assert by_country == [(0,)]
    routed = rows(
        conn,
        """SELECT count(*) FROM (SELECT run_id, count(DISTINCT contact_key) AS n
                               FROM capability GROUP BY run_id) c
                           FULL JOIN (SELECT run_id, sum(contacts) AS n, count(*) AS groups,
                               count(DISTINCT coalesce(first_channel, '')) AS distinct_groups
                               FROM routing GROUP BY run_id) r USING (run_id)
                           WHERE (c.n IS DISTINCT FROM r.n OR r.groups <> r.distinct_groups)
                             AND run_id IN (SELECT run_id FROM targets)""",
    )
    assert routed == [(0,)]
    # The routing mart counts each contact under the first channel of its channel_order.
    disagreeing = rows(
        conn,
        """SELECT count(*) FROM routing r
           FULL JOIN (SELECT run_id, first_choice, count(*) AS n FROM channel_order GROUP BY ALL) o
               ON o.run_id = r.run_id AND o.first_choice IS NOT DISTINCT FROM r.first_channel
           WHERE r.contacts IS DISTINCT FROM o.n
             AND coalesce(r.run_id, o.run_id) IN (SELECT run_id FROM targets)""",
    )
    assert disagreeing == [(0,)]


def test_contracts_hold_on_the_given_rows(conn: duckdb.DuckDBPyConnection) -> None:
    given(conn)
    steps.build(conn, "now")
    assert_contracts(conn)


def test_several_answers_for_one_channel_give_one_row(conn: duckdb.DuckDBPyConnection) -> None:
    given(conn)
    # Asked by contact id, Sinch answers WhatsApp for two of D's identities at the same moment.
    for identity in ("46700000042", "46700000041"):
        conn.execute(
            "INSERT INTO notifications (request_id, channel, identity, capability_status, "
            "event_time, received_at, deliveries) VALUES ('rD', 'SMS', ?, "
            "'CAPABILITY_FULL', $t, $t, 1)".replace("$t", "?"),
            [identity, T0 + timedelta(seconds=9), T0 + timedelta(seconds=9)],
        )
    conn.execute(
        'UPDATE requests SET body = \'{"recipient":{"contact_id":"D"}}\' WHERE request_id = \'rD\''
    )
    steps.build(conn, "now")
    assert rows(
        conn,
        "SELECT identity, status FROM capability WHERE run_id = 'now' "
        "AND contact_key = 'D' AND channel = 'SMS'",
    ) == [("46700000041", "CAPABILITY_FULL")]
    assert_contracts(conn)


def test_a_warehouse_from_before_countries_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with open_warehouse(path) as conn:
        for table in ("targets", "capability"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN country")
    with open_warehouse(path, preference=("RCS", "SMS")) as conn:
        given(conn)
        steps.build(conn, "now")
        assert rows(
            conn, "SELECT DISTINCT country FROM reachability_by_country WHERE run_id = 'now'"
        ) == [("unknown",)]


def test_channel_order_ranks_by_preference_then_alphabetically(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    answers = [
        ("WHATSAPP", "CAPABILITY_FULL"),
        ("MESSENGER", "CAPABILITY_FULL"),
        ("SMS", "CAPABILITY_FULL"),
        ("RCS", "CAPABILITY_FULL"),
        ("VIBERBM", "CAPABILITY_PARTIAL"),
        ("MMS", "NO_CAPABILITY"),
    ]
    for channel, status in answers:
        conn.execute(
            "INSERT INTO capability (run_id, contact_key, channel, status, reused) "
            "VALUES ('x', 'P', ?, ?, false)",
            [channel, status],
        )
    # Preference (RCS, SMS) first, then the other fully reachable ones alphabetically, then
    # the partially reachable; the unreachable MMS not at all.
    assert rows(conn, "SELECT channels, first_choice FROM channel_order WHERE run_id = 'x'") == [
        (["RCS", "SMS", "MESSENGER", "WHATSAPP", "VIBERBM"], "RCS")
    ]
    routing = (Path(__file__).parents[2] / "pipeline/sql/marts/60_routing.sql").read_text()
    for statement in _statements(routing):
        conn.execute(statement, {"run_id": "x"})
    assert rows(conn, "SELECT first_channel, contacts FROM routing WHERE run_id = 'x'") == [
        ("RCS", 1)
    ]


def test_constants_replace_whole_names_only() -> None:
    from pipeline.warehouse import with_constants

    sql = "run_id = $run_id AND x IN $reuse_runs AND $reuse AND y = $reused"
    constants: dict[str, list[str] | bool] = {"reuse": True, "reuse_runs": ["r1"], "run": False}
    assert with_constants(sql, constants) == (
        "run_id = $run_id AND x IN ('r1') AND true AND y = $reused"
    )
