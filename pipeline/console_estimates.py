"""What a sampled run is for, as the terminal shows it first: per channel, the estimated
reachable share of the whole list, its 95% interval, and the reachable contacts that share
extrapolates to (the share of the list's size). The sample's own counts come after it.

    console.print(estimates_table(result.estimates))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table


def whole_list(estimates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows for the whole list (stratum null), one per channel that could be estimated."""
    return [r for r in estimates if r["stratum"] is None and r["share"] is not None]


def estimates_table(estimates: Sequence[dict[str, Any]]) -> Table | None:
    """The whole-list estimates as a table, or None for a run that was not sampled."""
    rows = whole_list(estimates)
    if not rows:
        return None
    sampled = max(int(r["sample"]) for r in rows)
    level = f"{float(rows[0]['level']):.0%}"
    table = Table(title=f"Whole list, estimated from a sample of {sampled:,} ({level} intervals)")
    headers = ("channel", "reachable", f"{level} interval", "reachable contacts", "interval")
    for name in (*headers, "of the list"):
        table.add_column(name, justify="left" if name == "channel" else "right")
    for r in rows:
        table.add_row(
            r["channel"],
            f"{float(r['share']):.1%}",
            f"{float(r['low']):.1%} - {float(r['high']):.1%}",
            f"{int(r['reachable_estimate']):,}",
            f"{int(r['reachable_low']):,} - {int(r['reachable_high']):,}",
            f"{int(r['population']):,}",
        )
    return table


def estimates_note(estimates: Sequence[dict[str, Any]]) -> str:
    """The line under the table: what the shares are of, and what no answer does to them."""
    no_response = sum(int(r["no_response"]) for r in whole_list(estimates))
    note = (
        "reachable: estimated share of the channel's contacts in the whole list; reachable "
        "contacts: that share of the list"
    )
    if no_response:
        note += f"; {no_response:,} sampled targets without an answer count as not reachable"
    return note
