"""Breaking runs on purpose: a refusing API, and kill -9 in the middle of submission."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from tests.conftest import REPO, receiver, service_env, sim_stats, simulator, wait_for, write_config
from tests.e2e.test_audit import capaudit, small_sample


def live_env(sim_url: str, receiver_url: str) -> dict[str, str]:
    return {
        "CAPAUDIT_SINCH__BASE_URL": sim_url,
        "CAPAUDIT_SINCH__TOKEN_URL": f"{sim_url}/oauth2/token",
        "CAPAUDIT_RECEIVER__PUBLIC_URL": f"{receiver_url}/callbacks/sinch",
        "CAPAUDIT_COLLECT__RECEIVER_HEALTH_URL": f"{receiver_url}/healthz",
    }


def interruptible(tmp_path: Path) -> tuple[Path, Path]:
    """600 contacts at 120/s: about five seconds of sending, time to interrupt it."""
    contacts = small_sample(tmp_path, 600)
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        dispatch={"rate_per_second": 120.0, "max_in_flight": 16},
        simulator={"latency_ms": 20, "webhook_rate": 3000, "callback_delay_ms": 50},
        collect={"deadline_seconds": 30},
    )
    return contacts, config


def start_run(
    config: Path, contacts: Path, run_id: str, live: dict[str, str]
) -> subprocess.Popen[str]:
    """`capaudit run` as a background process, to be interrupted."""
    args = ["run", "--config", str(config), "--contacts", str(contacts), "--run-id", run_id]
    return background(*args, env=live)


def background(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`capaudit ARGS` as a background process."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env={**service_env(), "PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_requests_that_never_get_through_are_request_failed(tmp_path: Path) -> None:
    contacts = small_sample(tmp_path, 20)
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        dispatch={"max_attempts": 2, "backoff_base_seconds": 0.05},
        simulator={"fault_5xx_rate": 1.0, "latency_ms": 1},
        collect={"deadline_seconds": 2},
    )
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        # No webhook secret: the run registers no webhook (nothing would be called back anyway).
        env = live_env(sim_url, receiver_url) | {"CAPAUDIT_WEBHOOK_SECRET": ""}
        done = capaudit(
            "run", "--config", str(config), "--contacts", str(contacts), "--run-id", "fail", env=env
        )
    assert done.returncode == 0, done.stderr  # a report was written: failures are reported
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        rows = conn.execute(
            "SELECT status, error, count(*) FROM capability WHERE run_id = 'fail' GROUP BY ALL"
        ).fetchall()
    assert len(rows) == 1
    status, error, _ = rows[0]
    assert status == "REQUEST_FAILED"
    assert "gave up after 2 attempts: 503 UNAVAILABLE" in error


def test_kill_9_mid_submission_then_resume(tmp_path: Path) -> None:
    contacts, config = interruptible(tmp_path)
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        run = start_run(config, contacts, "k9", live_env(sim_url, receiver_url))
        wait_for(lambda: sim_stats(sim_url)["queries_accepted"] >= 200, timeout=60)
        run.send_signal(signal.SIGKILL)
        run.communicate()
        accepted_before = sim_stats(sim_url)["queries_accepted"]
        assert accepted_before < 600, "the run finished before it could be killed"
        time.sleep(0.5)
        resume = ["run", "--config", str(config), "--resume", "--run-id", "k9"]
        done = capaudit(*resume, env=live_env(sim_url, receiver_url))
        assert done.returncode == 0, done.stderr
        stats = sim_stats(sim_url)
    # The job's state: it holds the ledger (`requests`), which is not published.
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        targets = conn.execute("SELECT count(*) FROM targets WHERE run_id = 'k9'").fetchone()
        capability = conn.execute(
            "SELECT count(*), count(DISTINCT (contact_key, channel)) FROM capability "
            "WHERE run_id = 'k9'"
        ).fetchone()
        requests = conn.execute(
            "SELECT count(*), count(DISTINCT request_id), count(DISTINCT contact_key) "
            "FROM requests WHERE run_id = 'k9' AND requery_of IS NULL"
        ).fetchone()
        states = dict(
            conn.execute(
                "SELECT state, count(*) FROM requests WHERE run_id = 'k9' GROUP BY state"
            ).fetchall()
        )
        no_response = conn.execute(
            "SELECT count(*) FROM capability WHERE run_id = 'k9' AND status = 'NO_RESPONSE'"
        ).fetchone()
        run_status = conn.execute("SELECT status FROM runs WHERE run_id = 'k9'").fetchone()
    assert capability == (targets[0], targets[0])  # every target exactly once
    assert requests[0] == requests[1] == requests[2]  # one request per contact, no id twice
    assert set(states) == {"accepted"}
    assert no_response == (0,)
    assert run_status == ("succeeded",)
    # Only requests in flight at the kill can have been sent twice (same request_id).
    assert stats["request_ids_repeated"] <= 16
    first_asks = stats["queries_accepted"] - stats["request_ids_repeated"]
    assert first_asks >= requests[0]


def test_sigterm_stops_sending_exits_3_and_resume_completes(tmp_path: Path) -> None:
    contacts, config = interruptible(tmp_path)
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        run = start_run(config, contacts, "term", live_env(sim_url, receiver_url))
        wait_for(lambda: sim_stats(sim_url)["queries_accepted"] >= 150, timeout=60)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 3, stderr
        assert "capaudit run --resume --run-id term" in stderr
        at_stop = sim_stats(sim_url)
        # An interrupted run is not published: its ledger is in the working state.
        with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
            recorded = conn.execute(
                "SELECT state, count(*) FROM requests WHERE run_id = 'term' GROUP BY ALL"
            ).fetchall()
            status = conn.execute("SELECT status FROM runs WHERE run_id = 'term'").fetchone()
        # The ledger was flushed before exiting: it knows of every query Sinch accepted.
        assert dict(recorded).get("accepted") == at_stop["queries_accepted"], (recorded, at_stop)
        assert status == ("interrupted",)
        resume = ["run", "--config", str(config), "--resume", "--run-id", "term"]
        done = capaudit(*resume, env=live_env(sim_url, receiver_url))
        assert done.returncode == 0, done.stderr
        stats = sim_stats(sim_url)
        assert stats["request_ids_repeated"] == 0, (stats, stderr[-2000:])  # none sent twice
