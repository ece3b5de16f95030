"""Targets Sinch has no contact for (status NOT_A_CONTACT), said once in every output.

Sinch's Capability Query page: queries "can only be executed for contacts that already exist in a
project/app". capaudit creates the missing ones only when told to (`[contacts] create_missing`);
otherwise the report counts them, per channel and in all, and names the one setting to change.
"""

from __future__ import annotations

from html import escape
from typing import Any

import duckdb

from pipeline.db import rows_as_dicts

FIX = (
    "set [contacts] create_missing = true to create them (Contacts API) and ask again; a row "
    "with only a contact id Sinch does not know cannot be created"
)


def not_a_contact_summary(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """`summary.json`'s `not_a_contact`: targets and contacts, and the fix; per channel the
    counts are `channels[].not_a_contact`, which add up to `targets` here."""
    (row,) = rows_as_dicts(
        conn.execute(
            "SELECT count(*) AS targets, count(DISTINCT contact_key) AS contacts FROM capability "
            "WHERE run_id = $run_id AND status = 'NOT_A_CONTACT'",
            {"run_id": run_id},
        )
    )
    return {**row, "fix": FIX if row["targets"] else None}


def not_a_contact_line(channels: list[dict[str, Any]]) -> str:
    """One line for the terminal, '' when every target is a Sinch contact."""
    targets = sum(int(c.get("not_a_contact") or 0) for c in channels)
    if not targets:
        return ""
    return (
        f"Not a Sinch contact: {targets:,} targets (Sinch answers capability queries only for "
        f"contacts that exist in the project); {FIX}"
    )


def not_a_contact_html(summary: dict[str, Any]) -> str:
    """The report's paragraph about them ('' when there are none)."""
    missing = summary.get("not_a_contact") or {}
    if not missing.get("targets"):
        return ""
    per_channel = ", ".join(
        f"{escape(c['channel'])} {int(c.get('not_a_contact') or 0):,}"
        for c in summary["channels"]
        if c.get("not_a_contact")
    )
    return (
        f"<p class=incomplete><strong>Not a Sinch contact:</strong> {missing['targets']:,} "
        f"targets of {missing['contacts']:,} contacts ({per_channel}). Sinch answers capability "
        "queries only for contacts that exist in the project; "
        f"<code>{escape(FIX)}</code>.</p>"
    )
