"""`make bench-receiver`: durable callbacks per second, against the same receiver without fsync,
and landing on S3 against landing on local disk.

Two receiver processes (one durable, one with fsync off) each take 20,000 signed CAPABILITY
callbacks from 64 concurrent senders in a separate process. Signing happens before the clock
starts. Every callback must be acknowledged and landed exactly once. Then two receivers side by
side (as behind a load balancer, the senders alternating between them) take the same callbacks
twice: landing on one local directory, and landing on one S3 prefix of a SeaweedFS server
started for the benchmark (`pipeline.storage.embedded`, the test server).

Prints (DESIGN §8): receiver_durable_per_s, receiver_ack_p99_ms, receiver_durable_ratio,
receiver_s3_durable_per_s, receiver_s3_ratio. Knobs: BENCH_CALLBACKS, BENCH_SENDERS.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from pipeline.landing.segments import list_segments
from pipeline.services import child_service
from pipeline.sinch.signing import signature_headers

CALLBACKS = int(os.environ.get("BENCH_CALLBACKS", "20000"))
SENDERS = int(os.environ.get("BENCH_SENDERS", "64"))
SECRET = "bench-webhook-secret"


def callbacks(count: int) -> list[tuple[bytes, dict[str, str]]]:
    now = int(time.time())
    signed = []
    for n in range(count):
        body = orjson.dumps(
            {
                "app_id": "bench-app",
                "project_id": "bench",
                "event_time": "2026-11-25T02:00:00Z",
                "accepted_time": "2026-11-25T02:00:00Z",
                "message_metadata": "",
                "capability_notification": {
                    "request_id": f"req-{n // 3:08d}",
                    "contact_id": "",
                    "channel": ("WHATSAPP", "RCS", "SMS")[n % 3],
                    "identity": f"4670{n:07d}",
                    "capability_status": "CAPABILITY_FULL",
                    "channel_capabilities": ["TEXT"],
                },
            }
        )
        headers = signature_headers(SECRET, body, f"nonce-{n}-{now}", now)
        signed.append((body, headers | {"Content-Type": "application/json"}))
    return signed


async def send_all(urls: list[str], signed: list[tuple[bytes, dict[str, str]]]) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    queue = iter(signed)
    connector = aiohttp.TCPConnector(limit=SENDERS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender(url: str) -> None:
            nonlocal failures
            for body, headers in queue:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(sender(urls[n % len(urls)]) for n in range(SENDERS)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "per_second": len(signed) / elapsed,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "failures": failures,
    }


def sender_process(*urls: str) -> dict[str, float]:
    """Run the senders in their own process (the receiver gets a core of its own); with
    several URLs, each sender sends to one of them (a load balancer's round robin)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.receiver", "--send", ",".join(urls)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def landed_lines(directory: Path) -> int:
    return sum(s.path.read_bytes().count(b"\n") for s in list_segments(directory))


def measure(durable: bool, directory: Path) -> dict[str, float]:
    env = {
        "CAPAUDIT_WEBHOOK_SECRET": SECRET,
        "CAPAUDIT_RECEIVER__DURABLE": "true" if durable else "false",
    }
    landing = directory / ("durable" if durable else "volatile")
    with child_service(["serve", "--landing-dir", str(landing)], "receiver", env=env) as url:
        result = sender_process(f"{url}/callbacks/sinch")
    result["landed"] = landed_lines(landing)
    return result


def measure_pair(env: dict[str, str], *args: str) -> dict[str, float]:
    """Two receivers side by side (`env`, `args` say where they land), the senders alternating."""
    env = {"CAPAUDIT_WEBHOOK_SECRET": SECRET, **env}
    with (
        child_service(["serve", *args], "receiver", env=env) as first,
        child_service(["serve", *args], "receiver", env=env) as second,
    ):
        return sender_process(f"{first}/callbacks/sinch", f"{second}/callbacks/sinch")


def measure_landing_places(directory: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Two receivers landing on one local directory, then on one S3 prefix."""
    from pipeline.storage.embedded import embedded_s3

    local = measure_pair({}, "--landing-dir", str(directory / "pair"))
    local["landed"] = landed_lines(directory / "pair")
    with embedded_s3(directory / "s3") as server:
        store = server.store()
        store.create_bucket("bench")
        env = {**server.env(), "CAPAUDIT_RECEIVER__LANDING_URL": "s3://bench/landing/"}
        on_s3 = measure_pair(env)
        on_s3["landed"] = sum(
            store.get("bench", info.key)[0].count(b"\n")
            for info in store.objects("bench", "landing/")
        )
    return local, on_s3


def main() -> None:
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        volatile = measure(False, Path(tmp))
        durable = measure(True, Path(tmp))
        local_pair, s3_pair = measure_landing_places(Path(tmp))
    places = (("two receivers, local disk", local_pair), ("two receivers, S3", s3_pair))
    for name, result in (("fsync off", volatile), ("durable", durable), *places):
        print(
            f"# {name}: {result['per_second']:.0f}/s, p99 {result['p99_ms']:.1f} ms, "
            f"{int(result['landed'])} landed, {int(result['failures'])} failed"
        )
        if result["landed"] != CALLBACKS or result["failures"]:
            print(f"# ERROR: {name} landed {result['landed']} of {CALLBACKS}")
    print(f"receiver_durable_per_s: {durable['per_second']:.0f} callbacks/s")
    print(f"receiver_ack_p99_ms: {durable['p99_ms']:.1f} ms")
    print(f"receiver_durable_ratio: {durable['per_second'] / volatile['per_second']:.2f} ratio")
    print(f"receiver_s3_durable_per_s: {s3_pair['per_second']:.0f} callbacks/s")
    print(f"receiver_s3_ratio: {s3_pair['per_second'] / local_pair['per_second']:.2f} ratio")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--send"]:
        signed = callbacks(CALLBACKS)
        print(json.dumps(asyncio.run(send_all(sys.argv[2].split(","), signed))))
    else:
        main()
