"""The analysts' side while the job runs: a catalog held open never blocks a run and never shows
part of one; a run killed mid-publication leaves the catalog and the lake as they were.

Real `capaudit run` processes on the embedded simulator, a real analyst process holding the
catalog, real files.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from pipeline.lake.migrate import MIGRATION
from tests.conftest import REPO, service_env, wait_for, write_config
from tests.e2e.test_audit import capaudit, small_sample

# The analyst: holds the catalog for as long as it runs, queries it every half second and
# prints what it sees (or the error) as one JSON line.
ANALYST = """
import json, sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "read_only")
print(json.dumps({"ready": True}), flush=True)
while True:
    try:
        seen = dict(conn.execute(
            "SELECT run_id, count(*) FROM capability GROUP BY run_id").fetchall())
        runs = sorted(r[0] for r in conn.execute("SELECT run_id FROM runs").fetchall())
        print(json.dumps({"capability": seen, "runs": runs}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
    time.sleep(0.5)
"""


def lake_config(tmp_path: Path, rows: int = 150) -> Path:
    return write_config(
        tmp_path / "c.toml", tmp_path, contacts={"paths": [str(small_sample(tmp_path, rows))]}
    )


def start_run(config: Path, run_id: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--config",
            str(config),
            "--run-id",
            run_id,
            *args,
        ],
        cwd=REPO,
        env={**service_env(), "PATH": "/usr/bin:/bin", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def per_run(catalog: Path) -> dict[str, int]:
    """Capability rows per run, through a fresh connection to the catalog."""
    with duckdb.connect(str(catalog), read_only=True) as conn:
        return dict(
            conn.execute("SELECT run_id, count(*) FROM capability GROUP BY run_id").fetchall()
        )


def targets_of(tmp_path: Path, run_id: str) -> int:
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        row = conn.execute("SELECT count(*) FROM targets WHERE run_id = $r", {"r": run_id})
        return int((row.fetchone() or (0,))[0])


@pytest.mark.parametrize("mode", ["read_only", "read_write"])
def test_an_analyst_holding_the_catalog_never_blocks_a_run(tmp_path: Path, mode: str) -> None:
    config = lake_config(tmp_path)
    catalog = tmp_path / "warehouse.duckdb"
    assert capaudit("run", "--config", str(config), "--run-id", "first").returncode == 0
    first = targets_of(tmp_path, "first")
    analyst = subprocess.Popen(
        [sys.executable, "-c", ANALYST, str(catalog), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert analyst.stdout is not None
    assert json.loads(analyst.stdout.readline()) == {"ready": True}
    try:
        run = start_run(config, "second", "--refresh")
        mid_run = []
        while run.poll() is None:
            # DuckDB refuses any second process while one holds a file read-write: fresh
            # connections mid-run are only possible beside a read-only analyst.
            if mode == "read_only":
                mid_run.append(per_run(catalog))
            time.sleep(0.3)
        _, stderr = run.communicate()
        assert run.returncode == 0, stderr
        time.sleep(1.2)  # the analyst asks twice more, after the run
    finally:
        analyst.terminate()
        held, analyst_errors = analyst.communicate(timeout=10)
    seen = [json.loads(line) for line in held.splitlines()]
    assert len(seen) >= 4, analyst_errors  # it kept answering through the whole run
    assert all(s == {"capability": {"first": first}, "runs": ["first"]} for s in seen), seen[-3:]
    if mode == "read_only":
        # Each fresh connection saw whole runs only: the previous one, or both once published.
        second = targets_of(tmp_path, "second")
        assert mid_run.count({"first": first}) >= 3
        assert all(s in ({"first": first}, {"first": first, "second": second}) for s in mid_run)
    assert per_run(catalog) == {"first": first, "second": targets_of(tmp_path, "second")}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lake_files(lake: Path) -> set[str]:
    """The tables' files, as a reader listing `data/lake/<table>` finds them."""
    files = {str(p.relative_to(lake)) for p in lake.rglob("*.parquet")}
    return {f for f in files if not f.startswith("_")}


def test_kill_9_during_publication_then_resume(tmp_path: Path) -> None:
    config = lake_config(tmp_path)
    catalog, lake = tmp_path / "warehouse.duckdb", tmp_path / "lake"
    assert capaudit("run", "--config", str(config), "--run-id", "first").returncode == 0
    before, files_before = digest(catalog), lake_files(lake)
    run = start_run(config, "second", CAPAUDIT_PUBLISH_PAUSE_SECONDS="60")
    # The snapshot is staged last; then publication pauses with nothing visible changed.
    staged = lake / "_staging/second/capability_latest/as_of_run=second/data_0.parquet"
    wait_for(staged.exists, timeout=120)
    time.sleep(0.5)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    assert (lake / "_staging/second/capability/run_id=second/data_0.parquet").exists()
    assert digest(catalog) == before  # the catalog is the old one
    assert lake_files(lake) == files_before  # and the lake holds what it held
    assert per_run(catalog) == {"first": targets_of(tmp_path, "first")}
    done = capaudit("run", "--config", str(config), "--resume", "--run-id", "second")
    assert done.returncode == 0, done.stderr
    assert digest(catalog) != before
    with duckdb.connect(str(catalog), read_only=True) as conn:
        once = conn.execute(
            "SELECT count(*), count(DISTINCT (contact_key, channel)) FROM capability "
            "WHERE run_id = 'second'"
        ).fetchone()
        runs = conn.execute("SELECT run_id, status FROM runs ORDER BY run_id").fetchall()
    second = targets_of(tmp_path, "second")
    assert once == (second, second)  # every target exactly once
    assert runs == [("first", "succeeded"), ("second", "succeeded")]
    assert not (lake / "_staging").exists()
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        counts = conn.execute("SELECT counts FROM runs WHERE run_id = 'second'").fetchone()
    assert "publish" in json.loads(counts[0])  # publication is recorded as the last step


def single_file_warehouse(tmp_path: Path) -> Path:
    """A warehouse as the single-file version left it: one run's state and results in one
    file, without the lake's bookkeeping tables (which that version did not have)."""
    before = tmp_path / "before"
    before.mkdir()
    config = lake_config(before)
    assert capaudit("run", "--config", str(config), "--run-id", "legacy").returncode == 0
    old = tmp_path / "warehouse.duckdb"
    old.write_bytes((before / "state.duckdb").read_bytes())
    with duckdb.connect(str(old)) as conn:
        conn.execute("DROP TABLE lake_partitions")
        conn.execute("DROP TABLE migrations")
    return old


def test_a_single_file_warehouse_is_migrated_on_the_first_run(tmp_path: Path) -> None:
    old = single_file_warehouse(tmp_path)
    kept = tmp_path / "kept.duckdb"
    kept.write_bytes(old.read_bytes())
    tables = ("runs", "targets", "rejects", "capability", "reachability", "reasons")
    with duckdb.connect(str(kept), read_only=True) as conn:
        had = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in tables}
    config = lake_config(tmp_path)
    done = capaudit("run", "--config", str(config), "--run-id", "after")
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(old), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM capaudit_catalog").fetchone() == (1,)
        runs = conn.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()
        published = {
            t: conn.execute(f"SELECT count(*) FROM {t} WHERE run_id = 'legacy'").fetchone()
            for t in tables
        }
        reused = conn.execute(
            "SELECT count(*) FROM capability WHERE run_id = 'after' AND reused"
        ).fetchone()
    assert runs == [("after",), ("legacy",)]
    assert published == had  # the whole history is in the lake, nothing lost
    assert reused is not None
    assert reused[0] > 0  # the new run reused the adopted answers: the state was carried over
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        migrated = conn.execute(
            "SELECT done_at IS NOT NULL FROM migrations WHERE name = ?", [MIGRATION]
        ).fetchall()
        requests = conn.execute("SELECT count(*) FROM requests WHERE run_id = 'legacy'").fetchone()
    assert migrated == [(True,)]
    with duckdb.connect(str(kept), read_only=True) as conn:  # the ledger stays in the state
        assert requests == conn.execute("SELECT count(*) FROM requests").fetchone()
