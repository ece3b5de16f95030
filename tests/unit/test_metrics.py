"""Batch-job metrics: written when `capaudit run` ends, however it ends, in Prometheus' text
format (parsed back with prometheus-client's parser), to a textfile and a Pushgateway."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import runs
from pipeline.errors import ConfigError, Interrupted, RunFailed, UsageError
from pipeline.metrics.record import run_metrics
from pipeline.settings import Settings, load_settings
from pipeline.warehouse import open_warehouse, run_model
from tests.conftest import add_targets
from tests.unit.test_report_exports import given

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Result:
    """What `audit.RunResult` carries for the metrics."""

    run_id: str
    status: str = "running"
    exit_code: int = 0


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def state(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with open_warehouse(tmp_path / "state.duckdb", preference=("RCS", "SMS")) as conn:
        yield conn


def metrics_settings(tmp_path: Path, **keys: str) -> Settings:
    return Settings().replace("metrics", **{"textfile": str(tmp_path / "capaudit.prom"), **keys})


def built_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Run 'x' of `given` (400 contacts, 5 channels) recorded as loaded and built."""
    given(conn)
    add_targets(
        conn,
        "SELECT run_id, contact_key, channel, identity, 'list.csv' AS source, "
        "row_number() OVER () AS row_number FROM capability WHERE run_id = $r",
        {"r": run_id},
    )
    run_model(conn, "marts", "20_reachability.sql", run_id)
    runs.start_run(conn, run_id, config_digest="", inputs=[])
    runs.record_step(conn, run_id, "load", 1.5, {})
    runs.record_step(conn, run_id, "build", 2.25, {})


class Clock:
    def __init__(self, *times: float) -> None:
        self.times = list(times)

    def __call__(self) -> float:
        return self.times.pop(0)


def test_a_succeeded_run_writes_its_figures(
    state: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    built_run(state, "x")
    result = Result("x")
    with run_metrics(state, metrics_settings(tmp_path), result, Clock(1000.0, 1090.5)):
        result.status = "succeeded"  # as `audit._finish` sets it
    textfile = tmp_path / "capaudit.prom"
    samples = parse(textfile.read_text())
    assert value(samples, "capaudit_last_run_info", run_id="x", status="succeeded") == 1
    assert value(samples, "capaudit_last_run_start_timestamp_seconds") == 1000.0
    assert value(samples, "capaudit_last_run_finish_timestamp_seconds") == 1090.5
    assert value(samples, "capaudit_last_run_duration_seconds") == 90.5
    assert value(samples, "capaudit_last_run_exit_code") == 0
    assert value(samples, "capaudit_last_success_timestamp_seconds") == 1090.5
    assert value(samples, "capaudit_last_run_step_duration_seconds", step="load") == 1.5
    assert value(samples, "capaudit_last_run_step_duration_seconds", step="build") == 2.25
    targets, queried, missing = state.execute(
        "SELECT (SELECT count(*) FROM targets WHERE run_id = 'x'), count(*), "
        "count(*) FILTER (WHERE status = 'NO_RESPONSE') FROM capability WHERE run_id = 'x'"
    ).fetchone()
    assert value(samples, "capaudit_last_run_targets") == targets > 400
    assert value(samples, "capaudit_last_run_unanswered_ratio") == pytest.approx(missing / queried)
    shares = dict(
        state.execute(
            "SELECT channel, reachable_share FROM reachability WHERE run_id = 'x'"
        ).fetchall()
    )
    assert len(shares) == 5
    for channel, share in shares.items():
        assert value(samples, "capaudit_last_run_reachable_ratio", channel=channel) == share
    # node-exporter reads it as another user: 0644 even under capaudit's own umask (027)
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert not [p.name for p in tmp_path.iterdir() if ".prom" in p.name and p != textfile]


def test_a_failed_run_keeps_the_last_success_and_says_how_it_ended(
    state: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    settings = metrics_settings(tmp_path)
    ok = Result("ok")
    with run_metrics(state, settings, ok, Clock(100.0, 160.0)):
        ok.status = "succeeded"
    broken = Result("broken")

    def fail_after_loading() -> None:
        runs.start_run(state, "broken", config_digest="", inputs=[])
        runs.record_step(state, "broken", "load", 3.0, {})
        broken.status = "failed"  # as `audit._recorded` sets it
        raise RunFailed("Sinch said no")

    with pytest.raises(RunFailed), run_metrics(state, settings, broken, Clock(200.0, 230.0)):
        fail_after_loading()
    samples = parse((tmp_path / "capaudit.prom").read_text())
    assert value(samples, "capaudit_last_run_info", run_id="broken", status="failed") == 1
    assert value(samples, "capaudit_last_run_exit_code") == 1
    assert value(samples, "capaudit_last_run_finish_timestamp_seconds") == 230.0
    assert value(samples, "capaudit_last_success_timestamp_seconds") == 160.0  # the textfile's
    assert value(samples, "capaudit_last_run_step_duration_seconds", step="load") == 3.0
    names = {name for name, _ in samples}
    assert not names & {"capaudit_last_run_unanswered_ratio", "capaudit_last_run_reachable_ratio"}


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (UsageError("--resume: there is no run r to resume"), "failed", 2),
        (Interrupted("stopped by SIGTERM"), "interrupted", 3),
        (KeyboardInterrupt(), "interrupted", 3),
    ],
)
def test_a_run_stopped_before_it_was_recorded_reads_no_figures_of_the_state(
    state: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    raised: BaseException,
    status: str,
    code: int,
) -> None:
    built_run(state, "r")  # an earlier invocation's figures: not this one's
    with (
        pytest.raises(type(raised)),
        run_metrics(state, metrics_settings(tmp_path), Result("r"), Clock(1.0, 2.0)),
    ):
        raise raised
    samples = parse((tmp_path / "capaudit.prom").read_text())
    assert value(samples, "capaudit_last_run_info", run_id="r", status=status) == 1
    assert value(samples, "capaudit_last_run_exit_code") == code
    assert value(samples, "capaudit_last_success_timestamp_seconds") == 0
    assert not [name for name, _ in samples if "step" in name or "targets" in name]


def test_an_incomplete_run_exits_3_and_keeps_the_success_the_state_recorded(
    state: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    state.execute(
        "INSERT INTO runs (run_id, started_at, finished_at, status) VALUES "
        "('old', TIMESTAMPTZ '2026-11-24 02:00:00+00', TIMESTAMPTZ '2026-11-24 03:00:00+00', "
        "'succeeded')"
    )
    result = Result("x")
    with run_metrics(state, metrics_settings(tmp_path), result, Clock(1.0, 2.0)):
        result.status, result.exit_code = "incomplete", 3
    samples = parse((tmp_path / "capaudit.prom").read_text())
    assert value(samples, "capaudit_last_run_exit_code") == 3
    old = datetime(2026, 11, 24, 3, tzinfo=UTC).timestamp()
    assert value(samples, "capaudit_last_success_timestamp_seconds") == old


class Recorder(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append(("PUT", self.path, self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def pushgateway() -> Iterator[str]:
    """A stand-in Pushgateway on a free loopback port that records what it receives."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_pushgateway_gets_the_same_metrics(
    state: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    Recorder.received = []
    with pushgateway() as url:
        settings = metrics_settings(tmp_path, pushgateway_url=url)
        result = Result("x")
        with run_metrics(state, settings, result, Clock(10.0, 20.0)):
            result.status = "succeeded"
    ((method, path, body),) = Recorder.received
    assert (method, path) == ("PUT", "/metrics/job/capaudit")  # replaces the group's last push
    assert parse(body.decode()) == parse((tmp_path / "capaudit.prom").read_text())


def test_metrics_that_cannot_be_written_never_change_the_outcome(
    state: duckdb.DuckDBPyConnection, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings().replace(
        "metrics",
        textfile=str(tmp_path / "no-such-dir" / "capaudit.prom"),
        pushgateway_url="http://127.0.0.1:9",  # nothing listens there
    )
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(RunFailed, match="the run's own"),
        run_metrics(state, settings, Result("x"), Clock(1.0, 2.0)),
    ):
        raise RunFailed("the run's own failure")
    assert "cannot write [metrics] textfile" in caplog.text
    assert "cannot push to [metrics] pushgateway_url" in caplog.text
    assert not (tmp_path / "no-such-dir").exists()


def test_without_metrics_configured_nothing_is_written(
    state: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    before = set(os.listdir(tmp_path))
    with run_metrics(state, Settings(), Result("x"), Clock()):
        pass
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("TEXTFILE", "/var/lib/node_exporter/textfile/capaudit.txt", "must end in .prom"),
        ("PUSHGATEWAY_URL", "pushgateway:9091", "must be an http(s) URL"),
    ],
)
def test_metrics_settings_that_would_never_be_read_are_refused(
    key: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(None, env={f"CAPAUDIT_METRICS__{key}": value})
