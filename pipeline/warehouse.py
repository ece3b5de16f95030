"""The job's working-state database: connection, lock, schema and the SQL models.

Only capaudit opens this file (`[warehouse] state_path`, default `data/state.duckdb`); analysts
read what each finished run publishes (`pipeline.lake`). DuckDB allows one writing process;
capaudit's batch steps are that process (the receiver never opens it). A lock file next to the
database makes a second run fail at once with a clear message instead of a DuckDB error halfway
through.

    with open_warehouse(settings.warehouse.state) as conn:
        ...                               # schema ensured, lock held
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from pipeline import private
from pipeline.db import sql_literal, transaction
from pipeline.errors import RunLocked, WarehouseError
from pipeline.machine import memory_limit_for_machine
from pipeline.sinch.models import CHANNELS, WHOLE_REQUEST_CHANNEL

SCHEMA_VERSION = 1
DEFAULT_PREFERENCE = ("WHATSAPP", "RCS", "SMS")
# DuckDB keeps what it reads of the state cached up to its memory limit, so the limit, not the
# size of the list, bounds the run's memory: set from the machine (a quarter of what this
# process may use, its cgroup's limit if lower), at most MAX_MEMORY_LIMIT, unless the variable
# says otherwise. With 1 GiB a run of a million contacts peaks around 1.3 GB (docs/design.md).
MAX_MEMORY_LIMIT = 1 << 30
MEMORY_LIMIT = os.environ.get("CAPAUDIT_DUCKDB_MEMORY_LIMIT") or memory_limit_for_machine(
    MAX_MEMORY_LIMIT
)

# Every string column stored for 30M targets costs the load about a second (DuckDB's string
# compression), so what follows from other columns is computed on read (VIRTUAL), and the
# source file is a number into `target_files`; `targets_with_source` is the whole row.
TARGETS_COLUMNS = """
    run_id VARCHAR NOT NULL,
    contact_key VARCHAR GENERATED ALWAYS AS (coalesce(contact_id, identity)) VIRTUAL,
    contact_id VARCHAR,
    channel VARCHAR NOT NULL,
    identity VARCHAR,                     -- NULL when the contact is queried by contact_id
    file_index INTEGER NOT NULL,          -- its file in `target_files`
    row_number BIGINT NOT NULL,
    action VARCHAR GENERATED ALWAYS AS (   -- query / reuse (a fresh earlier answer)
        CASE WHEN reuse_run_id IS NULL THEN 'query' ELSE 'reuse' END) VIRTUAL,
    reuse_run_id VARCHAR,                 -- the run whose answer is reused
    country VARCHAR                       -- the phone's region code; 'unknown' without a phone
"""

# A contact's place in the input, over its targets (the files in the order given, then rows).
FIRST_SEEN = "min((file_index, row_number))"

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (version INTEGER NOT NULL);

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    status VARCHAR NOT NULL,              -- running/paused/succeeded/incomplete/failed/interrupted
    exit_code INTEGER,
    capaudit_version VARCHAR,
    config_digest VARCHAR,
    inputs JSON,                          -- [{"path": ..., "sha256": ..., "bytes": ...}]
    counts JSON,                          -- per step
    durations JSON,                       -- seconds per step
    error VARCHAR
);
-- Embedded services restarted after dying during the run: {"receiver": 1}.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS restarts JSON;
-- The options a run was started with ({"limit": ..., "refresh": ..., "window": ...}).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS options JSON;

-- The files a run's targets came from; targets name theirs by `file_index`.
CREATE TABLE IF NOT EXISTS target_files (
    run_id VARCHAR NOT NULL,
    file_index INTEGER NOT NULL,          -- the order the files were given in
    source VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS targets ($targets_columns);
ALTER TABLE targets ADD COLUMN IF NOT EXISTS country VARCHAR;  -- added since the first version

CREATE TABLE IF NOT EXISTS rejects (
    run_id VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    reason VARCHAR NOT NULL,
    detail VARCHAR,
    contact_id VARCHAR,
    phone VARCHAR,
    channel VARCHAR,
    identity VARCHAR,
    raw_line VARCHAR
);

CREATE TABLE IF NOT EXISTS requests (
    run_id VARCHAR NOT NULL,
    request_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    body VARCHAR NOT NULL,                -- the exact JSON sent (and re-sent on resume)
    channels VARCHAR[] NOT NULL,
    state VARCHAR NOT NULL,               -- planned / accepted / failed
    attempts INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    error VARCHAR,
    requery_of VARCHAR,                   -- request_id this one re-asks after a transient failure
    planned_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    accepted_at TIMESTAMPTZ
);

-- Append-only outcomes of sending requests; folded into `requests` after each submit.
CREATE TABLE IF NOT EXISTS request_events (
    run_id VARCHAR NOT NULL,
    request_id VARCHAR NOT NULL,
    state VARCHAR NOT NULL,
    attempts INTEGER NOT NULL,
    http_status INTEGER,
    error VARCHAR,
    sent_at TIMESTAMPTZ,
    accepted_at TIMESTAMPTZ,
    recorded_at TIMESTAMPTZ NOT NULL
);

-- Numbers the notifications each ingest inserts (`notifications.batch`), so that a build can
-- tell which came after the run's last build (pipeline/build_scope.py).
CREATE SEQUENCE IF NOT EXISTS notification_batches;

CREATE TABLE IF NOT EXISTS notifications (
    request_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,             -- '' when the callback is about the whole request
    identity VARCHAR NOT NULL,
    contact_id VARCHAR,
    capability_status VARCHAR,
    reason_code VARCHAR,
    reason_description VARCHAR,
    channel_capabilities VARCHAR[],
    event_time TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    deliveries INTEGER NOT NULL,
    app_id VARCHAR,
    segment_id VARCHAR,
    -- how it was tied to its request: request_id / identity / contact_id (landing/correlate.py)
    matched_by VARCHAR NOT NULL DEFAULT 'request_id',
    fingerprint VARCHAR,                  -- callbacks without request_id: recognises a repeat
    -- the ingest that inserted it; any other insert gets a number of its own
    batch BIGINT DEFAULT nextval('notification_batches'),
    reason_sub_code VARCHAR,              -- Sinch's reason.sub_code, e.g. ATTACHMENT_REJECTED
    reason_channel_code VARCHAR           -- reason.channel_code: the channel's raw error code
);
-- Columns added since the first version (CREATE TABLE above has them last, in this order).
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS matched_by VARCHAR DEFAULT 'request_id';
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS fingerprint VARCHAR;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS batch BIGINT
    DEFAULT nextval('notification_batches');
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS reason_sub_code VARCHAR;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS reason_channel_code VARCHAR;

-- Callbacks without request_id not matched to a query (yet): no outstanding query, or queries
-- of several runs waiting for the same identity. Retried on every ingest; never guessed.
CREATE TABLE IF NOT EXISTS unmatched_notifications (
    fingerprint VARCHAR NOT NULL,         -- one row per fingerprint (no index: cheap updates)
    channel VARCHAR NOT NULL,
    identity VARCHAR NOT NULL,
    contact_id VARCHAR,
    capability_status VARCHAR,
    reason_code VARCHAR,
    reason_description VARCHAR,
    channel_capabilities VARCHAR[],
    event_time TIMESTAMPTZ,
    received_at TIMESTAMPTZ NOT NULL,
    deliveries INTEGER NOT NULL,
    app_id VARCHAR,
    segment_id VARCHAR,
    problem VARCHAR NOT NULL,             -- no_outstanding_query / ambiguous
    candidate_runs VARCHAR[],             -- ambiguous: the runs whose queries wait for it
    attempts INTEGER NOT NULL,            -- ingests that tried to match it
    checked_at TIMESTAMPTZ NOT NULL,      -- the last try
    reason_sub_code VARCHAR,
    reason_channel_code VARCHAR
);
ALTER TABLE unmatched_notifications ADD COLUMN IF NOT EXISTS reason_sub_code VARCHAR;
ALTER TABLE unmatched_notifications ADD COLUMN IF NOT EXISTS reason_channel_code VARCHAR;

-- What the ledger, runs and notifications looked like after the last matching (one row): an
-- ingest that finds them unchanged does not try the unmatched notifications again.
CREATE TABLE IF NOT EXISTS correlation_state (signature VARCHAR NOT NULL);

CREATE TABLE IF NOT EXISTS other_events (
    received_at TIMESTAMPTZ NOT NULL,
    nonce VARCHAR,
    body VARCHAR NOT NULL,
    segment_id VARCHAR
);

CREATE TABLE IF NOT EXISTS landing_files (
    segment_id VARCHAR PRIMARY KEY,
    bytes_ingested BIGINT NOT NULL,
    -- a callback delivered again in another segment counts in the segment of its first delivery
    lines_ingested BIGINT NOT NULL,
    closed BOOLEAN NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS capability (
    run_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    contact_id VARCHAR,
    channel VARCHAR NOT NULL,
    identity VARCHAR,
    status VARCHAR NOT NULL,
    reason_code VARCHAR,
    channel_capabilities VARCHAR[],
    request_id VARCHAR,
    checked_at TIMESTAMPTZ,
    latency_seconds DOUBLE,
    reused BOOLEAN NOT NULL,
    error VARCHAR,
    country VARCHAR                       -- the target's (targets.country)
);
ALTER TABLE capability ADD COLUMN IF NOT EXISTS country VARCHAR;  -- added since the first version

CREATE TABLE IF NOT EXISTS reachability (
    run_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    targets BIGINT NOT NULL,
    capability_full BIGINT NOT NULL,
    capability_partial BIGINT NOT NULL,
    no_capability BIGINT NOT NULL,
    capability_unknown BIGINT NOT NULL,
    no_response BIGINT NOT NULL,
    request_failed BIGINT NOT NULL,
    reachable BIGINT NOT NULL,
    reachable_share DOUBLE,
    capability_full_share DOUBLE,
    capability_partial_share DOUBLE,
    no_capability_share DOUBLE,
    capability_unknown_share DOUBLE,
    no_response_share DOUBLE,
    request_failed_share DOUBLE,
    reused BIGINT NOT NULL,
    latency_p50_seconds DOUBLE,
    latency_p95_seconds DOUBLE
);
-- Shares over answered targets (one of Sinch's four statuses), beside the `*_share` columns
-- above, which are over all targets: a run with answers missing can still be read correctly.
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS answered BIGINT;
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS reachable_share_of_answered DOUBLE;
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS capability_full_share_of_answered DOUBLE;
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS capability_partial_share_of_answered DOUBLE;
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS no_capability_share_of_answered DOUBLE;
ALTER TABLE reachability ADD COLUMN IF NOT EXISTS capability_unknown_share_of_answered DOUBLE;

CREATE TABLE IF NOT EXISTS reasons (
    run_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    reason_code VARCHAR NOT NULL,
    targets BIGINT NOT NULL,
    share_of_channel DOUBLE NOT NULL
);

CREATE TABLE IF NOT EXISTS reachability_by_country (
    run_id VARCHAR NOT NULL,
    country VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    targets BIGINT NOT NULL,
    capability_full BIGINT NOT NULL,
    capability_partial BIGINT NOT NULL,
    no_capability BIGINT NOT NULL,
    capability_unknown BIGINT NOT NULL,
    no_response BIGINT NOT NULL,
    request_failed BIGINT NOT NULL,
    reachable BIGINT NOT NULL,
    reachable_share DOUBLE
);

CREATE TABLE IF NOT EXISTS routing (
    run_id VARCHAR NOT NULL,
    first_channel VARCHAR,                -- NULL: no channel reaches the contact
    contacts BIGINT NOT NULL,
    share DOUBLE NOT NULL                 -- of the run's contacts
);

CREATE TABLE IF NOT EXISTS capability_changes (
    run_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    previous_run_id VARCHAR NOT NULL,
    previous_status VARCHAR NOT NULL,
    new_status VARCHAR NOT NULL,
    change VARCHAR NOT NULL               -- gained / lost / changed
);

-- What each run's last build read (pipeline/build_scope.py): building the run again redoes only
-- the contacts with notifications of a later batch or changed requests (`build_requests`),
-- while all else the build reads is the same.
CREATE TABLE IF NOT EXISTS build_state (
    run_id VARCHAR NOT NULL,
    inputs VARCHAR NOT NULL,              -- digest: models, constants, targets, late, reused
    batch BIGINT NOT NULL,                -- the newest notification batch it read
    capability_rows BIGINT NOT NULL,      -- the run's capability rows it left
    seconds DOUBLE NOT NULL,              -- how long it took
    built_at TIMESTAMPTZ NOT NULL
);
-- The run's requests as its last build read them: the next build redoes the contacts of a
-- request added, changed or gone since.
CREATE TABLE IF NOT EXISTS build_requests (
    run_id VARCHAR NOT NULL,
    contact_key VARCHAR NOT NULL,
    row_hash UBIGINT NOT NULL             -- hash of the whole requests row
);

-- Partitions written before publication, once their table is final (pipeline.lake.partitions):
-- publication moves one into place only while its table still has the rows it was written from.
CREATE TABLE IF NOT EXISTS lake_early (
    run_id VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,         -- rows and a hash of them, as written
    rows BIGINT NOT NULL,
    PRIMARY KEY (run_id, table_name)
);

-- What the lake holds (pipeline.lake): one row per published table x run.
CREATE TABLE IF NOT EXISTS lake_partitions (
    table_name VARCHAR NOT NULL,
    run_id VARCHAR NOT NULL,
    path VARCHAR NOT NULL,                -- relative to the lake root
    rows BIGINT NOT NULL,
    run_started_at TIMESTAMPTZ NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    retired_at TIMESTAMPTZ,               -- purged: out of the catalog; its file goes next purge
    PRIMARY KEY (table_name, run_id)
);

-- One-off data migrations and whether they finished (pipeline.lake.migrate).
CREATE TABLE IF NOT EXISTS migrations (
    name VARCHAR PRIMARY KEY,
    done_at TIMESTAMPTZ
);
""".replace("$targets_columns", TARGETS_COLUMNS)


# Columns added after a table was first published: warehouses created earlier gain them.
@contextlib.contextmanager
def open_warehouse(
    path: Path, *, lock: bool = True, preference: Sequence[str] = DEFAULT_PREFERENCE
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating if needed) the warehouse with its schema; hold the run lock if `lock`.

    `preference` is the channel preference the `channel_order` view ranks by."""
    private.make_private_dirs(path.parent)
    with run_lock(path) if lock else contextlib.nullcontext():
        try:
            conn = private.connect(path)
        except duckdb.Error as exc:
            raise WarehouseError(f"{path}: cannot open the warehouse ({exc})") from exc
        try:
            _refuse_catalog(conn, path)
            conn.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            conn.execute("SET preserve_insertion_order = false")
            ensure_schema(conn, preference)
            yield conn
        except duckdb.Error as exc:
            raise WarehouseError(f"{path}: {type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()


def _refuse_catalog(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The analysts' catalog is rebuilt on every publication: working state written into it
    would vanish. Callers pass `settings.warehouse.state`, not `.path`."""
    found = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'capaudit_catalog'"
    ).fetchone()
    if found and found[0]:
        raise WarehouseError(
            f"{path} is the published catalog, not the working state: open "
            "[warehouse] state_path (settings.warehouse.state)"
        )


@contextlib.contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold `<path>.lock` for the whole run: one run at a time on one state database."""
    lock_path = path.with_name(path.name + ".lock")
    handle = private.open_appending(lock_path)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunLocked(
                f"{path} is in use by {holder}; wait for it to finish (one run at a time)"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"capaudit pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def ensure_schema(
    conn: duckdb.DuckDBPyConnection, preference: Sequence[str] = DEFAULT_PREFERENCE
) -> None:
    """Create every table that is missing, (re)create the views; idempotent."""
    conn.execute(SCHEMA)
    _migrate_targets(conn)
    _migrate_whole_request_channels(conn)
    for tables in _model_files("tables"):  # feature tables, one file each (sampling, ...)
        conn.execute(tables.read_text(encoding="utf-8"))
    if conn.execute("SELECT count(*) FROM schema_info").fetchone() == (0,):
        conn.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
    for view in _model_files("views"):
        conn.execute(render_view(view.name.removesuffix(".sql"), preference))


def _migrate_targets(conn: duckdb.DuckDBPyConnection) -> None:
    """Targets stored by an earlier version (contact_key, action and source as stored strings)
    move to the current layout, in one transaction (3 s for 10M targets). Loading always made
    the key coalesce(contact_id, identity), and action 'reuse' always came with its
    reuse_run_id; a key written otherwise (by hand) is kept as the row's contact_id, so that
    the requests and answers keyed by it still join."""
    stored = conn.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'targets' "
        "AND column_name = 'source' AND database_name = current_database()"
    ).fetchone()
    if not (stored and stored[0]):
        return
    with transaction(conn):
        conn.execute("""
            INSERT INTO target_files
            SELECT run_id, (row_number() OVER (PARTITION BY run_id ORDER BY source) - 1)::INTEGER,
                source
            FROM (SELECT DISTINCT run_id, source FROM targets)
        """)
        conn.execute(f"CREATE TABLE targets_migrated ({TARGETS_COLUMNS})")
        conn.execute("""
            INSERT INTO targets_migrated (run_id, contact_id, channel, identity, file_index,
                row_number, reuse_run_id, country)
            SELECT t.run_id,
                CASE WHEN t.contact_key IS DISTINCT FROM coalesce(t.contact_id, t.identity)
                    THEN t.contact_key ELSE t.contact_id END,
                t.channel, t.identity, f.file_index, t.row_number,
                CASE WHEN t.action = 'reuse' THEN t.reuse_run_id END, t.country
            FROM targets t JOIN target_files f USING (run_id, source)
        """)
        conn.execute("DROP TABLE targets")
        conn.execute("ALTER TABLE targets_migrated RENAME TO targets")


def _migrate_whole_request_channels(conn: duckdb.DuckDBPyConnection) -> None:
    """Notifications stored before ingestion read Sinch's CHANNEL_UNSPECIFIED as '' (a callback
    about the whole request) get '' too, once per database (recorded in `migrations`)."""
    done = conn.execute("SELECT count(*) FROM migrations WHERE name = $name", {"name": _WHOLE})
    if (done.fetchone() or (0,))[0]:
        return
    with transaction(conn):
        for table in ("notifications", "unmatched_notifications"):
            conn.execute(
                f"UPDATE {table} SET channel = '' WHERE channel = $whole",
                {"whole": WHOLE_REQUEST_CHANNEL},
            )
        conn.execute("INSERT INTO migrations VALUES ($name, now())", {"name": _WHOLE})


_WHOLE = "whole_request_channel"


def render_view(name: str, preference: Sequence[str] = DEFAULT_PREFERENCE) -> str:
    """The SQL of view `name` from `sql/views/`. Views take no parameters: the channel
    preference (and every channel, alphabetically, for ties) is written into the view's SQL."""
    view = resources.files("pipeline") / "sql" / "views" / f"{name}.sql"
    sql = view.read_text(encoding="utf-8").replace("$preference", _channel_list(preference))
    return sql.replace("$channels", _channel_list(sorted(CHANNELS)))


def _channel_list(channels: Sequence[str]) -> str:
    return sql_literal([c.upper() for c in channels])


def _model_files(layer: str) -> list[Any]:
    folder = resources.files("pipeline") / "sql" / layer
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


def run_model(conn: duckdb.DuckDBPyConnection, layer: str, name: str, run_id: str) -> None:
    """Run one model file (`sql/<layer>/<name>`) for the run, e.g. to test it alone."""
    (model,) = (f for f in _model_files(layer) if f.name == name)
    for statement in _statements(model.read_text(encoding="utf-8")):
        conn.execute(statement, {"run_id": run_id} if "$run_id" in statement else None)


def run_models(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    constants: dict[str, Sequence[str] | bool] | None = None,
    on_model: Callable[[str], None] | None = None,
    channels: Sequence[str] = (),
) -> None:
    """Build one run: the staging models (temporary tables, one at a time, so each big join
    has the memory to itself), then the marts in file-name order in one transaction, after
    the rows of an earlier build of the run are deleted in a transaction of their own.

    Models use `$run_id` (a parameter) and `$<name>` for each of `constants` (written into
    the SQL as a constant). A statement that uses `$channel` runs once for each of `channels`
    (the run's), with `$channel` a parameter. `on_model(name)` is called after each model."""
    layer = _Layer(run_id, constants or {}, tuple(channels), on_model)
    try:
        layer.execute(conn, "staging")
        # Deleting a built run's 10M rows and inserting 10M in one transaction kept them all in
        # the transaction's memory and ran out of the 1 GB limit (a resumed run builds again).
        # The build is not recorded done until the marts commit, so a crash between rebuilds.
        with transaction(conn):
            layer.execute(conn, "marts", deletes=True)
        with transaction(conn):
            layer.execute(conn, "marts", deletes=False)
    except duckdb.Error as exc:
        raise WarehouseError(f"building the models for run {run_id} failed: {exc}") from exc
    finally:
        for model in _model_files("staging"):
            conn.execute(f"DROP TABLE IF EXISTS {model.name.split('_', 1)[1].removesuffix('.sql')}")


@dataclass(frozen=True)
class _Layer:
    run_id: str
    constants: dict[str, Sequence[str] | bool]
    channels: tuple[str, ...]
    on_model: Callable[[str], None] | None

    def execute(
        self, conn: duckdb.DuckDBPyConnection, layer: str, *, deletes: bool | None = None
    ) -> None:
        """Run the layer's statements; only its DELETEs (`deletes`), only the others (False),
        or all (None). `on_model` is called after each model's other statements."""
        for model in _model_files(layer):
            sql = with_constants(model.read_text(encoding="utf-8"), self.constants)
            for statement in _statements(sql):
                if deletes is not None and statement.startswith("DELETE") != deletes:
                    continue
                for parameters in self._bindings(statement):
                    conn.execute(statement, parameters)
            if self.on_model is not None and not deletes:
                self.on_model(model.name.removesuffix(".sql"))

    def _bindings(self, statement: str) -> list[dict[str, str] | None]:
        run = {"run_id": self.run_id} if "$run_id" in statement else {}
        if re.search(r"\$channel\b", statement):
            return [{**run, "channel": channel} for channel in self.channels]
        return [run or None]


def model_count() -> int:
    """How many models a build runs."""
    return len(_model_files("staging")) + len(_model_files("marts"))


def models_digest() -> str:
    """A hash of the SQL a build runs: a build by other models is not built upon."""
    digest = hashlib.sha256()
    for model in (*_model_files("staging"), *_model_files("marts")):
        digest.update(model.read_bytes())
    return digest.hexdigest()


def with_constants(sql: str, constants: dict[str, Sequence[str] | bool]) -> str:
    """`sql` with each `$name` of `constants` written as a constant (a list as an IN list);
    whole names only (`$reuse` leaves `$reuse_runs` alone), other `$names` stay parameters."""

    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in constants:
            return match.group(0)
        value = constants[name]
        return sql_literal(value if isinstance(value, bool) else tuple(value))

    return re.sub(r"\$(\w+)", literal, sql)


def _statements(sql: str) -> list[str]:
    """Split a model file into statements (models hold no semicolons inside strings)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
