"""Runs that can do nothing are refused, never `succeeded` (issue 25, DESIGN §7 rule 10), and
the embedded demo interrupted mid-submit finishes with one `--resume`; real processes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import wait_for, write_config
from tests.e2e.test_audit import capaudit, small_sample
from tests.e2e.test_supervision import (
    embedded_config,
    landed_keys,
    landed_lines,
    query,
    start,
)

BAD_ROWS = "contact_id,phone\n,12345\n,+46 70 12\n"


def newest_published(tmp_path: Path) -> tuple[object, ...] | None:
    """The catalog's newest run and every run it shows (what analysts see)."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as catalog:
        newest = catalog.execute("SELECT newest_run_id FROM capaudit_catalog").fetchone()
        shown = catalog.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()
    return (newest, shown)


def test_a_list_whose_every_row_is_rejected_is_refused_and_not_published(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", tmp_path, contacts={"paths": [str(small_sample(tmp_path, 10))]}
    )
    good = capaudit("run", "--config", str(config), "--run-id", "good")
    assert good.returncode == 0, good.stderr
    published = newest_published(tmp_path)
    assert published == (("good",), [("good",)])
    bad = tmp_path / "allbad.csv"
    bad.write_text(BAD_ROWS, encoding="utf-8")
    done = capaudit("run", "--config", str(config), "--contacts", str(bad), "--run-id", "bad")
    assert done.returncode == 2, done.stderr
    assert (
        f"run bad refused (exit 2, not published): nothing to audit: {bad} gave no target: "
        "2 rows, 2 rejected (" in done.stderr
    )
    assert newest_published(tmp_path) == published  # the analysts' newest run is unchanged
    assert not (tmp_path / "reports" / "bad").exists()
    [(status, code, error)] = query(
        tmp_path, "SELECT status, exit_code, error FROM runs WHERE run_id = 'bad'"
    )
    assert (status, code) == ("refused", 2)
    assert "gave no target" in str(error)
    assert query(tmp_path, "SELECT count(*) FROM rejects WHERE run_id = 'bad'") == [(2,)]
    again = capaudit("run", "--config", str(config), "--resume", "--run-id", "bad")
    assert again.returncode == 2
    assert "cannot be resumed" in again.stderr
    # an empty list, and the dry run's warning
    empty = tmp_path / "empty.csv"
    empty.write_text("contact_id,phone\n", encoding="utf-8")
    done = capaudit("run", "--config", str(config), "--contacts", str(empty), "--run-id", "none")
    assert done.returncode == 2, done.stderr
    assert f"{empty}: no rows: the files hold a header only" in done.stderr
    assert query(tmp_path, "SELECT status FROM runs WHERE run_id = 'none'") == [("refused",)]
    dry = capaudit("run", "--config", str(config), "--contacts", str(bad), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Warning: the run would be refused (exit 2): nothing to audit" in dry.stdout
    assert newest_published(tmp_path) == published


def test_a_window_that_fits_nothing_exits_2_with_the_numbers(tmp_path: Path) -> None:
    # At half a callback a second a 3 s window has room for one callback, and each contact
    # needs three (one a channel). Refused at the plan: Sinch (no server here) is never called.
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        sinch={"base_url": "http://127.0.0.1:9", "token_url": "http://127.0.0.1:9/oauth2/token"},
        contacts={"paths": [str(small_sample(tmp_path, 20))]},
        collect={"callback_rate_per_second": 0.5},
    )
    args = ("run", "--config", str(config), "--window", "3s")
    done = capaudit(*args, "--run-id", "tiny")
    assert done.returncode == 2, done.stderr
    message = done.stderr
    for figure in (
        "run tiny refused (exit 2, not published): --window 3s fits nothing: 63 targets need "
        "asking, but at 0.5 callbacks/s (configuration)",
        "the smallest contact needs 3 callbacks",
        "Of the 3 s window, 0.3 s are kept for the last callbacks, the build and the report "
        "(10% of the window, at most [plan] window_reserve_seconds)",
        "s for asking. Give a window of at least ",
    ):
        assert figure in message, (figure, message)
    [(status, code)] = query(tmp_path, "SELECT status, exit_code FROM runs")
    assert (status, code) == ("refused", 2)
    assert query(tmp_path, "SELECT count(*) FROM requests") == [(0,)]
    assert not (tmp_path / "reports" / "tiny").exists()
    dry = capaudit(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Warning: the run would be refused (exit 2): --window 3s fits nothing" in dry.stdout


@pytest.mark.timed  # the resume ends before the deadline it would have waited out
def test_sigterm_mid_submit_then_one_resume_finishes_the_embedded_demo(tmp_path: Path) -> None:
    """The embedded simulator dies with the interrupted run, owing the callbacks of what it
    accepted: the resume asks those again at once instead of waiting out its deadline."""
    # Callbacks at 100/s against queries at 100/s of 3 channels: hundreds are owed at any time.
    config = embedded_config(
        tmp_path,
        simulator={"latency_ms": 5, "webhook_rate": 100, "callback_delay_ms": 50},
        collect={"deadline_seconds": 30, "poll_interval_seconds": 0.2},
    )
    run = start("run", "--config", str(config), "--run-id", "demo")
    wait_for(lambda: landed_lines(tmp_path / "landing") >= 150, timeout=60)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 3, stderr
    assert "capaudit run --resume --run-id demo" in stderr
    # owed: accepted, and no callback on disk (the run ingests what landed every few seconds)
    accepted = query(
        tmp_path,
        """SELECT r.request_id, t.channel FROM targets t JOIN requests r ON r.run_id = t.run_id
        AND r.contact_key = t.contact_key AND list_contains(r.channels, t.channel)
        WHERE t.run_id = 'demo' AND r.state = 'accepted'""",
    )
    landed = {(request_id, channel) for request_id, channel, _ in landed_keys(tmp_path / "landing")}
    whole = {request_id for request_id, channel in landed if not channel}  # CONTACT_NOT_FOUND
    owed = len({(r, c) for r, c in accepted if (r, c) not in landed and r not in whole})
    assert owed > 0.02 * 900  # more than the completeness gate allows
    started = time.monotonic()
    done = capaudit("run", "--config", str(config), "--resume", "--run-id", "demo")
    waited = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert waited < 30, waited  # never a whole deadline for callbacks that cannot come
    [(status, code)] = query(tmp_path, "SELECT status, exit_code FROM runs")
    assert (status, code) == ("succeeded", 0)
    [(no_response, targets)] = query(
        tmp_path,
        "SELECT count(*) FILTER (WHERE status = 'NO_RESPONSE'), count(*) FROM capability",
    )
    assert targets == 900
    assert no_response <= 0.02 * 900
    # asked again: exactly the targets owed when the run stopped, each once, on its channel
    # (not counting the re-queries of transient answers, which have their answer)
    [(reasked, distinct)] = query(
        tmp_path,
        """SELECT count(*), count(DISTINCT (t.contact_key, t.channel)) FROM targets t
        JOIN requests r ON r.run_id = t.run_id AND r.contact_key = t.contact_key
            AND list_contains(r.channels, t.channel)
        WHERE r.requery_of IS NOT NULL AND NOT EXISTS (SELECT 1 FROM notifications n
            WHERE n.request_id = r.requery_of AND n.channel = t.channel)""",
    )
    assert reasked == distinct == owed
