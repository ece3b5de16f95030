"""What this machine gives a process: its memory, for DuckDB's memory limit (warehouse.py).

memory_limit_for_machine(1 << 30)   # "1024MiB" on a 24 GB machine, "512MiB" on a 2 GB one
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)
SHARE = 4  # DuckDB gets a quarter: the rest is Python, Arrow buffers, the page cache, others


def usable_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower;
    None when neither can be read."""
    sizes = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit():
            sizes.append(int(text))
    return min(sizes) if sizes else None


def memory_limit_for_machine(ceiling: int) -> str:
    """A DuckDB `memory_limit`: a SHARE of the usable memory, at most `ceiling` bytes."""
    usable = usable_memory()
    limit = ceiling if usable is None else min(ceiling, usable // SHARE)
    return f"{max(limit, 1 << 26) // 2**20}MiB"
