"""Shared fixtures: settings in a temp dir, real servers on loopback, signed deliveries."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.services import child_service
from pipeline.settings import Secret, Secrets, Settings, load_settings
from pipeline.sinch.signing import signature_headers
from tests.s3server import bucket, s3  # noqa: F401 - fixtures for every test module

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample" / "contacts.csv"
WEBHOOK_SECRET = "test-webhook-secret-at-least-32-chars"  # check refuses shorter ones
KEY_ID, KEY_SECRET = "test-key", "test-key-secret"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Default settings with every output under tmp_path and test credentials."""
    base = load_settings(REPO / "configs" / "default.toml", env={})
    base = base.replace("warehouse", path=str(tmp_path / "warehouse.duckdb"))
    base = base.replace("receiver", landing_dir=str(tmp_path / "landing"))
    base = base.replace("reports", dir=str(tmp_path / "reports"))
    secrets = Secrets(Secret(KEY_ID), Secret(KEY_SECRET), (Secret(WEBHOOK_SECRET),))
    return Settings(**{**base.__dict__, "secrets": secrets})


def write_config(path: Path, tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """A TOML config for subprocess runs: outputs in tmp_path, plus `sections` overrides."""
    values: dict[str, dict[str, Any]] = {
        "warehouse": {"path": str(tmp_path / "warehouse.duckdb")},
        "receiver": {"landing_dir": str(tmp_path / "landing")},
        "reports": {"dir": str(tmp_path / "reports")},
        "contacts": {"paths": [str(SAMPLE)]},
        "dispatch": {"rate_per_second": 400.0},
        "simulator": {"webhook_rate": 2000, "callback_delay_ms": 50},
    }
    for name, overrides in sections.items():
        values.setdefault(name, {}).update(overrides)
    lines = []
    for name, table in values.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def service_env(**extra: str) -> dict[str, str]:
    return {
        "SINCH_KEY_ID": KEY_ID,
        "SINCH_KEY_SECRET": KEY_SECRET,
        "CAPAUDIT_WEBHOOK_SECRET": WEBHOOK_SECRET,
        **extra,
    }


@contextlib.contextmanager
def simulator(config: Path | None = None, *args: str, **env: str) -> Iterator[str]:
    """A real simulator process on a free loopback port; yields its base URL."""
    options = ["--config", str(config)] if config else []
    with child_service(["simulate", *options, *args], "simulator", env=service_env(**env)) as url:
        yield url


@contextlib.contextmanager
def receiver(config: Path | None = None, *args: str, **env: str) -> Iterator[str]:
    """A real receiver process on a free loopback port; yields its base URL."""
    options = ["--config", str(config)] if config else []
    with child_service(["serve", *options, *args], "receiver", env=service_env(**env)) as url:
        yield url


def signed(
    body: bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    headers = signature_headers(
        secret, body, nonce or os.urandom(8).hex(), timestamp or int(time.time())
    )
    return {"content-type": "application/json", **headers}


def sim_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{url}/_sim/stats", timeout=5).json()
    return stats


def wait_for(condition: Any, timeout: float = 20.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@contextlib.asynccontextmanager
async def asgi_client(app: Any) -> Any:
    """An httpx client calling `app` in-process, with the app's lifespan running."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as client,
    ):
        yield client


# The tables a build writes (sql/marts), each keyed by run.
MART_TABLES = (
    "capability",
    "reachability",
    "capability_changes",
    "reasons",
    "routing",
    "reachability_by_country",
    "estimates",
)


def add_targets(conn: Any, select: str, params: Any = None) -> None:
    """Insert targets given as analysts see them: `select` yields run_id, contact_key, channel,
    identity, source, row_number and optionally country and reuse_run_id. The contact key is
    stored as the contact id (the state keeps the key as coalesce(contact_id, identity)), the
    source as a file of `target_files`."""
    conn.execute(f"CREATE OR REPLACE TEMP TABLE given_targets AS {select}", params)
    given = {str(row[0]) for row in conn.execute("DESCRIBE given_targets").fetchall()}
    optional = [f"g.{name}" if name in given else "NULL" for name in ("country", "reuse_run_id")]
    conn.execute("""
        INSERT INTO target_files
        SELECT run_id, coalesce((SELECT max(file_index) + 1 FROM target_files f
                                 WHERE f.run_id = g.run_id), 0)
                + row_number() OVER (PARTITION BY run_id ORDER BY source) - 1, source
        FROM (SELECT DISTINCT run_id, source FROM given_targets
              ANTI JOIN target_files USING (run_id, source)) g
    """)
    conn.execute(f"""
        INSERT INTO targets (run_id, contact_id, channel, identity, file_index, row_number,
            country, reuse_run_id)
        SELECT g.run_id, g.contact_key, g.channel, g.identity, f.file_index, g.row_number,
            {", ".join(optional)}
        FROM given_targets g JOIN target_files f USING (run_id, source)
    """)
    conn.execute("DROP TABLE given_targets")


# `make test` runs the suite in two phases: every test not marked `timed` on several workers
# (pytest-xdist), then the `timed` ones on their own, one at a time (their rates, durations
# and deadlines assume a machine not busy with other tests). See README, "Tests".
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--timed",
        choices=("include", "exclude", "only"),
        default="include",
        help="tests marked timed: run them with the others (default), leave them out, or run "
        "only them; combines with -m and -k",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("timed")
    if mode == "include":
        return
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        timed = item.get_closest_marker("timed") is not None
        (kept if timed == (mode == "only") else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
