"""Transient answers are asked again while the first pass is still being sent (issue 28), each
target at most twice, and a run killed with re-asks pending loses none and asks none a third
time when resumed."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import receiver, sim_stats, simulator, wait_for, write_config
from tests.e2e.test_audit import capaudit, small_sample
from tests.e2e.test_resume import live_env, start_run

TRANSIENT = "('RATE_LIMITED', 'INTERNAL_ERROR', 'CHANNEL_FAILURE')"


def streaming(tmp_path: Path, rows: int) -> tuple[Path, Path]:
    """`rows` contacts at 200/s: several seconds of sending, answers landing within 0.1 s."""
    contacts = small_sample(tmp_path, rows)
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        dispatch={"rate_per_second": 200.0, "max_in_flight": 16},
        simulator={"latency_ms": 5, "webhook_rate": 3000, "callback_delay_ms": 50},
        collect={"deadline_seconds": 30},
    )
    return contacts, config


def state(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


# Per target: the requests that asked it, and how many distinct request_ids answered it.
ASKED = """
SELECT t.contact_key, t.channel, count(DISTINCT r.request_id) AS asked,
    count(DISTINCT r.request_id) FILTER (WHERE r.requery_of IS NOT NULL) AS again
FROM targets t JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
    AND list_contains(r.channels, t.channel)
WHERE t.run_id = '{run}' AND t.action = 'query'
GROUP BY ALL
"""
# Targets whose first ask was answered with a transient failure.
TRANSIENT_FIRST = f"""
SELECT t.contact_key, t.channel
FROM targets t JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
    AND list_contains(r.channels, t.channel) AND r.requery_of IS NULL
JOIN notifications n ON n.request_id = r.request_id AND n.channel IN (t.channel, '')
WHERE t.run_id = '{{run}}' AND n.reason_code IN {TRANSIENT}
"""


def assert_each_transient_target_asked_again_once(tmp_path: Path, run: str) -> int:
    asked = {(k, c): (n, again) for k, c, n, again in state(tmp_path, ASKED.format(run=run))}
    transient = set(state(tmp_path, TRANSIENT_FIRST.format(run=run)))
    assert transient, "no transient answer: nothing was tested"
    assert max(n for n, _ in asked.values()) <= 2  # never a third time
    assert all(asked[target][1] == 1 for target in transient)  # none lost
    # Only a transient first answer is asked again, and a re-ask is never asked again.
    assert {target for target, (_, again) in asked.items() if again} == transient
    nested = state(
        tmp_path,
        f"SELECT count(*) FROM requests q JOIN requests r ON r.request_id = q.requery_of "
        f"WHERE q.run_id = '{run}' AND r.requery_of IS NOT NULL",
    )
    assert nested == [(0,)]
    assert state(tmp_path, f"SELECT DISTINCT state FROM requests WHERE run_id = '{run}'") == [
        ("accepted",)
    ]
    no_answer = state(
        tmp_path,
        f"SELECT count(*) FROM capability WHERE run_id = '{run}' AND status = 'NO_RESPONSE'",
    )
    assert no_answer == [(0,)]
    return len(transient)


def test_transient_answers_are_asked_again_while_the_first_pass_is_sent(tmp_path: Path) -> None:
    contacts, config = streaming(tmp_path, 1200)
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        args = ["run", "--config", str(config), "--contacts", str(contacts), "--run-id", "r"]
        done = capaudit(*args, env=live_env(sim_url, receiver_url))
        stats = sim_stats(sim_url)
    assert done.returncode == 0, done.stderr
    transient = assert_each_transient_target_asked_again_once(tmp_path, "r")
    # Interleaved: re-asks went out before the first pass ended, in the same stream.
    before_last_first = state(
        tmp_path,
        """
        SELECT count(*) FROM requests WHERE run_id = 'r' AND requery_of IS NOT NULL
          AND sent_at < (SELECT max(sent_at) FROM requests WHERE run_id = 'r'
                         AND requery_of IS NULL)
        """,
    )[0][0]
    assert before_last_first > transient // 3, (before_last_first, transient)
    # Every request was sent once: the ledger and Sinch agree.
    requests = state(tmp_path, "SELECT count(*) FROM requests WHERE run_id = 'r'")[0][0]
    assert stats["queries_accepted"] == requests
    assert stats["request_ids_repeated"] == 0
    # A re-ask asks what the first ask asked, for the channel that failed.
    differing = state(
        tmp_path,
        """
        WITH asked AS (
            SELECT request_id, requery_of, unnest(from_json(
                body->'$.recipient.identified_by.channel_identities',
                '[{"channel": "VARCHAR", "identity": "VARCHAR"}]')) AS ci
            FROM requests WHERE run_id = 'r')
        SELECT count(*) FROM asked q
        WHERE q.requery_of IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM asked f WHERE f.request_id = q.requery_of AND f.ci = q.ci)
        """,
    )
    assert differing == [(0,)]


def test_kill_9_with_reasks_pending_then_resume_asks_none_a_third_time(tmp_path: Path) -> None:
    contacts, config = streaming(tmp_path, 1500)
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        live = live_env(sim_url, receiver_url)
        run = start_run(config, contacts, "k9r", live)
        # Killed mid-stream: re-asks planned and sent, some planned and not sent, or in flight,
        # and transient answers landed that no ingest has read yet.
        wait_for(lambda: sim_stats(sim_url)["queries_accepted"] >= 800, timeout=90)
        run.send_signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        run.communicate()
        assert sim_stats(sim_url)["queries_accepted"] < 1500, "finished before it was killed"
        time.sleep(0.5)
        resume = ["run", "--config", str(config), "--resume", "--run-id", "k9r"]
        done = capaudit(*resume, env=live)
        stats = sim_stats(sim_url)
    assert done.returncode == 0, done.stderr
    assert_each_transient_target_asked_again_once(tmp_path, "k9r")
    planned_before_the_kill = state(
        tmp_path,
        "SELECT count(*) FROM requests WHERE run_id = 'k9r' AND requery_of IS NOT NULL "
        f"AND planned_at < '{killed_at.isoformat()}'",
    )[0][0]
    assert planned_before_the_kill > 0  # the kill came with re-asks under way
    # Only requests in flight at the kill went out twice, with the same request_id.
    requests = state(tmp_path, "SELECT count(*) FROM requests WHERE run_id = 'k9r'")[0][0]
    assert stats["request_ids_repeated"] <= 16
    assert stats["queries_accepted"] - stats["request_ids_repeated"] == requests
    # Sinch was asked about each identity on each channel at most twice (re-sent request ids
    # aside): the notifications name at most two requests per target.
    answered_by = state(
        tmp_path,
        "SELECT max(n) FROM (SELECT count(DISTINCT request_id) AS n FROM notifications "
        "GROUP BY channel, identity)",
    )
    assert answered_by[0][0] <= 2
