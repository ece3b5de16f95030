"""`capaudit check` (issue 25): placeholders, short secrets and high rates are found by name;
the probes run at once within one budget, name what they tried, and only read at Sinch."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from pipeline.check_config import config_check, placeholders, rate_check, secrets_check
from pipeline.check_runner import Check, Probe, within_budget
from pipeline.checks import CheckReport, run_checks
from pipeline.settings import Secret, Secrets, Settings, SimulatorSettings, load_settings
from pipeline.simulator.app import create_app
from tests.conftest import KEY_ID, KEY_SECRET, REPO, WEBHOOK_SECRET, asgi_client

EXAMPLE = REPO / "configs" / "sinch.example.toml"
WEBHOOKS = "http://sim.capaudit.test/v1/projects/p-1/apps/01APP/webhooks"


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port


@contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections into its backlog and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def example(**env: str) -> Settings:
    secrets = {"SINCH_KEY_ID": KEY_ID, "SINCH_KEY_SECRET": KEY_SECRET}
    return load_settings(EXAMPLE, env={"CAPAUDIT_WEBHOOK_SECRET": WEBHOOK_SECRET, **secrets, **env})


def test_the_example_s_placeholders_are_errors_naming_each_key() -> None:
    settings = example()
    assert placeholders(settings) == {
        "[sinch] project_id": "YOUR-PROJECT-ID",
        "[sinch] app_id": "YOUR-APP-ID",
        "[receiver] public_url": "https://capaudit.example.com/callbacks/sinch",
    }
    found = config_check(settings)
    assert not found.ok
    assert found.detail == (
        f"{EXAMPLE}: placeholders left in [sinch] project_id = 'YOUR-PROJECT-ID', [sinch] "
        "app_id = 'YOUR-APP-ID', [receiver] public_url = "
        "'https://capaudit.example.com/callbacks/sinch'"
    )
    filled = example(
        CAPAUDIT_SINCH__PROJECT_ID="p-1",
        CAPAUDIT_SINCH__APP_ID="01APP",
        CAPAUDIT_RECEIVER__PUBLIC_URL="https://cb.capaudit.test/callbacks/sinch",
    )
    assert config_check(filled) == Check("config", True, f"{EXAMPLE} is valid")


@pytest.mark.parametrize(
    ("secrets", "detail"),
    [
        (("x" * 31,), "CAPAUDIT_WEBHOOK_SECRET is shorter than 32 characters"),
        (("y" * 40, "tiny-secret"), "CAPAUDIT_WEBHOOK_SECRET's secret 2 of 2 is shorter than 32"),
    ],
)
def test_a_short_webhook_secret_is_an_error_that_never_shows_it(
    settings: Settings, secrets: tuple[str, ...], detail: str
) -> None:
    held = Secrets(Secret(KEY_ID), Secret(KEY_SECRET), tuple(Secret(s) for s in secrets))
    found = secrets_check(Settings(**{**settings.__dict__, "secrets": held}))
    assert not found.ok
    assert detail in found.detail
    assert not any(secret in found.detail for secret in secrets)


def test_a_long_enough_webhook_secret_passes(settings: Settings) -> None:
    held = Secrets(Secret(KEY_ID), Secret(KEY_SECRET), (Secret("z" * 32),))
    assert secrets_check(Settings(**{**settings.__dict__, "secrets": held})).ok


def test_a_rate_above_sinch_s_800_per_project_warns(settings: Settings) -> None:
    high = rate_check(settings.replace("dispatch", rate_per_second=5000.0))
    assert (high.ok, high.warning) == (True, True)
    assert high.detail == (
        "[dispatch] rate_per_second = 5000 is above Sinch's 800 queries/s per project: "
        "capaudit sends at most 800/s"
    )
    at_limit = rate_check(settings.replace("dispatch", rate_per_second=800.0))
    assert (at_limit.ok, at_limit.warning) == (True, False)


@pytest.mark.timed
def test_probes_run_at_once_and_those_past_the_budget_say_what_they_tried() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "answered"

    async def never() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    probes = [Probe(f"slow{n}", "GET", f"http://h/{n}", slow) for n in range(3)]
    probes.append(Probe("never", "POST", "http://h/never", never))
    started = time.monotonic()
    found = asyncio.run(within_budget(probes, 0.6))
    took = time.monotonic() - started
    assert [check.detail for check in found[:3]] == ["answered"] * 3  # 0.3 s each, together
    assert found[3] == Check(
        "never", False, "POST http://h/never: timed out, no answer within the check's 0.6 s budget"
    )
    assert 0.55 < took < 1.2


def checked(
    settings: Settings, transport: httpx.AsyncBaseTransport, budget: float = 5
) -> CheckReport:
    return asyncio.run(run_checks(settings, budget_seconds=budget, transport=transport))


def details(report: CheckReport) -> dict[str, tuple[bool, str]]:
    return {check.name: (check.ok, check.detail) for check in report.checks}


@pytest.mark.timed
def test_the_example_config_without_network_fails_fast_naming_each_problem() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    with closed_port() as port:
        token_url = f"http://127.0.0.1:{port}/oauth2/token"
        settings = example(
            CAPAUDIT_SINCH__TOKEN_URL=token_url,
            CAPAUDIT_DISPATCH__RATE_PER_SECOND="5000",
        )
        held = Secrets(Secret(KEY_ID), Secret(KEY_SECRET), (Secret("short"),))
        settings = Settings(**{**settings.__dict__, "secrets": held})
        started = time.monotonic()
        report = checked(settings, httpx.MockTransport(unreachable), budget=10)
    assert time.monotonic() - started < 2  # was 13 min: every request retried for minutes
    found = details(report)
    assert not report.ok
    assert "[sinch] project_id = 'YOUR-PROJECT-ID'" in found["config"][1]
    assert "shorter than 32 characters" in found["secrets"][1]
    assert next(c for c in report.checks if c.name == "rate").warning
    assert found["token"] == (
        False,
        f"token endpoint {token_url}: ConnectError('[Errno -2] Name or service not known')",
    )
    webhooks = "https://eu.conversation.api.sinch.com/v1/projects/YOUR-PROJECT-ID/apps/YOUR-APP-ID"
    assert found["api"] == (
        False,
        f"GET {webhooks}/webhooks: not tried: placeholder in [sinch] project_id, [sinch] app_id "
        "(see the config line)",
    )
    assert found["receiver"] == (
        False,
        "GET https://capaudit.example.com/callbacks/sinch: not tried: placeholder in [receiver] "
        "public_url (see the config line)",
    )


def filled_in(base_url: str, public_url: str, **env: str) -> Settings:
    return example(
        CAPAUDIT_SINCH__BASE_URL=base_url,
        CAPAUDIT_SINCH__TOKEN_URL=f"{base_url}/oauth2/token",
        CAPAUDIT_SINCH__PROJECT_ID="p-1",
        CAPAUDIT_SINCH__APP_ID="01APP",
        CAPAUDIT_RECEIVER__PUBLIC_URL=public_url,
        **env,
    )


def test_each_failure_names_the_url_it_tried() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    with closed_port() as port:
        receiver = f"http://127.0.0.1:{port}/callbacks/sinch"
        report = checked(
            filled_in("http://api.capaudit.test", receiver), httpx.MockTransport(refused)
        )
    found = details(report)
    webhooks = "http://api.capaudit.test/v1/projects/p-1/apps/01APP/webhooks"
    assert found["api"] == (
        False,
        f"GET {webhooks}: ConnectError [Errno -2] Name or service not known",
    )
    assert found["receiver"][1].startswith(f"GET {receiver}: ConnectError")


def test_without_a_token_the_api_checks_are_not_tried_and_say_why() -> None:
    def refusing(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/oauth2/token"  # nothing else is sent without a token
        return httpx.Response(401, json={"error": "invalid_client"})

    with closed_port() as port:
        settings = filled_in("http://api.capaudit.test", f"http://127.0.0.1:{port}/callbacks/sinch")
        found = details(checked(settings, httpx.MockTransport(refusing)))
    assert "refused the access key" in found["token"][1]
    for name in ("api", "app", "webhook"):
        assert found[name][0] is False
        assert found[name][1].endswith("not tried: no token (see the token line)")


@pytest.mark.timed
def test_a_token_that_never_comes_times_out_the_checks_waiting_for_it() -> None:
    with silent_port() as port, closed_port() as receiver_port:
        base = f"http://127.0.0.1:{port}"
        settings = filled_in(base, f"http://127.0.0.1:{receiver_port}/callbacks/sinch")
        started = time.monotonic()
        found = details(asyncio.run(run_checks(settings, budget_seconds=0.5)))
    assert time.monotonic() - started < 1.5
    assert found["token"][1] == (
        f"POST {base}/oauth2/token: timed out, no answer within the check's 0.5 s budget"
    )
    assert found["app"][1] == (
        f"GET {base}/v1/projects/p-1/apps/01APP: timed out at the check's 0.5 s budget, not "
        "sent: still waiting for a token (see the token line)"
    )


def test_against_the_api_check_only_reads() -> None:
    app = create_app(SimulatorSettings(latency_ms=0))
    sent: list[str] = []
    asgi = httpx.ASGITransport(app)

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            sent.append(f"{request.method} {request.url.path}")
            return await asgi.handle_async_request(request)

    async def check(live: Settings) -> CheckReport:
        async with asgi_client(app):
            return await run_checks(live, budget_seconds=5, transport=Recording())

    with closed_port() as port:
        live = filled_in("http://sim.capaudit.test", f"http://127.0.0.1:{port}/callbacks/sinch")
        report = asyncio.run(check(live))
    found = details(report)
    assert found["app"][0]
    assert f"GET {WEBHOOKS}: no CAPABILITY webhook points at" in found["webhook"][1]
    assert sorted(sent) == [
        "GET /v1/projects/p-1/apps/01APP",
        "GET /v1/projects/p-1/apps/01APP/webhooks",  # once, shared by api and webhook
        "POST /oauth2/token",
    ]
    assert app.state.simulator.state.webhooks == {}
    note = report.lines()[-1]
    assert note.startswith("note")
    assert "check changes nothing at Sinch: it reads a token, the app and its webhooks" in note


def test_nothing_printed_holds_a_secret() -> None:
    with closed_port() as port:
        live = filled_in("http://127.0.0.1:1", f"http://127.0.0.1:{port}/callbacks/sinch")
        text = "\n".join(asyncio.run(run_checks(live, budget_seconds=2)).lines())
    assert KEY_SECRET not in text
    assert WEBHOOK_SECRET not in text
