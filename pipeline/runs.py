"""The run records: one `runs` row per run, with what started it and how each step went.

`run` and every step command record themselves here (inputs with their SHA-256, options, each
step's counts and seconds, how the run ended), so `capaudit run --resume` continues exactly what
was started; the published `runs` table is this row.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import duckdb

from pipeline import __version__
from pipeline.run_kinds import FULL


def file_digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"path": str(path), "sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def start_run(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    config_digest: str,
    inputs: list[dict[str, Any]],
    options: dict[str, Any] | None = None,
    kind: str = FULL,
) -> None:
    """Record the run as running; a resumed run keeps its first start time, and its inputs and
    options unless new ones are given. `kind`: see pipeline/run_kinds.py."""
    conn.execute(
        """
        INSERT INTO runs (run_id, started_at, status, capaudit_version, config_digest, inputs,
            options, counts, durations, kind)
        VALUES ($run_id, now(), 'running', $version, $digest, $inputs, $options, '{}', '{}',
            $kind)
        ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL,
            exit_code = NULL, error = NULL, capaudit_version = $version, config_digest = $digest,
            inputs = CASE WHEN $inputs = '[]' THEN runs.inputs ELSE $inputs END,
            options = CASE WHEN $options = '{}' THEN runs.options ELSE $options END,
            kind = $kind
        """,
        {
            "run_id": run_id,
            "version": __version__,
            "digest": config_digest,
            "inputs": json.dumps(inputs),
            "options": json.dumps(options or {}),
            "kind": kind,
        },
    )


def record_step(
    conn: duckdb.DuckDBPyConnection, run_id: str, step: str, seconds: float, counts: dict[str, Any]
) -> None:
    """Add one step's duration and counts to the run's record."""
    conn.execute(
        """
        UPDATE runs SET
            durations = json_merge_patch(coalesce(durations, '{}'), json_object($step, $seconds)),
            counts = json_merge_patch(coalesce(counts, '{}'), json_object($step, $counts::JSON))
        WHERE run_id = $run_id
        """,
        {
            "run_id": run_id,
            "step": step,
            "seconds": round(seconds, 3),
            "counts": json.dumps(counts, default=str),
        },
    )


def finish_run(
    conn: duckdb.DuckDBPyConnection, run_id: str, status: str, exit_code: int, error: str = ""
) -> None:
    conn.execute(
        "UPDATE runs SET finished_at = now(), status = $status, exit_code = $code, "
        "error = nullif($error, '') WHERE run_id = $run_id",
        {"run_id": run_id, "status": status, "code": exit_code, "error": error[:2000]},
    )


def record_restarts(conn: duckdb.DuckDBPyConnection, run_id: str, restarts: dict[str, int]) -> None:
    """Add the embedded services' restarts to the run's record (summed over resumes)."""
    for service, count in restarts.items():
        conn.execute(
            """
            UPDATE runs SET restarts = json_merge_patch(coalesce(restarts, '{}'), json_object(
                $service, coalesce(json_extract(restarts, '$.' || $service)::INTEGER, 0) + $n))
            WHERE run_id = $run_id
            """,
            {"run_id": run_id, "service": service, "n": count},
        )


def collect_gave_up(conn: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """Whether the run's last collect waited out its whole deadline."""
    row = conn.execute(
        "SELECT json_extract(counts, '$.collect.deadline_passed')::BOOLEAN FROM runs "
        "WHERE run_id = $run_id",
        {"run_id": run_id},
    ).fetchone()
    return bool(row and row[0])


def step_done(conn: duckdb.DuckDBPyConnection, run_id: str, step: str) -> bool:
    """Whether the run's record says `step` finished."""
    row = conn.execute(
        "SELECT json_extract(counts, '$.' || $step) IS NOT NULL FROM runs WHERE run_id = $run_id",
        {"run_id": run_id, "step": step},
    ).fetchone()
    return bool(row and row[0])


def run_inputs(conn: duckdb.DuckDBPyConnection, run_id: str) -> tuple[str, ...]:
    """The contact files the run was started with."""
    return tuple(str(item["path"]) for item in input_digests(conn, run_id))


def input_digests(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """The run's contact files as recorded: path, sha256, bytes."""
    found: list[dict[str, Any]] = _run_json(conn, run_id, "inputs") or []
    return found


def run_options(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """The options the run was started (or its steps were run) with."""
    found: dict[str, Any] = _run_json(conn, run_id, "options") or {}
    return found


def step_durations(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float]:
    """Seconds each step of the run took (the latest time it ran)."""
    found: dict[str, float] = _run_json(conn, run_id, "durations") or {}
    return found


def run_status(conn: duckdb.DuckDBPyConnection, run_id: str) -> str | None:
    row = conn.execute("SELECT status FROM runs WHERE run_id = $run_id", {"run_id": run_id})
    found = row.fetchone()
    return str(found[0]) if found else None


def _run_json(conn: duckdb.DuckDBPyConnection, run_id: str, column: str) -> Any:
    row = conn.execute(f"SELECT {column} FROM runs WHERE run_id = $run_id", {"run_id": run_id})
    found = row.fetchone()
    return json.loads(found[0]) if found and found[0] else None
