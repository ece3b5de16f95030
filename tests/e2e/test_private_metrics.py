"""A real `capaudit run` under the usual umask (022): everything it writes under its data
directories is private (rule 11), and its metrics textfile parses with prometheus-client's
parser and holds the run's figures, also after a run that fails."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import write_config
from tests.e2e.test_audit import capaudit, small_sample

STEPS = ("load", "plan", "submit", "collect", "build", "report", "publish")


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)  # the child processes inherit it
    yield
    os.umask(previous)


def samples(textfile: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(textfile.read_text(encoding="utf-8"))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_a_run_writes_private_files_and_its_metrics(tmp_path: Path, umask_022: None) -> None:
    data, textfiles = tmp_path / "data", tmp_path / "textfile"
    textfiles.mkdir()
    textfile = textfiles / "capaudit.prom"
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        warehouse={"path": str(data / "warehouse.duckdb")},
        receiver={"landing_dir": str(data / "landing")},
        reports={"dir": str(data / "reports")},
        metrics={"textfile": str(textfile)},
    )
    contacts = small_sample(tmp_path, rows=60)
    done = capaudit(
        "run", "--config", str(config), "--contacts", str(contacts), "--run-id", "night-1"
    )
    assert done.returncode == 0, done.stderr

    summary = json.loads((data / "reports" / "night-1" / "summary.json").read_text())
    got = samples(textfile)
    assert got[("capaudit_last_run_info", (("run_id", "night-1"), ("status", "succeeded")))] == 1
    assert got[("capaudit_last_run_exit_code", ())] == 0
    finished = got[("capaudit_last_run_finish_timestamp_seconds", ())]
    assert got[("capaudit_last_success_timestamp_seconds", ())] == finished
    assert got[("capaudit_last_run_start_timestamp_seconds", ())] < finished
    assert got[("capaudit_last_run_targets", ())] == summary["totals"]["targets"]
    assert got[("capaudit_last_run_unanswered_ratio", ())] == pytest.approx(
        summary["completeness"]["no_response_share"], abs=1e-6
    )
    for channel in summary["channels"]:
        key = ("capaudit_last_run_reachable_ratio", (("channel", channel["channel"]),))
        assert got[key] == pytest.approx(channel["reachable_share"])
    for step in STEPS:
        assert got[("capaudit_last_run_step_duration_seconds", (("step", step),))] >= 0
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644  # no contact data: others may read

    written = [data, *data.rglob("*")]
    assert len(written) > 20
    wrong = {
        str(path.relative_to(tmp_path)): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in written
        if stat.S_IMODE(path.lstat().st_mode) != (0o750 if path.is_dir() else 0o640)
    }
    assert not wrong, wrong

    refused = capaudit("run", "--config", str(config), "--resume", "--run-id", "no-such-run")
    assert refused.returncode == 2, refused.stderr
    after = samples(textfile)
    assert after[("capaudit_last_run_info", (("run_id", "no-such-run"), ("status", "failed")))]
    assert after[("capaudit_last_run_exit_code", ())] == 2
    assert after[("capaudit_last_success_timestamp_seconds", ())] == finished
