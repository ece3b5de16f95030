"""Retention for landing objects on S3 (`capaudit purge`), as for segment files: an object goes
only when it is fully ingested (in `landing_files`) and older than the cutoff, so nothing not yet
in the warehouse is ever deleted. Only the date folders before the cutoff's date are listed:
an object's date is when it was written, so everything in them is older. Their rows leave
`landing_files` with them (the listing of later ingests never reaches those dates again).
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from pipeline.landing.objects import ObjectLanding, listing_days, new_objects


def old_objects(
    conn: duckdb.DuckDBPyConnection, landing: ObjectLanding, cutoff: datetime
) -> list[str]:
    """Relative keys of the ingested objects written before `cutoff`'s date."""
    days = [d for d in listing_days(None, landing) if d < cutoff.date().isoformat()]
    listed = [key for key, _ in new_objects(landing, days, {})]
    if not listed:
        return []
    ingested = conn.execute(
        "SELECT segment_id FROM landing_files WHERE closed AND segment_id IN (SELECT unnest($k))",
        {"k": listed},
    ).fetchall()
    return sorted(str(row[0]) for row in ingested)


def delete_objects(
    conn: duckdb.DuckDBPyConnection, landing: ObjectLanding, keys: list[str]
) -> None:
    landing.store.delete(landing.where.bucket, [landing.where.key(k) for k in keys])
    conn.execute("DELETE FROM landing_files WHERE segment_id IN (SELECT unnest($k))", {"k": keys})
