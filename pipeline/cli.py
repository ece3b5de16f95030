"""The `capaudit` command: parse flags, call one library function, map errors to exit codes.

Exit codes (DESIGN §4): 0 success, 1 the run failed, 2 bad usage, config or input file,
3 interrupted or incomplete but resumable with `--resume`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pipeline import __version__, private
from pipeline.errors import EXIT_INTERRUPTED, CapauditError, UsageError
from pipeline.lazy import lazy_module
from pipeline.logs import configure_logging, use_console
from pipeline.settings import DEFAULT_CONFIG, Settings, load_settings

if TYPE_CHECKING:
    from pipeline import audit
else:
    # Loaded on first use: `serve` and `simulate`, the run's children, never need the run's
    # modules (duckdb, polars, pyarrow ...), and start in a third of the time without them.
    audit = lazy_module("pipeline.audit")

log = logging.getLogger("capaudit")
F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    """Every command takes --config (DESIGN §4)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=DEFAULT_CONFIG,
        show_default=True,
        help="TOML configuration file; CAPAUDIT_<SECTION>__<KEY> variables override it.",
    )(command)


def run_id_option(required: bool = True) -> Callable[[F], F]:
    return click.option("--run-id", required=required, help="The run to work on.")


def settings_for(config_path: Path) -> Settings:
    settings = load_settings(config_path)
    configure_logging(settings.logging.level, settings.logging.format)
    return settings


def handle_errors(command: F) -> F:
    """Turn capaudit errors into a one-line message and the documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CapauditError as exc:
            click.echo(f"capaudit: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("capaudit: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="capaudit")
def main() -> None:
    """Batch capability audit for the Sinch Conversation API.

    \b
    Example:
      capaudit run                      # the whole audit, sample data, embedded simulator
    """
    private.restrict_umask()  # nothing it (or a child) creates is open to other users


@main.command()
@config_option
@click.option("--contacts", multiple=True, help="Contact file or glob (repeatable).")
@run_id_option(required=False)
@click.option("--resume", is_flag=True, help="Continue an interrupted run (needs --run-id).")
@click.option("--refresh", is_flag=True, help="Query every target, even with a fresh answer.")
@click.option("--limit", type=click.IntRange(min=1), help="Audit only the first N contacts.")
@click.option("--dry-run", is_flag=True, help="Print the plan and estimates; send nothing.")
@click.option(
    "--deadline",
    "deadline",
    type=click.FloatRange(min=0),
    help="Seconds to wait for callbacks after the last accepted request.",
)
@click.option(
    "--window",
    help="Fit the run (collecting included) into this time, e.g. 6h: stalest targets first; "
    "the rest keep their last answer [config: plan.window].",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Query only a stratified random sample of N contacts and estimate the list's shares.",
)
@click.option(
    "--sample-by",
    default="country",
    show_default=True,
    help="Strata of the sample: the phone's country, or a column of targets (e.g. source).",
)
@click.option("--sample-seed", type=int, default=1, show_default=True, help="Seed of the draw.")
@handle_errors
def run(
    config_path: Path,
    contacts: tuple[str, ...],
    run_id: str | None,
    resume: bool,
    refresh: bool,
    limit: int | None,
    dry_run: bool,
    deadline: float | None,
    window: str | None,
    sample: int | None,
    sample_by: str,
    sample_seed: int,
) -> None:
    """The nightly job: load, plan, submit, collect, build, report.

    Exits 3 when interrupted, or when more than [collect] max_no_response_share of the queried
    targets have no answer (the report is written and marked incomplete): --resume continues.

    \b
    Examples:
      capaudit run
      capaudit run --contacts 'lists/*.csv.gz' --run-id nightly-2026-11-25
      capaudit run --resume --run-id nightly-2026-11-25
      capaudit run --dry-run --limit 1000
      capaudit run --window 6h                   # what one night answers, stalest first
      capaudit run --sample 20000 --dry-run      # the interval width a sample buys
    """
    if resume and not run_id:
        raise UsageError("--resume needs --run-id: the run to continue")
    if sample is not None and window is not None:
        raise UsageError("--sample and --window: choose one (a sample is small by itself)")
    if window is not None:
        from pipeline.window import parse_duration

        parse_duration(window)  # a bad duration fails before anything is loaded
    settings = settings_for(config_path)
    options = audit.RunOptions(
        run_id,
        contacts,
        resume,
        refresh,
        limit,
        dry_run,
        deadline,
        sample=sample,
        sample_by=sample_by,
        sample_seed=sample_seed,
        window=window,
    )
    from pipeline import console

    result = audit.run_audit(settings, options, console=use_console(settings.logging.format))
    if dry_run:
        console.print_plan(result)
        return
    console.print_run(result, result.channels)
    if result.exit_code:  # incomplete: reported, but the scheduler must not see a success
        click.echo(f"capaudit: {result.message}", err=True)
        sys.exit(result.exit_code)


@main.command()
@config_option
@click.option("--host", help="Interface to listen on [config: receiver.host].")
@click.option("--port", type=int, help="Port [config: receiver.port].")
@click.option("--landing-dir", type=click.Path(path_type=Path), help="Where segments go.")
@click.option("--insecure", is_flag=True, help="Accept unsigned callbacks (local tests only).")
@click.option("--fd", type=int, hidden=True)
@handle_errors
def serve(
    config_path: Path,
    host: str | None,
    port: int | None,
    landing_dir: Path | None,
    insecure: bool,
    fd: int | None,
) -> None:
    """The webhook receiver: POST /callbacks/sinch, GET /healthz, GET /metrics.

    \b
    Example:
      CAPAUDIT_WEBHOOK_SECRET=... capaudit serve --port 8751 --landing-dir data/landing
    """
    from pipeline.receiver import create_app
    from pipeline.services import die_with_parent, serve_asgi

    die_with_parent()
    settings = settings_for(config_path)
    overrides: dict[str, Any] = {"insecure": insecure or settings.receiver.insecure}
    if landing_dir is not None:
        overrides |= {"landing_dir": str(landing_dir), "landing_url": ""}
    receiver = dataclasses.replace(settings.receiver, **overrides)
    app = create_app(receiver, settings.secrets.webhook_secrets, settings.storage)
    serve_asgi(app, host=host or receiver.host, port=port or receiver.port, fd=fd)


@main.command()
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8750, show_default=True)
@click.option("--latency-ms", type=float, help="Simulated network latency per API call.")
@click.option("--rate-limit", type=int, help="Requests per second per project (429 above).")
@click.option("--webhook-rate", type=float, help="Callbacks per second per app.")
@click.option("--seed", type=int, help="Seed of the outcome model.")
@click.option(
    "--omit-request-id-share",
    type=click.FloatRange(0, 1),
    help="Share of callbacks sent without request_id (0 to 1), the same ones for a seed.",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=(
        "Keep webhooks and tokens in this JSON file, and created contacts beside it, so a "
        "restarted simulator still has them."
    ),
)
@click.option("--fd", type=int, hidden=True)
@handle_errors
def simulate(
    config_path: Path,
    host: str,
    port: int,
    latency_ms: float | None,
    rate_limit: int | None,
    webhook_rate: float | None,
    seed: int | None,
    omit_request_id_share: float | None,
    state_file: Path | None,
    fd: int | None,
) -> None:
    """The Sinch simulator as a server (API paths, OAuth2, callbacks, /_sim/stats).

    \b
    Example:
      capaudit simulate --port 8750 --latency-ms 100 --rate-limit 800 --webhook-rate 25
    """
    from pipeline.services import die_with_parent, serve_asgi
    from pipeline.simulator.app import create_app

    die_with_parent()
    settings = settings_for(config_path)
    flags = {
        "latency_ms": latency_ms,
        "rate_limit": rate_limit,
        "webhook_rate": webhook_rate,
        "seed": seed,
        "omit_request_id_share": omit_request_id_share,
        "state_path": str(state_file) if state_file else None,
    }
    settings = settings.replace("simulator", **{k: v for k, v in flags.items() if v is not None})
    serve_asgi(create_app(settings.simulator), host=host, port=port, fd=fd)


# -- the steps of `run`, one at a time ----------------------------------------------------------


def json_option(command: F) -> F:
    """Step commands print for people on a terminal, JSON when asked or when piped."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print the step's summary as JSON (the default when stdout is not a terminal).",
    )(command)


def _step(
    config_path: Path, step: str, options: audit.RunOptions, as_json: bool, **extra: Any
) -> None:
    """Run one step of `run`, recorded in the run's record, and print its summary: the lines
    `run` prints for it on a terminal, else JSON."""
    settings = settings_for(config_path)
    if extra.pop("pseudonymise", False):
        from pipeline.report.pseudonyms import pseudonym_key

        extra["pseudonym_key"] = pseudonym_key(settings.secrets.pseudonym_key)
    console = use_console(settings.logging.format)
    result = audit.run_step(settings, step, options, console=console, **extra)
    if as_json or not sys.stdout.isatty():
        summaries = {"build": result.statuses, "report": result.report}
        _print_json(summaries[step] if step in summaries else getattr(result, step))
    else:
        from pipeline.console import print_step

        print_step(result, step)
    if result.exit_code:  # the report step of an incomplete run: exit 3, as `run` does
        click.echo(f"capaudit: {result.message}", err=True)
        sys.exit(result.exit_code)


@main.command()
@config_option
@run_id_option()
@click.option("--contacts", multiple=True, help="Contact file or glob (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), help="Keep only the first N contacts.")
@json_option
@handle_errors
def load(
    config_path: Path, run_id: str, contacts: tuple[str, ...], limit: int | None, as_json: bool
) -> None:
    """Read and validate the contact files into `targets` and `rejects`.

    On a terminal it shows progress (rows read, rejects so far, rate, time left) and ends with
    the lines `run` prints for the load; otherwise JSON.

    \b
    Example:
      capaudit load --run-id r1 --contacts data/sample/contacts.csv
    """
    _step(config_path, "load", audit.RunOptions(run_id, contacts, limit=limit), as_json)


@main.command()
@config_option
@run_id_option()
@click.option("--refresh", is_flag=True, help="Query every target, even with a fresh answer.")
@json_option
@handle_errors
def plan(config_path: Path, run_id: str, refresh: bool, as_json: bool) -> None:
    """Decide what to query: reuse fresh answers, write one request per contact to the ledger.

    \b
    Example:
      capaudit plan --run-id r1
    """
    _step(config_path, "plan", audit.RunOptions(run_id, refresh=refresh), as_json)


@main.command()
@config_option
@run_id_option()
@json_option
@handle_errors
def submit(config_path: Path, run_id: str, as_json: bool) -> None:
    """Send the run's planned requests (paced, retried, recorded in the ledger).

    With the embedded simulator, it also waits for the callbacks, since the simulator stops
    with the command. SIGTERM or Ctrl-C stop sending (exit 3; continue with run --resume).

    \b
    Example:
      capaudit submit --run-id r1
    """
    _step(config_path, "submit", audit.RunOptions(run_id), as_json)


@main.command()
@config_option
@run_id_option()
@click.option("--deadline", type=click.FloatRange(min=0), help="Seconds to keep waiting.")
@json_option
@handle_errors
def collect(config_path: Path, run_id: str, deadline: float | None, as_json: bool) -> None:
    """Ingest landed callbacks until the run's accepted requests are answered or time is up.

    \b
    Example:
      capaudit collect --run-id r1 --deadline 60
    """
    _step(config_path, "collect", audit.RunOptions(run_id, deadline_seconds=deadline), as_json)


@main.command()
@config_option
@run_id_option()
@json_option
@handle_errors
def build(config_path: Path, run_id: str, as_json: bool) -> None:
    """Build `capability`, `reachability` and `capability_changes` for the run.

    On a terminal it ends with the reachability table `run` prints; otherwise JSON (the
    number of capability rows per status).

    \b
    Example:
      capaudit build --run-id r1
    """
    _step(config_path, "build", audit.RunOptions(run_id), as_json)


@main.command()
@config_option
@run_id_option()
@click.option(
    "--pseudonymise",
    is_flag=True,
    help="Replace contact keys, ids and identities by HMAC-SHA256 under CAPAUDIT_PSEUDONYM_KEY.",
)
@json_option
@handle_errors
def report(config_path: Path, run_id: str, pseudonymise: bool, as_json: bool) -> None:
    """Write the run's report files (HTML, JSON, CSV, Parquet).

    \b
    Examples:
      capaudit report --run-id r1
      CAPAUDIT_PSEUDONYM_KEY=... capaudit report --run-id r1 --pseudonymise
    """
    options = audit.RunOptions(run_id)
    _step(config_path, "report", options, as_json, pseudonymise=pseudonymise)


@main.command()
@config_option
@run_id_option()
@json_option
@handle_errors
def publish(config_path: Path, run_id: str, as_json: bool) -> None:
    """Publish the run to the lake and swap in a new catalog (again, if it was published).

    On a terminal it shows progress (tables written) and says what was published; otherwise
    JSON.

    \b
    Example:
      capaudit publish --run-id r1
    """
    settings = settings_for(config_path)
    console = use_console(settings.logging.format)
    published = audit.publish_run(settings, run_id, console=console)
    if as_json or not sys.stdout.isatty():
        _print_json(published)
    else:
        from pipeline.console import print_publish

        print_publish(published)


# -- operations ---------------------------------------------------------------------------------


@main.group()
def webhooks() -> None:
    """Manage the app's CAPABILITY webhook through the API.

    \b
    Example:
      capaudit webhooks ensure --target https://capaudit.example.com/callbacks/sinch
    """


@webhooks.command("ensure")
@config_option
@click.option("--target", help="The URL Sinch calls [default: [receiver] public_url].")
@handle_errors
def webhooks_ensure(config_path: Path, target: str | None) -> None:
    """Create the CAPABILITY webhook for TARGET, or update the one already pointing there.

    The secret is CAPAUDIT_WEBHOOK_SECRET (the first one, while rotating). Running it twice
    leaves exactly one webhook; it refuses when the app already has Sinch's maximum of five.

    \b
    Example:
      capaudit webhooks ensure --target https://capaudit.example.com/callbacks/sinch
    """
    from pipeline.webhooks import ensure_webhook

    settings = settings_for(config_path)
    secret = settings.secrets.webhook_secret
    if secret is None:
        raise UsageError("CAPAUDIT_WEBHOOK_SECRET must be set: callbacks are signed with it")
    url = target or settings.receiver.public_url
    result = audit.sinch_call(settings, lambda client: ensure_webhook(client, url, secret.reveal()))
    click.echo(f"{result.action} webhook {result.webhook.get('id')} -> {url} (CAPABILITY)")


@webhooks.command("list")
@config_option
@handle_errors
def webhooks_list(config_path: Path) -> None:
    """List the app's webhooks: id, target, triggers.

    \b
    Example:
      capaudit webhooks list --config configs/sinch.toml
    """
    settings = settings_for(config_path)
    hooks = audit.sinch_call(settings, lambda client: client.list_webhooks())
    for hook in hooks:
        click.echo(f"{hook.get('id')}  {hook.get('target')}  {','.join(hook.get('triggers', []))}")
    if not hooks:
        click.echo("the app has no webhooks")


@webhooks.command("delete")
@config_option
@click.argument("webhook_id")
@handle_errors
def webhooks_delete(config_path: Path, webhook_id: str) -> None:
    """Delete the webhook WEBHOOK_ID.

    \b
    Example:
      capaudit webhooks delete 01JDX3Q3ZK6D5R8W2N9V4T7B1M
    """
    settings = settings_for(config_path)
    audit.sinch_call(settings, lambda client: client.delete_webhook(webhook_id))
    click.echo(f"deleted webhook {webhook_id}")


@main.command()
@config_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds for all network checks together; one still running then fails.",
)
@handle_errors
def check(config_path: Path, timeout: float) -> None:
    """Check config, secrets, rate, token, API access, the app, the webhook and the receiver.

    Sends no query, changes nothing at Sinch. One line a check; exits 0 only if all pass or warn.

    \b
    Example:
      capaudit check --config configs/sinch.toml --timeout 5
    """
    report = audit.check_ready(settings_for(config_path), timeout)
    click.echo("\n".join(report.lines()))
    sys.exit(0 if report.ok else 1)


@main.command()
@config_option
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    required=True,
    help="Remove runs, lake partitions and landing segments older than this many days.",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@handle_errors
def purge(config_path: Path, days: float, dry_run: bool) -> None:
    """Retention: remove old runs (rows and reports) and old, fully ingested landing segments.

    The newest successful run is always kept; a segment not yet ingested is never removed.

    \b
    Example:
      capaudit purge --older-than 90 --dry-run
    """
    from pipeline.retention import purge_configured

    settings = settings_for(config_path)
    console = use_console(settings.logging.format)
    summary = purge_configured(settings, older_than_days=days, dry_run=dry_run, console=console)
    _print_json(summary)


def _print_json(value: object) -> None:
    click.echo(json.dumps(audit.as_dict(value), indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    main()
