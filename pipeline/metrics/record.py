"""Write the metrics when `capaudit run` ends, however it ends: succeeded, failed, incomplete,
interrupted, or refused before it started (`run_audit` wraps the whole run in `recorded`).

    with recorded(conn, settings, result):
        ...  # the run; `result` says how it ended, or the exception does

The run's own outcome always wins: metrics that cannot be written are logged as an error and
change neither the exit code nor the exception. The last success is the newest of what the
working state's `runs` table and the existing textfile say, so it survives runs that fail and
a purge of old runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import duckdb

from pipeline.errors import EXIT_FAILED, EXIT_INTERRUPTED, CapauditError
from pipeline.metrics import export
from pipeline.metrics.figures import Recorded, RunFigures, newest_success, state_figures
from pipeline.settings import Settings

log = logging.getLogger(__name__)


class RunOutcome(Protocol):
    """What the metrics read from a run's result (`audit.RunResult`)."""

    run_id: str
    status: str
    exit_code: int


@contextlib.contextmanager
def run_metrics(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    result: RunOutcome,
    clock: Callable[[], float] = time.time,
) -> Iterator[None]:
    """Write the run's metrics to `[metrics]` when the block ends (nothing when unset)."""
    if not (settings.metrics.textfile or settings.metrics.pushgateway_url):
        yield
        return
    started = clock()
    try:
        yield
    except BaseException as exc:
        _write(conn, settings, result, exit_code_of(exc), (started, clock()))
        raise
    _write(conn, settings, result, result.exit_code, (started, clock()))


def exit_code_of(exc: BaseException) -> int:
    """The exit code the CLI turns `exc` into (cli.handle_errors)."""
    if isinstance(exc, CapauditError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code
    return EXIT_FAILED


def _figures(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    result: RunOutcome,
    exit_code: int,
    times: tuple[float, float],
) -> RunFigures:
    # "running" means the run was refused before it was recorded (a --resume of no run, a
    # changed input): the state's figures would be another invocation's, so none are read.
    began = result.status != "running"
    status = result.status if began else "failed"
    if not began and exit_code == EXIT_INTERRUPTED:
        status = "interrupted"
    state, success = Recorded(), 0.0
    try:
        state = state_figures(conn, result.run_id) if began else state
        success = newest_success(conn)
    except duckdb.Error as exc:  # the run's own failure may have left the state unreadable
        log.warning("metrics: the working state gave no figures (%s)", exc)
    if settings.metrics.textfile:
        success = max(success, export.previous_success(Path(settings.metrics.textfile)))
    if status == "succeeded":
        success = max(success, times[1])
    return RunFigures(result.run_id, status, exit_code, *times, success, state)


def _write(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    result: RunOutcome,
    exit_code: int,
    times: tuple[float, float],
) -> None:
    """The metrics never change how the run ends: whatever goes wrong here is logged."""
    try:
        _publish(settings, _figures(conn, settings, result, exit_code, times))
    except Exception:
        log.exception("metrics: not written")


def _publish(settings: Settings, figures: RunFigures) -> None:
    """Write and push; a failure is logged, never raised over the run's own outcome."""
    registry = export.registry_for(figures)
    textfile, gateway = settings.metrics.textfile, settings.metrics.pushgateway_url
    if textfile:
        try:
            export.write_textfile(Path(textfile), registry)
        except OSError as exc:
            log.error("metrics: cannot write [metrics] textfile %s: %s", textfile, exc)
    if gateway:
        try:
            export.push(gateway, registry)
        except OSError as exc:
            log.error("metrics: cannot push to [metrics] pushgateway_url %s: %s", gateway, exc)
