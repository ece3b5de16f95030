"""Ingest landing segments into `notifications`: incremental, idempotent, exactly once.

`landing_files` remembers how many bytes of each segment are already in the warehouse, and
that offset moves in the same transaction as the rows, so ingesting twice changes nothing and
a crash mid-ingest loses nothing. Only complete lines are read from a segment still being
written (or left open by a crashed receiver: its torn last line was never acknowledged).
A notification delivered again (Sinch retries, duplicates, a re-sent request, two receivers)
is merged on (request_id, channel, identity) and counted in `deliveries`. A notification about
the whole request (channel `CHANNEL_UNSPECIFIED`, empty, null or missing) gets channel `''`
here, once, so that matching and the models know one spelling. A notification
without request_id is recognised by a fingerprint instead and matched to its query by
`correlate.py`, in the same transaction.

    stats = ingest_landing(conn, Path("data/landing"))
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from pipeline.db import sql_literal, transaction
from pipeline.errors import WarehouseError
from pipeline.landing import correlate
from pipeline.landing.objects import ObjectLanding
from pipeline.landing.segments import Segment, complete_end, list_segments, open_segment
from pipeline.sinch.models import PHONE_CHANNELS, WHOLE_REQUEST_CHANNEL

log = logging.getLogger(__name__)
LINE_COLUMNS = (
    "{received_at: 'TIMESTAMPTZ', writer: 'VARCHAR', nonce: 'VARCHAR', kind: 'VARCHAR', "
    "body: 'VARCHAR'}"
)
# `reason` is read as JSON: Sinch documents an object, but a plain string is seen too.
CALLBACK_SHAPE = """'{"app_id": "VARCHAR", "event_time": "VARCHAR", "accepted_time": "VARCHAR",
    "capability_notification": {"request_id": "VARCHAR", "contact_id": "VARCHAR",
        "channel": "VARCHAR", "identity": "VARCHAR", "capability_status": "VARCHAR",
        "channel_capabilities": ["VARCHAR"], "reason": "JSON"}}'"""
IDENTIFIERS_SHAPE = """'{"capability_notification": {"request_id": "VARCHAR",
    "contact_id": "VARCHAR", "channel": "VARCHAR", "identity": "VARCHAR"}}'"""
# A capability event is a notification when it names at least a request, channel, identity or
# contact; anything else (no capability_notification object, or an empty one) is kept in
# `other_events`. `{n}` prefixes the fields: the parsed notification (`n.`), or none for the
# columns of `incoming` (filtering there, after the group-by, costs far less than per line).
# A channel naming the whole request (node and dotnet SDKs: CHANNEL_UNSPECIFIED) names no channel.
CHANNEL_NAMED = f"nullif(nullif({{n}}channel, ''), {sql_literal(WHOLE_REQUEST_CHANNEL)})"
IS_NOTIFICATION = (
    f"coalesce(nullif({{n}}request_id, ''), {CHANNEL_NAMED}, nullif({{n}}identity, ''), "
    "nullif({n}contact_id, '')) IS NOT NULL"
)


@dataclass
class IngestStats:
    segments: int = 0
    lines: int = 0
    notifications_new: int = 0
    notifications_repeated: int = 0
    other_events: int = 0
    # Callbacks without request_id (landing/correlate.py): new distinct ones put aside, and
    # those matched to their query in this ingest (also counted in notifications_new).
    without_request_id: int = 0
    matched_by_identity: int = 0
    matched_by_contact_id: int = 0

    def add(self, more: IngestStats) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(more, name))


@dataclass(frozen=True)
class Slice:
    segment: Segment
    start: int
    end: int


def ingest_landing(conn: duckdb.DuckDBPyConnection, landing: Path | ObjectLanding) -> IngestStats:
    """Ingest what landed since the last ingest: segment files, or objects on S3."""
    if isinstance(landing, ObjectLanding):
        from pipeline.landing.s3ingest import ingest_objects

        return ingest_objects(conn, landing)
    slices = _new_slices(conn, landing)
    stats = IngestStats()
    if not slices:
        retry_unmatched(conn, stats, landing)
        return stats
    for batch in batches(slices, memory_limit_bytes(conn)):
        stats.add(ingest_batch(conn, batch, landing))
    return stats


def batches(slices: list[Slice], batch_bytes: int) -> list[list[Slice]]:
    """Slices in batches of about `batch_bytes` of lines each. Merging a night's callbacks at
    once spills the group-by past the memory limit; a batch as large as the memory limit does
    not (10M callbacks, 1 GB: 38.6 s at once, 28.0 s in four batches). While collecting, each
    ingest reads a few new lines and is one batch."""
    batches: list[list[Slice]] = [[]]
    size = 0
    for piece in slices:
        if batches[-1] and size + piece.end - piece.start > batch_bytes:
            batches.append([])
            size = 0
        batches[-1].append(piece)
        size += piece.end - piece.start
    return batches


def memory_limit_bytes(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'").fetchone()
    match = re.fullmatch(r"([\d.]+)\s*([KMGT]?i?B)", str(row[0]) if row else "")
    if not match:
        return 1 << 30
    units = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    units |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
    return int(float(match.group(1)) * units[match.group(2)])


def ingest_batch(
    conn: duckdb.DuckDBPyConnection, slices: list[Slice], landing_dir: Path | ObjectLanding
) -> IngestStats:
    """Ingest `slices` in one transaction: their rows and their offsets move together."""
    stats = IngestStats(segments=len(slices))
    with tempfile.TemporaryDirectory(prefix="capaudit-ingest-") as scratch:
        files = {_readable_copy(s, Path(scratch)): s for s in slices if s.end > s.start}
        try:
            lines: dict[str, int] = {}
            if files:  # read outside the transaction: a failed read must not abort it
                reader = _stage_incoming(conn, files)
            with transaction(conn):
                if files:
                    lines = _merge(conn, stats, reader)
                _match_without_request_id(conn, stats)
                _advance_offsets(conn, slices, lines)
        except duckdb.Error as exc:
            raise WarehouseError(f"ingesting landing segments from {landing_dir}: {exc}") from exc
    return stats


def retry_unmatched(
    conn: duckdb.DuckDBPyConnection, stats: IngestStats, landing_dir: Path | ObjectLanding
) -> None:
    """Nothing new landed, but a notification put aside may match now (its query's acceptance
    reached the ledger since)."""
    try:
        if not correlate.has_unmatched(conn):
            return
        with transaction(conn):
            _match_without_request_id(conn, stats)
    except duckdb.Error as exc:
        raise WarehouseError(f"matching notifications from {landing_dir}: {exc}") from exc


def _match_without_request_id(conn: duckdb.DuckDBPyConnection, stats: IngestStats) -> None:
    matched = correlate.match_unmatched(conn)
    stats.matched_by_identity += matched[correlate.BY_IDENTITY]
    stats.matched_by_contact_id += matched[correlate.BY_CONTACT_ID]
    stats.notifications_new += sum(matched.values())


def _new_slices(conn: duckdb.DuckDBPyConnection, landing_dir: Path) -> list[Slice]:
    known = {
        segment_id: (int(offset), bool(closed))
        for segment_id, offset, closed in conn.execute(
            "SELECT segment_id, bytes_ingested, closed FROM landing_files"
        ).fetchall()
    }
    slices = []
    for segment in list_segments(landing_dir):
        offset, was_closed = known.get(segment.segment_id, (0, False))
        if was_closed:
            continue
        try:
            end = (
                segment.size if segment.closed else complete_end(segment.path, offset, segment.size)
            )
        except FileNotFoundError:  # closed (renamed) just now: the next ingest reads it
            continue
        if end > offset or segment.closed:
            slices.append(Slice(segment, offset, end))
    return slices


def _readable_copy(piece: Slice, scratch: Path) -> str:
    """A file holding exactly the slice's bytes: the segment itself when it is closed and whole.

    An open segment grows while we read it, so its complete lines are copied: reading it in
    place could take lines past `end` and ingest them again next time.
    """
    segment = piece.segment
    if segment.closed and piece.start == 0 and piece.end == segment.size:
        return str(segment.path)
    target = scratch / f"{segment.segment_id}.ndjson"
    with open_segment(segment) as source, target.open("wb") as copy:
        source.seek(piece.start)
        remaining = piece.end - piece.start
        while remaining > 0:
            chunk = source.read(min(remaining, 1 << 20))
            if not chunk:
                break
            copy.write(chunk)
            remaining -= len(chunk)
    return str(target)


@dataclass(frozen=True)
class _LineReader:
    """The landed lines of this ingest as a SQL subquery: (received_at, nonce, kind, body,
    segment_id), one row per complete JSON line; `tolerant` once a line failed to parse."""

    files: list[str]
    tolerant: bool

    def sql(self) -> str:
        return f"""(
            SELECT l.received_at, l.nonce, l.kind, l.body, s.segment_id
            FROM read_json($files, format = 'newline_delimited', columns = {LINE_COLUMNS},
                           filename = true, ignore_errors = {str(self.tolerant).lower()}) l
            JOIN segment_names s USING (filename)
            WHERE l.body IS NOT NULL)"""

    def execute(self, conn: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyConnection:
        return conn.execute(sql.replace("$lines", self.sql()), {"files": self.files})


def _stage_incoming(conn: duckdb.DuckDBPyConnection, files: dict[str, Slice]) -> _LineReader:
    """Read, parse and merge the landed lines into `incoming` in one pass over the files (the
    lines are never stored: at 10M callbacks their bodies alone are 3 GB)."""
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE segment_names (filename VARCHAR, segment_id VARCHAR)"
    )
    conn.executemany(
        "INSERT INTO segment_names VALUES (?, ?)",
        [(name, piece.segment.segment_id) for name, piece in files.items()],
    )
    reader = _LineReader(list(files), tolerant=False)
    try:
        reader.execute(conn, INCOMING_SQL)
    except duckdb.InvalidInputException as exc:
        # A complete line that is not JSON: written by something else, or damaged on disk.
        # It cannot be recovered; it must not stop every later ingest. Skip it and say so.
        reader = _LineReader(list(files), tolerant=True)
        reader.execute(conn, INCOMING_SQL)
        log.warning("landing segments hold lines that are not JSON, skipped: %s", exc)
    return reader


def _merge(
    conn: duckdb.DuckDBPyConnection, stats: IngestStats, reader: _LineReader
) -> dict[str, int]:
    """Merge `incoming` into the notifications; returns the lines read per segment."""
    others = _drop_other_lines(conn)
    repeated = conn.execute("""
        UPDATE notifications n SET deliveries = n.deliveries + i.deliveries
        FROM incoming i
        WHERE n.request_id = i.request_id AND n.channel = i.channel AND n.identity = i.identity
    """).fetchone()
    stats.notifications_repeated = int(repeated[0]) if repeated else 0
    new = conn.execute(
        """
        INSERT INTO notifications BY NAME
        SELECT i.*, $batch AS batch FROM incoming i ANTI JOIN notifications n
            ON n.request_id = i.request_id AND n.channel = i.channel AND n.identity = i.identity
        WHERE i.request_id IS NOT NULL
    """,
        {"batch": correlate.new_batch(conn)},
    ).fetchone()
    stats.notifications_new = int(new[0]) if new else 0
    repeats, stats.without_request_id = correlate.stage_without_request_id(conn)
    stats.notifications_repeated += repeats
    stats.other_events = _keep_other_events(conn, reader) if others else 0
    # A callback delivered again counts in the segment of its first delivery.
    lines = dict(
        conn.execute(
            "SELECT segment_id, sum(deliveries)::BIGINT FROM incoming GROUP BY segment_id"
        ).fetchall()
    )
    if stats.other_events:
        for segment_id, count in conn.execute(
            "SELECT segment_id, count(*) FROM landed_others GROUP BY segment_id"
        ).fetchall():
            lines[segment_id] = lines.get(segment_id, 0) + count
    stats.lines = sum(lines.values())
    return lines


def _drop_other_lines(conn: duckdb.DuckDBPyConnection) -> int:
    """Take the lines that are no notification out of `incoming`; returns how many."""
    not_one = f"NOT {IS_NOTIFICATION.format(n='')}"
    row = conn.execute(
        f"SELECT coalesce(sum(deliveries), 0) FROM incoming WHERE {not_one}"
    ).fetchone()
    conn.execute(f"DELETE FROM incoming WHERE {not_one}")
    return int(row[0]) if row else 0


def _keep_other_events(conn: duckdb.DuckDBPyConnection, reader: _LineReader) -> int:
    """Lines that are no notification go to `other_events`; returns how many. They are rare,
    so the files are read again only when there are some."""
    reader.execute(
        conn,
        f"""
        CREATE OR REPLACE TEMP TABLE landed_others AS
        SELECT received_at, nonce, body, segment_id FROM $lines
        WHERE kind <> 'capability' OR NOT {
            IS_NOTIFICATION.format(n="from_json(body, IDENTIFIERS).capability_notification.")
        }""".replace("IDENTIFIERS", IDENTIFIERS_SHAPE),
    )
    row = conn.execute("INSERT INTO other_events SELECT * FROM landed_others").fetchone()
    return int(row[0]) if row else 0


_PHONE_CHANNELS = ", ".join(f"'{c}'" for c in sorted(PHONE_CHANNELS))
# The landed lines, one row per distinct notification, in `notifications`' columns (lines of
# another kind, or naming nothing, make rows that are no notification: `_drop_other_lines`).
# With a request_id a notification is (request_id, channel, identity); without one it is
# recognised by a fingerprint of the callback (its times and the whole notification), so a
# repeated delivery merges while two real answers for one identity stay apart.
INCOMING_SQL = f"""
CREATE OR REPLACE TEMP TABLE incoming AS
WITH parsed AS (
    SELECT received_at, segment_id, cb, cb.capability_notification AS n,
        nullif(cb.capability_notification.request_id, '') AS request_id
    FROM (SELECT received_at, segment_id,
            CASE WHEN kind = 'capability' THEN from_json(body, {CALLBACK_SHAPE}) END AS cb
          FROM $lines)
),
merged AS (
    SELECT
        request_id,
        coalesce({CHANNEL_NAMED.format(n="n.")}, '') AS channel,
        coalesce(CASE WHEN n.channel IN ({_PHONE_CHANNELS})
            THEN regexp_replace(n.identity, '[^0-9]', '', 'g')
            ELSE n.identity END, '') AS identity,
        arg_min(n.contact_id, received_at) AS contact_id,
        arg_min(n.capability_status, received_at) AS capability_status,
        arg_min(n.reason, received_at) AS reason,
        arg_min(n.channel_capabilities, received_at) AS channel_capabilities,
        arg_min(cb.event_time, received_at) AS event_time,
        min(received_at) AS received_at,
        count(*)::INTEGER AS deliveries,
        arg_min(cb.app_id, received_at) AS app_id,
        arg_min(segment_id, received_at) AS segment_id,
        CASE WHEN request_id IS NULL THEN md5(concat_ws('|', cb.app_id, cb.accepted_time,
            cb.event_time, to_json(n))) END AS fingerprint
    FROM parsed
    GROUP BY ALL
)
-- The first delivery's reason and time are decoded once per notification, not once per line.
SELECT request_id, channel, identity, contact_id, capability_status,
    CASE WHEN starts_with(reason, '"') THEN reason->>'$' ELSE reasons[1] END AS reason_code,
    reasons[2] AS reason_description, reasons[3] AS reason_sub_code,
    reasons[4] AS reason_channel_code, channel_capabilities,
    try_cast(event_time AS TIMESTAMPTZ) AS event_time, received_at, deliveries, app_id,
    segment_id, CASE WHEN request_id IS NOT NULL THEN 'request_id' END AS matched_by, fingerprint
FROM (SELECT *, json_extract_string(reason, ['$.code', '$.description', '$.sub_code',
    '$.channel_code']) AS reasons FROM merged)
"""


def _advance_offsets(
    conn: duckdb.DuckDBPyConnection, slices: list[Slice], lines: dict[str, int]
) -> None:
    # One statement over lists, not a statement per segment: an ingest of a few hundred landing
    # objects spent seconds in row-by-row upserts.
    ids = [s.segment.segment_id for s in slices]
    conn.execute(
        """
        INSERT INTO landing_files
        SELECT unnest($ids), unnest($ends), unnest($lines), unnest($closed), $now
        ON CONFLICT (segment_id) DO UPDATE SET bytes_ingested = excluded.bytes_ingested,
            lines_ingested = landing_files.lines_ingested + excluded.lines_ingested,
            closed = excluded.closed, updated_at = excluded.updated_at
        """,
        {
            "ids": ids,
            "ends": [s.end for s in slices],
            "lines": [lines.get(i, 0) for i in ids],
            "closed": [s.segment.closed for s in slices],
            "now": datetime.now(UTC),
        },
    )
