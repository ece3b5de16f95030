"""What capaudit reads from the app (sinch/apps.py) and how `capaudit check` reports it."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.check_probes import SinchReads, _app
from pipeline.check_runner import Probe, attempt
from pipeline.settings import Settings
from pipeline.sinch.apps import AppProfile, app_profile, read_app_profile
from pipeline.sinch.client import SinchClient
from tests.unit.test_simulator import with_simulator


@pytest.mark.parametrize(
    ("app", "profile"),
    [
        ({}, AppProfile("CONVERSATION", None)),  # proto3 JSON leaves the zero value out
        ({"processing_mode": "DISPATCH", "rate_limits": {}}, AppProfile("DISPATCH", None)),
        ({"rate_limits": {"webhooks": 25}}, AppProfile("CONVERSATION", 25.0)),
        ({"rate_limits": {"webhooks": "40"}}, AppProfile("CONVERSATION", 40.0)),  # int64 as text
        ({"rate_limits": {"webhooks": 0}}, AppProfile("CONVERSATION", None)),
        ({"rate_limits": {"webhooks": True}}, AppProfile("CONVERSATION", None)),
        ({"rate_limits": {"webhooks": "fast"}}, AppProfile("CONVERSATION", None)),
        ({"rate_limits": "25", "processing_mode": 3}, AppProfile("CONVERSATION", None)),
    ],
)
def test_the_profile_tolerates_what_the_answer_leaves_out(
    app: dict[str, Any], profile: AppProfile
) -> None:
    assert app_profile(app) == profile


def test_the_profile_of_the_simulator_s_app() -> None:
    async def scenario(client: SinchClient, sim: Any) -> None:
        assert await read_app_profile(client) == AppProfile("DISPATCH", 12.5)

    with_simulator(scenario, processing_mode="DISPATCH", webhook_rate=12.5)


def test_check_reports_the_app_and_warns_when_callbacks_are_expected_faster(
    settings: Settings,
) -> None:
    found = []

    async def scenario(client: SinchClient, sim: Any) -> None:
        for expected in (20.0, 30.0):
            collect = settings.replace("collect", callback_rate_per_second=expected)
            probe = Probe("app", "GET", "/apps/a", lambda s=collect: _app(SinchReads(client), s))
            found.append(await attempt(probe))

    with_simulator(scenario, webhook_rate=25.0)
    fine, warned = found
    assert (fine.ok, fine.warning) == (True, False)
    assert "processing mode CONVERSATION, webhook rate limit 25/s" in fine.detail
    assert (warned.ok, warned.warning) == (True, True)
    assert "callback_rate_per_second = 30 is above it" in warned.detail
