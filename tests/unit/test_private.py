"""Private by default (rule 11): what capaudit creates is 0640 (files) and 0750 (directories)
whatever the umask, what exists keeps its mode, and `capaudit check` warns about data open to
other users."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import private
from pipeline.checks import run_checks
from pipeline.files import make_dirs, write_text_durably
from pipeline.lake.publish import publish_runs
from pipeline.report.exports import write_exports, write_reachability
from pipeline.settings import Settings
from pipeline.warehouse import open_warehouse
from tests.unit.test_lake import add_run
from tests.unit.test_report_exports import given


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask (022), under which files are world-readable unless made private."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(root: Path) -> dict[str, int]:
    """Every file and directory under `root` (itself included), by relative path."""
    found = {".": mode(root)}
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(folder) / name
            found[path.relative_to(root).as_posix()] = mode(path)
    return found


def assert_private(root: Path) -> None:
    found = modes_under(root)
    wrong = {
        name: oct(m)
        for name, m in found.items()
        if m != (private.DIR_MODE if (root / name).is_dir() else private.FILE_MODE)
    }
    assert not wrong, wrong
    assert len(found) > 1


@pytest.mark.parametrize("given_umask", [0o000, 0o022, 0o077])
def test_created_files_and_directories_are_0640_and_0750_whatever_the_umask(
    tmp_path: Path, given_umask: int
) -> None:
    previous = os.umask(given_umask)
    try:
        make_dirs(tmp_path / "data" / "lake" / "capability")
        write_text_durably(tmp_path / "data" / "lake" / "_published.json", "{}")
        private.connect(tmp_path / "data" / "state.duckdb").close()
    finally:
        os.umask(previous)
    assert_private(tmp_path / "data")


def test_what_exists_keeps_its_mode(tmp_path: Path, umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    private.connect(shared / "old.duckdb").close()
    (shared / "old.duckdb").chmod(0o644)  # as an earlier version left it
    make_dirs(shared / "lake")
    private.connect(shared / "old.duckdb").close()
    assert (mode(shared), mode(shared / "old.duckdb"), mode(shared / "lake")) == (
        0o755,
        0o644,
        0o750,
    )


def test_a_setgid_shared_directory_passes_its_group_bit_on(tmp_path: Path, umask: None) -> None:
    shared = tmp_path / "analysts"
    shared.mkdir()
    shared.chmod(0o2750)  # docs/operations.md: group-owned, setgid
    make_dirs(shared / "lake" / "capability")
    assert mode(shared / "lake") == mode(shared / "lake" / "capability") == 0o2750


def test_the_state_exports_and_lake_are_private_under_umask_022(
    tmp_path: Path, umask: None
) -> None:
    data = tmp_path / "data"
    settings = Settings().replace("warehouse", path=str(data / "warehouse.duckdb"))
    with open_warehouse(settings.warehouse.state) as conn:
        given(conn)
        write_exports(conn, "x", data / "reports" / "x", ["RCS", "SMS"], None)
        write_reachability(conn, "x", data / "reports" / "x")
        add_run(conn, "n1", 1, "CAPABILITY_FULL")
        publish_runs(conn, settings, ["n1"])
        conn.execute("CHECKPOINT")
    assert {"state.duckdb", "state.duckdb.lock", "warehouse.duckdb"} <= set(modes_under(data))
    assert any(name.endswith(".parquet") for name in modes_under(data / "lake"))
    assert "reports/x/channels/SMS.csv" in modes_under(data)
    assert_private(data)


def checks(settings: Settings) -> dict[str, tuple[bool, str, bool]]:
    """`capaudit check`'s findings by name (no credentials: only the receiver, on loopback)."""
    report = asyncio.run(run_checks(settings, budget_seconds=5.0))
    return {c.name: (c.ok, c.detail, c.warning) for c in report.checks}


def test_check_warns_about_data_open_to_other_users(tmp_path: Path, umask: None) -> None:
    data = tmp_path / "data"
    settings = Settings().replace("warehouse", path=str(data / "warehouse.duckdb"))
    settings = settings.replace("reports", dir=str(data / "reports"))
    settings = settings.replace("receiver", landing_dir=str(data / "landing"))
    make_dirs(data / "reports" / "r1")
    (data / "state.duckdb").write_text("")  # as an earlier version left them: 0644, 0755
    (data / "reports" / "r1" / "routing.csv").write_text("")
    (data / "reports" / "old").mkdir()
    ok, detail, warning = checks(settings)["privacy"]
    assert ok
    assert warning
    assert detail.startswith("3 data files or directories are open to other users")
    for path, shown in (
        (data / "state.duckdb", "-rw-r--r--"),
        (data / "reports" / "r1" / "routing.csv", "-rw-r--r--"),
        (data / "reports" / "old", "drwxr-xr-x"),
    ):
        assert f"{path} ({shown})" in detail
    assert "chmod -R o-rwx" in detail

    for path in (data / "state.duckdb", data / "reports" / "r1" / "routing.csv"):
        path.chmod(0o640)
    (data / "reports" / "old").chmod(0o2750)
    assert checks(settings)["privacy"] == (
        True,
        "no data file or directory is open to other users",
        False,
    )
