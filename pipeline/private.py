"""Private by default (rule 11): files holding contact data are 0640, their directories 0750.

The modes are set explicitly on what capaudit creates, because the umask is the operator's and
under the usual 022 every file DuckDB or Python creates would be readable by every user of the
machine. Group read is kept on purpose: an analysts' group is given access by owning the data
directories with that group and setting their setgid bit (docs/operations.md), and a setgid
bit a new directory inherits from such a parent is kept when its mode is set.

What exists already is never changed (a directory the operator made, `/tmp`, a shared mount):
`capaudit check` warns when something there is open to other users (`permissions.py`).

    make_private_dirs(Path("data/lake/capability"))   # created 0750 where missing
    conn = connect(Path("data/state.duckdb"))          # a new database file is made 0640
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by `connect`: the receiver and the simulator never open DuckDB
    import duckdb

FILE_MODE = 0o640
DIR_MODE = 0o750
# The process-wide fallback for files capaudit cannot chmod when they appear (DuckDB's WAL,
# spill files, the run lock): nothing it creates is open to other users.
UMASK = 0o027


def restrict_umask() -> None:
    """Make every file and directory this process (and its children) creates private."""
    os.umask(UMASK)


def private_file(path: Path) -> None:
    os.chmod(path, FILE_MODE)


def private_dir(path: Path) -> None:
    # chmod clears setgid unless it is given: keep the group-sharing bit inherited from above.
    inherited = path.stat().st_mode & stat.S_ISGID
    os.chmod(path, DIR_MODE | inherited)


def make_private_dirs(path: Path) -> list[Path]:
    """Create `path` and its missing parents, each 0750; the ones created, outermost first.
    Directories that exist keep their mode."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # another process made it first: its mode is its own
            continue
        private_dir(folder)
        created.append(folder)
    return created


def open_appending(path: Path) -> IO[str]:
    """`path.open("a+")`, a missing file created 0640 (or stricter, under a stricter umask)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "a+", encoding="utf-8")


def connect(path: Path, config: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """`duckdb.connect`, with a database file it creates made 0640 (and its folder 0750)."""
    import duckdb

    make_private_dirs(path.parent)
    new = not path.exists()
    conn = duckdb.connect(str(path), config=config or {})
    if new and path.exists():
        private_file(path)
    return conn
