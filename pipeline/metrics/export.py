"""The metrics in Prometheus' text format, with prometheus-client: to a node-exporter textfile
(a temporary name in the same directory, then a rename, so the collector never reads half a
file) and/or pushed to a Pushgateway (job `capaudit`; a push replaces the group's last one).

The textfile is 0644, unlike the data files (0640): node-exporter reads it as another user, and
it holds no contact data (a run id, statuses, counts, shares and times).
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, Info, generate_latest, push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from pipeline.files import write_text_durably
from pipeline.metrics.figures import RunFigures

log = logging.getLogger(__name__)
JOB = "capaudit"  # the Pushgateway's job label
TEXTFILE_MODE = 0o644
PUSH_TIMEOUT_SECONDS = 10.0
LAST_SUCCESS = "capaudit_last_success_timestamp_seconds"


def registry_for(figures: RunFigures) -> CollectorRegistry:
    """One gauge (or labelled gauge) per figure; a figure the run did not get to is left out."""
    registry = CollectorRegistry()
    Info(
        "capaudit_last_run", "The last capaudit run: its id and how it ended.", registry=registry
    ).info({"run_id": figures.run_id, "status": figures.status})
    for name, help_text, value in _scalars(figures):
        if value is not None:
            Gauge(name, help_text, registry=registry).set(value)
    _labelled(
        registry,
        "capaudit_last_run_step_duration_seconds",
        "Seconds each step of the last run took (the latest time it ran).",
        "step",
        figures.recorded.steps,
    )
    _labelled(
        registry,
        "capaudit_last_run_reachable_ratio",
        "Share of the last run's targets reachable on the channel (CAPABILITY_FULL or PARTIAL).",
        "channel",
        figures.recorded.reachable,
    )
    return registry


def _scalars(f: RunFigures) -> list[tuple[str, str, float | None]]:
    state = f.recorded
    return [
        ("capaudit_last_run_start_timestamp_seconds", "When the last run started.", f.started),
        ("capaudit_last_run_finish_timestamp_seconds", "When the last run ended.", f.finished),
        (
            "capaudit_last_run_duration_seconds",
            "How long the last run took.",
            f.finished - f.started,
        ),
        ("capaudit_last_run_exit_code", "The last run's exit code (0 success).", f.exit_code),
        (LAST_SUCCESS, "When the newest succeeded run ended (0: none known).", f.last_success),
        (
            "capaudit_last_run_targets",
            "Targets (contact x channel) of the last run.",
            state.targets,
        ),
        (
            "capaudit_last_run_unanswered_ratio",
            "Share of the last run's queried targets without an answer (NO_RESPONSE).",
            state.unanswered_ratio,
        ),
    ]


def _labelled(
    registry: CollectorRegistry, name: str, help_text: str, label: str, values: dict[str, float]
) -> None:
    if not values:
        return
    gauge = Gauge(name, help_text, [label], registry=registry)
    for key, value in values.items():
        gauge.labels(key).set(value)


def write_textfile(path: Path, registry: CollectorRegistry) -> None:
    """Replace `path` atomically; its directory must exist (node-exporter's textfile directory)."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} is not a directory ([metrics] textfile)")
    write_text_durably(path, generate_latest(registry).decode(), mode=TEXTFILE_MODE)


def push(url: str, registry: CollectorRegistry) -> None:
    push_to_gateway(url, job=JOB, registry=registry, timeout=PUSH_TIMEOUT_SECONDS)


def previous_success(path: Path) -> float:
    """The last success an earlier run wrote to the textfile (0.0: none, or unreadable)."""
    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (OSError, ValueError) as exc:
        if path.exists():
            log.warning("%s: cannot read the last success from it (%s)", path, exc)
        return 0.0
    found = [s.value for f in families if f.name == LAST_SUCCESS for s in f.samples]
    return max(found, default=0.0)
