"""Runs of each kind (full, sample, limited) told apart: in `runs`, in the catalog's newest run
of each kind, and in the report, whose trend and changes compare a run only with its own kind."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from tests.e2e.test_audit import capaudit, small_sample
from tests.e2e.test_runs import config


def test_kinds_are_recorded_published_and_compared_like_with_like(tmp_path: Path) -> None:
    cfg = config(tmp_path, small_sample(tmp_path, 120))
    for run_id, extra in (
        ("full-1", ()),
        ("sample-1", ("--sample", "40")),
        ("limited-1", ("--limit", "15")),
        ("full-2", ("--refresh",)),
        ("sample-2", ("--sample", "40", "--sample-seed", "2", "--refresh")),
    ):
        done = capaudit("run", "--config", str(cfg), "--run-id", run_id, *extra)
        assert done.returncode == 0, done.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as catalog:
        kinds = catalog.execute("SELECT run_id, kind FROM runs ORDER BY started_at").fetchall()
        newest = catalog.execute(
            "SELECT newest_run_id, newest_full_run_id, newest_sample_run_id, "
            "newest_limited_run_id, newest_window_run_id FROM capaudit_catalog"
        ).fetchone()
    assert kinds == [
        ("full-1", "full"),
        ("sample-1", "sample"),
        ("limited-1", "limited"),
        ("full-2", "full"),
        ("sample-2", "sample"),
    ]
    assert newest == ("sample-2", "full-2", "sample-2", "limited-1", None)

    def summary(run_id: str) -> dict[str, object]:
        path = tmp_path / "reports" / run_id / "summary.json"
        data: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
        return data

    # Each run is compared with the previous run of its kind, never with another kind's.
    assert summary("sample-1")["routing_compared_with"] is None
    assert summary("limited-1")["routing_compared_with"] is None
    second = summary("full-2")
    assert second["routing_compared_with"] == "full-1"
    routing = second["routing"]
    assert isinstance(routing, list)
    assert all(r["change"] is not None for r in routing)
    trend = summary("full-2")["trend"]
    assert isinstance(trend, list)
    assert {t["run_id"] for t in trend} == {"full-1", "full-2"}  # no dip from the partial runs
    html = (tmp_path / "reports" / "sample-2" / "index.html").read_text(encoding="utf-8")
    assert "Capability audit sample-2 (sample run)" in html
    # A sample against the previous sample: by shares, never by counts.
    sampled = summary("sample-2")
    assert sampled["routing_compared_with"] == "sample-1"
    routing = sampled["routing"]
    assert isinstance(routing, list)
    assert all(r["change"] is None and r["share_change"] is not None for r in routing)
