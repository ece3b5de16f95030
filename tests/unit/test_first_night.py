"""A first real night (docs/operations.md): the example config's window and TTL fit a big list,
copies of it stay out of git, and the nightly wrapper resumes an unfinished run first."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest

from pipeline.settings import load_settings
from pipeline.window import WindowSpec, budget, parse_duration
from tests.conftest import REPO

NIGHTLY = REPO / "scripts" / "capaudit-nightly"
BIG_LIST_TARGETS = 1_000_000 * 3  # the arithmetic in sinch.example.toml and operations.md


def test_the_example_window_and_ttl_fit_a_million_contacts_at_25_per_second() -> None:
    settings = load_settings(REPO / "configs" / "sinch.example.toml", env={})
    seconds = parse_duration(settings.plan.window)
    spec = WindowSpec(seconds, ends_at=1_000.0 + seconds, reserve_seconds=60.0)
    rate = settings.collect.callback_rate_per_second
    night = budget(spec, rate, now=1_000.0)
    nights = math.ceil(BIG_LIST_TARGETS / night)
    assert (rate, night, nights) == (25.0, 538_500, 6)  # the figures the comments quote
    assert settings.freshness.ttl_days >= 2 * nights  # answers outlive a whole refresh


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=False, capture_output=True, text=True
    )


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout"
)
def test_only_the_shipped_configs_are_tracked_and_copies_are_ignored() -> None:
    tracked = git("ls-files", "configs").stdout.split()
    assert sorted(tracked) == ["configs/default.toml", "configs/sinch.example.toml"]
    assert git("check-ignore", "-q", "configs/sinch.toml").returncode == 0
    assert git("check-ignore", "-q", "configs/production.toml").returncode == 0
    for shipped in tracked:
        assert git("check-ignore", "-q", shipped).returncode == 1


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    """A working directory whose .venv/bin/capaudit logs its arguments and exits with the next
    code of `codes` (one a line)."""
    binary = tmp_path / ".venv" / "bin" / "capaudit"
    binary.parent.mkdir(parents=True)
    binary.write_text(
        '#!/bin/sh\necho "$*" >> calls\ncode=$(head -n 1 codes); sed -i 1d codes\nexit "$code"\n'
    )
    binary.chmod(0o755)
    return tmp_path


def nightly(cwd: Path, codes: list[int]) -> tuple[int, list[str]]:
    (cwd / "codes").write_text("".join(f"{c}\n" for c in codes))
    env = {**os.environ, "STATE_DIRECTORY": str(cwd)}
    done = subprocess.run(
        ["sh", str(NIGHTLY), "configs/sinch.toml", "--window", "6h"],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    calls = (cwd / "calls").read_text().splitlines() if (cwd / "calls").exists() else []
    return done.returncode, calls


def test_an_unfinished_night_is_remembered_and_resumed_before_the_next(fake: Path) -> None:
    tonight = f"nightly-{date.today():%Y-%m-%d}"
    code, calls = nightly(fake, [3])
    assert code == 3
    assert calls == [f"run --config configs/sinch.toml --run-id {tonight} --window 6h"]
    assert (fake / "unfinished-run").read_text().strip() == tonight

    (fake / "unfinished-run").write_text("nightly-2026-12-06\n")
    (fake / "calls").unlink()
    code, calls = nightly(fake, [0, 0])
    assert code == 0
    assert calls == [
        "run --config configs/sinch.toml --resume --run-id nightly-2026-12-06",
        f"run --config configs/sinch.toml --run-id {tonight} --window 6h",
    ]
    assert not (fake / "unfinished-run").exists()


@pytest.mark.parametrize("code", [3, 1, 2])
def test_a_resume_that_does_not_finish_keeps_tonight_from_starting(fake: Path, code: int) -> None:
    (fake / "unfinished-run").write_text("nightly-2026-12-06\n")
    exit_code, calls = nightly(fake, [code])
    assert exit_code == code
    assert calls == ["run --config configs/sinch.toml --resume --run-id nightly-2026-12-06"]
    assert (fake / "unfinished-run").read_text().strip() == "nightly-2026-12-06"


@pytest.mark.parametrize("code", [0, 1, 2])
def test_a_night_that_ends_otherwise_leaves_nothing_to_resume(fake: Path, code: int) -> None:
    exit_code, _ = nightly(fake, [code])
    assert exit_code == code
    assert not (fake / "unfinished-run").exists()


def test_started_again_the_same_day_it_resumes_and_stops_there(fake: Path) -> None:
    tonight = f"nightly-{date.today():%Y-%m-%d}"
    (fake / "unfinished-run").write_text(f"{tonight}\n")
    code, calls = nightly(fake, [0])
    assert code == 0
    assert calls == [f"run --config configs/sinch.toml --resume --run-id {tonight}"]
    assert not (fake / "unfinished-run").exists()
