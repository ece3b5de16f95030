"""Durable file operations: a file is complete on disk before its name says it exists.

Landing segments and publication both rely on them. Publication writes under a staging name,
fsyncs the file, renames it into place and fsyncs the directory, so after a crash a name either
points at a whole file or is not there. What they create is private (`pipeline.private`): files
0640, directories 0750.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.private import FILE_MODE, make_private_dirs


def fsync_file(path: Path) -> None:
    _fsync(path, os.O_RDONLY)


def fsync_dir(path: Path) -> None:
    """Make a create or rename inside the directory `path` durable."""
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """Create `path` and its missing parents (0750), each made durable in its own parent."""
    for folder in make_private_dirs(path):
        fsync_dir(folder.parent)


def replace_durably(staged: Path, final: Path) -> None:
    """Move a complete, fsynced file over `final` atomically, and make the rename durable."""
    make_dirs(final.parent)
    os.replace(staged, final)
    fsync_dir(final.parent)


def write_text_durably(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """`path` holds `text` whole, or what it held before (its folder made if missing), with
    `mode` whatever the umask."""
    make_dirs(path.parent)
    staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staged.write_text(text, encoding="utf-8")
    os.chmod(staged, mode)
    fsync_file(staged)
    replace_durably(staged, path)
