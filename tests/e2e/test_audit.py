"""End to end on loopback: real simulator and receiver processes, real HTTP, a real warehouse.

The invariants of DESIGN §7 are checked on the outcome of a whole `capaudit run`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx

from pipeline.report.writer import STATUS_COLUMNS
from tests.conftest import (
    REPO,
    SAMPLE,
    receiver,
    service_env,
    sim_stats,
    simulator,
    wait_for,
    write_config,
)
from tests.unit.test_models import assert_contracts


def capaudit(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env={**service_env(), "PATH": "/usr/bin:/bin", **(env or {})},
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def small_sample(tmp_path: Path, rows: int = 400) -> Path:
    """The first `rows` sample rows plus one of each kind of bad row."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[: rows + 1]
    lines += [",12345", "", ",+46 70 12", lines[5], "CUST-ONLY,"]
    path = tmp_path / "contacts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def input_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for _ in csv.reader(handle)) - 1


def test_audit_against_real_servers_keeps_every_invariant(tmp_path: Path) -> None:
    contacts = small_sample(tmp_path)
    config = write_config(
        tmp_path / "capaudit.toml",
        tmp_path,
        dispatch={"rate_per_second": 300.0},
        collect={"deadline_seconds": 30},
        simulator={
            "latency_ms": 5,
            "webhook_rate": 2000,
            "callback_delay_ms": 50,
            "callback_duplicate_rate": 0.05,
        },
    )
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        env = {
            "CAPAUDIT_SINCH__BASE_URL": sim_url,
            "CAPAUDIT_SINCH__TOKEN_URL": f"{sim_url}/oauth2/token",
            "CAPAUDIT_RECEIVER__PUBLIC_URL": f"{receiver_url}/callbacks/sinch",
        }
        done = capaudit(
            "run", "--config", str(config), "--contacts", str(contacts), "--run-id", "e2e", env=env
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: sim_stats(sim_url)["callbacks_pending"] == 0)
        stats = sim_stats(sim_url)
        health = httpx.get(f"{receiver_url}/metrics", timeout=5).text
    assert "capaudit_receiver_callbacks_accepted_total" in health
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        # Every input row is a target or a reject (rule 1).
        covered = conn.execute("""
            SELECT count(*) FROM (SELECT source, row_number FROM targets WHERE run_id = 'e2e'
                                  UNION SELECT source, row_number FROM rejects WHERE run_id = 'e2e')
        """).fetchone()
        assert covered == (input_rows(contacts),)
        # Every target exactly once in capability.
        targets = conn.execute("SELECT count(*) FROM targets WHERE run_id = 'e2e'").fetchone()
        rows = conn.execute("""SELECT count(*), count(DISTINCT (contact_key, channel))
                               FROM capability WHERE run_id = 'e2e'""").fetchone()
        assert rows == (targets[0], targets[0])
        # Reachability counts add up to the targets per channel.
        for row in conn.execute(f"""SELECT targets, {" + ".join(STATUS_COLUMNS)},
                                    (SELECT count(*) FROM capability c WHERE c.run_id = r.run_id
                                     AND c.channel = r.channel)
                                    FROM reachability r WHERE run_id = 'e2e'""").fetchall():
            assert row[0] == row[1] == row[2]
        # Callbacks delivered, less the duplicates, are exactly the landed notifications.
        landed = conn.execute("SELECT count(*), sum(deliveries) FROM notifications").fetchone()
        assert landed[0] == stats["callbacks_delivered"] - stats["duplicates_delivered"]
        assert landed[1] == stats["callbacks_delivered"]
        assert stats["duplicates_delivered"] > 0  # the dedupe was exercised
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM capability GROUP BY 1").fetchall()
        )
    assert set(statuses) >= {"CAPABILITY_FULL", "CAPABILITY_PARTIAL", "NO_CAPABILITY"}
    assert "NO_RESPONSE" not in statuses  # every accepted target got its callback
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        assert_contracts(conn, catalog=True)
        run = conn.execute("""SELECT status, exit_code, capaudit_version, config_digest, inputs,
                              counts, durations, finished_at >= started_at FROM runs""").fetchone()
    status, exit_code, version, digest, inputs, counts, durations, ordered = run
    assert (status, exit_code, ordered) == ("succeeded", 0, True)
    assert version
    assert len(digest) == 64
    [source] = json.loads(inputs)
    assert source["path"] == str(contacts)
    assert source["sha256"] == hashlib.sha256(contacts.read_bytes()).hexdigest()
    steps = ("load", "plan", "submit", "collect", "build", "report")
    assert set(json.loads(durations)) == set(steps)
    assert json.loads(counts)["load"]["rows"] == input_rows(contacts)


def test_embedded_run_writes_the_warehouse_and_the_report(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "capaudit.toml", tmp_path, contacts={"paths": [str(small_sample(tmp_path, 150))]}
    )
    done = capaudit("run", "--config", str(config), "--run-id", "demo")
    assert done.returncode == 0, done.stderr
    assert "reachability per channel" in done.stdout
    report = tmp_path / "reports" / "demo"
    for name in (
        "index.html",
        "summary.json",
        "reachability.csv",
        "channels/SMS.csv",
        "channels/WHATSAPP.parquet",
        "channels/RCS.csv",
    ):
        assert (report / name).is_file(), name
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert tables >= {
        "runs",
        "targets",
        "rejects",
        "notifications",
        "capability",
        "reachability",
        "capability_latest",
    }
    assert "requests" not in tables  # the ledger is the job's own state
