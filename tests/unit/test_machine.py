"""DuckDB's memory limit is set from the machine: a quarter of it, at most the ceiling."""

from __future__ import annotations

import pytest

from pipeline import machine


@pytest.mark.parametrize(
    ("usable", "expected"),
    [(24 << 30, "1024MiB"), (2 << 30, "512MiB"), (None, "1024MiB"), (100 << 20, "64MiB")],
)
def test_a_quarter_of_the_machine_at_most_the_ceiling(
    monkeypatch: pytest.MonkeyPatch, usable: int | None, expected: str
) -> None:
    monkeypatch.setattr(machine, "usable_memory", lambda: usable)
    assert machine.memory_limit_for_machine(1 << 30) == expected


def test_the_machine_has_some_memory() -> None:
    usable = machine.usable_memory()
    assert usable is None or usable > 1 << 26
