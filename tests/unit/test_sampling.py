"""Sampling and estimates as library functions on a simulated list whose true shares are known.

The statistical acceptance test of issue 14: over 200 sampler seeds the 95% interval covers the
true (finite-population) share in at least 93% of them for every channel, and n = 20,000 buys a
half-width of at most 0.8 percentage points.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from pipeline.errors import UsageError
from pipeline.sampling import (
    SampleSpec,
    allocate,
    draw_sample,
    estimate_rows,
    half_width,
    select_sample,
    widest_half_width,
)
from pipeline.warehouse import ensure_schema, run_model
from tests.conftest import add_targets

CHANNELS = ("WHATSAPP", "RCS", "SMS")
# stratum: (contacts, reachable share per channel); the rest NO_CAPABILITY, NO_RESPONSE 3%,
# REQUEST_FAILED 1%.
STRATA = {
    "SE": (4_000, (0.70, 0.40, 0.95)),
    "DE": (3_000, (0.55, 0.20, 0.90)),
    "BR": (2_000, (0.85, 0.10, 0.97)),
    "IN": (1_000, (0.30, 0.05, 0.80)),
}


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    """In memory: hundreds of draws, no disk in the way."""
    with duckdb.connect(config={"threads": 1}) as connection:  # small queries: no fan-out
        ensure_schema(connection)
        yield connection


def simulated_list(conn: duckdb.DuckDBPyConnection, scale: int = 1) -> dict[str, float]:
    """Targets of run 'list' (stratum in `source`) and the true status of every target;
    returns the true reachable share per channel."""
    for stratum, (contacts, shares) in STRATA.items():
        for channel, share in zip(CHANNELS, shares, strict=True):
            add_targets(
                conn,
                """
                SELECT 'list' AS run_id, $s || i AS contact_key, $c AS channel,
                    NULL::VARCHAR AS identity, $s AS source, i AS row_number FROM range($n) r(i)
                """,
                {"s": stratum, "c": channel, "n": contacts * scale},
            )
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS truth (contact_key VARCHAR, channel VARCHAR,
                    status VARCHAR);
                INSERT INTO truth SELECT $s || i, $c, CASE
                    WHEN u < 0.03 THEN 'NO_RESPONSE' WHEN u < 0.04 THEN 'REQUEST_FAILED'
                    WHEN u < 0.04 + $share * 0.96 THEN 'CAPABILITY_FULL'
                    ELSE 'NO_CAPABILITY' END
                FROM (SELECT i, (hash($s || i || $c) % 1000000) / 1000000 AS u
                      FROM range($n) r(i))
                """,
                {"s": stratum, "c": channel, "n": contacts * scale, "share": share},
            )
    rows = conn.execute(
        "SELECT channel, avg((status = 'CAPABILITY_FULL')::INT) FROM truth GROUP BY channel"
    ).fetchall()
    return {str(c): float(s) for c, s in rows}


def answer_sample(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """What the run's queries would find: the true status of every sampled target."""
    conn.execute("DELETE FROM capability WHERE run_id = $r", {"r": run_id})
    conn.execute(
        """
        INSERT INTO capability (run_id, contact_key, channel, status, reused)
        SELECT $r, t.contact_key, t.channel, t.status, false
        FROM sample_members m JOIN truth t USING (contact_key) WHERE m.run_id = $r
        """,
        {"r": run_id},
    )


def estimates(
    conn: duckdb.DuckDBPyConnection, run_id: str, size: int, seed: int, by: str = "source"
) -> list[dict[str, object]]:
    select_sample(conn, run_id, SampleSpec(size=size, by=by, seed=seed))
    answer_sample(conn, run_id)
    run_model(conn, "marts", "50_estimates.sql", run_id)
    return estimate_rows(conn, run_id)


def test_intervals_cover_the_true_share_in_at_least_93_percent_of_200_seeds(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    truth = simulated_list(conn)
    for table in ("targets", "target_files"):  # one list, sampled 200 times
        conn.execute(f"UPDATE {table} SET run_id = 'sampled'")
    covered = dict.fromkeys(CHANNELS, 0)
    seeds = range(200)
    for seed in seeds:
        for row in estimates(conn, "sampled", size=1_000, seed=seed):
            if row["stratum"] is None:
                low, high = float(row["low"]), float(row["high"])  # type: ignore[arg-type]
                covered[str(row["channel"])] += low <= truth[str(row["channel"])] <= high
    coverage = {channel: hits / len(seeds) for channel, hits in covered.items()}
    assert all(share >= 0.93 for share in coverage.values()), coverage
    assert all(share <= 0.995 for share in coverage.values()), coverage  # not trivially wide


def test_twenty_thousand_buy_a_half_width_of_at_most_point_eight_points(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    simulated_list(conn, scale=15)  # 150,000 contacts
    rows = estimates(conn, "list", size=20_000, seed=7)
    whole = [r for r in rows if r["stratum"] is None]
    assert [r["channel"] for r in whole] == sorted(CHANNELS)
    for row in whole:
        assert row["sample"] == 20_000
        assert row["population"] == 150_000
        assert (float(row["high"]) - float(row["low"])) / 2 <= 0.008  # type: ignore[arg-type]
    assert half_width(20_000, 150_000) <= 0.008
    assert widest_half_width(conn, "list") == pytest.approx(half_width(20_000, 150_000))


def test_estimates_keep_no_response_in_the_denominator_and_extrapolate(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    simulated_list(conn)
    rows = estimates(conn, "list", size=3_000, seed=1)
    for row in rows:
        sample, reachable = int(row["sample"]), int(row["reachable"])  # type: ignore[call-overload]
        if row["stratum"] is not None:
            assert row["share"] == pytest.approx(reachable / sample)
            assert row["no_response_share"] == pytest.approx(int(row["no_response"]) / sample)  # type: ignore[call-overload]
        assert row["low"] <= row["share"] <= row["high"]  # type: ignore[operator]
        assert row["level"] == 0.95
        assert row["reachable_estimate"] == round(float(row["share"]) * int(row["population"]))  # type: ignore[arg-type, call-overload]
    strata = {r["stratum"] for r in rows}
    assert strata == {None, *STRATA}
    assert sum(int(r["no_response"]) for r in rows if r["stratum"] is None) > 0  # type: ignore[call-overload]


def test_a_stratum_sampled_whole_is_exact(conn: duckdb.DuckDBPyConnection) -> None:
    simulated_list(conn)
    rows = estimates(conn, "list", size=10_000, seed=1)  # the whole list
    for row in rows:
        assert row["low"] == pytest.approx(row["share"])
        assert row["high"] == pytest.approx(row["share"])


def test_the_same_seed_draws_the_same_sample_and_another_seed_another(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    simulated_list(conn)

    def members(seed: int) -> set[str]:
        select_sample(conn, "list", SampleSpec(size=500, by="source", seed=seed))
        rows = conn.execute("SELECT contact_key FROM sample_members WHERE run_id = 'list'")
        return {str(r[0]) for r in rows.fetchall()}

    first, again, other = members(3), members(3), members(4)
    assert first == again
    assert len(first) == 500
    assert len(first & other) < 100
    by_stratum = conn.execute(
        "SELECT stratum, count(*) FROM sample_members WHERE run_id = 'list' GROUP BY 1"
    ).fetchall()
    assert dict(by_stratum) == {"SE": 200, "DE": 150, "BR": 100, "IN": 50}  # proportional


def test_draw_sample_keeps_only_the_sample_as_targets(conn: duckdb.DuckDBPyConnection) -> None:
    simulated_list(conn)
    summary = draw_sample(conn, "list", SampleSpec(size=40, by="source", seed=2))
    left = conn.execute(
        "SELECT count(DISTINCT contact_key), count(*) FROM targets WHERE run_id = 'list'"
    ).fetchone()
    assert left == (40, 120)
    assert summary.sampled_contacts == 40
    assert summary.list_contacts == 10_000
    assert summary.list_targets == 30_000


def test_allocation_is_proportional_and_every_stratum_gets_one() -> None:
    assert allocate({"a": 100, "b": 10, "c": 1}, 10) == {"a": 8, "b": 1, "c": 1}
    assert allocate({"a": 5, "b": 5}, 3) == {"a": 2, "b": 1}
    assert allocate({"a": 3}, 10) == {"a": 3}
    assert sum(allocate({str(i): i + 1 for i in range(50)}, 400).values()) == 400


def test_the_default_strata_are_the_phones_countries(conn: duckdb.DuckDBPyConnection) -> None:
    # targets.country as the load decides it (`unknown` for a contact id or app identity)
    phones = [
        ("46701234567", "SE"),
        ("4915123456789", "DE"),
        ("5511961301661", "BR"),
        ("12025550143", "US"),
        ("user@x", "unknown"),
        (None, None),  # a warehouse from before targets had a country
    ]
    for number, (identity, country) in enumerate(phones):
        add_targets(
            conn,
            "SELECT 'c' AS run_id, ?::VARCHAR AS contact_key, 'SMS' AS channel, "
            "?::VARCHAR AS identity, 'in.csv' AS source, ?::BIGINT AS row_number, "
            "?::VARCHAR AS country",
            [f"k{number}", identity, number, country],
        )
    select_sample(conn, "c", SampleSpec(size=6))
    strata = conn.execute("SELECT contact_key, stratum FROM sample_members ORDER BY 1").fetchall()
    assert [s for _, s in strata] == ["SE", "DE", "BR", "US", "unknown", "ZZ"]


def test_sample_by_an_unknown_column_is_a_usage_error(conn: duckdb.DuckDBPyConnection) -> None:
    simulated_list(conn)
    with pytest.raises(UsageError, match="--sample-by shoe_size: no such column"):
        select_sample(conn, "list", SampleSpec(size=10, by="shoe_size"))
