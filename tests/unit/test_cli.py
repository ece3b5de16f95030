"""Every command has --help with an example; errors map to the documented exit codes."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import main


def commands(group: click.Group = main, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names += commands(command, f"{prefix}{name} ")
    return names


@pytest.mark.parametrize("command", commands())
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "--config" in result.output or isinstance(main.commands.get(command), click.Group)


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[dispatch]\nrate = 5\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'rate' in [dispatch]" in result.output


def test_missing_contact_file_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[warehouse]\npath = "{tmp_path}/w.duckdb"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--contacts", "nope.csv"])
    assert result.exit_code == 2
    assert "nope.csv: file not found" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "2x"], "--window '2x': not a duration"),
        (["--window", "6h", "--sample", "10"], "--sample and --window: choose one"),
    ],
)
def test_bad_window_or_sample_options_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["run", "--dry-run", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_window_in_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[plan]\nwindow = "tonight"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2
    assert "[plan] window 'tonight': not a duration" in result.output
