"""`capaudit check`: is this installation ready for tonight's run? No capability query is sent,
and nothing is created or changed at Sinch (the webhook is compared, not registered).

Each check gives one line; the command exits 0 only when all pass (a warning passes). The
network checks run at once within one time budget (`capaudit check --timeout`, 10 s).

    config      the configuration file parses and validates, with no placeholder left
                (`YOUR-PROJECT-ID`, a host under example.com: pipeline/check_config.py)
    secrets     SINCH_KEY_ID, SINCH_KEY_SECRET and CAPAUDIT_WEBHOOK_SECRET are set, the
                webhook secret at least WEBHOOK_SECRET_MIN_CHARS characters long
    rate        [dispatch] rate_per_second; warns above Sinch's 800 queries/s per project
    token       an OAuth2 token can be obtained with the access key (skipped for basic auth)
    api         the API answers with these credentials (lists the app's webhooks)
    app         the app's processing mode and webhook rate limit; warns when [collect]
                callback_rate_per_second expects more callbacks per second than the app gets
    webhook     the app has a CAPABILITY webhook pointing at [receiver] public_url
    receiver    the receiver answers at its public URL
    privacy     no data file or directory is open to other users (a warning: permissions.py)
    storage     each s3:// location configured (landing_url, lake_url) answers a listing with
                the credentials of the AWS chain (pipeline/check_storage.py)

    report = asyncio.run(run_checks(settings, budget_seconds=10.0, embedded=False))
    print("\\n".join(report.lines()))
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from pipeline.check_config import config_check, placeholders, rate_check, secrets_check
from pipeline.check_probes import SinchReads, receiver_probe, sinch_probes
from pipeline.check_runner import Check, within_budget
from pipeline.check_storage import storage_probes
from pipeline.permissions import data_permissions
from pipeline.settings import Settings
from pipeline.sinch.client import SinchClient

__all__ = ["Check", "CheckReport", "run_checks"]
PRODUCTION_NOTE = (
    "check changes nothing at Sinch: it reads a token, the app and its webhooks, and sends no query"
)
EMBEDDED_NOTE = (
    "embedded: the webhook was registered on the simulator started for this check, as a run "
    "does; against Sinch, check changes nothing"
)


@dataclass(frozen=True)
class CheckReport:
    checks: list[Check]
    seconds: float  # the network checks' time, within budget_seconds
    budget_seconds: float
    embedded: bool

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def lines(self) -> list[str]:
        """One line a check, then a note on what the check did and how long it took."""
        lines = [f"{_status(check)}  {check.name:<9} {check.detail}" for check in self.checks]
        note = EMBEDDED_NOTE if self.embedded else PRODUCTION_NOTE
        took = f"network checks took {self.seconds:.1f} s of the {self.budget_seconds:g} s budget"
        return [*lines, f"note  {'':<9} {note}; {took}"]


def _status(check: Check) -> str:
    return "FAIL" if not check.ok else "warn" if check.warning else "ok  "


async def run_checks(
    settings: Settings,
    *,
    budget_seconds: float,
    embedded: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CheckReport:
    """Every check of `settings` (a live session's: embedded URLs already filled in);
    `transport` carries the requests to Sinch (tests)."""
    checks = [
        config_check(settings),
        data_permissions(settings),
        secrets_check(settings),
        rate_check(settings),
    ]
    left = placeholders(settings)
    probes = [receiver_probe(settings, left, budget_seconds), *storage_probes(settings)]
    started = time.monotonic()
    if settings.secrets.key_id is None or settings.secrets.key_secret is None:
        checks += await within_budget(probes, budget_seconds)  # the secrets line says why
    else:
        client = SinchClient(settings.sinch, settings.secrets, transport=transport, retry=False)
        async with client:
            probes = sinch_probes(SinchReads(client), settings, left) + probes
            checks += await within_budget(probes, budget_seconds)
    return CheckReport(checks, time.monotonic() - started, budget_seconds, embedded)
