"""Open the job's working state, as every batch command does: lock, migrate, schema.

    with open_state(settings) as conn:
        ...

`pipeline.warehouse.open_warehouse(path)` opens any state file; this opens the configured one
(`settings.warehouse.state`) and, on the first run after upgrading from the single-file
warehouse, adopts that file and publishes its history (`pipeline.lake.migrate`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import duckdb

from pipeline.lake.migrate import adopt_single_file, finish_migration
from pipeline.private import make_private_dirs
from pipeline.settings import Settings
from pipeline.warehouse import open_warehouse, run_lock


@contextlib.contextmanager
def open_state(settings: Settings, *, lock: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """The state database with its schema; with `lock`, the run lock is held and a pending
    migration is finished first (without it, read only what is there)."""
    state = settings.warehouse.state
    make_private_dirs(state.parent)
    with run_lock(state) if lock else contextlib.nullcontext():
        if lock:
            adopt_single_file(settings)
        with open_warehouse(
            state, lock=False, preference=settings.reports.channel_preference
        ) as conn:
            if lock:
                finish_migration(conn, settings)
            yield conn
