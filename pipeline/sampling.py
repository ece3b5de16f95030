"""Stratified random samples of a run's list: `capaudit run --sample N [--sample-by COLUMN]`.

Contacts are the sampling unit (one request asks all of a contact's channels). The list is cut
into strata (default: the country of the contact's phone number; or any column of `targets`),
the sample is allocated to the strata in proportion to their size (largest remainder, at least
one contact a stratum while the sample is big enough) and drawn within each stratum by ordering
the contacts on md5(seed, contact_key): a simple random sample, the same for the same seed and
list on any machine. Only the drawn contacts stay targets of the run, so only they are queried
and the freshness of the others is untouched; the list's size per stratum and channel is kept in
`sample_frame` for the `estimates` model (pipeline/sql/marts/50_estimates.sql).

    summary = draw_sample(conn, run_id, SampleSpec(size=20_000))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from pipeline.db import rows_as_dicts, transaction
from pipeline.errors import UsageError

COUNTRY = "country"
UNKNOWN_STRATUM = "ZZ"  # libphonenumber's "unknown region": contacts asked by contact id only
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class SampleSpec:
    size: int
    by: str = COUNTRY
    seed: int = 1


@dataclass
class SampleSummary:
    size: int = 0
    by: str = COUNTRY
    seed: int = 1
    list_contacts: int = 0
    sampled_contacts: int = 0
    list_targets: int = 0
    sampled_targets: int = 0
    strata: dict[str, dict[str, int]] = field(default_factory=dict)


def allocate(populations: dict[str, int], size: int) -> dict[str, int]:
    """Proportional allocation of `size` over strata of the given sizes (largest remainder);
    every stratum gets at least one while the sample has room for all of them."""
    total = sum(populations.values())
    if size >= total:
        return dict(populations)
    floor = 1 if size >= len(populations) else 0
    shares = {s: size * n / total for s, n in populations.items()}
    taken = {s: min(n, max(floor, math.floor(shares[s]))) for s, n in populations.items()}
    spare = size - sum(taken.values())
    by_remainder = sorted(populations, key=lambda s: (taken[s] - shares[s], s))
    while spare > 0:
        for stratum in by_remainder:
            if spare > 0 and taken[stratum] < populations[stratum]:
                taken[stratum] += 1
                spare -= 1
    while spare < 0:  # the floor of one gave small strata more than their share
        for stratum in sorted(populations, key=lambda s: (shares[s] - taken[s], s)):
            if spare < 0 and taken[stratum] > floor:
                taken[stratum] -= 1
                spare += 1
    return taken


def strata_sql(conn: duckdb.DuckDBPyConnection, column: str) -> str:
    """A query giving each contact of the run its stratum for `--sample-by column`."""
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'targets_with_source'"
        ).fetchall()
    ]
    wanted = column.strip().lower()
    if wanted in names and wanted not in ("run_id", "action", "reuse_run_id"):
        return (
            f'SELECT contact_key, coalesce(min(CAST("{wanted}" AS VARCHAR)), '
            f"'{UNKNOWN_STRATUM}') AS stratum FROM targets_with_source WHERE run_id = $run_id "
            "GROUP BY contact_key"
        )
    usable = sorted({*names} - {"run_id", "action", "reuse_run_id"})
    raise UsageError(f"--sample-by {column}: no such column; use one of {', '.join(usable)}")


def select_sample(conn: duckdb.DuckDBPyConnection, run_id: str, spec: SampleSpec) -> SampleSummary:
    """Draw the sample: write `sample_members` and `sample_frame` for the run (targets kept)."""
    if spec.size < 1:
        raise UsageError(f"--sample {spec.size}: the sample needs at least one contact")
    params = {"run_id": run_id}
    query = strata_sql(conn, spec.by)
    conn.execute(f"CREATE OR REPLACE TEMP TABLE contact_strata AS {query}", params)
    sizes = dict(conn.execute("SELECT stratum, count(*) FROM contact_strata GROUP BY 1").fetchall())
    allocation = allocate({str(k): int(v) for k, v in sizes.items()}, spec.size)
    list_contacts = sum(int(v) for v in sizes.values())
    wanted = pa.table({"stratum": list(allocation), "wanted": list(allocation.values())})
    conn.register("allocation", wanted)
    try:
        _write_sample(conn, run_id, spec.seed)
    finally:
        conn.unregister("allocation")
        conn.execute("DROP TABLE IF EXISTS contact_strata")
    summary = sample_summary(conn, run_id, spec)
    summary.list_contacts = list_contacts
    return summary


def _write_sample(conn: duckdb.DuckDBPyConnection, run_id: str, seed: int) -> None:
    params = {"run_id": run_id, "seed": f"{seed}:"}
    conn.execute("DELETE FROM sample_members WHERE run_id = $run_id", {"run_id": run_id})
    conn.execute("DELETE FROM sample_frame WHERE run_id = $run_id", {"run_id": run_id})
    conn.execute(
        """
        INSERT INTO sample_members
        SELECT $run_id, contact_key, stratum FROM (
            SELECT s.contact_key, s.stratum, a.wanted, row_number() OVER (
                PARTITION BY s.stratum ORDER BY md5($seed || s.contact_key)) AS draw
            FROM contact_strata s JOIN allocation a USING (stratum)
        ) WHERE draw <= wanted
        """,
        params,
    )
    conn.execute(
        """
        INSERT INTO sample_frame
        SELECT $run_id, s.stratum, t.channel, count(*), count(m.contact_key)
        FROM targets t JOIN contact_strata s USING (contact_key)
        LEFT JOIN sample_members m ON m.run_id = $run_id AND m.contact_key = t.contact_key
        WHERE t.run_id = $run_id
        GROUP BY s.stratum, t.channel
        """,
        {"run_id": run_id},
    )


def keep_only_sample(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Drop the targets that were not drawn: they are neither queried nor reported."""
    conn.execute(
        "DELETE FROM targets WHERE run_id = $run_id AND contact_key NOT IN "
        "(SELECT contact_key FROM sample_members WHERE run_id = $run_id)",
        {"run_id": run_id},
    )


def draw_sample(conn: duckdb.DuckDBPyConnection, run_id: str, spec: SampleSpec) -> SampleSummary:
    """Draw the sample and keep only its contacts as the run's targets, in one transaction."""
    with transaction(conn):
        summary = select_sample(conn, run_id, spec)
        keep_only_sample(conn, run_id)
    return summary


def sample_summary(conn: duckdb.DuckDBPyConnection, run_id: str, spec: SampleSpec) -> SampleSummary:
    summary = SampleSummary(size=spec.size, by=spec.by, seed=spec.seed)
    rows = conn.execute(
        "SELECT stratum, sum(population), sum(sample) FROM sample_frame WHERE run_id = $run_id "
        "GROUP BY stratum ORDER BY stratum",
        {"run_id": run_id},
    ).fetchall()
    summary.strata = {str(s): {"targets": int(n), "sampled": int(k)} for s, n, k in rows}
    summary.list_targets = sum(int(n) for _, n, _ in rows)
    summary.sampled_targets = sum(int(k) for _, _, k in rows)
    counts = conn.execute(
        "SELECT count(*) FROM sample_members WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    summary.sampled_contacts = int(counts[0]) if counts else 0
    return summary


def half_width(sample: int, population: int, share: float = 0.5) -> float:
    """The 95% interval's half-width a sample of `sample` targets out of `population` buys
    (normal approximation with finite-population correction; 0.5 is the worst case)."""
    if sample <= 0:
        return 1.0
    fpc = (population - sample) / (population - 1) if population > 1 else 0.0
    return Z_95 * math.sqrt(max(0.0, fpc) * share * (1 - share) / sample)


def widest_half_width(conn: duckdb.DuckDBPyConnection, run_id: str) -> float:
    """The largest half-width over the run's channels that its sample buys (worst case share)."""
    rows = conn.execute(
        "SELECT sum(sample), sum(population) FROM sample_frame WHERE run_id = $run_id "
        "GROUP BY channel",
        {"run_id": run_id},
    ).fetchall()
    return max((half_width(int(n), int(total)) for n, total in rows), default=1.0)


def estimate_rows(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, object]]:
    """The run's `estimates` (summary.json key `estimates`), whole list first per channel."""
    cursor = conn.execute(
        "SELECT channel, stratum, share, low, high, level, sample, population, reachable, "
        "no_response, no_response_share, reachable_estimate, reachable_low, reachable_high "
        "FROM estimates WHERE run_id = $run_id ORDER BY channel, stratum NULLS FIRST",
        {"run_id": run_id},
    )
    return rows_as_dicts(cursor)
