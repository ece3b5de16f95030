"""`capaudit run`: load -> plan -> submit -> collect -> build -> report -> publish, resumable
by run id.

With `[sinch] base_url = "embedded"` the simulator and a receiver are started as child
processes on free loopback ports for the submit and collect steps (supervised: restarted on the
same socket if they die), and the webhook is registered through the API exactly as it would
be with Sinch. While collecting, the receiver's health is watched and its outages logged.

A run whose share of unanswered targets exceeds `[collect] max_no_response_share` ends as
incomplete (exit 3, see `completeness.py`); `--resume` keeps collecting and asks the targets
still without an answer once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from pipeline import ledger, sampling, steps
from pipeline.completeness import Completeness, completeness
from pipeline.contacts.load import LoadSummary
from pipeline.contacts.sources import resolve_paths
from pipeline.errors import EXIT_INTERRUPTED, CapauditError, Interrupted, UsageError
from pipeline.health import HealthWatch
from pipeline.ids import new_run_id
from pipeline.lake.publish import PublishSummary, publish_runs
from pipeline.report import ReportFiles, write_report
from pipeline.services import child_service
from pipeline.settings import Secret, Secrets, Settings
from pipeline.sinch.client import SinchClient
from pipeline.state import open_state
from pipeline.webhooks import ensure_webhook
from pipeline.window import (
    WindowSpec,
    collect_deadline,
    configured_callback_rate,
    expected_callback_rate,
    parse_duration,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
DRY_RUN_TABLES = (
    "targets",
    "rejects",
    "requests",
    "late_answers",
    "sample_frame",
    "sample_members",
)


@dataclass(frozen=True)
class RunOptions:
    run_id: str | None = None
    contacts: tuple[str, ...] = ()
    resume: bool = False
    refresh: bool = False
    limit: int | None = None
    dry_run: bool = False
    deadline_seconds: float | None = None
    sample: int | None = None  # --sample N: a stratified random sample of N contacts
    sample_by: str = sampling.COUNTRY
    sample_seed: int = 1
    window: str | None = None  # --window 6h (else [plan] window)


@dataclass
class RunResult:
    run_id: str
    status: str = "running"
    exit_code: int = 0
    load: LoadSummary | None = None
    plan: ledger.PlanSummary | None = None
    submit: steps.SubmitSummary | None = None
    collect: steps.CollectSummary | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    report: ReportFiles | None = None
    publish: PublishSummary | None = None
    channels: list[dict[str, Any]] = field(default_factory=list)
    estimate: dict[str, float] = field(default_factory=dict)
    warehouse: str = ""
    completeness: Completeness | None = None
    message: str = ""  # why the run did not succeed (exit_code 3: incomplete)
    sample: sampling.SampleSummary | None = None
    window: WindowSpec | None = None


def config_digest(settings: Settings) -> str:
    """A digest of every setting except the secrets: which configuration produced a run."""
    data = {
        name: dataclasses.asdict(getattr(settings, name))
        for name in (
            "sinch",
            "dispatch",
            "receiver",
            "contacts",
            "freshness",
            "collect",
            "plan",
            "warehouse",
            "reports",
            "simulator",
        )
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def run_audit(settings: Settings, options: RunOptions, *, console: bool) -> RunResult:
    result = RunResult(run_id=options.run_id or new_run_id(), warehouse=settings.warehouse.path)
    with open_state(settings) as conn:
        if options.dry_run:
            return _dry_run(conn, settings, options, result)
        _check_resume(conn, result.run_id, options)
        inputs = (
            []
            if options.resume
            else [
                ledger.file_digest(p)
                for p in resolve_paths(options.contacts or settings.contacts.paths)
            ]
        )
        ledger.start_run(conn, result.run_id, config_digest=config_digest(settings), inputs=inputs)
        try:
            with _signals_interrupt(result.run_id):
                _run_steps(conn, settings, options, result, console)
                # The published `runs` row says how the run ended; publication is recorded
                # last, so a run killed before or during it is published by `--resume`. An
                # incomplete run (exit 3) is published when `--resume` completes it.
                ledger.finish_run(
                    conn, result.run_id, result.status, result.exit_code, result.message
                )
                if result.status == "succeeded":
                    result.publish = publish(conn, settings, result.run_id)
        except CapauditError as exc:
            result.status = "interrupted" if isinstance(exc, Interrupted) else "failed"
            ledger.finish_run(conn, result.run_id, result.status, exc.exit_code, str(exc))
            raise
        except BaseException as exc:
            ledger.finish_run(conn, result.run_id, "failed", 1, f"{type(exc).__name__}: {exc}")
            raise
    return result


@contextlib.contextmanager
def _signals_interrupt(run_id: str) -> Iterator[None]:
    """SIGTERM or SIGINT outside the sending step (which stops gracefully by itself) ends the
    run as interrupted: recorded, exit 3, resumable."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(
            f"stopped by {signal.Signals(signum).name}; continue with: "
            f"capaudit run --resume --run-id {run_id}"
        )

    for signum in previous:
        signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _check_resume(conn: duckdb.DuckDBPyConnection, run_id: str, options: RunOptions) -> None:
    row = conn.execute("SELECT status FROM runs WHERE run_id = $r", {"r": run_id}).fetchone()
    if options.resume and row is None:
        raise UsageError(f"--resume: there is no run {run_id} in the warehouse to resume")
    if not options.resume and row is not None:
        raise UsageError(
            f"run {run_id} already exists (status {row[0]}); use --resume to continue it"
        )


def as_dict(value: object) -> dict[str, Any]:
    """A step's summary as plain data (dataclasses and dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else {}


def _timed(conn: duckdb.DuckDBPyConnection, run_id: str, step: str, work: Callable[[], T]) -> T:
    started = time.monotonic()
    outcome = work()
    ledger.record_step(conn, run_id, step, time.monotonic() - started, as_dict(outcome))
    return outcome


def publish(conn: duckdb.DuckDBPyConnection, settings: Settings, run_id: str) -> PublishSummary:
    """Publish the run to the lake and swap in the catalog; recorded as the step `publish`."""
    return _timed(conn, run_id, "publish", lambda: publish_runs(conn, settings, [run_id]))


def _run_steps(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    options: RunOptions,
    result: RunResult,
    console: bool,
) -> None:
    run_id = result.run_id
    if not (options.resume and ledger.step_done(conn, run_id, "load")):
        # A resumed run whose load never finished loads the files it was started with.
        paths = options.contacts or ledger.run_inputs(conn, run_id) or None
        result.load = _timed(
            conn,
            run_id,
            "load",
            lambda: steps.load(conn, run_id, settings, paths, options.limit),
        )
    result.window = window_spec(settings, options)
    if options.sample is not None and not (
        options.resume and ledger.step_done(conn, run_id, "sample")
    ):
        spec = sampling.SampleSpec(options.sample, options.sample_by, options.sample_seed)
        result.sample = _timed(
            conn, run_id, "sample", lambda: sampling.draw_sample(conn, run_id, spec)
        )
    result.plan = _timed(
        conn,
        run_id,
        "plan",
        lambda: steps.plan(conn, run_id, settings, refresh=options.refresh, window=result.window),
    )
    needs_sinch = bool(ledger.request_counts(conn, run_id).get(ledger.PLANNED)) or bool(
        steps.outstanding_targets(conn, run_id)
    )
    if needs_sinch:
        restarts: Counter[str] = Counter()
        try:
            with sinch_session(settings, restarts=restarts) as live:
                asyncio.run(_exchange(conn, live, options, result, console))
        finally:
            ledger.record_restarts(conn, run_id, dict(restarts))
    result.statuses = _timed(conn, run_id, "build", lambda: steps.build(conn, run_id))
    _apply_gate(result, completeness(conn, run_id, settings.collect.max_no_response_share))
    result.report = _timed(
        conn,
        run_id,
        "report",
        lambda: write_report(
            conn,
            run_id,
            Path(settings.reports.dir),
            trend_runs=settings.reports.trend_runs,
            max_no_response_share=settings.collect.max_no_response_share,
            settings=settings,
        ),
    )
    result.channels = [
        dict(zip(("channel", "targets", "reachable_share"), row, strict=True))
        for row in conn.execute(
            "SELECT channel, targets, reachable_share FROM reachability WHERE run_id = $r "
            "ORDER BY channel",
            {"r": run_id},
        ).fetchall()
    ]


def _apply_gate(result: RunResult, gate: Completeness) -> None:
    """A run above the NO_RESPONSE bound ends as incomplete and resumable, not as a success."""
    result.completeness = gate
    if gate.complete:
        result.status, result.exit_code, result.message = "succeeded", 0, ""
    else:
        result.status, result.exit_code, result.message = (
            "incomplete",
            EXIT_INTERRUPTED,
            gate.message(),
        )
        log.warning(result.message)


async def _exchange(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    options: RunOptions,
    result: RunResult,
    console: bool,
) -> None:
    """Submit, then collect; SIGTERM/SIGINT stop sending and end the run as resumable."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        loop.add_signal_handler(signum, stop.set)
    try:
        await register_webhook(settings)
        if options.resume:
            steps.plan_reasks(conn, result.run_id, settings)
        started = time.monotonic()
        result.submit = await steps.submit(
            conn, result.run_id, settings, stop=stop, console=console
        )
        ledger.record_step(
            conn,
            result.run_id,
            "submit",
            time.monotonic() - started,
            dataclasses.asdict(result.submit),
        )
        if stop.is_set():
            raise Interrupted(
                f"stopped by a signal; {result.submit.not_sent:,} requests not sent yet. "
                f"Continue with: capaudit run --resume --run-id {result.run_id}"
            )
        started, wall = time.monotonic(), time.time()
        deadline = options.deadline_seconds
        if result.window is not None:  # collecting ends by the window's end
            configured = settings.collect.deadline_seconds if deadline is None else deadline
            last = steps._last_acceptance(conn, result.run_id)
            deadline = collect_deadline(result.window, last or wall, configured)
        async with HealthWatch(
            settings.collect.health_url(settings.receiver),
            interval=settings.collect.health_interval_seconds,
        ) as health:
            result.collect = await steps.collect(
                conn,
                result.run_id,
                settings,
                stop=stop,
                deadline_seconds=deadline,
                console=console,
                requery=result.window is None,  # a window asks transient failures on a later night
                wait_from=wall if options.resume else 0.0,
            )
        ledger.record_step(
            conn,
            result.run_id,
            "collect",
            time.monotonic() - started,
            {
                "outstanding": result.collect.outstanding,
                "deadline_passed": result.collect.deadline_passed,
                "receiver_outages": health.outages,
                "receiver_down_seconds": round(health.down_seconds, 1),
                "matched_by": result.collect.matched_by,
                "unmatched": result.collect.unmatched,
            },
        )
        if stop.is_set():
            raise Interrupted(
                f"stopped while collecting callbacks; continue with: "
                f"capaudit run --resume --run-id {result.run_id}"
            )
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)  # asyncio leaves the default behind


async def register_webhook(settings: Settings) -> None:
    secret = settings.secrets.webhook_secret
    if secret is None:
        log.warning(
            "CAPAUDIT_WEBHOOK_SECRET is not set: not registering a webhook; callbacks "
            "go to whatever webhooks the app already has"
        )
        return
    async with SinchClient(settings.sinch, settings.secrets) as client:
        await ensure_webhook(client, settings.receiver.public_url, secret.reveal())


@contextlib.contextmanager
def sinch_session(
    settings: Settings, *, restarts: Counter[str] | None = None
) -> Iterator[Settings]:
    """The settings to talk to Sinch with; for "embedded", start the simulator and a receiver,
    supervised (restarted on the same socket when they die, counted in `restarts`)."""
    if not settings.sinch.embedded:
        yield settings
        return
    live = with_embedded_secrets(settings)
    env = {
        "SINCH_KEY_ID": _reveal(live.secrets.key_id),
        "SINCH_KEY_SECRET": _reveal(live.secrets.key_secret),
        "CAPAUDIT_WEBHOOK_SECRET": ",".join(s.reveal() for s in live.secrets.webhook_secrets),
    }
    config = ["--config", settings.source] if settings.source != "<defaults>" else []
    restarts = Counter() if restarts is None else restarts
    with (
        child_service(["simulate", *config], "simulator", env=env, restarts=restarts) as sim_url,
        child_service(["serve", *config], "receiver", env=env, restarts=restarts) as receiver_url,
    ):
        live = live.replace("sinch", base_url=sim_url, token_url=f"{sim_url}/oauth2/token")
        live = live.replace("receiver", public_url=f"{receiver_url}/callbacks/sinch")
        live = live.replace("collect", receiver_health_url=f"{receiver_url}/healthz")
        log.info("embedded simulator at %s, receiver at %s", sim_url, receiver_url)
        yield live


def with_embedded_secrets(settings: Settings) -> Settings:
    """Embedded runs need no real credentials: make up any that are missing, for this run only."""
    current = settings.secrets
    made = Secrets(
        key_id=current.key_id or Secret("embedded-key"),
        key_secret=current.key_secret or Secret(secrets.token_urlsafe(24)),
        webhook_secrets=current.webhook_secrets or (Secret(secrets.token_urlsafe(32)),),
    )
    return dataclasses.replace(settings, secrets=made)


def _reveal(secret: Secret | None) -> str:
    return secret.reveal() if secret is not None else ""


def window_spec(settings: Settings, options: RunOptions) -> WindowSpec | None:
    """The run's window, starting now: `--window`, else `[plan] window`, else none."""
    text = options.window or settings.plan.window
    if not text:
        return None
    seconds = parse_duration(text, "--window" if options.window else "[plan] window")
    return WindowSpec.starting_now(seconds, settings.plan.window_reserve_seconds)


def _dry_run(
    conn: duckdb.DuckDBPyConnection, settings: Settings, options: RunOptions, result: RunResult
) -> RunResult:
    """Load and plan under a throw-away run id, report the plan, and remove every trace."""
    run_id = f"dry-run-{result.run_id}"
    try:
        result.load = steps.load(conn, run_id, settings, options.contacts or None, options.limit)
        if options.sample is not None:
            spec = sampling.SampleSpec(options.sample, options.sample_by, options.sample_seed)
            result.sample = sampling.draw_sample(conn, run_id, spec)
            result.estimate["sample_half_width"] = sampling.widest_half_width(conn, run_id)
        callback_rate, _ = expected_callback_rate(conn, run_id, settings)
        result.window = window_spec(settings, options)
        result.plan = steps.plan(
            conn, run_id, settings, refresh=options.refresh, window=result.window
        )
    finally:
        for table in DRY_RUN_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE run_id = $r", {"r": run_id})
    result.estimate |= {
        "query_seconds": result.plan.requests / settings.dispatch.rate_per_second,
        "callback_seconds": result.plan.to_query / callback_rate,
        "callback_rate_per_second": callback_rate,
        "configured_callback_rate_per_second": configured_callback_rate(settings),
    }
    result.status = "dry-run"
    return result
