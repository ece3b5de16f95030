"""`capaudit run`: load -> plan -> submit -> collect -> build -> report -> publish, resumable
by run id.

With `[sinch] base_url = "embedded"` the simulator and a receiver are started as child
processes on free loopback ports for the submit and collect steps (supervised: restarted on the
same socket if they die), and the webhook is registered through the API exactly as it would
be with Sinch. While collecting, the receiver's health is watched and its outages logged.

A run whose share of unanswered targets exceeds `[collect] max_no_response_share` ends as
incomplete (exit 3, see `completeness.py`); `--resume` keeps collecting and asks the targets
still without an answer once more. A step command that is not the last step leaves the run
`paused`: `run --resume` (or the next step command) continues it.
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
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from pipeline import eventloop, ledger, runs, sampling, steps
from pipeline.checks import CheckReport, run_checks
from pipeline.completeness import Completeness, completeness
from pipeline.contacts.load import LoadSummary
from pipeline.contacts.sources import resolve_paths
from pipeline.dry_run import dry_run
from pipeline.errors import EXIT_INTERRUPTED, CapauditError, Interrupted, UsageError
from pipeline.health import HealthWatch
from pipeline.ids import new_run_id
from pipeline.lake.partitions import stage_early
from pipeline.lake.publish import PublishSummary, publish_runs
from pipeline.metrics.record import run_metrics
from pipeline.progress import StepProgress
from pipeline.readout import readout
from pipeline.reasks import plan_resume_asks
from pipeline.refusal import check_resumable, empty_input_problem, idle_window_problem, refuse
from pipeline.report import ReportFiles, write_report
from pipeline.run_kinds import run_kind
from pipeline.services import child_service
from pipeline.settings import Secret, Secrets, Settings
from pipeline.sinch.client import SinchClient
from pipeline.state import open_state
from pipeline.webhooks import ensure_webhook
from pipeline.window import WindowSpec, collect_deadline, window_spec

log = logging.getLogger(__name__)
T = TypeVar("T")


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
    estimates: list[dict[str, Any]] = field(default_factory=list)  # a sampled run's, whole list
    durations: dict[str, float] = field(default_factory=dict)
    estimate: dict[str, float] = field(default_factory=dict)
    warehouse: str = ""
    completeness: Completeness | None = None
    message: str = ""  # why the run did not succeed (exit_code 3: incomplete)
    sample: sampling.SampleSummary | None = None
    window: WindowSpec | None = None
    max_no_response_share: float = 0.02  # the completeness gate's bound ([collect])
    warnings: list[str] = field(default_factory=list)  # a dry run's (pipeline/refusal.py)


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


STEPS = ("load", "plan", "submit", "collect", "build", "report", "publish")
# The options a run records and a resumed run (or a later step) continues with.
RECORDED_OPTIONS = ("limit", "refresh", "deadline_seconds", "window", "sample")
SAMPLE_OPTIONS = ("sample_by", "sample_seed")  # go with `sample`: recorded with it, taken with it


def run_audit(settings: Settings, options: RunOptions, *, console: bool) -> RunResult:
    result = _new_result(options.run_id or new_run_id(), settings)
    with _warehouse(settings) as conn:
        if options.dry_run:
            return dry_run(conn, settings, options, result, console)
        with run_metrics(conn, settings, result):  # however the run ends ([metrics])
            _check_resume(conn, result.run_id, options)
            options = dataclasses.replace(options, run_id=result.run_id)
            options = _begin(conn, settings, options, "run")
            with _recorded(conn, settings, result, console):
                _run_steps(_Run(conn, settings, options, result, console))
    return result


def run_step(
    settings: Settings,
    step: str,
    options: RunOptions,
    *,
    console: bool,
    pseudonym_key: bytes | None = None,
) -> RunResult:
    """One step of `run` on its own, recorded in `runs` exactly as `run` records it, so that
    `run --resume` continues from there with the same inputs and options."""
    assert options.run_id is not None, "a step needs the run id"
    result = _new_result(options.run_id, settings)
    with _warehouse(settings) as conn:
        if step == "load" and ledger.has_requests(conn, result.run_id):
            raise UsageError(
                f"run {result.run_id} is already planned; loading again would lose its plan. "
                "Start a new run id, or continue this one with capaudit run --resume"
            )
        if step != "load" and runs.run_status(conn, result.run_id) is None:
            raise UsageError(
                f"there is no run {result.run_id} in the warehouse; start it with "
                f"capaudit load --run-id {result.run_id} (or capaudit run)"
            )
        if step != "load":  # a load starts the run again: it may fix what refused it
            check_resumable(result.run_id, runs.run_status(conn, result.run_id))
        options = _begin(conn, settings, options, step)
        run = _Run(conn, settings, options, result, console)
        with _recorded(conn, settings, result, console):
            if step == "load":
                _load(run)
            elif step == "plan":
                _plan(run)
            elif step == "submit":
                _exchange(run, collect=settings.sinch.embedded)
            elif step == "collect":
                _collect(run, settings, requery=False)
            elif step == "build":
                _build(run)
            else:
                _report(run, pseudonym_key)
    return result


def _new_result(run_id: str, settings: Settings) -> RunResult:
    return RunResult(
        run_id=run_id,
        warehouse=settings.warehouse.path,
        max_no_response_share=settings.collect.max_no_response_share,
    )


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


def _warehouse(settings: Settings) -> Any:
    """The job's working state (never the analysts' catalog), with the run lock."""
    return open_state(settings)


def _begin(
    conn: duckdb.DuckDBPyConnection, settings: Settings, options: RunOptions, step: str
) -> RunOptions:
    """Record the run as running with its inputs and options; returns the options to run with
    (those given now, else those the run recorded). `step` is "run" or the single step."""
    run_id = options.run_id or ""
    options = _with_recorded(options, runs.run_options(conn, run_id))
    if step != "load" and runs.step_done(conn, run_id, "load"):
        if step in ("run", "plan", "submit", "collect"):  # build and report read the warehouse
            _check_loaded(conn, run_id, options)
        inputs: list[dict[str, Any]] = []  # keep the ones recorded at the load
    else:
        paths = options.contacts or runs.run_inputs(conn, run_id) or settings.contacts.paths
        inputs = [runs.file_digest(p) for p in resolve_paths(paths)]
    recorded = {name: getattr(options, name) for name in (*RECORDED_OPTIONS, *SAMPLE_OPTIONS)}
    kind = run_kind(
        sample=options.sample, window=options.window or settings.plan.window, limit=options.limit
    )
    runs.start_run(
        conn,
        run_id,
        config_digest=config_digest(settings),
        inputs=inputs,
        options=recorded,
        kind=kind,
    )
    return options


def _with_recorded(options: RunOptions, recorded: dict[str, Any]) -> RunOptions:
    """An option given now wins; one not given takes the value the run recorded."""
    given = {name: getattr(options, name) for name in RECORDED_OPTIONS}
    taken = {
        name: recorded.get(name, value) if value in (None, False) else value
        for name, value in given.items()
    }
    if options.sample is None and recorded.get("sample") is not None:
        taken |= {name: recorded.get(name, getattr(options, name)) for name in SAMPLE_OPTIONS}
    return dataclasses.replace(options, **taken)


def _check_loaded(conn: duckdb.DuckDBPyConnection, run_id: str, options: RunOptions) -> None:
    """A run whose contacts are loaded continues only with those contacts, unchanged."""
    recorded = runs.input_digests(conn, run_id)
    if options.contacts and {str(p) for p in resolve_paths(options.contacts)} != {
        str(item["path"]) for item in recorded
    }:
        raise UsageError(
            f"run {run_id} was loaded from {', '.join(str(i['path']) for i in recorded)}; "
            "--contacts cannot change that now. Start a new run id for other files"
        )
    for item in recorded:
        path = Path(item["path"])
        now = runs.file_digest(path)["sha256"] if path.is_file() else "(no such file)"
        if now != item["sha256"]:
            raise UsageError(
                f"{path}: changed since run {run_id} loaded it (sha256 {item['sha256']} then, "
                f"{now} now); the run continues only on the contacts it loaded. Restore the "
                "file, or start a new run id"
            )


@contextlib.contextmanager
def _recorded(
    conn: duckdb.DuckDBPyConnection, settings: Settings, result: RunResult, console: bool
) -> Iterator[None]:
    """Run steps with signals ending them as interrupted, and record how they ended: failed,
    interrupted, paused (steps left to do), or, once the report is written, succeeded (and
    published) or incomplete (too many targets without an answer: exit 3, see `_apply_gate`)."""
    run_id = result.run_id
    try:
        with _signals_interrupt(run_id):
            yield
            _finish(conn, settings, result, console)
    except CapauditError as exc:
        result.status = exc.run_status
        runs.finish_run(conn, run_id, result.status, exc.exit_code, str(exc))
        raise
    except BaseException as exc:
        result.status = "failed"
        runs.finish_run(conn, run_id, "failed", 1, f"{type(exc).__name__}: {exc}")
        raise
    result.durations = runs.step_durations(conn, run_id)


def _finish(
    conn: duckdb.DuckDBPyConnection, settings: Settings, result: RunResult, console: bool
) -> None:
    """Record how the steps ended; a succeeded run is then published. The published `runs` row
    says how the run ended, and publication is recorded last, so a run killed before or during
    it is published by `--resume`; an incomplete run (exit 3) when `--resume` completes it."""
    run_id = result.run_id
    if runs.step_done(conn, run_id, "report"):
        _apply_gate(result, completeness(conn, run_id, result.max_no_response_share))
    else:
        result.status = "paused"
    runs.finish_run(conn, run_id, result.status, result.exit_code, result.message)
    if result.status == "succeeded":
        result.publish = publish(conn, settings, run_id, console=console)


def publish_run(settings: Settings, run_id: str, *, console: bool = False) -> PublishSummary:
    """`capaudit publish`: (re)publish a finished run."""
    with _warehouse(settings) as conn:
        return publish(conn, settings, run_id, console=console)


def publish(
    conn: duckdb.DuckDBPyConnection, settings: Settings, run_id: str, *, console: bool = False
) -> PublishSummary:
    """Publish the run to the lake and swap in the catalog; recorded as the step `publish`."""
    return _timed(
        conn, run_id, "publish", lambda: publish_runs(conn, settings, [run_id], console=console)
    )


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
    check_resumable(run_id, row[0] if row else None)


def as_dict(value: object) -> dict[str, Any]:
    """A step's summary as plain data (dataclasses and dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return dict(value) if isinstance(value, dict) else {}


def _timed(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    step: str,
    work: Callable[[], T],
    counts: Callable[[T], dict[str, Any]] = as_dict,
) -> T:
    started = time.monotonic()
    outcome = work()
    runs.record_step(conn, run_id, step, time.monotonic() - started, counts(outcome))
    return outcome


@dataclass(frozen=True)
class _Run:
    """What every step of one run works with."""

    conn: duckdb.DuckDBPyConnection
    settings: Settings
    options: RunOptions
    result: RunResult
    console: bool

    @property
    def run_id(self) -> str:
        return self.result.run_id

    def timed(
        self, step: str, work: Callable[[], T], counts: Callable[[T], dict[str, Any]] = as_dict
    ) -> T:
        return _timed(self.conn, self.run_id, step, work, counts)


def _run_steps(run: _Run) -> None:
    conn, run_id = run.conn, run.run_id
    run.result.window = window_spec(run.settings, run.options.window)  # starts with the run
    if not (run.options.resume and runs.step_done(conn, run_id, "load")):
        _load(run)
    _sample(run)
    # A window fitted before the embedded services are up would count their start as time
    # for asking: start them first, so the plan sees the time really left.
    early = run.settings.sinch.embedded and run.result.window is not None
    with _session(run) if early else contextlib.nullcontext() as live:
        _plan(run)
        needs_sinch = bool(ledger.request_counts(conn, run_id).get(ledger.PLANNED)) or bool(
            steps.outstanding_targets(conn, run_id)
        )
        if needs_sinch:
            _exchange(run, collect=True, live=live)
    _build(run)
    _report(run, None)


def _load(run: _Run) -> None:
    # The files recorded when the run (or its load) started: a resumed load reads the same.
    paths = run.options.contacts or runs.run_inputs(run.conn, run.run_id) or None
    limit = run.options.limit
    run.result.load = run.timed(
        "load",
        lambda: steps.load(run.conn, run.run_id, run.settings, paths, limit, console=run.console),
    )
    refuse(empty_input_problem(run.result.load), run.run_id)  # recorded, then refused


def _sample(run: _Run) -> None:
    """`--sample N`: draw the sample once (a resumed run keeps the one it drew)."""
    options = run.options
    if options.sample is None or runs.step_done(run.conn, run.run_id, "sample"):
        return
    spec = sampling.SampleSpec(options.sample, options.sample_by, options.sample_seed)
    run.result.sample = run.timed(
        "sample", lambda: sampling.draw_sample(run.conn, run.run_id, spec)
    )


def _plan(run: _Run) -> None:
    refresh = run.options.refresh
    window = run.result.window = run.result.window or window_spec(run.settings, run.options.window)
    cap = run.settings.plan.window_reserve_seconds

    def plan() -> ledger.PlanSummary:
        summary = steps.plan(
            run.conn, run.run_id, run.settings, refresh=refresh, window=window, console=run.console
        )
        if window is not None:
            refuse(idle_window_problem(summary.window, window, cap), run.run_id)
        # The targets are final now: their partition is written while the run waits on Sinch.
        stage_early(run.conn, run.settings.warehouse.lake, run.run_id)
        return summary

    run.result.plan = run.timed("plan", plan)


def _build(run: _Run) -> None:
    run.result.statuses = run.timed(
        "build", lambda: steps.build(run.conn, run.run_id, console=run.console)
    )
    run.result.channels, run.result.estimates = readout(run.conn, run.run_id)


def _report(run: _Run, pseudonym_key: bytes | None) -> None:
    reports = run.settings.reports
    with StepProgress("report", None, console=run.console) as progress:

        def written(path: Path, files: int) -> None:
            progress.total = files
            progress.update(progress.done + 1, file=path.name)

        run.result.report = run.timed(
            "report",
            lambda: write_report(
                run.conn,
                run.run_id,
                Path(reports.dir),
                trend_runs=reports.trend_runs,
                pseudonym_key=pseudonym_key,
                max_no_response_share=run.settings.collect.max_no_response_share,
                settings=run.settings,
                on_file=written,
            ),
        )


def _exchange(run: _Run, *, collect: bool, live: Settings | None = None) -> None:
    """Submit, then (with `collect`) collect while the Sinch session lasts (`live`, else one
    started now); SIGTERM/SIGINT stop sending and end the run as resumable."""
    with contextlib.nullcontext(live) if live else _session(run) as session:
        _submit_then_collect(run, session, collect=collect)


@contextlib.contextmanager
def _session(run: _Run) -> Iterator[Settings]:
    """A Sinch session for the run; the embedded services' restarts are added to its record."""
    restarts: Counter[str] = Counter()
    try:
        with sinch_session(run.settings, restarts=restarts) as live:
            yield live
    finally:
        runs.record_restarts(run.conn, run.run_id, dict(restarts))


def _submit_then_collect(run: _Run, live: Settings, *, collect: bool) -> None:
    asyncio.run(register_webhook(live))
    if run.options.resume:  # embedded: the simulator that owed answers is gone (reasks.py)
        plan_resume_asks(run.conn, run.run_id, live, embedded=run.settings.sinch.embedded)
    stop = asyncio.Event()
    work = steps.submit(run.conn, run.run_id, live, stop=stop, console=run.console)
    sent = run.result.submit = run.timed("submit", lambda: _until_signal(stop, work))
    if stop.is_set():
        raise Interrupted(
            f"stopped by a signal; {sent.not_sent:,} requests not sent yet. "
            f"Continue with: capaudit run --resume --run-id {run.run_id}"
        )
    if collect:
        _collect(run, live, requery=True)


def _collect(run: _Run, settings: Settings, *, requery: bool) -> None:
    """Collect callbacks, watching the receiver's health; with `requery` (`settings` of a live
    Sinch session) transient failures are asked once more (not in a window: those wait for a
    later night)."""
    stop = asyncio.Event()
    wall = time.time()
    deadline = run.options.deadline_seconds
    if run.result.window is not None:  # collecting ends by the window's end
        configured = settings.collect.deadline_seconds if deadline is None else deadline
        last = steps._last_acceptance(run.conn, run.run_id)
        deadline = collect_deadline(run.result.window, last or wall, configured)
    health = HealthWatch.of(settings)

    async def watched() -> steps.CollectSummary:
        async with health:
            return await steps.collect(
                run.conn,
                run.run_id,
                settings,
                stop=stop,
                deadline_seconds=deadline,
                console=run.console,
                requery=requery and run.result.window is None,
                wait_from=wall if run.options.resume else 0.0,
            )

    def counts(summary: steps.CollectSummary) -> dict[str, Any]:
        return {
            "outstanding": summary.outstanding,
            "deadline_passed": summary.deadline_passed,
            "receiver_outages": health.outages,
            "receiver_down_seconds": round(health.down_seconds, 1),
            "receiver_health_checked": health.checked,
            "matched_by": summary.matched_by,
            "unmatched": summary.unmatched,
            "provisional_builds": summary.provisional_builds,
            "contacts": summary.contacts,
        }

    run.result.collect = run.timed("collect", lambda: _until_signal(stop, watched()), counts)
    if stop.is_set():
        raise Interrupted(
            f"stopped while collecting callbacks; continue with: "
            f"capaudit run --resume --run-id {run.run_id}"
        )


def _until_signal(stop: asyncio.Event, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` in an event loop where SIGTERM/SIGINT set `stop` (the step then ends
    gracefully, its outcomes recorded) instead of raising."""

    async def main() -> T:
        loop = asyncio.get_running_loop()
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        for signum in previous:
            loop.add_signal_handler(signum, stop.set)
        try:
            return await work
        finally:
            for signum, handler in previous.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, handler)  # asyncio leaves the default behind

    return eventloop.run(main())


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


def sinch_call(settings: Settings, work: Callable[[SinchClient], Awaitable[T]]) -> T:
    """Run `work(client)` against Sinch (or the embedded simulator, started for the call)."""

    async def call(live: Settings) -> T:
        async with SinchClient(live.sinch, live.secrets) as client:
            return await work(client)

    with sinch_session(settings) as live:
        return asyncio.run(call(live))


def check_ready(settings: Settings, budget_seconds: float) -> CheckReport:
    """`capaudit check`; only the embedded simulator gets its webhook first, as a run would."""
    with sinch_session(settings) as live:
        if embedded := settings.sinch.embedded:
            asyncio.run(register_webhook(live))
        return asyncio.run(run_checks(live, budget_seconds=budget_seconds, embedded=embedded))


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
        tempfile.TemporaryDirectory(prefix="capaudit-simulator-") as simulator_dir,
        child_service(
            ["simulate", *config, "--state-file", f"{simulator_dir}/state.json"],
            "simulator",
            env=env,
            restarts=restarts,
        ) as sim_url,
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
