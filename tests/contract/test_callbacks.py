"""Every callback shape Sinch's SDK models allow is acknowledged and lands as it should.

Each case of `sdk_callbacks.CASES` is sent signed through the real receiver app (in-process,
with its lifespan: the landing writer seals its segment at the end), the landing directory is
ingested into a working state that has the queries the cases without `request_id` answer, and
each case's row is compared with what the models say it carries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline import ledger
from pipeline.db import rows_as_dicts
from pipeline.landing.ingest import ingest_landing
from pipeline.receiver import CALLBACK_PATH, create_app
from pipeline.settings import ReceiverSettings, Secret
from pipeline.warehouse import open_warehouse
from tests.conftest import WEBHOOK_SECRET, add_targets, asgi_client, signed
from tests.contract.sdk_callbacks import APP_ID, CASES, CallbackCase

RUN_ID = "contract"
# Queries sent before every case's event_time (a query sent after it is never its answer).
SENT_AT = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Delivered:
    statuses: dict[str, int]  # case -> HTTP status the receiver answered
    notifications: dict[str, dict[str, Any]]  # request_id -> its row
    others: list[Any]  # bodies kept in other_events, parsed
    asked: dict[str, str]  # contact_key -> the request_id of its query
    unmatched: int


def plan_and_accept(conn: Any, cases: list[CallbackCase]) -> dict[str, str]:
    """The contract run's queries for the cases without request_id, sent and accepted."""
    asked = [c.asked for c in cases if c.asked is not None]
    rows = [
        {"contact_key": a.contact_key, "channel": channel, "identity": a.identity, "row": n}
        for n, a in enumerate(asked)
        for channel in a.channels
    ]
    add_targets(
        conn,
        "SELECT $run AS run_id, contact_key, channel, identity, 'contract.csv' AS source, "
        "row AS row_number FROM (SELECT unnest($rows, recursive := true))",
        {"run": RUN_ID, "rows": rows},
    )
    conn.execute(
        "INSERT INTO runs (run_id, started_at, status) VALUES (?, ?, 'running')", [RUN_ID, SENT_AT]
    )
    ledger.plan_requests(conn, RUN_ID, APP_ID, now=SENT_AT)
    requests = dict(conn.execute("SELECT contact_key, request_id FROM requests").fetchall())
    events = [
        ledger.RequestEvent(
            request_id, ledger.ACCEPTED, 1, 200, sent_at=SENT_AT, accepted_at=SENT_AT
        )
        for request_id in requests.values()
    ]
    ledger.record_events(conn, RUN_ID, events)
    return {str(key): str(request_id) for key, request_id in requests.items()}


async def deliver(landing: Path, cases: list[CallbackCase]) -> dict[str, int]:
    """Send each case signed, as Sinch would, to the receiver app; its answer per case."""
    app = create_app(ReceiverSettings(landing_dir=str(landing)), (Secret(WEBHOOK_SECRET),))
    statuses = {}
    async with asgi_client(app) as client:
        for case in cases:
            body = orjson.dumps(case.body)
            response = await client.post(CALLBACK_PATH, content=body, headers=signed(body))
            statuses[case.name] = response.status_code
    return statuses


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory) -> Delivered:
    home = tmp_path_factory.mktemp("contract")
    with open_warehouse(home / "state.duckdb") as conn:
        asked = plan_and_accept(conn, CASES)
        statuses = asyncio.run(deliver(home / "landing", CASES))
        ingest_landing(conn, home / "landing")
        rows = rows_as_dicts(conn.execute("SELECT * FROM notifications"))
        others = [
            orjson.loads(r[0]) for r in conn.execute("SELECT body FROM other_events").fetchall()
        ]
        unmatched = conn.execute("SELECT count(*) FROM unmatched_notifications").fetchone()
    return Delivered(
        statuses,
        {str(row["request_id"]): row for row in rows},
        others,
        asked,
        int(unmatched[0]) if unmatched else -1,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_sdk_callback_shape_is_acknowledged_and_lands_as_the_models_say(
    case: CallbackCase, delivered: Delivered
) -> None:
    assert delivered.statuses[case.name] == 200
    if case.lands is None:
        assert case.body in delivered.others
        return
    expected = dict(case.lands)
    if expected["request_id"] is None:
        assert case.asked is not None
        expected["request_id"] = delivered.asked[case.asked.contact_key]
    row = delivered.notifications[expected["request_id"]]
    assert {column: row[column] for column in expected} == expected


def test_nothing_is_lost_or_left_unmatched(delivered: Delivered) -> None:
    notifications = [c for c in CASES if c.lands is not None]
    assert len(delivered.notifications) == len(notifications)
    assert len(delivered.others) == len(CASES) - len(notifications)
    assert delivered.unmatched == 0
