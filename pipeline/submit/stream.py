"""The requests to send as one stream: re-asks first, then the first pass (issue 28).

    feed = ReaskFeed(stop)
    async with contextlib.aclosing(pending_requests(conn, run_id, feed)) as requests:
        await dispatcher.run(requests, stop)

A transient answer (RATE_LIMITED, INTERNAL_ERROR, CHANNEL_FAILURE) that lands while the run
sends is asked once more right away, in the same paced stream (the dispatcher's pacer, its
in-flight bounds, the callback budget), not after the first pass: the watch that ingests while
sending (`steps.CallbackWatch`) plans the re-asks in the ledger (`ledger.plan_requeries`, stored
before they are sent: DESIGN rule 4) and tells the feed; the stream hands them out before its
next first ask.

Re-asks are planned after the first asks, so their uuidv7 request_ids sort after every first
ask's: one page cursor would reach them only at the end. The stream reads the two kinds with a
cursor each (`requery_of` set or not), each in request_id order from the last one it handed out,
so nothing is handed out twice and nothing planned is skipped (a resumed run's planned re-asks
go first). The first pass is read a page ahead in a worker thread, so the pacing never waits
for the database.

When everything planned has been handed out, the stream waits on the feed: for more re-asks
(the last first asks' answers are still landing), or for the watch to say that none will come,
or for `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence

import duckdb

from pipeline.ledger import PendingRequest, pending_page


class ReaskFeed:
    """Between the watch that plans re-asks and the stream that hands them out."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._news = asyncio.Event()
        self._ended = False
        self.drained = asyncio.Event()  # set while the stream waits: all it had is handed out

    def planned(self) -> None:
        """Re-asks were planned: the stream reads them before its next first ask."""
        self._news.set()

    def end(self) -> None:
        """No more re-asks will be planned: the stream ends once it has handed out the rest."""
        self._ended = True
        self._news.set()

    def take(self) -> bool:
        """Whether re-asks were (or may have been) planned since the last call."""
        if not self._news.is_set():
            return False
        self._news.clear()
        return True

    async def more(self) -> bool:
        """Wait, with nothing left to hand out, until re-asks are planned (True), or none will
        be or the run stops (False)."""
        self.drained.set()
        try:
            while not self._news.is_set():
                if self._ended or self._stop.is_set():
                    return False
                await wait_any([self._news, self._stop])
            return True
        finally:
            self.drained.clear()


async def wait_any(events: Sequence[asyncio.Event], seconds: float | None = None) -> None:
    """Wait until one of `events` is set, or `seconds` have passed."""
    tasks = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def pending_requests(
    conn: duckdb.DuckDBPyConnection, run_id: str, feed: ReaskFeed | None = None
) -> AsyncGenerator[PendingRequest, None]:
    """The run's requests still to send, never all in memory: planned re-asks first (and those
    the feed announces as they come), then the first asks. Without a feed it ends when both are
    exhausted. Close it (`contextlib.aclosing`) to end it early."""
    firsts, reasks = conn.cursor(), conn.cursor()
    following: asyncio.Task[list[PendingRequest]] | None = None
    reask_after = ""
    look = True  # re-asks planned before the stream started (a resume) go first
    try:
        page = await asyncio.to_thread(pending_page, firsts, run_id, "", reasks=False)
        index = 0
        while True:
            if look or (feed is not None and feed.take()):
                look = False
                while more := await asyncio.to_thread(
                    pending_page, reasks, run_id, reask_after, reasks=True
                ):
                    reask_after = more[-1].request_id
                    for request in more:
                        yield request
            if index < len(page):
                if following is None:  # the next page, read while this one is sent
                    following = asyncio.create_task(
                        asyncio.to_thread(
                            pending_page, firsts, run_id, page[-1].request_id, reasks=False
                        )
                    )
                index += 1
                yield page[index - 1]
                continue
            if following is not None:
                page, index, following = await following, 0, None
                if page:
                    continue
            if feed is None or not await feed.more():
                return
    finally:
        if following is not None:  # its thread still uses the cursor: let it finish first
            with contextlib.suppress(Exception):
                await following
        firsts.close()
        reasks.close()
