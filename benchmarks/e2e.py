"""`make bench-e2e`: a whole `capaudit run` against the limit Sinch sets, as an operator sees it.

The real command line in a process of its own (`capaudit run`, embedded simulator and receiver,
the default code paths) audits a generated wide list (benchmarks/generate.py: one phone a row,
mixed notations, 0.5% invalid; three channels a contact) with the API as the binding limit:

- `[dispatch] rate_per_second` = the simulator's `rate_limit` = RATE (800/s, Sinch's limit);
- the simulator's `webhook_rate` = 3.75 x RATE callbacks/s (each request asks three channels:
  callbacks clear faster than queries raise them), `pace_to_callbacks` as shipped.

The reference is the physical limit measured in the same run: every request the run sent
(counted from its ledger afterwards, re-asks of transient answers included) at exactly RATE a
second. `e2e_ratio_vs_api_limit` is the wall time from starting the command to the report on
disk ÷ (requests sent ÷ RATE): everything that is not sending at the limit (starting, loading,
planning, the last callbacks, building, writing the report) shows in it.

A million contacts at 800/s take 23 minutes of sending alone. `--contacts 1000000` therefore
scales the limits by SCALE_AT_A_MILLION (the rate, the simulator's rate limit and webhook rate)
when the machine has the cores for it, and says so: the run, the simulator and the receiver
together spend about 1.5 ms of CPU a request (`#` line), 3.6 cores at 2,400 requests/s, so below
MIN_CORES_TO_SCALE cores it stays at 800/s (a scaled run there would measure the CPU, not the
API). The dispatcher never exceeds Sinch's 800/s (`SINCH_MAX_RATE`): a scaled run starts the
CLI through `--as-capaudit`, which lifts that cap in the benchmark's own process only, before
calling `capaudit`'s entry point; nothing a user can configure passes Sinch's limit. (Scaling
time instead, a simulator and a dispatcher on a faster clock, would change the code measured;
fewer channels a contact would change the work.) The list, the ledger, the callbacks, the state
and the build are a million contacts' either way, which is what the memory figure is about.
`--scale K` chooses the factor.

Prints (DESIGN §8): e2e_ratio_vs_api_limit, e2e_peak_rss_mb (the run process; the embedded
simulator's and receiver's peaks as `#` lines), e2e_requests_per_s (requests sent ÷ wall time),
and `#` lines with the parts. Knobs: --contacts N, --scale K.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psutil

RATE = 800.0  # Sinch's capability queries per second per project
WEBHOOK_RATE_FACTOR = 3.75  # callbacks per second per query per second: above the 3 channels
DEFAULT_CONTACTS = 100_000
SCALE_AT_A_MILLION = 3.0  # 1M contacts at 2,400/s: about 7.5 minutes of sending
MIN_CORES_TO_SCALE = 6
WORK = Path(".bench/e2e")
RUN_ID = "bench-e2e"
SAMPLE_SECONDS = 0.05


@dataclass
class PeakMemory:
    """Samples the resident memory of a process and of its children (by role) every 50 ms."""

    pid: int
    peak: int = 0
    children: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by role, last seen
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self.peak = max(self.peak, process.memory_info().rss)
                self.cpu["run"] = _cpu_seconds(process)
                kids = process.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            for kid in kids:
                try:
                    role, rss = _role(kid.cmdline()), kid.memory_info().rss
                    if not role:  # exited, not reaped yet
                        continue
                    self.cpu[f"{role} {kid.pid}"] = _cpu_seconds(kid)
                except psutil.Error:
                    continue
                self.children[role] = max(self.children.get(role, 0), rss)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _role(cmdline: list[str]) -> str:
    for word, role in (("simulate", "simulator"), ("serve", "receiver")):
        if word in cmdline:
            return role
    return " ".join(cmdline[:3])


def write_config(path: Path, contacts_csv: Path, scale: float) -> None:
    """The shipped configuration (configs/default.toml) with the limits of this benchmark and
    every output under WORK."""
    rate = RATE * scale
    shipped = Path("configs/default.toml").read_text(encoding="utf-8")
    overrides = {
        "dispatch": {"rate_per_second": rate},
        "simulator": {"rate_limit": int(rate), "webhook_rate": WEBHOOK_RATE_FACTOR * rate},
        "contacts": {"paths": [str(contacts_csv)]},
        "receiver": {"landing_dir": str(WORK / "landing")},
        "warehouse": {"path": str(WORK / "warehouse.duckdb")},
        "reports": {"dir": str(WORK / "reports")},
    }
    path.write_text(_override_toml(shipped, overrides), encoding="utf-8")


def _override_toml(text: str, overrides: dict[str, dict[str, Any]]) -> str:
    """`text` with the keys of `overrides` replaced in their sections (all keys exist there)."""
    lines, section = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        if not stripped.startswith("#") and key in overrides.get(section, {}):
            lines.append(f"{key} = {json.dumps(overrides[section].pop(key))}")
        else:
            lines.append(line)
    left = {s: keys for s, keys in overrides.items() if keys}
    assert not left, f"not in configs/default.toml: {left}"
    return "\n".join(lines) + "\n"


def run_capaudit(config: Path, scale: float) -> dict[str, Any]:
    """`capaudit run` as its own process; wall time to the report on disk and peak memory."""
    command = [sys.executable, "-m", "pipeline", "run", "--config", str(config)]
    if scale != 1:
        command = [sys.executable, "-m", "benchmarks.e2e", "--as-capaudit", str(RATE * scale)]
        command += ["run", "--config", str(config)]
    command += ["--run-id", RUN_ID]
    env = {**os.environ, "CAPAUDIT_LOGGING__FORMAT": "json"}
    log = (WORK / "run.log").open("w", encoding="utf-8")
    started = time.time()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    memory = PeakMemory(process.pid)
    code = process.wait()
    memory.stop()
    log.close()
    if code != 0:
        tail = (WORK / "run.log").read_text(encoding="utf-8")[-3000:]
        sys.exit(f"capaudit run exited {code}:\n{tail}")
    report = WORK / "reports" / RUN_ID
    written = max(p.stat().st_mtime for p in report.rglob("*") if p.is_file())
    return {
        "seconds": written - started,
        "exit_seconds": time.time() - started,
        "peak_mb": memory.peak / 2**20,
        "children_mb": {role: rss / 2**20 for role, rss in memory.children.items()},
        "cpu_seconds": _by_role(memory.cpu),
    }


def _by_role(cpu: dict[str, float]) -> dict[str, float]:
    """CPU seconds per role, the processes of one role (a restarted child) added up."""
    total: dict[str, float] = {}
    for key, seconds in cpu.items():
        role = key.split(" ")[0]
        total[role] = total.get(role, 0.0) + seconds
    return total


def ledger_figures() -> dict[str, Any]:
    """What the run's state says it did: requests sent (first asks and re-asks), interleaving,
    and the seconds of each step."""
    with duckdb.connect(str(WORK / "state.duckdb"), read_only=True) as conn:
        row = conn.execute(
            """
            WITH r AS (SELECT * FROM requests WHERE run_id = $run_id),
            last_first AS (SELECT max(sent_at) AS last_at FROM r WHERE requery_of IS NULL)
            SELECT count(*) FILTER (WHERE state <> 'planned'),
                count(*) FILTER (WHERE state <> 'planned' AND requery_of IS NOT NULL),
                coalesce(sum(attempts), 0),
                count(*) FILTER (WHERE requery_of IS NOT NULL
                                 AND sent_at < (SELECT last_at FROM last_first)),
                (SELECT count(*) FROM targets WHERE run_id = $run_id)
            FROM r
            """,
            {"run_id": RUN_ID},
        ).fetchone()
        durations, counts = conn.execute(
            "SELECT durations, counts FROM runs WHERE run_id = $run_id", {"run_id": RUN_ID}
        ).fetchone() or ("{}", "{}")
    assert row is not None
    return {
        "requests": int(row[0]),
        "reasks": int(row[1]),
        "attempts": int(row[2]),
        "reasks_while_sending": int(row[3]),
        "targets": int(row[4]),
        "durations": json.loads(durations or "{}"),
        "counts": json.loads(counts or "{}"),
    }


def print_figures(contacts: int, scale: float, run: dict[str, Any], ledger: dict[str, Any]) -> None:
    rate = RATE * scale
    requests, seconds = ledger["requests"], run["seconds"]
    limit_seconds = requests / rate
    steps = ledger["durations"]
    named = ("load", "plan", "submit", "collect", "build", "report")
    stepped = sum(float(steps.get(name, 0.0)) for name in named)
    print(
        f"# {contacts:,} contacts, {ledger['targets']:,} targets; rate_per_second {rate:g}, "
        f"simulator rate_limit {int(rate)}, webhook_rate {WEBHOOK_RATE_FACTOR * rate:g}/s"
    )
    if scale != 1:
        print(
            f"# scaled: every limit x{scale:g} (Sinch's is 800/s) so that {contacts:,} contacts "
            "finish in minutes; the dispatcher's 800/s cap lifted in this benchmark's process only"
        )
    print(
        f"# reference (the API limit): {requests:,} requests sent ({ledger['reasks']:,} re-asks, "
        f"{ledger['reasks_while_sending']:,} of them before the first pass ended; "
        f"{ledger['attempts']:,} attempts) / {rate:g}/s = {limit_seconds:.1f} s"
    )
    parts = ", ".join(f"{name} {float(steps.get(name, 0.0)):.1f}" for name in named)
    print(
        f"# parts (s): {parts} (collect = the tail after the last request sent); "
        f"start, exit of steps and the rest {seconds - stepped:.1f}; "
        f"report written at {seconds:.1f}, the process exited at {run['exit_seconds']:.1f} "
        f"(publish {float(steps.get('publish', 0.0)):.1f})"
    )
    for role, mb in sorted(run["children_mb"].items()):
        print(f"# embedded {role} peak RSS: {mb:.0f} MB")
    cpu = ", ".join(f"{role} {s:.1f}" for role, s in sorted(run["cpu_seconds"].items()))
    per_request = 1000 * sum(run["cpu_seconds"].values()) / requests
    print(f"# CPU seconds: {cpu} ({per_request:.2f} ms a request in all)")
    print(f"e2e_ratio_vs_api_limit: {seconds / limit_seconds:.3f} ratio")
    print(f"e2e_peak_rss_mb: {run['peak_mb']:.0f} MB")
    print(f"e2e_requests_per_s: {requests / seconds:.1f} requests/s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument(
        "--scale", type=float, default=None, help="limits x K (default: 1, 3 from 1,000,000)"
    )
    args = parser.parse_args(argv)
    scale = args.scale or default_scale(args.contacts)
    WORK.mkdir(parents=True, exist_ok=True)
    contacts_csv = WORK / f"wide-{args.contacts}.csv"
    if not contacts_csv.exists():
        from benchmarks.generate import write_wide

        write_wide(contacts_csv, args.contacts)
    for stale in ("landing", "reports", "lake"):
        shutil.rmtree(WORK / stale, ignore_errors=True)
    for stale in WORK.glob("*.duckdb*"):
        stale.unlink()
    config = WORK / "e2e.toml"
    write_config(config, contacts_csv, scale)
    run = run_capaudit(config, scale)
    print_figures(args.contacts, scale, run, ledger_figures())


def default_scale(contacts: int) -> float:
    if contacts < 1_000_000:
        return 1.0
    cores = os.cpu_count() or 1
    if cores < MIN_CORES_TO_SCALE:
        print(
            f"# {cores} cores: limits not scaled (x{SCALE_AT_A_MILLION:g} needs "
            f"{MIN_CORES_TO_SCALE}); {contacts:,} contacts at 800/s take about "
            f"{contacts * 1.09 / RATE / 60:.0f} minutes"
        )
        return 1.0
    return SCALE_AT_A_MILLION


def as_capaudit(rate: float, argv: list[str]) -> None:
    """`capaudit ARGV` with the dispatcher's cap at `rate` instead of Sinch's 800/s: for the
    scaled benchmark only, never reachable from capaudit's own command line or settings."""
    from pipeline.submit import dispatch

    dispatch.SINCH_MAX_RATE = rate
    from pipeline.cli import main as capaudit

    sys.argv = ["capaudit", *argv]
    capaudit()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-capaudit"]:
        as_capaudit(float(sys.argv[2]), sys.argv[3:])
    else:
        main(sys.argv[1:])
