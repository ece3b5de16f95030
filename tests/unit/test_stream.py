"""The stream of requests to send: re-asks planned while sending go out before the rest of the
first pass, nothing twice, nothing skipped; it ends when the feed says no re-ask will come
(pipeline/submit/stream.py), and the re-asks ask again what the first ask asked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson

from pipeline import ledger
from pipeline.submit.stream import ReaskFeed, pending_requests
from pipeline.warehouse import ensure_schema

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
CONTACTS = 12_000  # more than two pages of the first pass


def planned_run(conn: duckdb.DuckDBPyConnection) -> None:
    ensure_schema(conn)
    conn.execute("INSERT INTO target_files VALUES ('r', 0, 'list.csv')")
    conn.execute(
        """
        INSERT INTO targets (run_id, contact_id, channel, identity, file_index, row_number)
        SELECT 'r', 'C' || i, channel, (46700000000 + i)::VARCHAR, 0, i
        FROM range($n) t(i), (VALUES ('WHATSAPP'), ('RCS'), ('SMS')) c(channel)
        """,
        {"n": CONTACTS},
    )
    ledger.plan_requests(conn, "r", "app", now=NOW)


def transient(conn: duckdb.DuckDBPyConnection, request_id: str, channel: str) -> None:
    """A transient answer landed for `channel` of `request_id`, in an ingest of its own."""
    conn.execute(
        "INSERT INTO notifications (request_id, channel, identity, capability_status, "
        "reason_code, received_at, deliveries) VALUES (?, ?, 'x', 'CAPABILITY_UNKNOWN', "
        "'RATE_LIMITED', ?, 1)",
        [request_id, channel, NOW],
    )


def test_reasks_go_out_before_the_rest_of_the_first_pass_each_once(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        planned_run(conn)
        sent = asyncio.run(stream_with_answers(conn))
        reasks = dict(
            conn.execute(
                "SELECT request_id, channels FROM requests WHERE requery_of IS NOT NULL"
            ).fetchall()
        )
    ids = [r.request_id for r in sent]
    assert len(ids) == len(set(ids)) == CONTACTS + 2  # nothing twice, nothing skipped
    # Each re-ask went out right after it was planned, long before the first pass ended.
    assert sorted(ids.index(request_id) for request_id in reasks) == [10, 6_000]
    assert sorted(tuple(c) for c in reasks.values()) == [("RCS",), ("SMS",)]
    first = orjson.loads(sent[0].body)["recipient"]["identified_by"]["channel_identities"]
    for request in sent:
        if request.request_id in reasks:
            asked = orjson.loads(request.body)["recipient"]["identified_by"]["channel_identities"]
            assert len(asked) == 1
            assert asked[0] in first  # what the first ask asked, for that channel


async def stream_with_answers(conn: duckdb.DuckDBPyConnection) -> list[ledger.PendingRequest]:
    """The stream, with a transient answer landing after the 10th and the 6,000th request sent,
    and a watch that ends the feed once the stream has handed out everything."""
    feed, since = ReaskFeed(asyncio.Event()), 0
    sent: list[ledger.PendingRequest] = []

    async def watch() -> None:
        await feed.drained.wait()  # everything handed out: nothing more will be planned
        feed.end()

    watcher = asyncio.create_task(watch())
    async for request in pending_requests(conn, "r", feed):
        sent.append(request)
        if len(sent) in (10, 6_000):  # answers land: RCS of the first request, then its SMS
            transient(conn, sent[0].request_id, "RCS" if len(sent) == 10 else "SMS")
            planned, since = ledger.plan_requeries(conn, "r", "app", now=NOW, since=since)
            assert planned == 1  # one re-ask a channel, each once
            feed.planned()
        assert not feed.drained.is_set()  # it never waited with requests left
    await watcher
    return sent


def test_without_a_feed_the_stream_ends_with_what_is_planned(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        planned_run(conn)
        transient(conn, conn.execute("SELECT min(request_id) FROM requests").fetchone()[0], "SMS")
        assert ledger.plan_requeries(conn, "r", "app", now=NOW)[0] == 1  # before (a resume)

        async def everything() -> list[str]:
            return [r.request_id async for r in pending_requests(conn, "r")]

        ids = asyncio.run(everything())
        reask = conn.execute("SELECT request_id FROM requests WHERE requery_of IS NOT NULL")
        assert ids[0] == reask.fetchone()[0]  # a planned re-ask (a resume's) goes first
    assert len(ids) == len(set(ids)) == CONTACTS + 1
