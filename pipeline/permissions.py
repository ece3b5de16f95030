"""`capaudit check`'s `privacy` line: is any data file or directory open to other users?

capaudit creates its files 0640 and its directories 0750 (`private.py`) but never changes what
exists: files written by an earlier version, or copied with another umask, stay as they are.
This finds them, without following symbolic links: the working state and the catalog (with
their WAL and lock files) and everything under the lake, the landing and the reports
directories. What it finds is a warning, with the command that fixes it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from pipeline.check_runner import Check
from pipeline.settings import Settings

OTHERS = stat.S_IRWXO  # any access for users outside the owner and the group
SHOWN = 3  # examples named in the warning


def data_permissions(settings: Settings) -> Check:
    """Warn (the check still passes) when a data file or directory is open to other users."""
    places = data_places(settings)
    exposed = [(path, mode) for path, mode in _modes(places) if mode & OTHERS]
    if not exposed:
        return Check("privacy", True, "no data file or directory is open to other users")
    examples = ", ".join(f"{path} ({stat.filemode(mode)})" for path, mode in exposed[:SHOWN])
    more = f" and {len(exposed) - SHOWN:,} more" if len(exposed) > SHOWN else ""
    fix = " ".join(str(p) for p in places if p.exists())
    what = "data file or directory is" if len(exposed) == 1 else "data files or directories are"
    detail = (
        f"{len(exposed):,} {what} open to other users: {examples}{more}; "
        f"fix with: chmod -R o-rwx {fix} (docs/operations.md, Private files)"
    )
    return Check("privacy", True, detail, warning=True)


def data_places(settings: Settings) -> list[Path]:
    """Where capaudit keeps data: the files beside the state and the catalog, and the roots of
    the lake, the landing and the reports."""
    files = [
        base.with_name(base.name + suffix)
        for base in (settings.warehouse.state, settings.warehouse.catalog)
        for suffix in ("", ".wal", ".lock")
    ]
    roots = [
        settings.warehouse.lake,
        Path(settings.receiver.landing_dir),
        Path(settings.reports.dir),
    ]
    return files + roots


def _modes(places: list[Path]) -> Iterator[tuple[Path, int]]:
    """Each existing place and, for directories, everything under it, with its mode."""
    for place in places:
        yield from _tree(place) if place.is_dir() else _one(place)


def _one(path: Path) -> Iterator[tuple[Path, int]]:
    try:
        found = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(found.st_mode):
        yield path, found.st_mode


def _tree(root: Path) -> Iterator[tuple[Path, int]]:
    yield from _one(root)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            yield from _one(Path(folder) / name)
