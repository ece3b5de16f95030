"""Creating the contacts Sinch has none for (`[contacts] create_missing`), then asking again.

Sinch runs capability queries only "for contacts that already exist in a project/app"
(CONVERSATION mode). When a query is answered CONTACT_NOT_FOUND, by a callback about the whole
request or by the query's own error, and `create_missing` is on, collect:

1. records each such contact in `contact_creations` as 'pending' before any call (an outbox, as
   `requests` is for queries);
2. looks the contact up by one of its identities (`GET /contacts?channel=&identity=`) and creates
   it with all the row's channel identities only when none is found: a contact created just
   before a kill -9 is found on resume, never created twice;
3. records 'found' or 'created' with Sinch's contact id, or 'failed' with the error;
4. plans one more request for the contact's targets (`requery_of` the first one), sent like any
   re-query: a target is still asked at most twice, and answers it never gets stay NOT_A_CONTACT.

The calls take slots of the same pacer as the queries collect re-sends, so together they keep
to `[dispatch] rate_per_second` (Sinch's 800/s is per project, Contacts API included).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson

from pipeline import ledger
from pipeline.errors import SinchApiError, SinchTransportError
from pipeline.sinch.apps import read_app_profile
from pipeline.sinch.client import SinchClient
from pipeline.sinch.models import CONTACT_NOT_FOUND, DISPATCH_MODE, DISPATCH_REFUSED
from pipeline.submit.pacing import Pacer

log = logging.getLogger(__name__)
PENDING, FOUND, CREATED, FAILED = "pending", "found", "created", "failed"

# Contacts whose first request Sinch answered CONTACT_NOT_FOUND (a callback or the query's
# error), asked by identities (a contact id Sinch does not know cannot be created), not yet
# recorded for creation.
NOT_FOUND_SQL = f"""
INSERT INTO contact_creations
SELECT r.run_id, r.contact_key, any_value(r.request_id),
    to_json(list(DISTINCT {{'channel': t.channel, 'identity': t.identity}})),
    '{PENDING}', NULL, NULL, now()
FROM requests r
JOIN targets t ON t.run_id = r.run_id AND t.contact_key = r.contact_key AND t.identity IS NOT NULL
WHERE r.run_id = $run_id AND r.requery_of IS NULL
  AND r.body LIKE '%"recipient":{{"identified_by"%'
  AND (r.failure_reason = '{CONTACT_NOT_FOUND}' OR EXISTS (
      SELECT 1 FROM notifications n
      WHERE n.request_id = r.request_id AND n.reason_code = '{CONTACT_NOT_FOUND}'))
  AND NOT EXISTS (SELECT 1 FROM contact_creations c
                  WHERE c.run_id = r.run_id AND c.contact_key = r.contact_key)
GROUP BY r.run_id, r.contact_key
"""

# The targets of contacts now found or created, asked once more (never a third time).
CONTACT_ASKS = f"""
SELECT t.contact_key, t.contact_id, t.channel, t.identity, c.request_id AS requery_of
FROM targets t
JOIN contact_creations c ON c.run_id = t.run_id AND c.contact_key = t.contact_key
JOIN requests r ON r.request_id = c.request_id AND list_contains(r.channels, t.channel)
WHERE t.run_id = $run_id AND t.action = 'query' AND c.state IN ('{FOUND}', '{CREATED}')
  AND NOT EXISTS (SELECT 1 FROM requests q WHERE q.run_id = $run_id AND q.requery_of = c.request_id)
"""


# The run's requests still to send that ask by contact_id.
CONTACT_ID_REQUESTS = """
SELECT request_id FROM requests
WHERE run_id = $run_id AND state = 'planned' AND body LIKE '%"recipient":{"contact_id"%'
"""
DISPATCH_REFUSAL = (
    "not sent: the app is in DISPATCH processing mode, which stores no contacts and takes only "
    "identified_by queries; give the row a phone number or identity, or use a CONVERSATION app"
)


@dataclass(frozen=True)
class Creation:
    contact_key: str
    identities: list[dict[str, str]]


@dataclass(frozen=True)
class Settled:
    """What became of one contact: found, created (with Sinch's id) or failed (the error)."""

    contact_key: str
    state: str
    contact_id: str | None = None
    error: str | None = None


@dataclass
class CreationSummary:
    found: int = 0
    created: int = 0
    failed: int = 0
    reasks: int = 0


async def create_missing_contacts(
    conn: duckdb.DuckDBPyConnection,
    client: SinchClient,
    run_id: str,
    *,
    pacer: Pacer,
    max_in_flight: int,
) -> CreationSummary:
    """Find or create every contact Sinch said it has none for, then plan the re-asks."""
    conn.execute(NOT_FOUND_SQL, {"run_id": run_id})
    pending = _pending(conn, run_id)
    summary = CreationSummary()
    slots = asyncio.Semaphore(max_in_flight)

    async def settle(creation: Creation) -> Settled:
        async with slots:
            return await _find_or_create(client, pacer, creation)

    # Recorded as each settles: a kill -9 loses at most the calls in flight, which the lookup
    # on resume finds.
    for settling in asyncio.as_completed([settle(c) for c in pending]):
        settled = await settling
        _record(conn, run_id, settled)
        summary.found += settled.state == FOUND
        summary.created += settled.state == CREATED
        summary.failed += settled.state == FAILED
    summary.reasks = ledger.insert_requests(
        conn, CONTACT_ASKS, run_id, client.app_id, datetime.now(UTC)
    )
    if pending:
        log.info(
            "contacts Sinch had none for: %d found, %d created, %d failed; %d requests re-planned",
            summary.found,
            summary.created,
            summary.failed,
            summary.reasks,
        )
    return summary


async def _find_or_create(client: SinchClient, pacer: Pacer, creation: Creation) -> Settled:
    """Look up first, create only what is not there."""
    first, key = creation.identities[0], creation.contact_key
    try:
        await pacer.acquire()
        found = await client.find_contacts(first["channel"], first["identity"])
        if found:
            return Settled(key, FOUND, str(found[0].get("id", "")))
        await pacer.acquire()
        created = await client.create_contact(creation.identities)
    except (SinchApiError, SinchTransportError) as exc:
        return Settled(key, FAILED, error=str(exc))
    return Settled(key, CREATED, str(created.get("id", "")))


def _pending(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[Creation]:
    rows = conn.execute(
        "SELECT contact_key, channel_identities FROM contact_creations "
        f"WHERE run_id = $run_id AND state = '{PENDING}' ORDER BY contact_key",
        {"run_id": run_id},
    ).fetchall()
    return [Creation(str(key), _identities(text)) for key, text in rows]


def _identities(text: str) -> list[dict[str, str]]:
    items: list[dict[str, Any]] = orjson.loads(text)
    return sorted(
        ({"channel": str(i["channel"]), "identity": str(i["identity"])} for i in items),
        key=lambda i: (i["channel"], i["identity"]),
    )


def _record(conn: duckdb.DuckDBPyConnection, run_id: str, settled: Settled) -> None:
    conn.execute(
        "UPDATE contact_creations SET state = $state, sinch_contact_id = $contact_id, "
        "error = $error, updated_at = now() WHERE run_id = $run_id AND contact_key = $key",
        {
            "state": settled.state,
            "contact_id": settled.contact_id,
            "error": settled.error,
            "run_id": run_id,
            "key": settled.contact_key,
        },
    )


def refuse_contact_id_requests(conn: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """An app in DISPATCH processing mode stores no contacts, and Sinch's recipient model says
    "If Dispatch Mode is used, only identified_by is allowed": the run's planned requests by
    contact_id are refused before sending (REQUEST_FAILED with the reason), never sent."""
    refused = [
        ledger.RequestEvent(
            request_id,
            ledger.FAILED,
            attempts=0,
            error=DISPATCH_REFUSAL,
            failure_reason=DISPATCH_REFUSED,
        )
        for (request_id,) in conn.execute(CONTACT_ID_REQUESTS, {"run_id": run_id}).fetchall()
    ]
    ledger.record_events(conn, run_id, refused)
    ledger.fold_events(conn, run_id)
    if refused:
        log.warning("%d requests by contact_id not sent: %s", len(refused), DISPATCH_REFUSAL)
    return len(refused)


async def refuse_for_processing_mode(
    conn: duckdb.DuckDBPyConnection, run_id: str, client: SinchClient
) -> int:
    """Before sending: read the app's processing mode when the run asks anything by contact_id
    (nothing is read otherwise), and refuse those requests in DISPATCH mode; returns how many.
    An app that cannot be read is taken as CONVERSATION, with a warning: Sinch then answers."""
    row = conn.execute(f"SELECT EXISTS ({CONTACT_ID_REQUESTS})", {"run_id": run_id}).fetchone()
    if not (row and row[0]):
        return 0
    try:
        profile = await read_app_profile(client)
    except (SinchApiError, SinchTransportError) as exc:
        log.warning("could not read the app's processing mode (%s); sending as CONVERSATION", exc)
        return 0
    if profile.processing_mode != DISPATCH_MODE:
        return 0
    return refuse_contact_id_requests(conn, run_id)


def creation_counts(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Contacts per state of creation for the run (`runs.counts.collect.contacts`)."""
    rows = conn.execute(
        "SELECT state, count(*) FROM contact_creations WHERE run_id = $run_id GROUP BY state",
        {"run_id": run_id},
    ).fetchall()
    return {str(state): int(count) for state, count in rows}
