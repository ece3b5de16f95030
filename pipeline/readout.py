"""What a built run reads out to people on the terminal: its reachability rows per channel and,
for a sampled run, the estimates for the whole list (which lead: they are what it ran for).

    result.channels, result.estimates = readout(conn, run_id)
"""

from __future__ import annotations

from typing import Any

import duckdb

from pipeline.db import rows_as_dicts
from pipeline.sampling import estimate_rows


def reachability(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """The run's `reachability` rows, one per channel."""
    return rows_as_dicts(
        conn.execute("SELECT * FROM reachability WHERE run_id = $r ORDER BY channel", {"r": run_id})
    )


def readout(
    conn: duckdb.DuckDBPyConnection, run_id: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(reachability rows, estimate rows: empty unless the run was sampled)."""
    return reachability(conn, run_id), estimate_rows(conn, run_id)
