"""What kind of run a run is (`runs.kind`), so that analysts and reports compare like with like.

    full     every contact of the list, every target that is not fresh
    limited  `--limit N`: the first N contacts only
    sample   `--sample N`: a stratified random sample, read through its estimates
    window   `--window` or `[plan] window`: the stalest targets that fit a night

A sample's counts say nothing about the list's (only its estimates do), a limited run's cover a
part of it, and a window run reuses most answers: "the newest run" means the newest of a kind
(`capaudit_catalog.newest_<kind>_run_id`), and trends and changes look only at runs of the
run's own kind.
"""

from __future__ import annotations

FULL, LIMITED, SAMPLE, WINDOW = "full", "limited", "sample", "window"
KINDS = (FULL, LIMITED, SAMPLE, WINDOW)


def run_kind(*, sample: int | None, window: str | None, limit: int | None) -> str:
    """The kind of a run given its options (a sample first: it may also be limited)."""
    if sample is not None:
        return SAMPLE
    if window:
        return WINDOW
    if limit is not None:
        return LIMITED
    return FULL
