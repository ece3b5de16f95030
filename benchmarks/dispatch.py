"""`make bench-dispatch`: the dispatcher at the rate limit, against a bare aiohttp loop.

A simulator process answers with 100 ms latency and a strict 800/s sliding-window limit. Two
clients send the same 20,000 capability queries at 800/s with the same concurrency:

- the reference: a minimal aiohttp loop (evenly spaced sends, a semaphore, nothing else);
- capaudit's `submit` step as it runs in production: ledger paging, pacing, retries,
  httpx API over the aiohttp transport, outcomes committed to DuckDB.

Then `submit` once more with a CPU-hog process spinning beside it (a machine with less to spare,
where timers fire late and the simulator reads arrivals late): the pacing must still hold.

Prints (DESIGN §8): dispatch_rate_ratio, dispatch_max_1s_window, dispatch_429,
dispatch_cpu_ms_per_query, dispatch_cpu_ratio_vs_aiohttp, and for the loaded run
dispatch_rate_ratio_loaded, dispatch_max_1s_window_loaded, dispatch_429_loaded. Knobs:
BENCH_QUERIES, BENCH_RATE, BENCH_LATENCY_MS, BENCH_IN_FLIGHT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import uvloop

from pipeline import eventloop, ledger, steps
from pipeline.services import child_service
from pipeline.settings import Secret, Secrets, Settings, load_settings
from pipeline.warehouse import open_warehouse

QUERIES = int(os.environ.get("BENCH_QUERIES", "20000"))
RATE = float(os.environ.get("BENCH_RATE", "800"))
LATENCY_MS = float(os.environ.get("BENCH_LATENCY_MS", "100"))
IN_FLIGHT = int(os.environ.get("BENCH_IN_FLIGHT", "160"))
KEY = ("bench-key", "bench-secret")


@dataclass
class Measured:
    queries: int
    wall_seconds: float
    cpu_seconds: float
    sending_rate: float = 0.0

    @property
    def cpu_ms_per_query(self) -> float:
        return 1000 * self.cpu_seconds / self.queries


def bench_settings(sim_url: str, directory: Path) -> Settings:
    settings = load_settings(None, env={})
    settings = settings.replace("sinch", base_url=sim_url, token_url=f"{sim_url}/oauth2/token")
    settings = settings.replace(
        "dispatch",
        rate_per_second=RATE,
        max_in_flight=IN_FLIGHT,
        max_attempts=6,
        pace_to_callbacks=False,  # no webhook here: the fixed rate is what is measured
    )
    settings = settings.replace("warehouse", path=str(directory / "bench.duckdb"))
    secrets = Secrets(Secret(KEY[0]), Secret(KEY[1]), ())
    return Settings(**{**settings.__dict__, "secrets": secrets})


def plan_queries(settings: Settings, run_id: str) -> list[bytes]:
    """QUERIES planned requests (3 identities each) in the ledger; returns their bodies."""
    with open_warehouse(Path(settings.warehouse.path)) as conn:
        conn.execute("INSERT INTO target_files VALUES ($run_id, 0, 'bench')", {"run_id": run_id})
        conn.execute(
            """
            INSERT INTO targets (run_id, contact_id, channel, identity, file_index, row_number)
            SELECT $run_id, 'C' || i, channel, (46700000000 + i)::VARCHAR, 0, i
            FROM range($n) t(i), (VALUES ('WHATSAPP'), ('RCS'), ('SMS')) c(channel)
            """,
            {"run_id": run_id, "n": QUERIES},
        )
        ledger.plan_requests(conn, run_id, settings.sinch.app_id, now=_now())
        rows = conn.execute("SELECT body FROM requests WHERE run_id = $r", {"r": run_id}).fetchall()
    return [row[0].encode() for row in rows]


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def aiohttp_reference(sim_url: str, bodies: list[bytes]) -> Measured:
    """The least a Python client can do: paced POSTs with bounded concurrency."""
    async with httpx.AsyncClient() as http:
        token_answer = await http.post(
            f"{sim_url}/oauth2/token", data={"grant_type": "client_credentials"}, auth=KEY
        )
    headers = {
        "Authorization": f"Bearer {token_answer.json()['access_token']}",
        "Content-Type": "application/json",
    }
    url = f"{sim_url}/v1/projects/capaudit-demo-project/capability:query"
    slots = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
            finally:
                slots.release()

        started_wall, started_cpu = time.monotonic(), time.process_time()
        tasks = []
        for index, body in enumerate(bodies):
            await slots.acquire()
            delay = started_wall + index / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
        return Measured(
            len(bodies), time.monotonic() - started_wall, time.process_time() - started_cpu
        )


def capaudit_submit(settings: Settings, run_id: str) -> Measured:
    with open_warehouse(Path(settings.warehouse.path)) as conn:
        started_wall, started_cpu = time.monotonic(), time.process_time()
        summary = eventloop.run(  # the loop `capaudit run` sends in
            steps.submit(conn, run_id, settings, stop=asyncio.Event(), console=False)
        )
        measured = Measured(
            summary.accepted + summary.failed,
            time.monotonic() - started_wall,
            time.process_time() - started_cpu,
            summary.rate_per_second,
        )
        if summary.failed:
            print(f"# warning: {summary.failed} requests failed: {summary.answers}")
    return measured


@contextlib.contextmanager
def cpu_hog() -> Iterator[None]:
    """A process spinning on a core for as long as the block runs."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def main() -> None:
    env = {"SINCH_KEY_ID": KEY[0], "SINCH_KEY_SECRET": KEY[1]}
    args = ["simulate", "--latency-ms", str(LATENCY_MS), "--rate-limit", str(int(RATE))]
    with tempfile.TemporaryDirectory() as tmp, child_service(args, "simulator", env=env) as sim:
        settings = bench_settings(sim, Path(tmp))
        bodies = plan_queries(settings, "bench")
        # The reference runs on both event loops; the cheaper one is the bar (conservative).
        reference = min(
            asyncio.run(aiohttp_reference(sim, bodies)),
            uvloop.run(aiohttp_reference(sim, bodies)),
            key=lambda m: m.cpu_ms_per_query,
        )
        seen = httpx.get(f"{sim}/_sim/stats").json()
        print(
            f"# reference: max {seen['max_requests_in_1s_window']} in 1 s, "
            f"{seen['queries_refused'].get('429', 0)} answers 429"
        )
        httpx.post(f"{sim}/_sim/reset")
        ours = capaudit_submit(settings, "bench")
        stats = httpx.get(f"{sim}/_sim/stats").json()
        plan_queries(settings, "bench-loaded")
        httpx.post(f"{sim}/_sim/reset")
        with cpu_hog():
            loaded = capaudit_submit(settings, "bench-loaded")
        loaded_stats = httpx.get(f"{sim}/_sim/stats").json()
    rate = ours.sending_rate  # first to last send: start-up and the last answers excluded
    print(f"# {QUERIES:,} queries at {RATE:g}/s, {LATENCY_MS:g} ms latency, {IN_FLIGHT} in flight")
    print(
        f"# reference aiohttp loop: {reference.queries / reference.wall_seconds:.1f}/s, "
        f"{reference.cpu_ms_per_query:.3f} ms CPU/query"
    )
    print(f"dispatch_rate_ratio: {rate / RATE:.4f} ratio")
    print(f"dispatch_max_1s_window: {stats['max_requests_in_1s_window']} requests")
    print(f"dispatch_429: {stats['queries_refused'].get('429', 0)} answers")
    print(f"dispatch_cpu_ms_per_query: {ours.cpu_ms_per_query:.3f} ms")
    cpu_ratio = ours.cpu_ms_per_query / reference.cpu_ms_per_query
    print(f"dispatch_cpu_ratio_vs_aiohttp: {cpu_ratio:.2f} ratio")
    print(f"dispatch_rate_ratio_loaded: {loaded.sending_rate / RATE:.4f} ratio")
    print(f"dispatch_max_1s_window_loaded: {loaded_stats['max_requests_in_1s_window']} requests")
    print(f"dispatch_429_loaded: {loaded_stats['queries_refused'].get('429', 0)} answers")


if __name__ == "__main__":
    main()
