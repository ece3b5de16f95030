"""The completeness gate, the receiver health watch and the supervised child service."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections import Counter
from pathlib import Path

import duckdb
import httpx
import pytest

from pipeline.completeness import Completeness, completeness
from pipeline.health import HealthWatch
from pipeline.services import child_service
from pipeline.settings import CollectSettings, ReceiverSettings
from pipeline.warehouse import ensure_schema
from tests.conftest import service_env, wait_for


def test_the_gate_counts_no_response_among_queried_targets(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        ensure_schema(conn)
        rows = [("NO_RESPONSE", False)] * 3 + [("CAPABILITY_FULL", False)] * 97
        rows += [("CAPABILITY_FULL", True)] * 50  # reused answers were not asked
        conn.executemany(
            "INSERT INTO capability (run_id, contact_key, channel, status, reused) "
            "VALUES ('r', 'k', 'SMS', ?, ?)",
            rows,
        )
        gate = completeness(conn, "r", 0.02)
        assert completeness(conn, "r", 0.03).complete  # the bound itself is still complete
    assert (gate.queried, gate.no_response, gate.complete) == (100, 3, False)
    assert gate.message() == (
        "run r is incomplete: 3 of 100 queried targets (3.0%) have no answer, more than "
        "[collect] max_no_response_share 2.0% allows; continue with capaudit run --resume "
        "--run-id r"
    )
    assert gate.as_dict()["resume"] == "capaudit run --resume --run-id r"


def test_a_run_that_queried_nothing_is_complete() -> None:
    assert Completeness("r", 0, 0, 0.0).complete


def test_the_health_url_is_healthz_where_the_receiver_is_called() -> None:
    collect = CollectSettings()
    # An external receiver: [receiver] host and port (this host's defaults) are not where it is.
    external = ReceiverSettings(public_url="http://127.0.0.1:41234/callbacks/sinch")
    assert collect.health_url(external) == "http://127.0.0.1:41234/healthz"
    proxied = ReceiverSettings(host="0.0.0.0", public_url="https://cb.test/in/callbacks/sinch")
    assert collect.health_url(proxied) == "https://cb.test/healthz"
    explicit = CollectSettings(receiver_health_url="http://10.0.0.5:8751/healthz")
    assert explicit.health_url(external) == "http://10.0.0.5:8751/healthz"


def watched(answers: list[int | str], seconds: float = 0.3) -> HealthWatch:
    """A watch polling every 10 ms for `seconds`; each poll takes the next answer (a status,
    or an error text: no answer), the last one repeating."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, str):
            raise httpx.ConnectError(answer, request=request)
        return httpx.Response(answer)

    async def watch() -> HealthWatch:
        transport = httpx.MockTransport(handler)
        async with HealthWatch("http://r/healthz", interval=0.01, transport=transport) as w:
            await asyncio.sleep(seconds)
        return w

    return asyncio.run(watch())


@pytest.mark.parametrize("status", [403, 404, 405])
def test_a_proxy_hiding_healthz_is_not_checked_never_down(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.health"):
        watch = watched([200, status])
    messages = [r.getMessage() for r in caplog.records]
    assert (watch.outages, watch.down_seconds, watch.checked) == (0, 0.0, False)
    assert messages == [
        f"the receiver's health is not checked: http://r/healthz answers HTTP {status}, as a "
        "proxy that keeps /healthz private does; set [collect] receiver_health_url to a "
        "/healthz that reaches the receiver itself"
    ]


def test_a_proxy_that_stops_answering_is_down(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.health"):
        watch = watched([404, 404, "refused", "refused", 404])
    assert watch.outages == 1
    assert "is down (ConnectError: refused)" in caplog.text
    assert caplog.text.count("not checked") == 2  # before and after the outage


@pytest.mark.timed  # polls every 0.01 s for 0.3 s
def test_the_health_watch_logs_down_and_back(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([200, 200, 503, 503, 200, 200] + [200] * 100)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(next(answers))

    async def watch() -> HealthWatch:
        transport = httpx.MockTransport(handler)
        async with HealthWatch("http://r/healthz", interval=0.01, transport=transport) as w:
            await asyncio.sleep(0.3)
        return w

    with caplog.at_level(logging.WARNING, logger="pipeline.health"):
        watched = asyncio.run(watch())
    messages = [r.getMessage() for r in caplog.records]
    assert watched.outages == 1
    assert messages[0] == (
        "the receiver at http://r/healthz is down (HTTP 503): callbacks wait at Sinch, "
        "which retries them"
    )
    assert messages[1].startswith("the receiver at http://r/healthz is back after")
    assert len(messages) == 2


def test_a_supervised_child_is_restarted_on_the_same_socket(tmp_path: Path) -> None:
    restarts: Counter[str] = Counter()
    args = ["serve", "--landing-dir", str(tmp_path / "landing")]
    with child_service(args, "receiver", env=service_env(), restarts=restarts) as url:
        first = httpx.get(f"{url}/healthz", timeout=5).json()["pid"]
        os.kill(first, signal.SIGKILL)
        # The socket stays open in the parent: this request waits for the new process.
        second = httpx.get(f"{url}/healthz", timeout=30).json()["pid"]
        wait_for(lambda: restarts["receiver"] == 1, timeout=5)
        # A graceful stop (SIGTERM: exit code 0) was asked for by someone: not fought.
        os.kill(second, signal.SIGTERM)
        wait_for(lambda: not Path(f"/proc/{second}").exists(), timeout=20)
        time.sleep(0.5)
    assert second != first
    assert restarts == {"receiver": 1}


def test_a_bound_outside_0_to_1_is_refused_naming_the_key() -> None:
    from pipeline.errors import ConfigError
    from pipeline.settings import load_settings

    with pytest.raises(ConfigError, match=r"\[collect\] max_no_response_share must be between"):
        load_settings(None, env={"CAPAUDIT_COLLECT__MAX_NO_RESPONSE_SHARE": "1.5"})
