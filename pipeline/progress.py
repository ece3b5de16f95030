"""Progress of long steps: a live bar on a terminal, a structured log line now and then otherwise.

with StepProgress("submit", total=20_000, console=True) as progress:
    progress.update(done, rate="812/s", accepted=..., failed=...)

The bar is drawn on stderr, never on stdout: stdout carries the command's result (JSON when it
is piped). `counted=False` shows a percentage instead of "done/total" (for bytes).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from pipeline.logs import log_fields

log = logging.getLogger("capaudit.progress")
LOG_INTERVAL_SECONDS = 10.0


class StepProgress:
    def __init__(
        self, step: str, total: int | None, *, console: bool, counted: bool = True
    ) -> None:
        self.step = step
        self.total = total
        self.console = console
        self.counted = counted
        self.done = 0
        self._last_log = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> StepProgress:
        if self.console:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn() if self.counted else TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                # Plain text: a field may hold brackets ("[collect] ..."), not markup.
                TextColumn("{task.fields[info]}", markup=False),
                transient=False,
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.step, total=self.total, info="")
        return self

    def update(self, completed: int, **fields: object) -> None:
        self.done = completed
        if self._bar is not None:
            info = "  ".join(f"{k} {v}" for k, v in fields.items())
            self._bar.update(self._task, completed=completed, total=self.total, info=info)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = now
            # Bytes as a share: a long digit run would be masked as a phone number anyway.
            if not self.counted:
                share = f"{completed / self.total:.0%}" if self.total else None
                log_fields(log, f"{self.step} progress", step=self.step, done=share, **fields)
                return
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


@contextlib.contextmanager
def ticking(step: str, total: int, *, console: bool) -> Iterator[Callable[..., None]]:
    """A StepProgress for work done in `total` parts: call `tick(**fields)` after each."""
    with StepProgress(step, total, console=console) as progress:
        done = 0

        def tick(**fields: object) -> None:
            nonlocal done
            done += 1
            progress.update(done, **fields)

        yield tick
