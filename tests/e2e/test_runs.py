"""Whole runs on the embedded simulator: reuse within the TTL, dry runs, limits, bad files."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.conftest import write_config
from tests.e2e.test_audit import capaudit, small_sample


def config(tmp_path: Path, contacts: Path, **sections: dict[str, object]) -> Path:
    return write_config(
        tmp_path / "c.toml", tmp_path, contacts={"paths": [str(contacts)]}, **sections
    )


def query(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    """Ask the job's working state (it also holds what no run has published, or never will)."""
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_second_run_within_ttl_reuses_answers_and_reports_every_target(tmp_path: Path) -> None:
    cfg = config(tmp_path, small_sample(tmp_path, 120))
    for run_id in ("first", "second"):
        done = capaudit("run", "--config", str(cfg), "--run-id", run_id)
        assert done.returncode == 0, done.stderr
    # Targets answered in the first run are not asked again; the others are.
    asked_again = query(
        tmp_path,
        """
        SELECT count(*) FROM targets t JOIN requests r
            ON r.run_id = t.run_id AND r.contact_key = t.contact_key
            AND list_contains(r.channels, t.channel)
        JOIN capability c ON c.run_id = 'first' AND c.contact_key = t.contact_key
            AND c.channel = t.channel
        WHERE t.run_id = 'second' AND c.status IN ('CAPABILITY_FULL', 'CAPABILITY_PARTIAL',
            'NO_CAPABILITY', 'CAPABILITY_UNKNOWN')
          AND coalesce(c.reason_code, '') NOT IN ('RATE_LIMITED', 'INTERNAL_ERROR',
            'CHANNEL_FAILURE')""",
    )
    assert asked_again == [(0,)]
    counts = query(
        tmp_path,
        """
        SELECT (SELECT count(*) FROM targets WHERE run_id = 'second'),
               (SELECT count(*) FROM capability WHERE run_id = 'second'),
               (SELECT count(*) FROM capability WHERE run_id = 'second' AND reused)""",
    )[0]
    targets, rows, reused = counts
    assert targets == rows
    assert reused > 0.9 * targets
    report = (tmp_path / "reports" / "second" / "channels" / "SMS.csv").read_text()
    assert report.splitlines()[0].count("reused") == 1
    assert ",true," in report
    # What analysts read names where each answer came from: a reused answer the first run's
    # check (its run and request), republished by the second.
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as catalog:
        latest = catalog.execute(
            "SELECT run_id, answered_run_id, count(*), count(request_id) FROM capability_latest "
            "GROUP BY ALL ORDER BY 3 DESC"
        ).fetchall()
        mismatched = catalog.execute(
            "SELECT count(*) FROM capability_latest l JOIN capability c "
            "ON c.run_id = l.answered_run_id AND c.contact_key = l.contact_key "
            "AND c.channel = l.channel WHERE c.request_id IS DISTINCT FROM l.request_id "
            "OR c.checked_at IS DISTINCT FROM l.checked_at OR c.reused"
        ).fetchone()
    run_id, answered, rows_, with_request = latest[0]
    assert (run_id, answered) == ("second", "first")
    assert rows_ == with_request > 0.9 * targets
    assert mismatched == (0,)  # the answering run's own row: same request, same check


def test_dry_run_prints_the_plan_and_sends_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, small_sample(tmp_path, 50))
    done = capaudit("run", "--config", str(cfg), "--dry-run", "--run-id", "dry")
    assert done.returncode == 0, done.stderr
    assert "Dry run: nothing was sent" in done.stdout
    assert "to query in" in done.stdout
    assert "Estimated:" in done.stdout
    assert query(tmp_path, "SELECT count(*) FROM targets") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM runs") == [(0,)]


def test_limit_audits_only_the_first_contacts(tmp_path: Path) -> None:
    cfg = config(tmp_path, small_sample(tmp_path, 50))
    done = capaudit("run", "--config", str(cfg), "--limit", "7", "--run-id", "lim")
    assert done.returncode == 0, done.stderr
    assert query(tmp_path, "SELECT count(DISTINCT contact_key) FROM capability") == [(7,)]


def test_a_bad_file_among_good_ones_exits_2_and_loads_nothing(tmp_path: Path) -> None:
    good = small_sample(tmp_path, 30)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"phone\n\xff\xfe\n")
    cfg = config(tmp_path, good)
    files = ["--contacts", str(good), "--contacts", str(bad)]
    done = capaudit("run", "--config", str(cfg), *files, "--run-id", "bad")
    assert done.returncode == 2
    assert "bad.csv: not UTF-8" in done.stderr
    assert query(tmp_path, "SELECT count(*) FROM targets") == [(0,)]
    assert query(tmp_path, "SELECT status, exit_code FROM runs") == [("failed", 2)]


def test_globs_several_files_and_mapped_columns(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "a.csv").write_text("Customer;Mobile\nx1;+46701234567\n")
    (lists / "b.csv").write_text("Customer;Mobile\nx2;+4915123456789\nx1;+46701234567\n")
    cfg = write_config(
        tmp_path / "c.toml",
        tmp_path,
        contacts={
            "paths": [str(lists / "*.csv")],
            "contact_id_column": "customer",
            "phone_column": "mobile",
            "phone_channels": ["SMS"],
        },
    )
    done = capaudit("run", "--config", str(cfg), "--run-id", "glob")
    assert done.returncode == 0, done.stderr
    assert query(tmp_path, "SELECT contact_key, source FROM targets_with_source ORDER BY 1") == [
        ("x1", str(lists / "a.csv")),
        ("x2", str(lists / "b.csv")),
    ]
    assert query(tmp_path, "SELECT source, row_number, reason FROM rejects") == [
        (str(lists / "b.csv"), 3, "duplicate")
    ]


def test_resume_after_a_failed_load_loads_the_files_then_runs(tmp_path: Path) -> None:
    contacts = small_sample(tmp_path, 30)
    original = contacts.read_bytes()
    contacts.write_bytes(b"phone\n\xff\n")  # unreadable: the run stops at load, exit 2
    cfg = config(tmp_path, contacts)
    assert capaudit("run", "--config", str(cfg), "--run-id", "fix").returncode == 2
    contacts.write_bytes(original)  # fixed: resuming loads it and completes
    done = capaudit("run", "--config", str(cfg), "--resume", "--run-id", "fix")
    assert done.returncode == 0, done.stderr
    assert query(tmp_path, "SELECT count(*) > 0 FROM capability WHERE run_id = 'fix'") == [(True,)]
    again = capaudit("load", "--config", str(cfg), "--run-id", "fix")
    assert again.returncode == 2
    assert "already planned" in again.stderr
