"""A run never reports silently wrong numbers (issue 11), with real processes on loopback:

- kill -9 of the embedded receiver: restarted on its socket, redelivered callbacks land;
- the receiver stopped for good: exit 3 (incomplete), then `--resume` completes the run;
- an external receiver down and back while collecting: logged, the run completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import orjson
import pytest

from pipeline.landing.segments import list_segments
from tests.conftest import REPO, receiver, service_env, sim_stats, simulator, wait_for, write_config
from tests.e2e.test_audit import capaudit, small_sample
from tests.e2e.test_resume import live_env

# Outages and restarts within short collect deadlines and health intervals.
pytestmark = pytest.mark.timed

CONTACTS = 300  # 900 targets: a few seconds of sending and callbacks


def embedded_config(tmp_path: Path, **sections: dict[str, object]) -> Path:
    """An embedded run slow enough (~3 s of sending, callbacks paced) to be hit mid-way."""
    values: dict[str, dict[str, object]] = {
        "contacts": {"paths": [str(small_sample(tmp_path, CONTACTS))]},
        "dispatch": {"rate_per_second": 100.0, "max_in_flight": 16, "callback_backlog_seconds": 5},
        "simulator": {"latency_ms": 5, "webhook_rate": 300, "callback_delay_ms": 50},
        "collect": {
            "deadline_seconds": 20,
            "poll_interval_seconds": 0.2,
            "health_interval_seconds": 0.5,
        },
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    return write_config(tmp_path / "c.toml", tmp_path, **values)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env={**service_env(), "PATH": "/usr/bin:/bin", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def child_pid(parent: int, command: str) -> int | None:
    """The pid of `parent`'s child running `python -m pipeline <command>`, if any."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and command.encode() in argv[:4]:
            return int(stat.parent.name)
    return None


def landed_lines(landing: Path) -> int:
    return sum(s.path.read_bytes().count(b"\n") for s in list_segments(landing))


def landed_keys(landing: Path) -> set[tuple[str, str, str]]:
    """Every distinct notification in the landing segments, read without the pipeline."""
    keys = set()
    for segment in list_segments(landing):
        for line in segment.path.read_bytes().splitlines():
            record = orjson.loads(line)
            if record["kind"] == "capability":
                note = orjson.loads(record["body"])["capability_notification"]
                keys.add((note["request_id"], note.get("channel") or "", note["identity"]))
    return keys


def query(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    """Ask the job's working state (it also holds runs not published: incomplete ones)."""
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def signal_mid_run(
    tmp_path: Path, config: Path, run_id: str, service: str, signum: int
) -> subprocess.Popen[str]:
    """Start `capaudit run`, and once 150 callbacks have landed send `signum` to its embedded
    `service` (`serve` or `simulate`); returns the run's process."""
    run = start("run", "--config", str(config), "--run-id", run_id)
    wait_for(lambda: landed_lines(tmp_path / "landing") >= 150, timeout=60)
    victim = child_pid(run.pid, service)
    assert victim is not None
    os.kill(victim, signum)
    return run


def test_kill_9_of_the_embedded_receiver_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    config = embedded_config(tmp_path)
    run = signal_mid_run(tmp_path, config, "k9", "serve", signal.SIGKILL)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert "restarted on the same socket" in stderr
    [(targets, no_response)] = query(
        tmp_path,
        """SELECT count(*), count(*) FILTER
        (WHERE status = 'NO_RESPONSE') FROM capability WHERE run_id = 'k9'""",
    )
    assert targets == 3 * CONTACTS
    assert no_response <= 0.01 * targets
    [(status, restarts)] = query(tmp_path, "SELECT status, restarts FROM runs")
    assert (status, json.loads(str(restarts))) == ("succeeded", {"receiver": 1})
    # Every landed callback is in notifications, once.
    rows = query(tmp_path, "SELECT request_id, channel, identity FROM notifications")
    assert len(rows) == len(set(rows))
    assert set(rows) == landed_keys(tmp_path / "landing")


def test_kill_9_of_the_embedded_simulator_is_restarted_with_its_webhook(tmp_path: Path) -> None:
    """Sinch forgets neither a registered webhook nor a token it issued: nor does the simulator,
    restarted after a kill -9 (it answered 401 and sent no callback before). Only the callbacks
    it had queued die with it."""
    config = embedded_config(tmp_path, collect={"deadline_seconds": 3})  # a few are lost
    run = signal_mid_run(tmp_path, config, "sim9", "simulate", signal.SIGKILL)
    _, stderr = run.communicate(timeout=120)
    assert "restarted on the same socket" in stderr
    [(restarts,)] = query(tmp_path, "SELECT restarts FROM runs")
    assert json.loads(str(restarts)) == {"simulator": 1}
    # Requests sent after the restart were answered: the webhook was still there.
    [(answered, sent)] = query(
        tmp_path,
        """SELECT count(DISTINCT n.request_id), count(DISTINCT r.request_id) FROM requests r
        LEFT JOIN notifications n USING (request_id) WHERE r.run_id = 'sim9'""",
    )
    assert answered >= 0.9 * sent, (answered, sent, stderr)


def test_receiver_stopped_for_good_ends_incomplete_then_resume_completes(tmp_path: Path) -> None:
    config = embedded_config(tmp_path, collect={"deadline_seconds": 2})
    # SIGSTOP: alive, but answers nothing: no restart helps
    run = signal_mid_run(tmp_path, config, "stop", "serve", signal.SIGSTOP)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 3, stderr
    assert "is down" in stderr
    [(missing,)] = query(tmp_path, "SELECT count(*) FROM capability WHERE status = 'NO_RESPONSE'")
    assert missing > 0.02 * 3 * CONTACTS
    assert f"{missing:,} of {3 * CONTACTS:,} queried targets" in stderr
    assert "continue with capaudit run --resume --run-id stop" in stderr
    assert "INCOMPLETE" in stdout
    report = tmp_path / "reports" / "stop"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["complete"] is False
    assert summary["completeness"]["no_response"] == missing
    assert "INCOMPLETE RUN" in (report / "index.html").read_text()
    [(status, code)] = query(tmp_path, "SELECT status, exit_code FROM runs")
    assert (status, code) == ("incomplete", 3)
    unanswered = set(
        query(tmp_path, "SELECT contact_key, channel FROM capability WHERE status = 'NO_RESPONSE'")
    )
    first_requests = {str(r[0]) for r in query(tmp_path, "SELECT request_id FROM requests")}
    for channel in summary["channels"]:  # the shares of answered targets leave the gap out
        # (not a contact is no answer either: the contact-id row's, when it landed in time)
        answered = channel["targets"] - channel["no_response"] - channel["request_failed"]
        answered -= channel["not_a_contact"]
        assert channel["answered"] == answered
        assert channel["reachable_share_of_answered"] == channel["reachable"] / answered

    # Back with a new embedded receiver (and simulator, which has forgotten the old queries).
    # Collect waits out its deadline: re-queries of transient failures sent to the old
    # simulator stay unanswered (their targets have the transient answer; asked twice already).
    done = capaudit(
        "run", "--config", str(config), "--resume", "--run-id", "stop", "--deadline", "6"
    )
    assert done.returncode == 0, done.stderr
    [(status, code)] = query(tmp_path, "SELECT status, exit_code FROM runs")
    assert (status, code) == ("succeeded", 0)
    [(no_response,)] = query(
        tmp_path,
        """SELECT count(*) FROM capability
        WHERE run_id = 'stop' AND status = 'NO_RESPONSE'""",
    )
    assert no_response <= 0.02 * 3 * CONTACTS
    assert json.loads((report / "summary.json").read_text())["complete"] is True
    # Asked again: exactly the targets still without an answer when the resume began, once.
    reasks = query(tmp_path, REASKS.replace("$first", sql_list(first_requests)))
    assert len(reasks) == len(set(reasks))  # none twice
    assert reasks
    assert set(reasks) <= unanswered
    landed_meanwhile = set(query(tmp_path, LANDED.replace("$first", sql_list(first_requests))))
    assert unanswered - set(reasks) <= landed_meanwhile
    assert not set(reasks) & landed_meanwhile


def sql_list(values: set[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


# Targets the resume asked again (a re-query of a request of the first run) for want of an
# answer; re-queries of answers with a transient failure are left out.
REASKS = """
SELECT q.contact_key, c.channel FROM requests q, unnest(q.channels) AS c(channel)
WHERE q.requery_of IN $first AND q.request_id NOT IN $first AND NOT EXISTS (
    SELECT 1 FROM notifications n WHERE n.request_id = q.requery_of
    AND n.channel IN (c.channel, '') AND n.received_at < q.planned_at)
"""
# Targets with an answer to a request of the first run.
LANDED = """
SELECT DISTINCT r.contact_key, c.channel FROM requests r, unnest(r.channels) AS c(channel)
JOIN notifications n ON n.request_id = r.request_id AND n.channel IN (c.channel, '')
WHERE r.request_id IN $first
"""


def test_external_receiver_down_and_back_is_logged_and_the_run_completes(tmp_path: Path) -> None:
    contacts = small_sample(tmp_path, 200)
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        dispatch={"rate_per_second": 400.0},
        simulator={"latency_ms": 5, "webhook_rate": 100, "callback_delay_ms": 50},
        collect={"deadline_seconds": 30, "health_interval_seconds": 0.3},
    )
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        health = {"CAPAUDIT_COLLECT__RECEIVER_HEALTH_URL": f"{receiver_url}/healthz"}
        run = start(
            "run",
            "--config",
            str(config),
            "--contacts",
            str(contacts),
            "--run-id",
            "ext",
            env=live_env(sim_url, receiver_url) | health,
        )
        # 600 callbacks at 100/s: collect is still waiting when every query has been sent.
        wait_for(lambda: sim_stats(sim_url)["queries_accepted"] >= 200, timeout=60)
        pid = httpx.get(f"{receiver_url}/healthz", timeout=5).json()["pid"]
        os.kill(pid, signal.SIGSTOP)
        time.sleep(2.0)
        os.kill(pid, signal.SIGCONT)
        _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert f"the receiver at {receiver_url}/healthz is down" in stderr
    assert "is back after" in stderr
    [(no_response,)] = query(
        tmp_path, "SELECT count(*) FROM capability WHERE status = 'NO_RESPONSE'"
    )
    assert no_response == 0
    [(counts,)] = query(tmp_path, "SELECT counts FROM runs")
    assert json.loads(str(counts))["collect"]["receiver_outages"] >= 1


def test_an_external_receiver_is_watched_where_sinch_calls_it(tmp_path: Path) -> None:
    """Issue 25: with only `public_url` pointing at an external receiver ([receiver] port left
    at this host's default), collect watched 127.0.0.1:8751 and reported a false outage."""
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        contacts={"paths": [str(small_sample(tmp_path, 100))]},
        simulator={"latency_ms": 5, "webhook_rate": 300, "callback_delay_ms": 50},
        collect={"deadline_seconds": 30, "health_interval_seconds": 0.2},
    )
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        live = live_env(sim_url, receiver_url)
        del live["CAPAUDIT_COLLECT__RECEIVER_HEALTH_URL"]
        done = capaudit("run", "--config", str(config), "--run-id", "ext", env=live)
    assert done.returncode == 0, done.stderr
    assert "is down" not in done.stderr
    assert "still down" not in done.stderr
    [(counts,)] = query(tmp_path, "SELECT counts FROM runs")
    collect = json.loads(str(counts))["collect"]
    assert (collect["receiver_outages"], collect["receiver_health_checked"]) == (0, True)
