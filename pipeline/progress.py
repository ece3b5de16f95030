"""Progress of long steps: a live bar on a terminal, a structured log line now and then otherwise.

with StepProgress("submit", total=20_000, console=True) as progress:
    progress.update(done, rate="812/s", accepted=..., failed=...)
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

from pipeline.logs import log_fields

log = logging.getLogger("capaudit.progress")
LOG_INTERVAL_SECONDS = 10.0


class StepProgress:
    def __init__(self, step: str, total: int | None, *, console: bool) -> None:
        self.step = step
        self.total = total
        self.console = console
        self._last_log = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StepProgress:
        if self.console:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.step, total=self.total, info="")
        return self

    def update(self, completed: int, **fields: object) -> None:
        if self._bar is not None:
            info = "  ".join(f"{k} {v}" for k, v in fields.items())
            self._bar.update(self._task, completed=completed, total=self.total, info=info)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = now
            log_fields(
                log,
                f"{self.step} progress",
                step=self.step,
                done=completed,
                total=self.total,
                **fields,
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
