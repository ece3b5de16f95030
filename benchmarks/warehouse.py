"""`make bench-warehouse`: contacts load and warehouse build at ten million rows.

Each phase runs in its own process so its peak resident memory is its own:

1. load: a generated 10,000,000-row wide CSV (one phone a row, mixed notations, 0.5% invalid)
   through `capaudit load`'s code path: rows per second and peak RSS.
2. build: a warehouse holding the previous night's 10,000,000 answers, tonight's 10,000,000
   targets and their requests, and 10,000,000 callbacks in landing segments (about 1% of them
   delivered twice, 2% never). Timed: ingest the segments + build every model.
   Reference, same process, same tables: a bare DuckDB join of targets, requests and
   notifications picking each target's answer, stored as a table, and the group-by that
   counts answers per channel and status.

Prints (DESIGN §8): contacts_load_rows_per_s, contacts_load_peak_rss_mb, warehouse_build_s,
warehouse_peak_rss_mb, warehouse_ratio_vs_bare_duckdb (build models only ÷ bare reference;
ingest is reported on its own as warehouse_ingest_s). Knobs: BENCH_ROWS, BENCH_TARGETS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psutil

ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
TARGETS = int(os.environ.get("BENCH_TARGETS", "10000000"))
WORK = Path(os.environ.get("BENCH_DIR", ".bench/warehouse"))
SEGMENTS = 10
DEADLINE_SEGMENTS = 40  # the tail at the deadline: one segment of 40 (2.5% of the callbacks)


class PeakMemory:
    """Samples this process's resident memory every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def phase_load() -> dict[str, Any]:
    from benchmarks.generate import write_wide
    from pipeline.contacts.load import load_contacts
    from pipeline.settings import ContactsSettings
    from pipeline.warehouse import open_warehouse

    csv = WORK / f"wide-{ROWS}.csv"
    if not csv.exists():
        write_wide(csv, ROWS)
    database = WORK / "load.duckdb"
    for stale in WORK.glob("load.duckdb*"):
        stale.unlink()
    with PeakMemory() as memory:
        started = time.perf_counter()
        with open_warehouse(database) as conn:
            summary = load_contacts(conn, "bench", ContactsSettings(), [str(csv)])
        seconds = time.perf_counter() - started
    bare = bare_load(csv)
    return {
        "rows": summary.rows,
        "targets": summary.targets,
        "rejects": summary.rejects,
        "seconds": seconds,
        "peak_mb": memory.mb,
        **bare,
    }


# The plainest load of the same file: DuckDB reads it, keeps the phone's digits and asks every
# row on the three channels, stored as a table (no validation, no line numbers, no dedup).
BARE_LOAD = """
CREATE OR REPLACE TABLE bare_targets AS
SELECT 'bench' AS run_id, contact_id, regexp_replace(phone, '[^0-9]', '', 'g') AS identity,
    channel
FROM read_csv($path, all_varchar = true, header = true),
    (VALUES ('WHATSAPP'), ('RCS'), ('SMS')) c(channel)
"""


def bare_load(csv: Path) -> dict[str, Any]:
    """The bare reference load, same warehouse settings, its own database file."""
    from pipeline.warehouse import open_warehouse

    database = WORK / "bare-load.duckdb"
    for stale in WORK.glob("bare-load.duckdb*"):
        stale.unlink()
    with PeakMemory() as memory:
        started = time.perf_counter()
        with open_warehouse(database) as conn:
            conn.execute(BARE_LOAD, {"path": str(csv)})
        seconds = time.perf_counter() - started
    return {"bare_seconds": seconds, "bare_peak_mb": memory.mb}


def generate_warehouse(
    conn: duckdb.DuckDBPyConnection, landing: Path, segments: int = SEGMENTS
) -> None:
    """Last night's answers, tonight's targets and requests, tonight's callbacks on disk."""
    contacts = TARGETS // 3
    now = datetime.now(UTC)
    params = {"contacts": contacts, "now": now}
    conn.execute(
        """
        INSERT INTO runs (run_id, started_at, finished_at, status)
        VALUES ('previous', $now - INTERVAL 1 DAY, $now - INTERVAL 1 DAY, 'succeeded'),
               ('bench', $now - INTERVAL 1 HOUR, NULL, 'running')
    """,
        {"now": now},
    )
    conn.execute(
        """
        CREATE TEMP TABLE universe AS
        SELECT i, 'C' || i AS contact_key, (46700000000 + i)::VARCHAR AS identity, channel,
            hash(i, channel) % 100 AS draw
        FROM range($contacts) r(i), (VALUES ('WHATSAPP'), ('RCS'), ('SMS')) c(channel)
    """,
        {"contacts": contacts},
    )
    conn.execute(
        """
        INSERT INTO capability (run_id, contact_key, channel, identity, status, checked_at,
            reused, request_id)
        SELECT 'previous', contact_key, channel, identity,
            CASE WHEN (draw + 7) % 100 < 55 THEN 'CAPABILITY_FULL' WHEN (draw + 7) % 100 < 65
                THEN 'CAPABILITY_PARTIAL' ELSE 'NO_CAPABILITY' END,
            $now - INTERVAL 1 DAY, false, 'P' || i
        FROM universe
    """,
        {"now": now},
    )
    conn.execute("""
        INSERT INTO targets (run_id, contact_key, channel, identity, source, row_number)
        SELECT 'bench', contact_key, channel, identity, 'bench.csv', i + 2 FROM universe
    """)
    conn.execute(
        """
        INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, attempts,
            http_status, planned_at, sent_at, accepted_at)
        SELECT 'bench', 'R' || i, 'C' || i, '{}', ['RCS', 'SMS', 'WHATSAPP'], 'accepted', 1, 200,
            $now - INTERVAL 50 MINUTE, $now - INTERVAL 50 MINUTE, $now - INTERVAL 50 MINUTE
        FROM range($contacts) r(i)
    """,
        params,
    )
    landing.mkdir(parents=True, exist_ok=True)
    step = -(-contacts // segments)
    for segment in range(segments):
        path = landing / f"bench-{segment:06d}.ndjson"
        conn.execute(
            f"""
            COPY (
                SELECT strftime(NOW_ - INTERVAL 40 MINUTE + to_milliseconds(i % 600000),
                                '%Y-%m-%dT%H:%M:%S.%fZ') AS received_at,
                    'bench' AS writer, 'n' || i || channel || copy AS nonce,
                    'capability' AS kind,
                    json_object('app_id', 'app', 'project_id', 'p',
                        'event_time', strftime(NOW_ - INTERVAL 45 MINUTE, '%Y-%m-%dT%H:%M:%SZ'),
                        'capability_notification', json_object(
                            'request_id', 'R' || i, 'contact_id', '', 'channel', channel,
                            'identity', identity,
                            'capability_status', CASE WHEN draw < 50 THEN 'CAPABILITY_FULL'
                                WHEN draw < 62 THEN 'CAPABILITY_PARTIAL'
                                WHEN draw < 92 THEN 'NO_CAPABILITY' ELSE 'CAPABILITY_UNKNOWN' END,
                            'channel_capabilities', CASE WHEN draw < 62 THEN ['TEXT', 'MEDIA']
                                ELSE [] END,
                            'reason', CASE WHEN draw >= 62 THEN json_object(
                                'code', 'RECIPIENT_NOT_REACHABLE', 'description', 'not reachable')
                                END))::VARCHAR AS body
                FROM universe, (VALUES (1), (2)) d(copy)
                WHERE i >= {segment * step} AND i < {(segment + 1) * step}
                  AND draw <> 98 AND draw <> 99      -- 2% never answered
                  AND (copy = 1 OR i % 100 = 0)      -- 1% delivered twice
            ) TO '{path}' (FORMAT json)
        """.replace("NOW_", f"TIMESTAMPTZ '{now.isoformat()}'")
        )  # COPY takes no parameters
    conn.execute("DROP TABLE universe")
    conn.execute("CHECKPOINT")


# The plainest SQL for the same product: each target's answer (the columns `capability` has)
# and the counts per channel and status, one join and one group-by each, stored as tables in
# the warehouse like the build's own (so both pay for writing 10M rows to disk).
BARE_REFERENCE = """
CREATE OR REPLACE TABLE bare_capability AS
SELECT t.contact_key, t.channel, any_value(t.identity) AS identity,
    arg_max(n.capability_status, n.event_time) AS status,
    arg_max(n.reason_code, n.event_time) AS reason_code,
    arg_max(n.channel_capabilities, n.event_time) AS channel_capabilities,
    arg_max(n.request_id, n.event_time) AS request_id,
    max(n.event_time) AS checked_at,
    arg_max(epoch(n.received_at) - epoch(r.accepted_at), n.event_time) AS latency_seconds
FROM targets t
JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
JOIN notifications n ON n.request_id = r.request_id AND n.channel = t.channel
WHERE t.run_id = 'bench'
GROUP BY t.contact_key, t.channel;
CREATE OR REPLACE TABLE bare_reachability AS
SELECT channel, status, count(*) AS targets FROM bare_capability GROUP BY channel, status;
"""


def phase_build() -> dict[str, Any]:
    from pipeline import steps
    from pipeline.landing.ingest import ingest_landing
    from pipeline.warehouse import open_warehouse

    database, landing = WORK / "build.duckdb", WORK / "landing"
    for stale in WORK.glob("build.duckdb*"):
        stale.unlink()
    shutil.rmtree(landing, ignore_errors=True)
    with open_warehouse(database) as conn:
        generate_warehouse(conn, landing)
    with PeakMemory() as memory, open_warehouse(database) as conn:
        started = time.perf_counter()
        ingested = ingest_landing(conn, landing)
        ingest_seconds = time.perf_counter() - started
        started = time.perf_counter()
        statuses = steps.build(conn, "bench")
        build_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for statement in BARE_REFERENCE.split(";"):
            if statement.strip():
                conn.execute(statement)
        bare_seconds = time.perf_counter() - started
        changes = conn.execute("SELECT count(*) FROM capability_changes").fetchone()
    return {
        "ingest_seconds": ingest_seconds,
        "build_seconds": build_seconds,
        "bare_seconds": bare_seconds,
        "peak_mb": memory.mb,
        "statuses": statuses,
        "notifications": ingested.notifications_new,
        "lines": ingested.lines,
        "changes": changes[0] if changes else 0,
    }


def phase_deadline() -> dict[str, Any]:
    """From the collect deadline to a written report, callbacks ingested while collecting.

    The callbacks land in DEADLINE_SEGMENTS segments; all but the last are ingested before
    `collect` starts (as it does while requests go out), the last one (the tail) lands just
    before the deadline. Timed: from the deadline to the report on disk (the rest of collect,
    build, report). Reference, same process: the bare build (BARE_REFERENCE).
    """
    from pipeline import steps
    from pipeline.landing.ingest import ingest_landing
    from pipeline.warehouse import open_warehouse

    database, landing = WORK / "deadline.duckdb", WORK / "deadline-landing"
    for stale in WORK.glob("deadline.duckdb*"):
        stale.unlink()
    shutil.rmtree(landing, ignore_errors=True)
    shutil.rmtree(WORK / "reports", ignore_errors=True)
    with open_warehouse(database) as conn:
        generate_warehouse(conn, landing, DEADLINE_SEGMENTS)
    tail = sorted(landing.glob("*.ndjson"))[-1]
    held = tail.rename(tail.with_suffix(".held"))  # not landed yet
    with PeakMemory() as memory, open_warehouse(database) as conn:
        started = time.perf_counter()
        before = ingest_landing(conn, landing)
        collecting_seconds = time.perf_counter() - started
        started = time.perf_counter()
        steps.outstanding_targets(conn, "bench")
        # collect's own first look at the outstanding targets must end before the deadline
        deadline = time.time() + 3 * (time.perf_counter() - started) + 2.0
        timer = threading.Timer(deadline - 0.05 - time.time(), held.rename, [tail])
        timer.start()
        timings = collect_build_report(conn, landing, deadline)
        timer.join()
        started = time.perf_counter()
        for statement in BARE_REFERENCE.split(";"):
            if statement.strip():
                conn.execute(statement)
        bare_seconds = time.perf_counter() - started
    return {
        **timings,
        "bare_seconds": bare_seconds,
        "peak_mb": memory.mb,
        "lines_before": before.lines,
        "collecting_seconds": collecting_seconds,
    }


def collect_build_report(
    conn: duckdb.DuckDBPyConnection, landing: Path, deadline: float
) -> dict[str, Any]:
    """`capaudit run`'s collect (deadline at epoch `deadline`), build and report steps."""
    import asyncio

    from pipeline import steps
    from pipeline.report import write_report
    from pipeline.settings import Settings

    settings = Settings().replace("receiver", landing_dir=str(landing))
    accepted = conn.execute("SELECT epoch(max(accepted_at)) FROM requests").fetchone()
    seconds = deadline - float(accepted[0] if accepted else 0.0)
    collected = asyncio.run(
        steps.collect(
            conn, "bench", settings, deadline_seconds=seconds, stop=asyncio.Event(), console=False
        )
    )
    collect_done = time.time()
    steps.build(conn, "bench")
    build_done = time.time()
    write_report(conn, "bench", WORK / "reports")
    done = time.time()
    return {
        "seconds": done - deadline,
        "collect_seconds": collect_done - deadline,
        "build_seconds": build_done - collect_done,
        "report_seconds": done - build_done,
        "tail_lines": collected.ingested.lines,
        "deadline_passed": collected.deadline_passed,
    }


def print_deadline_ratio(deadline: dict[str, Any]) -> None:
    print(
        f"# after the deadline: tail of {deadline['tail_lines']:,} callback lines "
        f"({deadline['lines_before']:,} ingested while collecting, in "
        f"{deadline['collecting_seconds']:.1f}s); collect {deadline['collect_seconds']:.1f}s, "
        f"build {deadline['build_seconds']:.1f}s, report {deadline['report_seconds']:.1f}s = "
        f"{deadline['seconds']:.1f}s; bare reference build {deadline['bare_seconds']:.1f}s; "
        f"peak {deadline['peak_mb']:.0f} MB"
    )
    ratio = deadline["seconds"] / deadline["bare_seconds"]
    print(f"post_deadline_ratio_vs_bare_duckdb: {ratio:.2f} ratio")


def run_phase(name: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.warehouse", "--phase", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_load_ratio(load: dict[str, Any]) -> None:
    print(
        f"# bare DuckDB load (read_csv -> digits -> x 3 channels -> table): "
        f"{load['bare_seconds']:.1f}s, peak {load['bare_peak_mb']:.0f} MB"
    )
    ratio = load["seconds"] / load["bare_seconds"]
    print(f"contacts_load_ratio_vs_bare_duckdb: {ratio:.2f} ratio")


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    load = run_phase("load")
    build = run_phase("build")
    deadline = run_phase("deadline")
    targets = sum(build["statuses"].values())
    print(
        f"# load: {load['rows']:,} rows, {load['targets']:,} targets, {load['rejects']:,} "
        f"rejected in {load['seconds']:.1f}s"
    )
    print(
        f"# build: {targets:,} targets, {build['lines']:,} callback lines -> "
        f"{build['notifications']:,} notifications, {build['changes']:,} changes; "
        f"bare reference {build['bare_seconds']:.1f}s"
    )
    print(f"contacts_load_rows_per_s: {load['rows'] / load['seconds']:.0f} rows/s")
    print(f"contacts_load_peak_rss_mb: {load['peak_mb']:.0f} MB")
    print_load_ratio(load)
    print(f"warehouse_ingest_s: {build['ingest_seconds']:.1f} s")
    print(f"warehouse_build_s: {build['ingest_seconds'] + build['build_seconds']:.1f} s")
    print(f"warehouse_peak_rss_mb: {build['peak_mb']:.0f} MB")
    ratio = build["build_seconds"] / build["bare_seconds"]
    print(f"warehouse_ratio_vs_bare_duckdb: {ratio:.2f} ratio")
    print_deadline_ratio(deadline)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--phase"]:
        phases = {"load": phase_load, "build": phase_build, "deadline": phase_deadline}
        print(json.dumps(phases[sys.argv[2]](), default=str))
    else:
        main()
