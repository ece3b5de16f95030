"""What a run's last build read, so that building the run again redoes only what changed.

`collect` builds the run while it waits for callbacks (`steps.ProvisionalBuilds`), so the build
after the deadline redoes only the contacts whose notifications or requests changed since: at
10M targets with the last 2.5% of callbacks landing at the end, the capability models take
about 1.5 s instead of 13 s. A resumed run that was built before gains the same.

A build is *scoped* to those contacts (temporary table `build_scope`; the models filter with
the macro `in_build_scope(contact_key)`, which is plain `true` in a whole build, so that one
pays nothing) only when all of these hold:
- the run's last build (`build_state`) read the same inputs apart from notifications and
  requests: the same models and constants, the same rows of targets and late answers, and the
  same builds of the runs it reuses answers from (`inputs_digest`);
- the capability rows that build left are all still there.
The scope is then the contacts with
- a notification inserted since: each insert carries its ingest's `batch` (a sequence; the
  column's default draws one for any other insert), and nothing changes what the models read
  of a notification (a repeated delivery adds to `deliveries` only) or deletes a live run's
  (purge deletes those of retired runs);
- a request added, changed or gone since (a re-query, an outcome folded in): `build_requests`
  keeps a hash of each request row the last build read.
Otherwise, or without an earlier build, the whole run is built. The run's `build_state` row is
deleted before a build starts and written when it has committed, so a build that fails or is
killed halfway leaves none, and the next one builds the whole run.

    with build_scope(conn, run_id, constants) as plan:
        run_models(conn, run_id, constants=...)   # its models use in_build_scope(contact_key)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from pipeline.db import rows_fingerprint, sql_literal, transaction
from pipeline.warehouse import models_digest

SCOPE_TABLE = "build_scope"
MACRO = "in_build_scope"
REQUESTS_NOW = "build_requests_now"  # the run's requests as this build reads them (hashed)

# Every row the models read of the run, apart from notifications and requests; a change to any
# of them (a re-plan, an answer kept late, a reused run built again) makes a whole build.
INPUTS = {
    "targets": "SELECT * FROM targets WHERE run_id = $run_id",
    "late_answers": "SELECT * FROM late_answers WHERE run_id = $run_id",
    "reused_builds": (
        "SELECT run_id, built_at FROM build_state WHERE run_id IN $reuse_runs AND run_id <> $run_id"
    ),
}

SCOPE_SQL = f"""
CREATE OR REPLACE TEMP TABLE {SCOPE_TABLE} AS
-- asked by a request whose notification came after batch $since
SELECT r.contact_key
FROM notifications n JOIN requests r ON r.request_id = n.request_id
WHERE n.batch > $since AND r.run_id = $run_id
UNION  -- with a request new or changed since the last build
SELECT contact_key FROM {REQUESTS_NOW}
WHERE row_hash NOT IN (SELECT row_hash FROM build_requests WHERE run_id = $run_id)
UNION  -- with a request gone (or changed) since
SELECT contact_key FROM build_requests
WHERE run_id = $run_id AND row_hash NOT IN (SELECT row_hash FROM {REQUESTS_NOW})
"""


@dataclass(frozen=True)
class BuildPlan:
    run_id: str
    inputs: str  # inputs_digest
    batch: int  # the newest notification batch the build reads
    contacts: int | None  # the contacts rebuilt; None: the whole run


@contextmanager
def build_scope(
    conn: duckdb.DuckDBPyConnection, run_id: str, constants: Mapping[str, Sequence[str] | bool]
) -> Iterator[BuildPlan]:
    """Plan the run's build (whole or scoped, see the module), define `in_build_scope` for its
    models, and record the build when the block ends without an error. `constants` are those
    the models are run with (`warehouse.run_models`), `reuse_runs` among them."""
    plan = _plan(conn, run_id, constants)
    started = time.monotonic()
    try:
        yield plan
        _record(conn, plan, time.monotonic() - started)
    finally:
        conn.execute(f"DROP MACRO IF EXISTS {MACRO}")
        conn.execute(f"DROP TABLE IF EXISTS {SCOPE_TABLE}")
        conn.execute(f"DROP TABLE IF EXISTS {REQUESTS_NOW}")


@dataclass(frozen=True)
class LastBuild:
    seconds: float | None  # how long the run's last recorded build took; None: none recorded
    read_every_notification: bool  # no notification was ingested after it


def last_build(conn: duckdb.DuckDBPyConnection, run_id: str) -> LastBuild:
    row = conn.execute(
        "SELECT seconds, batch FROM build_state WHERE run_id = $run_id", {"run_id": run_id}
    ).fetchone()
    if row is None:
        return LastBuild(None, False)
    return LastBuild(float(row[0]), int(row[1]) == _newest_batch(conn))


def inputs_digest(
    conn: duckdb.DuckDBPyConnection, run_id: str, constants: Mapping[str, Sequence[str] | bool]
) -> str:
    """A hash of the models, their constants and every row the run's build reads apart from
    notifications and requests (about 0.3 s for 10M targets)."""
    reuse_runs = constants.get("reuse_runs", ())
    reused = sql_literal(() if isinstance(reuse_runs, bool) else tuple(reuse_runs))
    parts = {
        name: rows_fingerprint(conn, sql.replace("$reuse_runs", reused), {"run_id": run_id})
        for name, sql in INPUTS.items()
    }
    parts["models"] = models_digest()
    parts["constants"] = json.dumps(
        {k: v if isinstance(v, bool) else sorted(v) for k, v in constants.items()}, sort_keys=True
    )
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _plan(
    conn: duckdb.DuckDBPyConnection, run_id: str, constants: Mapping[str, Sequence[str] | bool]
) -> BuildPlan:
    params = {"run_id": run_id}
    inputs = inputs_digest(conn, run_id, constants)
    batch = _newest_batch(conn)
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {REQUESTS_NOW} AS "
        "SELECT contact_key, hash(r) AS row_hash FROM requests r WHERE run_id = $run_id",
        params,
    )
    last = conn.execute(
        "SELECT inputs, batch, capability_rows, "
        "(SELECT count(*) FROM capability WHERE run_id = $run_id) "
        "FROM build_state WHERE run_id = $run_id",
        params,
    ).fetchone()
    contacts = None
    if last is not None and last[0] == inputs and last[2] == last[3]:
        conn.execute(SCOPE_SQL, {**params, "since": last[1]})
        found = conn.execute(f"SELECT count(*) FROM {SCOPE_TABLE}").fetchone()
        contacts = int(found[0]) if found else 0
        conn.execute(
            f"CREATE OR REPLACE TEMP MACRO {MACRO}(key) AS "
            f"key IN (SELECT contact_key FROM {SCOPE_TABLE})"
        )
    else:
        conn.execute(f"CREATE OR REPLACE TEMP MACRO {MACRO}(key) AS true")
    # Forgotten until this build commits: one that fails halfway leaves none (module docstring).
    conn.execute("DELETE FROM build_state WHERE run_id = $run_id", params)
    return BuildPlan(run_id, inputs, batch, contacts)


def _newest_batch(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("SELECT coalesce(max(batch), 0) FROM notifications").fetchone()
    return int(row[0]) if row else 0


def _record(conn: duckdb.DuckDBPyConnection, plan: BuildPlan, seconds: float) -> None:
    params = {"run_id": plan.run_id}
    with transaction(conn):  # build_requests := REQUESTS_NOW, changing only what differs
        conn.execute(
            "DELETE FROM build_requests WHERE run_id = $run_id "
            f"AND row_hash NOT IN (SELECT row_hash FROM {REQUESTS_NOW})",
            params,
        )
        conn.execute(
            f"INSERT INTO build_requests SELECT $run_id, contact_key, row_hash FROM {REQUESTS_NOW} "
            "WHERE row_hash NOT IN (SELECT row_hash FROM build_requests WHERE run_id = $run_id)",
            params,
        )
        conn.execute(
            "INSERT INTO build_state SELECT $run_id, $inputs, $batch, "
            "(SELECT count(*) FROM capability WHERE run_id = $run_id), $seconds, now()",
            {**params, "inputs": plan.inputs, "batch": plan.batch, "seconds": seconds},
        )
