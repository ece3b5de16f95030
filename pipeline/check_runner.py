"""Running `capaudit check`'s probes at once, within one time budget.

Run one after another, each probe of an unreachable network waited out its own name resolution
and retries (13 min with configs/sinch.example.toml and no network, issue 25). Here every probe
starts at once; a probe still running when the budget ends is cancelled and fails saying what
it was trying. A probe's failure names what it tried (a URL, a key), whatever the error says.

    checks = await within_budget([Probe("receiver", "GET", "https://cb/callbacks/sinch", run)], 10)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from pipeline.errors import CapauditError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passed, but something deserves a look


class NotTried(CapauditError):
    """A probe that could not start: what it needs failed, or its settings are placeholders."""


@dataclass(frozen=True)
class Probe:
    """One network check: the request it makes (`method` `url`) is named when it fails."""

    name: str
    method: str
    url: str
    run: Callable[[], Awaitable[str | Check]]
    # What the probe still waits for before its own request ("" when nothing), said when
    # the budget ends: a probe waiting for a token never sent its request.
    waiting: Callable[[], str] = lambda: ""

    @property
    def trying(self) -> str:
        return f"{self.method} {self.url}"


async def within_budget(probes: Sequence[Probe], budget_seconds: float) -> list[Check]:
    """Every probe's finding, in order; those still running after `budget_seconds` time out."""
    tasks = [asyncio.create_task(attempt(probe)) for probe in probes]
    if not tasks:
        return []
    _, pending = await asyncio.wait(tasks, timeout=budget_seconds)
    # Said before cancelling: cancelled, what a probe waited for would look finished.
    late = {
        task: timed_out(probe, budget_seconds)
        for probe, task in zip(probes, tasks, strict=True)
        if task in pending
    }
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return [late[task] if task in late else task.result() for task in tasks]


async def attempt(probe: Probe) -> Check:
    """The probe's finding (a detail, or a whole Check when it warns); its error fails."""
    try:
        found = await probe.run()
    except NotTried as exc:
        return Check(probe.name, False, f"{probe.trying}: not tried: {exc}")
    except (CapauditError, httpx.HTTPError, OSError) as exc:
        return Check(probe.name, False, failure(probe, exc))
    return found if isinstance(found, Check) else Check(probe.name, True, found)


def failure(probe: Probe, exc: BaseException) -> str:
    """The error, preceded by what was tried unless the error already names it."""
    text = str(exc) or type(exc).__name__
    return text if probe.url in text else f"{probe.trying}: {text}"


def timed_out(probe: Probe, budget_seconds: float) -> Check:
    budget = f"the check's {budget_seconds:g} s budget"
    waiting = probe.waiting()
    if waiting:
        why = f"timed out at {budget}, not sent: still waiting for {waiting}"
    else:
        why = f"timed out, no answer within {budget}"
    return Check(probe.name, False, f"{probe.trying}: {why}")
