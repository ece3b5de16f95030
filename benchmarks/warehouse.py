"""`make bench-warehouse`: contacts load and warehouse build at ten million rows.

Each phase runs in its own process so its peak resident memory is its own:

1. load: a generated 10,000,000-row wide CSV (one phone a row, mixed notations, 0.5% invalid)
   through `capaudit load`'s code path: rows per second and peak RSS.
2. build: a warehouse holding the previous night's 10,000,000 answers, tonight's 10,000,000
   targets and their requests, and 10,000,000 callbacks in landing segments (about 1% of them
   delivered twice, 2% never). Timed: ingest the segments + build every model.
   Reference, same process, same tables: DuckDB's own JSON reader over the same segments into a
   notifications table, a bare join of targets, requests and notifications picking each
   target's answer, stored as a table, and the group-by that counts answers per channel and
   status. Then the run is published (lake partitions + catalog swap), after last night's.
3. latest: 30 runs of 1,000,000 answers each published one by one; the latest answers for one
   channel read through the catalog after 30 runs and through the catalog as it was after one.

Prints (DESIGN §8): contacts_load_rows_per_s, contacts_load_peak_rss_mb, warehouse_build_s,
warehouse_peak_rss_mb, warehouse_ratio_vs_bare_duckdb (ingest + build ÷ bare ingest + bare
build), publish_ratio (publish ÷ ingest + build), publish_s3_ratio (the same publication with
`lake_url` on an embedded S3 ÷ local, `benchmarks/publish.py`), latest_query_ratio (30 runs ÷
1 run).
Knobs: BENCH_ROWS, BENCH_TARGETS, BENCH_LATEST_TARGETS, BENCH_LATEST_RUNS.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psutil

from benchmarks.publish import lake_settings, measure_publish

ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
TARGETS = int(os.environ.get("BENCH_TARGETS", "10000000"))
WORK = Path(os.environ.get("BENCH_DIR", ".bench/warehouse"))
SEGMENTS = 10
DEADLINE_SEGMENTS = 40  # the tail at the deadline: one segment of 40 (2.5% of the callbacks)
LATEST_TARGETS = int(os.environ.get("BENCH_LATEST_TARGETS", "1000000"))
LATEST_RUNS = int(os.environ.get("BENCH_LATEST_RUNS", "30"))


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
        SELECT i, (46700000000 + i)::VARCHAR AS identity, identity AS contact_key, channel,
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
        INSERT INTO target_files VALUES ('bench', 0, 'bench.csv');
        INSERT INTO targets (run_id, channel, identity, file_index, row_number)
        SELECT 'bench', channel, identity, 0, i + 2 FROM universe  -- no contact ids: key = phone
    """)
    conn.execute(
        """
        INSERT INTO requests (run_id, request_id, contact_key, body, channels, state, attempts,
            http_status, planned_at, sent_at, accepted_at)
        SELECT 'bench', 'R' || i, (46700000000 + i)::VARCHAR, '{}', ['RCS', 'SMS', 'WHATSAPP'],
            'accepted', 1, 200,
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
        bare_ingest_seconds = bare_ingest(conn, landing)
        started = time.perf_counter()
        for statement in BARE_REFERENCE.split(";"):
            if statement.strip():
                conn.execute(statement.replace("JOIN notifications n", "JOIN bare_notifications n"))
        bare_seconds = time.perf_counter() - started
        changes = conn.execute("SELECT count(*) FROM capability_changes").fetchone()
        published = measure_publish(conn, WORK)
    return {
        "ingest_seconds": ingest_seconds,
        "build_seconds": build_seconds,
        "bare_seconds": bare_seconds,
        "peak_mb": memory.mb,
        "statuses": statuses,
        "notifications": ingested.notifications_new,
        "lines": ingested.lines,
        "changes": changes[0] if changes else 0,
        "bare_ingest_seconds": bare_ingest_seconds,
        **published,
    }


def phase_deadline() -> dict[str, Any]:
    """From the collect deadline to a written report, callbacks ingested while collecting.

    The callbacks land in DEADLINE_SEGMENTS segments; all but the last are ingested and the run
    built provisionally before `collect` starts (as collect does while it waits, see
    steps.ProvisionalBuilds; timed apart), the last one (the tail) lands just before the
    deadline. Timed: from the deadline to the report on disk (the rest of collect, build,
    report). Reference, same process: the bare build (BARE_REFERENCE).
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
        steps.build(conn, "bench")
        provisional_seconds = time.perf_counter() - started
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
        # A resumed run whose inputs changed builds again, whole, over its own rows: at 10M
        # this ran out of memory once.
        conn.execute("DELETE FROM build_state")
        started = time.perf_counter()
        steps.build(conn, "bench")
        rebuild_seconds = time.perf_counter() - started
    return {
        **timings,
        "bare_seconds": bare_seconds,
        "rebuild_seconds": rebuild_seconds,
        "peak_mb": memory.mb,
        "lines_before": before.lines,
        "collecting_seconds": collecting_seconds,
        "provisional_seconds": provisional_seconds,
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
        f"{deadline['collecting_seconds']:.1f}s, built provisionally in "
        f"{deadline['provisional_seconds']:.1f}s); collect {deadline['collect_seconds']:.1f}s, "
        f"build {deadline['build_seconds']:.1f}s, report {deadline['report_seconds']:.1f}s = "
        f"{deadline['seconds']:.1f}s; bare reference build {deadline['bare_seconds']:.1f}s; "
        f"peak {deadline['peak_mb']:.0f} MB; the run built again whole (as on resume) in "
        f"{deadline['rebuild_seconds']:.1f}s"
    )
    ratio = deadline["seconds"] / deadline["bare_seconds"]
    print(f"post_deadline_ratio_vs_bare_duckdb: {ratio:.2f} ratio")


# The plainest ingest: DuckDB's JSON reader over the same segments, one row per distinct
# notification with its delivery count, like `notifications`.
BARE_INGEST = """
CREATE OR REPLACE TABLE bare_notifications AS
SELECT cb.capability_notification.request_id AS request_id,
    cb.capability_notification.channel AS channel,
    cb.capability_notification.identity AS identity,
    arg_min(cb.capability_notification.capability_status, received_at) AS capability_status,
    arg_min(cb.capability_notification.reason.code, received_at) AS reason_code,
    arg_min(cb.capability_notification.channel_capabilities, received_at) AS channel_capabilities,
    arg_min(cb.event_time::TIMESTAMPTZ, received_at) AS event_time,
    min(received_at) AS received_at, count(*) AS deliveries
FROM (SELECT received_at, from_json(body, SHAPE) AS cb
      FROM read_json($files, format = 'newline_delimited',
                     columns = {received_at: 'TIMESTAMPTZ', body: 'VARCHAR'}))
GROUP BY ALL
"""


def bare_ingest(conn: duckdb.DuckDBPyConnection, landing: Path) -> float:
    from pipeline.landing.ingest import CALLBACK_SHAPE

    files = sorted(str(p) for p in landing.iterdir())
    started = time.perf_counter()
    conn.execute(BARE_INGEST.replace("SHAPE", CALLBACK_SHAPE), {"files": files})
    return time.perf_counter() - started


LATEST_QUERY = "SELECT * FROM capability_latest WHERE channel = 'WHATSAPP'"


def phase_latest() -> dict[str, Any]:
    """LATEST_RUNS runs of LATEST_TARGETS answers published one by one; the latest answers for
    one channel through the catalog after all of them, and through the catalog after one."""
    from pipeline.lake.publish import publish_runs
    from pipeline.warehouse import open_warehouse

    folder = WORK / "latest"
    settings = lake_settings(folder)
    catalog, first = settings.warehouse.catalog, folder / "after-one-run.duckdb"
    with open_warehouse(settings.warehouse.state) as conn:
        for night in range(LATEST_RUNS):
            run_id = f"night-{night:02d}"
            add_night(conn, run_id, night)
            publish_runs(conn, settings, [run_id])
            if night == 0:
                shutil.copyfile(catalog, first)
    one, many = [], []
    with (
        duckdb.connect(str(first), read_only=True) as a,
        duckdb.connect(str(catalog), read_only=True) as b,
    ):
        for _ in range(7):
            one.append(timed_query(a))
            many.append(timed_query(b))
    return {
        "one_run_s": statistics.median(one),
        "many_runs_s": statistics.median(many),
        "rows": len(latest_rows(catalog)),
    }


def add_night(conn: duckdb.DuckDBPyConnection, run_id: str, night: int) -> None:
    """One night: a run and an answer for every target, a little different each night."""
    started = datetime(2026, 1, 1, 2, tzinfo=UTC) + timedelta(days=night)
    conn.execute(
        "INSERT INTO runs (run_id, started_at, finished_at, status) "
        "VALUES ($r, $t, $t, 'succeeded')",
        {"r": run_id, "t": started},
    )
    conn.execute(
        """
        INSERT INTO capability (run_id, contact_key, channel, identity, status, checked_at,
            reused, request_id)
        SELECT $r, 'C' || (i // 3), ['WHATSAPP', 'RCS', 'SMS'][i % 3 + 1],
            (46700000000 + i // 3)::VARCHAR,
            CASE WHEN hash(i, $n) % 100 < 55 THEN 'CAPABILITY_FULL'
                 WHEN hash(i, $n) % 100 < 65 THEN 'CAPABILITY_PARTIAL' ELSE 'NO_CAPABILITY' END,
            $t + to_seconds(i % 3600), false, 'R' || $n || '-' || (i // 3)
        FROM range($targets) r(i)
    """,
        {"r": run_id, "n": night, "t": started, "targets": LATEST_TARGETS},
    )


def timed_query(conn: duckdb.DuckDBPyConnection) -> float:
    started = time.perf_counter()
    conn.sql(LATEST_QUERY).pl()
    return time.perf_counter() - started


def latest_rows(catalog: Path) -> list[Any]:
    with duckdb.connect(str(catalog), read_only=True) as conn:
        return conn.execute("SELECT count(*) FROM capability_latest").fetchall()


def print_lake_figures(build: dict[str, Any], latest: dict[str, Any]) -> None:
    """The figures of issue 10, each against a reference measured in the same run."""
    ours = build["ingest_seconds"] + build["build_seconds"]
    bare = build["bare_ingest_seconds"] + build["bare_seconds"]
    print(
        f"# bare reference: JSON ingest {build['bare_ingest_seconds']:.1f}s + "
        f"build {build['bare_seconds']:.1f}s; publish {build['publish_seconds']:.1f}s "
        f"(and {build['early_publish_seconds']:.1f}s at plan: targets, rejects), to a bucket "
        f"{build['publish_s3_seconds']:.1f}s"
    )
    print(
        f"# latest answers for one channel: {latest['one_run_s'] * 1000:.0f} ms after one "
        f"run, {latest['many_runs_s'] * 1000:.0f} ms after {LATEST_RUNS} "
        f"({LATEST_TARGETS:,} targets a run)"
    )
    print(f"warehouse_ratio_vs_bare_duckdb: {ours / bare:.2f} ratio")
    print(f"publish_ratio: {build['publish_seconds'] / ours:.2f} ratio")
    print(f"publish_s3_ratio: {build['publish_s3_seconds'] / build['publish_seconds']:.2f} ratio")
    print(f"latest_query_ratio: {latest['many_runs_s'] / latest['one_run_s']:.2f} ratio")


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
    latest = run_phase("latest")
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
    print_lake_figures(build, latest)
    print_deadline_ratio(deadline)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--phase"]:
        phases = {
            "load": phase_load,
            "build": phase_build,
            "deadline": phase_deadline,
            "latest": phase_latest,
        }
        print(json.dumps(phases[sys.argv[2]](), default=str))
    else:
        main()
