"""The single-step commands record themselves in `runs`; `run --resume` continues exactly that."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
from pathlib import Path

import duckdb

from tests.conftest import (
    receiver,
    sim_stats,
    simulator,
    wait_for,
    write_config,
)
from tests.e2e.test_audit import capaudit, small_sample
from tests.e2e.test_resume import background, interruptible, live_env
from tests.e2e.test_runs import query

ALL_STEPS = {"load", "plan", "submit", "collect", "build", "report", "publish"}


def run_record(tmp_path: Path, run_id: str) -> dict[str, object]:
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        row = conn.execute(
            "SELECT status, inputs, options, counts, durations FROM runs WHERE run_id = $r",
            {"r": run_id},
        ).fetchone()
    assert row is not None, f"no runs row for {run_id}"
    status, inputs, options, counts, durations = row
    return {
        "status": status,
        "inputs": json.loads(inputs),
        "options": json.loads(options),
        "counts": json.loads(counts),
        "durations": json.loads(durations),
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = capaudit(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done


def test_load_then_resume_audits_the_loaded_file_with_its_limit(tmp_path: Path) -> None:
    # The config names the whole sample; the operator loads 50 rows and keeps 12 contacts.
    cfg = tmp_path / "c.toml"
    write_config(cfg, tmp_path)
    small = small_sample(tmp_path, 50)
    step("load", "--config", str(cfg), "--contacts", str(small), "--limit", "12", "--run-id", "r1")
    loaded = run_record(tmp_path, "r1")
    assert set(loaded["counts"]) == {"load"}
    assert loaded["inputs"] == [
        {"path": str(small), "sha256": sha256(small), "bytes": small.stat().st_size}
    ]
    assert loaded["options"]["limit"] == 12
    done = step("run", "--config", str(cfg), "--resume", "--run-id", "r1")
    assert "Loaded" not in done.stdout  # the load was done: it is not done again
    assert query(tmp_path, "SELECT count(DISTINCT contact_key) FROM targets") == [(12,)]
    assert query(tmp_path, "SELECT count(DISTINCT contact_key) FROM capability") == [(12,)]
    record = run_record(tmp_path, "r1")
    assert record["status"] == "succeeded"
    assert set(record["counts"]) == ALL_STEPS
    assert record["inputs"] == loaded["inputs"]


def test_plan_then_resume_keeps_the_plan_and_its_refresh(tmp_path: Path) -> None:
    small = small_sample(tmp_path, 40)
    cfg = write_config(tmp_path / "c.toml", tmp_path)  # names the whole sample
    step("run", "--config", str(cfg), "--contacts", str(small), "--run-id", "first")
    step("load", "--config", str(cfg), "--contacts", str(small), "--run-id", "r2")
    step("plan", "--config", str(cfg), "--refresh", "--run-id", "r2")
    planned = run_record(tmp_path, "r2")
    assert set(planned["counts"]) == {"load", "plan"}
    assert planned["options"]["refresh"] is True
    step("run", "--config", str(cfg), "--resume", "--run-id", "r2")
    # Every target asked again (--refresh), none reused from 'first', none from the config's file.
    assert query(
        tmp_path,
        "SELECT count(*), count(*) FILTER (WHERE reused) FROM capability WHERE run_id = 'r2'",
    ) == query(tmp_path, "SELECT count(*), 0 FROM targets WHERE run_id = 'first'")
    record = run_record(tmp_path, "r2")
    assert record["options"]["refresh"] is True
    assert (record["status"], set(record["counts"])) == ("succeeded", ALL_STEPS)


def test_submit_interrupted_then_resume_sends_each_request_once(tmp_path: Path) -> None:
    contacts, config = interruptible(tmp_path)
    with simulator(config) as sim_url, receiver(config) as receiver_url:
        live = live_env(sim_url, receiver_url)
        base = ["--config", str(config), "--run-id", "s1"]
        step("load", *base, "--contacts", str(contacts), env=live)
        step("plan", *base, env=live)
        submit = background("submit", *base, env=live)
        wait_for(lambda: sim_stats(sim_url)["queries_accepted"] >= 150, timeout=60)
        submit.send_signal(signal.SIGTERM)
        _, stderr = submit.communicate(timeout=60)
        assert submit.returncode == 3, stderr
        assert "capaudit run --resume --run-id s1" in stderr
        stopped = run_record(tmp_path, "s1")
        assert stopped["status"] == "interrupted"
        assert stopped["counts"]["submit"]["interrupted"] is True
        step("run", "--resume", *base, env=live)
        stats = sim_stats(sim_url)
    assert stats["request_ids_repeated"] == 0
    targets = query(tmp_path, "SELECT count(*) FROM targets WHERE run_id = 's1'")
    assert query(tmp_path, "SELECT count(*) FROM capability WHERE run_id = 's1'") == targets
    assert query(tmp_path, "SELECT DISTINCT state FROM requests WHERE run_id = 's1'") == [
        ("accepted",)
    ]
    record = run_record(tmp_path, "s1")
    assert (record["status"], set(record["counts"])) == ("succeeded", ALL_STEPS)


def test_step_by_step_then_build_and_report_complete_the_run(tmp_path: Path) -> None:
    small = small_sample(tmp_path, 30)
    cfg = write_config(tmp_path / "c.toml", tmp_path, contacts={"paths": [str(small)]})
    base = ["--config", str(cfg), "--run-id", "b1"]
    for name in ("load", "plan", "submit", "collect", "build"):
        step(name, *base)
        assert run_record(tmp_path, "b1")["status"] == "paused"
    report = step("report", *base)
    assert (tmp_path / "reports" / "b1" / "index.html").is_file()
    assert str(tmp_path / "reports" / "b1" / "index.html") in report.stdout
    record = run_record(tmp_path, "b1")
    assert record["status"] == "succeeded"
    assert set(record["counts"]) == set(record["durations"]) == ALL_STEPS
    assert record["inputs"][0]["sha256"] == sha256(small)
    # Nothing is left to do: resuming sends nothing, it only rebuilds and reports the run.
    sent = query(tmp_path, "SELECT count(*), max(sent_at) FROM requests WHERE run_id = 'b1'")
    step("run", "--config", str(cfg), "--resume", "--run-id", "b1")
    assert (
        query(tmp_path, "SELECT count(*), max(sent_at) FROM requests WHERE run_id = 'b1'") == sent
    )


def test_resume_refuses_when_a_loaded_file_changed(tmp_path: Path) -> None:
    small = small_sample(tmp_path, 20)
    cfg = write_config(tmp_path / "c.toml", tmp_path)
    step("load", "--config", str(cfg), "--contacts", str(small), "--run-id", "ch")
    before = sha256(small)
    with small.open("a", encoding="utf-8") as handle:
        handle.write("CUST-NEW,+46701234599\n")
    refused = capaudit("run", "--config", str(cfg), "--resume", "--run-id", "ch")
    assert refused.returncode == 2, refused.stderr
    assert str(small) in refused.stderr
    assert before in refused.stderr
    assert sha256(small) in refused.stderr
    assert query(tmp_path, "SELECT count(*) FROM requests") == [(0,)]
