"""End to end: callbacks without request_id answer every target exactly as with request ids.

Two embedded runs (their own simulator, receiver and warehouse) over the same contacts with the
same simulator seed; in the second the simulator leaves request_id out of every callback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from tests.conftest import write_config
from tests.e2e.test_audit import capaudit, small_sample

SIMULATOR = {
    "seed": 7,
    "webhook_rate": 2000,
    "callback_delay_ms": 50,
    "callback_duplicate_rate": 0.1,
}


def audit(tmp_path: Path, contacts: Path, omit_share: float) -> duckdb.DuckDBPyConnection:
    tmp_path.mkdir()
    config = write_config(
        tmp_path / "capaudit.toml",
        tmp_path,
        contacts={"paths": [str(contacts)]},
        collect={"deadline_seconds": 30},
        simulator={**SIMULATOR, "omit_request_id_share": omit_share},
    )
    done = capaudit("run", "--config", str(config), "--run-id", "night")
    assert done.returncode == 0, done.stderr
    # The working state: correlation's own tables (unmatched_notifications) are not published.
    return duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True)


def answers(conn: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT contact_key, channel, identity, status, reason_code, channel_capabilities "
        "FROM capability WHERE run_id = 'night' ORDER BY contact_key, channel"
    ).fetchall()


def test_callbacks_without_request_id_give_the_same_answers(tmp_path: Path) -> None:
    contacts = small_sample(tmp_path, 120)
    with audit(tmp_path / "with_ids", contacts, 0.0) as conn:
        expected = answers(conn)
        assert conn.execute("SELECT DISTINCT matched_by FROM notifications").fetchall() == [
            ("request_id",)
        ]
    with audit(tmp_path / "without_ids", contacts, 1.0) as conn:
        assert answers(conn) == expected
        ways = dict(
            conn.execute("SELECT matched_by, count(*) FROM notifications GROUP BY 1").fetchall()
        )
        unmatched = conn.execute("SELECT count(*) FROM unmatched_notifications").fetchone()
        [repeated] = conn.execute(
            "SELECT sum(deliveries) - count(*) FROM notifications"
        ).fetchone() or (0,)
        counts = conn.execute("SELECT counts FROM runs").fetchone()
    assert {s for _, _, _, s, _, _ in expected} >= {"CAPABILITY_FULL", "NO_CAPABILITY"}
    assert "NO_RESPONSE" not in {s for _, _, _, s, _, _ in expected}
    # Every callback was matched by identity, the unknown contact's by contact id; repeated
    # deliveries were merged (not taken for another query), and nothing was left over.
    assert set(ways) == {"identity", "contact_id"}
    assert ways["contact_id"] == 1
    assert unmatched == (0,)
    assert repeated > 0
    collect = json.loads(counts[0])["collect"]
    assert collect["unmatched"] == {"no_outstanding_query": 0, "ambiguous": 0}
    assert collect["matched_by"] == ways
