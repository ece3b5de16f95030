"""The report's files for other tools: per channel `channels/<CHANNEL>.csv` and `.parquet` (one
row per contact asked on that channel) and `routing.csv` / `.parquet` (one row per contact: the
channels to send on, best first), each sorted by contact.

    paths = write_exports(conn, run_id, out, ["RCS", "SMS"], pseudonym_key=None)

Measured at 10M targets (3 channels of 3.3M; CPU seconds, 2 cores shared with other work):
35-37 s for the report as it was, 28-29 s now, of which the CSV text (formatting 1.1 GB,
timestamps and doubles most) ~8 s and the Parquet files ~5 s. Hence:
- each export is sorted once, straight into its Parquet file (4.3 s a channel), and the CSV is
  copied from that file in its order (2.9 s), instead of a sorted temporary table (3.9 s)
  copied twice (2.3 s + 1.7 s);
- an order-keeping COPY keeps the second core mostly idle, so two exports run side by side,
  each on its own cursor (`EXPORT_WORKERS`), and the summary's queries beside them;
- the routing export does not read the `channel_order` view: ordering each contact's list
  inside the hash aggregate (`list(... ORDER BY ...)`, spilling at the 1 GB limit) took 12 s.
  It folds each contact's reachable channels into a bit mask instead (bit i: the i-th best of
  the run's (status, channel) pairs, ranked by the same `channel_rank` macro) and looks up the
  few distinct masks' lists (4.3 s); tests compare it with the view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from pipeline.db import sql_literal
from pipeline.logs import PHONE_PATTERN
from pipeline.private import make_private_dirs, private_file
from pipeline.report.pseudonyms import hmac_sql

IDENTIFYING = ("contact_key", "contact_id", "identity")
OTHER_COLUMNS = (
    "status, reason_code, array_to_string(channel_capabilities, ' ') AS channel_capabilities, "
    "checked_at, latency_seconds, reused, request_id, error"
)
EXPORT_WORKERS = 2  # exports written at once (the machine we size for has 2 cores)

# One row per contact of the run: its channels, best first, as `channel_order` lists them.
ROUTING_QUERY = """
WITH ranked AS (  -- the run's reachable (status, channel) pairs, best first: bit 0, 1, ...
    SELECT status, channel,
        (row_number() OVER (ORDER BY channel_rank(status, channel), channel) - 1)::INTEGER AS bit
    FROM (VALUES ('CAPABILITY_FULL'), ('CAPABILITY_PARTIAL')) AS reachable(status),
        (SELECT DISTINCT channel FROM capability WHERE run_id = $run_id)
),
contacts AS (
    SELECT c.contact_key, any_value(c.contact_id) AS contact_id,
        coalesce(bit_or(1::BIGINT << r.bit), 0) AS mask
    FROM capability c LEFT JOIN ranked r USING (status, channel)
    WHERE c.run_id = $run_id
    GROUP BY c.contact_key
),
lists AS (  -- one row per distinct mask: a handful
    SELECT m.mask,
        coalesce(list(r.channel ORDER BY r.bit) FILTER (WHERE r.bit IS NOT NULL), [])
            AS channels
    FROM (SELECT DISTINCT mask FROM contacts) m
    LEFT JOIN ranked r ON (m.mask >> r.bit) & 1 = 1
    GROUP BY m.mask
)
SELECT {ids}, channels[1] AS first_channel, channels
FROM contacts JOIN lists USING (mask)
ORDER BY 1
"""

Export = Callable[[duckdb.DuckDBPyConnection], list[Path]]


def channel_columns(pseudonym_key: bytes | None) -> str:
    """The per-channel export's columns; identities keyed-hashed when pseudonymising (and long
    digit runs masked in Sinch's error messages, which may quote a number)."""
    if pseudonym_key is None:
        return f"{', '.join(IDENTIFYING)}, {OTHER_COLUMNS}"
    identifying = ", ".join(f"{hmac_sql(c, pseudonym_key)} AS {c}" for c in IDENTIFYING)
    others = OTHER_COLUMNS.replace(
        "error", f"regexp_replace(error, {sql_literal(PHONE_PATTERN)}, '***', 'g') AS error"
    )
    return f"{identifying}, {others}"


@contextmanager
def exports_started(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    out: Path,
    channels: list[str],
    pseudonym_key: bytes | None,
) -> Iterator[Iterator[Path]]:
    """Start writing each channel's export and the routing export into `out`, `EXPORT_WORKERS`
    at a time, each on a cursor of its own; `conn` stays free meanwhile (for the summary). The
    value yields the paths as they are written (per export, in the order of `channels`, then
    routing) and raises what an export raised.

        with exports_started(conn, run_id, out, channels, None) as written:
            ...  # other queries on conn
            paths = list(written)
    """
    directory = out / "channels"
    make_private_dirs(directory)
    exports: list[Export] = [
        partial(
            _export_channel,
            run_id=run_id,
            channel=channel,
            directory=directory,
            pseudonym_key=pseudonym_key,
        )
        for channel in channels
    ]
    exports.append(partial(_write_routing, run_id=run_id, out=out, pseudonym_key=pseudonym_key))
    with _insertion_order_kept(conn):
        pool = ThreadPoolExecutor(EXPORT_WORKERS, thread_name_prefix="report-export")
        try:
            started = [pool.submit(_on_cursor, conn, export) for export in exports]
            yield (path for future in started for path in future.result())
        finally:  # after a failed export, the ones not started yet are not started
            pool.shutdown(cancel_futures=True)


def write_exports(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    out: Path,
    channels: list[str],
    pseudonym_key: bytes | None,
) -> list[Path]:
    """Write the exports (`exports_started`) and return their paths."""
    with exports_started(conn, run_id, out, channels, pseudonym_key) as written:
        return list(written)


def _on_cursor(conn: duckdb.DuckDBPyConnection, export: Export) -> list[Path]:
    """`export` on a cursor of its own (a connection of its own to the same database): cursors
    run their statements in parallel."""
    with conn.cursor() as cursor:
        return export(cursor)


@contextmanager
def _insertion_order_kept(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """`preserve_insertion_order` on (for every cursor: it is a global setting) while the
    exports are written, as they were before: a sorted query is written in its order."""
    order = conn.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    conn.execute("SET preserve_insertion_order = true")
    try:
        yield
    finally:
        conn.execute(f"SET preserve_insertion_order = {bool(order and order[0])}")


def _write_routing(
    conn: duckdb.DuckDBPyConnection, run_id: str, out: Path, pseudonym_key: bytes | None
) -> list[Path]:
    """`routing.csv` / `.parquet` (the paths returned): one row per contact of the run with the
    channels to send on, best first (as `channel_order` has them), for a sending system to
    import. The CSV lists them space-separated; contact keys and ids are keyed-hashed when
    pseudonymising. Needs `preserve_insertion_order`, which `exports_started` sets."""
    ids = ", ".join(
        c if pseudonym_key is None else f"{hmac_sql(c, pseudonym_key)} AS {c}"
        for c in ("contact_key", "contact_id")
    )
    return _export_sorted(
        conn,
        ROUTING_QUERY.format(ids=ids),
        {"run_id": run_id},
        out / "routing",
        "* REPLACE (array_to_string(channels, ' ') AS channels)",
    )


def _export_channel(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    channel: str,
    directory: Path,
    pseudonym_key: bytes | None,
) -> list[Path]:
    """`<channel>.csv` and `.parquet`, sorted by contact (the paths returned)."""
    query = (
        f"SELECT {channel_columns(pseudonym_key)} FROM capability "
        "WHERE run_id = $run_id AND channel = $channel ORDER BY 1"
    )
    params = {"run_id": run_id, "channel": channel}
    return _export_sorted(conn, query, params, directory / channel, "*")


def _export_sorted(
    conn: duckdb.DuckDBPyConnection,
    query: str,
    params: dict[str, Any],
    stem: Path,
    csv_columns: str,
) -> list[Path]:
    """`<stem>.csv` and `<stem>.parquet` (the paths returned) with `query`'s rows in its order:
    the query written to the Parquet file, and the CSV copied from that file (`csv_columns` of
    it), so that the query is run and sorted once."""
    csv, parquet = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    conn.execute(f"COPY ({query}) TO {sql_literal(str(parquet))} (FORMAT parquet)", params)
    conn.execute(
        f"COPY (SELECT {csv_columns} FROM read_parquet({sql_literal(str(parquet))})) "
        f"TO {sql_literal(str(csv))} (HEADER)"
    )
    for path in (csv, parquet):
        private_file(path)  # DuckDB creates them with the umask's mode
    return [csv, parquet]


def write_reachability(conn: duckdb.DuckDBPyConnection, run_id: str, out: Path) -> Path:
    """`reachability.csv`: the run's `reachability` rows, one per channel."""
    path = out / "reachability.csv"
    conn.execute(
        "COPY (SELECT * EXCLUDE (run_id) FROM reachability WHERE run_id = $run_id "
        f"ORDER BY channel) TO {sql_literal(str(path))} (HEADER)",
        {"run_id": run_id},
    )
    private_file(path)
    return path
