"""docs/configuration.md: generated from the settings, complete, and linked; figures quoted in
the docs agree with README's benchmark table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pipeline import settings_doc
from pipeline.settings import SECTIONS
from pipeline.settings_meanings import SECRETS
from tests.conftest import REPO

DOC = REPO / "docs" / "configuration.md"


def test_the_committed_reference_is_what_make_docs_writes() -> None:
    assert DOC.is_file(), "docs/configuration.md is missing: run make docs"
    assert DOC.read_text(encoding="utf-8") == settings_doc.render(), (
        "docs/configuration.md differs from what pipeline/settings_doc.py writes: run make docs"
    )


def test_every_key_and_variable_has_a_meaning_and_no_meaning_is_left_over() -> None:
    assert settings_doc.undocumented() == [], (
        "say what these mean in pipeline/settings_meanings.py, then run make docs"
    )
    assert settings_doc.stale() == [], "these are gone from the code: drop their meanings"


def test_the_reference_lists_every_key_override_secret_and_variable() -> None:
    text = DOC.read_text(encoding="utf-8")
    for section, cls in SECTIONS.items():
        assert f"## `[{section}]`" in text
        for field in dataclasses.fields(cls):
            assert f"`{settings_doc.env_name(section, field.name)}`" in text
    assert "`[freshness.channels]` (a table)" in text
    for secret in SECRETS:
        assert f"`{secret.name}`" in text
        assert f"`{secret.name}_FILE`" in text
    for name in ("CAPAUDIT_DUCKDB_MEMORY_LIMIT", "CAPAUDIT_PUBLISH_PAUSE_SECONDS"):
        assert f"`{name}`" in text


def test_env_reads_finds_literals_constants_subscripts_and_shell_defaults(tmp_path: Path) -> None:
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / "pipeline" / "m.py").write_text(
        "import os\n"
        'PAUSE = "CAPAUDIT_X_PAUSE"\n'
        'a = os.environ.get("CAPAUDIT_X_LIMIT", "1GB")\n'
        "b = os.environ.get(PAUSE) or 0\n"
        'c = os.getenv("HOME_X")\n'
        'd = os.environ["CAPAUDIT_X_PID"]\n'
        'e = os.environ.get("CAPAUDIT_SINCH__REGION")\n'
    )
    (tmp_path / "scripts" / "job").write_text("dir=${STATE_X:-/var/lib/x}\nc=${1:?usage}\n")
    assert settings_doc.env_reads(tmp_path) == {
        "CAPAUDIT_X_LIMIT": "1GB",
        "CAPAUDIT_X_PAUSE": None,
        "HOME_X": None,
        "CAPAUDIT_X_PID": None,
        "STATE_X": "/var/lib/x",
    }
    assert settings_doc.env_reads()["CAPAUDIT_DUCKDB_MEMORY_LIMIT"] is None  # set from the machine


def test_a_key_without_a_meaning_still_appears_marked_undocumented() -> None:
    @dataclasses.dataclass(frozen=True)
    class Future:
        knob: str = ""

    table = settings_doc._section("future", Future)
    assert "`CAPAUDIT_FUTURE__KNOB`" in table
    assert "not documented yet" in table


def test_readme_and_design_link_the_reference() -> None:
    assert "(docs/configuration.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    assert "(configuration.md)" in (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    assert "(configuration.md)" in (REPO / "docs" / "operations.md").read_text(encoding="utf-8")


def readme_figures(prefix: str) -> list[str]:
    """The numbers of the README benchmark rows whose figure names start with `prefix`."""
    numbers: list[str] = []
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().startswith(f"`{prefix}"):
            numbers += re.findall(r"\d[\d,]*(?:\.\d+)?", cells[2])
    return numbers


def test_receiver_figures_in_docs_are_the_readme_benchmark_table() -> None:
    figures = readme_figures("receiver_")
    assert figures, "README's benchmark table has no receiver_ rows"
    receiver = (REPO / "docs" / "receiver.md").read_text(encoding="utf-8")
    missing = [n for n in figures if n not in receiver]
    assert missing == [], f"docs/receiver.md does not quote README's {missing}"
