"""Creating the contacts Sinch has none for: looked up first, so a kill -9 between Sinch creating
a contact and the ledger hearing of it never creates it twice; re-asked once, paced."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

from pipeline import ledger, steps
from pipeline.settings import Secret, Secrets, Settings, SimulatorSettings, SinchSettings
from pipeline.simulator.app import create_app
from pipeline.sinch.client import SinchClient
from pipeline.submit.contacts import create_missing_contacts
from pipeline.submit.pacing import Pacer
from pipeline.warehouse import ensure_schema

KEYS = Secrets(Secret("id"), Secret("secret"), ())
NOW = datetime(2026, 12, 8, 1, 0, tzinfo=UTC)


def planned_and_not_found(conn: duckdb.DuckDBPyConnection, settings: Settings, path: Path) -> None:
    """Load two contacts, plan their requests, and have Sinch answer both CONTACT_NOT_FOUND."""
    path.write_text("contact_id,phone\na,+46701234567\nb,+46701234568\n", encoding="utf-8")
    settings = settings.replace("contacts", phone_channels=("SMS", "WHATSAPP"))
    steps.load(conn, "run", settings, [str(path)])
    ledger.plan_requests(conn, "run", "app", now=NOW)
    conn.execute("UPDATE requests SET state = 'accepted'")
    conn.execute(
        "INSERT INTO notifications (request_id, channel, identity, capability_status, "
        "reason_code, received_at, deliveries) "
        "SELECT request_id, '', '', 'NO_CAPABILITY', 'CONTACT_NOT_FOUND', now(), 1 FROM requests"
    )


async def create(conn: duckdb.DuckDBPyConnection, client: SinchClient) -> int:
    summary = await create_missing_contacts(
        conn, client, "run", pacer=Pacer(1000.0), max_in_flight=4
    )
    return summary.reasks


def test_a_contact_created_before_a_crash_is_found_not_created_again(
    tmp_path: Path, settings: Settings
) -> None:
    app = create_app(SimulatorSettings(contacts_must_exist=True, known_contact_share=0.0))
    transport = httpx.ASGITransport(app)
    calls: list[str] = []

    async def counting(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        return await transport.handle_async_request(request)

    async def main(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
        sinch = SinchSettings(base_url="http://sim.test", auth="basic", project_id="p")
        async with SinchClient(sinch, KEYS, transport=httpx.MockTransport(counting)) as client:
            # The crash: Sinch created contact `a`, then the process died before recording it.
            await client.create_contact([{"channel": "SMS", "identity": "46701234567"}])
            calls.clear()
            first = await create(conn, client)
            again = await create(conn, client)  # as a resume would: nothing left to do
        return first, again

    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        ensure_schema(conn)
        planned_and_not_found(conn, settings, tmp_path / "c.csv")
        first, again = asyncio.run(main(conn))
        states = conn.execute(
            "SELECT contact_key, state FROM contact_creations ORDER BY 1"
        ).fetchall()
        reasks = conn.execute(
            "SELECT count(*), count(DISTINCT requery_of) FROM requests WHERE requery_of IS NOT NULL"
        ).fetchone()
    assert states == [("a", "found"), ("b", "created")]
    # Each looked up first; only `b` created: none twice.
    assert sorted(calls) == [
        "GET /v1/projects/p/contacts",
        "GET /v1/projects/p/contacts",
        "POST /v1/projects/p/contacts",
    ]
    assert app.state.simulator.state.contacts.created == 2
    assert (first, again) == (2, 0)
    assert reasks == (2, 2)  # each contact asked once more, never a third time
