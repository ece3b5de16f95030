"""Per-run report files in `<reports.dir>/<run_id>/` (DESIGN §5):

index.html                 self-contained (inline CSS and SVG), opens offline
summary.json               run, completeness, per-channel counts, rejects, changes, outputs
reachability.csv           one row per channel
channels/<CHANNEL>.csv     one row per contact asked on that channel
channels/<CHANNEL>.parquet the same, typed
routing.csv                one row per contact: the channels to send on, best first
routing.parquet            the same, typed (`channels` a list)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from itertools import groupby
from pathlib import Path
from typing import Any

import duckdb

from pipeline.completeness import DEFAULT_MAX_NO_RESPONSE_SHARE, completeness
from pipeline.db import rows_as_dicts
from pipeline.files import write_text_durably
from pipeline.private import make_private_dirs
from pipeline.report import charts
from pipeline.report.estimates import estimate_sections
from pipeline.report.exports import exports_started, write_reachability
from pipeline.report.missing_contacts import not_a_contact_html, not_a_contact_summary
from pipeline.report.rolling import coverage_sections, rolling_summary
from pipeline.run_kinds import FULL, SAMPLE
from pipeline.settings import Settings
from pipeline.sinch.models import ALL_STATUSES

# reachability has one count column per status, named after it
STATUS_COLUMNS = tuple(status.lower() for status in ALL_STATUSES)
# What each kind of share in `channels` is a share of (summary.json `share_bases`).
SHARE_BASES = {
    "*_share": "share of all targets of the channel (NO_RESPONSE, REQUEST_FAILED and "
    "NOT_A_CONTACT included)",
    "*_share_of_answered": "share of the answered targets (one of Sinch's four statuses)",
}
TOP_COUNTRIES = 8  # the countries chart shows this many, the rest as one row


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    index: Path
    summary: Path


def write_report(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    reports_dir: Path,
    *,
    trend_runs: int = 14,
    pseudonym_key: bytes | None = None,
    max_no_response_share: float = DEFAULT_MAX_NO_RESPONSE_SHARE,
    settings: Settings | None = None,
    on_file: Callable[[Path, int], None] | None = None,
) -> ReportFiles:
    """Write the run's report; with `pseudonym_key`, into `<run_id>-pseudonymised/` with every
    contact key, contact id and identity replaced by its HMAC-SHA256 under that key.
    `on_file(path, files)` is called as each file is written, with how many there are in all."""
    written = on_file or (lambda path, files: None)
    out = reports_dir / (run_id if pseudonym_key is None else f"{run_id}-pseudonymised")
    make_private_dirs(out)
    params = {"run_id": run_id}
    write_reachability(conn, run_id, out)
    channels = [
        str(r[0])
        for r in conn.execute(
            "SELECT DISTINCT channel FROM capability WHERE run_id = $run_id ORDER BY 1", params
        ).fetchall()
    ]
    files = 5 + 2 * len(channels)  # reachability.csv, CSV + Parquet per channel, routing...
    written(out / "reachability.csv", files)
    with exports_started(conn, run_id, out, channels, pseudonym_key) as exported:
        # the summary's queries run while the exports are written
        summary = report_summary(conn, run_id, trend_runs, max_no_response_share)
        summary.update(rolling_summary(conn, run_id, settings or Settings()))
        for path in exported:
            written(path, files)
    summary["outputs"] = {"directory": str(out), "channels": channels, "routing": "routing.csv"}
    summary_path = out / "summary.json"
    write_text_durably(summary_path, json.dumps(summary, indent=2, default=str) + "\n")
    written(summary_path, files)
    index = out / "index.html"
    write_text_durably(index, render_html(summary))
    written(index, files)
    return ReportFiles(out, index, summary_path)


def _rows(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    return rows_as_dicts(conn.execute(sql, params))


def report_summary(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    trend_runs: int,
    max_no_response_share: float = DEFAULT_MAX_NO_RESPONSE_SHARE,
) -> dict[str, Any]:
    """Everything the report shows, as plain data (also written as summary.json)."""
    params = {"run_id": run_id}
    run = _rows(conn, "SELECT * FROM runs WHERE run_id = $run_id", params)
    gate = completeness(conn, run_id, max_no_response_share)
    return {
        "run_id": run_id,
        "complete": gate.complete,
        "completeness": gate.as_dict(),
        "generated_at": datetime.now(UTC).isoformat(),
        "run": run[0] if run else {},
        "share_bases": SHARE_BASES,
        "channels": _rows(
            conn,
            "SELECT * EXCLUDE (run_id) FROM reachability WHERE run_id = $run_id ORDER BY channel",
            params,
        ),
        "rejects": _rows(
            conn,
            "SELECT reason, count(*) AS rows FROM rejects "
            "WHERE run_id = $run_id GROUP BY reason ORDER BY rows DESC",
            params,
        ),
        "reasons": _rows(
            conn,
            """
            SELECT channel, reason_code, count(*) AS targets FROM capability
            WHERE run_id = $run_id AND reason_code IS NOT NULL
            GROUP BY ALL ORDER BY targets DESC LIMIT 15""",
            params,
        ),
        "changes": _rows(
            conn,
            """
            SELECT channel, change, count(*) AS contacts FROM capability_changes
            WHERE run_id = $run_id GROUP BY ALL ORDER BY channel, change""",
            params,
        ),
        "trend": _rows(
            conn,
            """
            SELECT r.run_id, r.started_at, x.channel, x.reachable_share, x.targets
            FROM reachability x JOIN runs r USING (run_id)
            WHERE r.run_id IN (SELECT r.run_id FROM runs r WHERE r.started_at <=
                (SELECT started_at FROM runs WHERE run_id = $run_id) AND SAME_KIND
                ORDER BY r.started_at DESC LIMIT $limit)
            ORDER BY r.started_at, x.channel""".replace("SAME_KIND", SAME_KIND),
            params | {"limit": trend_runs},
        ),
        "totals": run_totals(conn, run_id),
        "not_a_contact": not_a_contact_summary(conn, run_id),
        **routing_summary(conn, run_id),
        "countries": country_summary(conn, run_id),
    }


def run_totals(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """`totals`: the run's targets, contacts and reused answers. Added up from the marts the
    build wrote (`reachability` per channel, `routing` per first channel), which count them
    already: counting 3.3M distinct contacts again at 10M targets took 1.5 s. Counted in
    `capability` for a run without them (built before `routing` existed, or not built)."""
    params = {"run_id": run_id}
    totals = _rows(
        conn,
        """
        SELECT (SELECT sum(targets) FROM reachability WHERE run_id = $run_id)::BIGINT AS targets,
            (SELECT sum(contacts) FROM routing WHERE run_id = $run_id)::BIGINT AS contacts,
            (SELECT sum(reused) FROM reachability WHERE run_id = $run_id)::BIGINT AS reused""",
        params,
    )[0]
    if None not in totals.values():
        return totals
    return _rows(
        conn,
        """
        SELECT count(*) AS targets, count(DISTINCT contact_key) AS contacts,
            count(*) FILTER (WHERE reused) AS reused
        FROM capability WHERE run_id = $run_id""",
        params,
    )[0]


def routing_summary(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    """`routing`: contacts per first channel (NULL: unreachable), with the count in the
    previous run that has one (`routing_compared_with`) and the change since."""
    params = {"run_id": run_id}
    previous = conn.execute(
        """
        SELECT r.run_id FROM runs r
        WHERE r.started_at < (SELECT started_at FROM runs WHERE run_id = $run_id)
          AND r.run_id IN (SELECT run_id FROM routing) AND SAME_KIND
        ORDER BY r.started_at DESC LIMIT 1""".replace("SAME_KIND", SAME_KIND),
        params,
    ).fetchone()
    previous_id = str(previous[0]) if previous else None
    rows = _rows(
        conn,
        """
        WITH now AS (SELECT first_channel, contacts, share FROM routing WHERE run_id = $run_id),
        before AS (SELECT first_channel, contacts FROM routing WHERE run_id = $previous),
        joined AS (
        SELECT coalesce(n.first_channel, b.first_channel) AS first_channel,
            coalesce(n.contacts, 0) AS contacts, round(coalesce(n.share, 0), 4) AS share,
            CASE WHEN $previous IS NOT NULL THEN coalesce(b.contacts, 0) END
                AS previous_contacts,
            CASE WHEN $previous IS NOT NULL AND NOT $sample
                THEN coalesce(n.contacts, 0) - coalesce(b.contacts, 0) END AS change,
            CASE WHEN $previous IS NOT NULL THEN round(coalesce(n.share, 0)
                - coalesce(b.contacts, 0) / nullif((SELECT sum(contacts) FROM before), 0), 4)
                END AS share_change
        FROM now n FULL JOIN before b ON b.first_channel IS NOT DISTINCT FROM n.first_channel)
        SELECT * FROM joined ORDER BY first_channel IS NULL, contacts DESC, first_channel""",
        params | {"previous": previous_id, "sample": _kind(conn, run_id) == SAMPLE},
    )
    return {"routing": rows, "routing_compared_with": previous_id}


# A run is compared only with runs of its own kind (pipeline/run_kinds.py): a sample with
# samples, and then by shares, never by counts (its counts are the sample's, not the list's).
SAME_KIND = (
    "coalesce(r.kind, 'full') = (SELECT coalesce(kind, 'full') FROM runs WHERE run_id = $run_id)"
)


def _kind(conn: duckdb.DuckDBPyConnection, run_id: str) -> str:
    row = conn.execute("SELECT kind FROM runs WHERE run_id = ?", [run_id]).fetchone()
    return str(row[0]) if row and row[0] else FULL


def country_summary(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """`countries`: per country and channel, targets and reachable ones (all countries, so
    per channel they add up to the channel's targets)."""
    return _rows(
        conn,
        """
        SELECT country, channel, targets, reachable, round(reachable_share, 4) AS reachable_share
        FROM reachability_by_country WHERE run_id = $run_id
        ORDER BY max(targets) OVER (PARTITION BY country) DESC, country, channel""",
        {"run_id": run_id},
    )


# -- HTML ---------------------------------------------------------------------------------------

STYLE = (
    """
body{font-family:sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem}td,th{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #eee;white-space:nowrap}th:first-child,td:first-child{text-align:left}
.muted{color:#777}.scroll{overflow-x:auto}
.incomplete{background:#fde2e1;border:2px solid #c23b22;padding:.75rem 1rem;font-size:1.05rem}
@media (max-width:600px){body{margin:1rem auto;padding:0 .5rem}h1{font-size:1.2rem}}
"""
    + charts.CSS
)


def render_html(summary: dict[str, Any]) -> str:
    channels = summary["channels"]
    sections = [  # a sampled run's estimates first: they are what it ran for
        *estimate_sections(summary),
        ("Routing: the first channel to send on", _routing_section(summary)),
        ("Reachable share per channel (of all targets)", _reachable_chart(channels)),
        ("Status breakdown per channel", _status_chart(channels)),
        ("Numbers per channel", _channel_table(channels)),
        ("Reachable share by country", _countries_section(summary)),
        ("Trend over recent runs", _trend_chart(summary["trend"])),
        ("Top reasons", _reasons_chart(summary["reasons"])),
        ("Changes since the previous answer", _changes_chart(summary["changes"])),
        ("Rejected input rows", _rejects_table(summary["rejects"])),
        *coverage_sections(summary),
    ]
    body = "".join(f"<section><h2>{escape(t)}</h2>{html}</section>" for t, html in sections)
    totals = summary["totals"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>capaudit report {escape(summary['run_id'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Capability audit {escape(summary['run_id'])}{_kind_label(summary)}</h1>"
        f"{_incomplete_banner(summary.get('completeness'))}{not_a_contact_html(summary)}"
        f"<p class=muted>{totals['contacts']:,} contacts, {totals['targets']:,} targets "
        f"({totals['reused']:,} answers reused from earlier runs). "
        f"Generated {escape(summary['generated_at'][:19])} UTC.</p>{body}</body></html>\n"
    )


def _kind_label(summary: dict[str, Any]) -> str:
    """' (sample run)' for a run that is not a full one: its numbers cover part of the list."""
    kind = (summary.get("run") or {}).get("kind") or FULL
    return "" if kind == FULL else f" ({escape(str(kind))} run)"


def _incomplete_banner(gate: dict[str, Any] | None) -> str:
    """An incomplete run says so above everything else: its shares of all targets are low by
    the missing answers."""
    if gate is None or gate["status"] != "incomplete":
        return ""
    return (
        f"<p class=incomplete><strong>INCOMPLETE RUN:</strong> {gate['no_response']:,} of "
        f"{gate['queried']:,} queried targets ({gate['no_response_share']:.1%}) have no answer "
        f"(the bound is {gate['max_no_response_share']:.1%}). Shares of all targets count them "
        "as unreachable; read the shares of answered targets, or continue the run with "
        f"<code>{escape(gate['resume'])}</code>.</p>"
    )


def _reachable_chart(channels: list[dict[str, Any]]) -> str:
    rows = [
        (
            c["channel"],
            float(c["reachable_share"] or 0),
            f"{float(c['reachable_share'] or 0):.1%} of {c['targets']:,}",
        )
        for c in channels
    ]
    return charts.horizontal_bars(rows, maximum=1.0, label="reachable share per channel")


def _status_chart(channels: list[dict[str, Any]]) -> str:
    values = [[int(c[s]) for s in STATUS_COLUMNS] for c in channels]
    return charts.stacked_bars(
        [c["channel"] for c in channels], ALL_STATUSES, values, label="status breakdown per channel"
    )


def _trend_chart(trend: list[dict[str, Any]]) -> str:
    runs = list(dict.fromkeys(t["run_id"] for t in trend))
    names = sorted({t["channel"] for t in trend})
    share = {(t["run_id"], t["channel"]): float(t["reachable_share"] or 0) for t in trend}
    series = [(name, [share.get((run, name)) for run in runs]) for name in names]
    started = {t["run_id"]: t["started_at"] for t in trend}
    return charts.line_chart(
        run_dates([started[run] for run in runs]), series, label="reachable share trend"
    )


def run_dates(started: list[Any]) -> list[str]:
    """Axis labels for runs: 'Nov 25', or with the time of day ('Nov 25 19:30', then with
    seconds) when that is what tells runs apart."""
    times = [datetime.fromisoformat(str(value)) for value in started]
    for pattern in ("%b %d", "%b %d %H:%M"):
        labels = [t.strftime(pattern) for t in times]
        if len(set(labels)) == len(labels):
            return labels
    return [t.strftime("%b %d %H:%M:%S") for t in times]


def _routing_section(summary: dict[str, Any]) -> str:
    routing = summary.get("routing") or []
    if not routing:
        return _not_built(summary)
    compared = summary.get("routing_compared_with")
    rows = []
    for r in routing:
        name = f"{r['first_channel']} first" if r["first_channel"] else "unreachable"
        shown = f"{r['contacts']:,} · {float(r['share']):.1%}"
        if r.get("change") is not None:
            shown += f" ({r['change']:+,})"
        elif r.get("share_change") is not None:  # a sample: shares compare, counts do not
            shown += f" ({float(r['share_change']) * 100:+.1f} pp)"
        rows.append((name, float(r["contacts"]), shown))
    chart = charts.horizontal_bars(
        rows, maximum=max(r[1] for r in rows), label="contacts per first channel", colour="#1b7f3b"
    )
    note = (
        f"Change in brackets: since run {escape(compared)}, the previous run of the same kind."
        if compared
        else "The first run: nothing earlier to compare with."
    )
    return (
        "<p class=muted>Each contact's best reachable channel (fully reachable before "
        "partially, then the configured preference); per contact in routing.csv. "
        f"{note}</p>{chart}"
    )


def _countries_section(summary: dict[str, Any]) -> str:
    countries = summary.get("countries") or []
    if not countries:
        return _not_built(summary)
    channels = sorted({c["channel"] for c in countries})
    per_country = [
        (country, list(rows))
        for country, rows in groupby(countries, key=lambda c: str(c["country"]))
    ]  # ordered by contacts, most first (country_summary)
    top, rest = per_country[:TOP_COUNTRIES], per_country[TOP_COUNTRIES:]
    if len(rest) == 1:
        top, rest = per_country, []
    labels = [country for country, _ in top]
    grouped = [rows for _, rows in top]
    if rest:
        labels.append(f"{len(rest)} others")
        grouped.append([row for _, rows in rest for row in rows])
    cells = [_country_cells(rows, channels) for rows in grouped]
    chart = charts.share_matrix(labels, channels, cells, label="reachable share by country")
    return (
        "<p class=muted>Share of each country's contacts reachable on each channel, of how "
        "many were asked on it (countries from the phone number; <i>unknown</i>: asked by "
        f"contact id). The {TOP_COUNTRIES} countries with the most contacts, the rest "
        f"together.</p>{chart}"
    )


def _not_built(summary: dict[str, Any]) -> str:
    if not summary["totals"]["contacts"]:
        return "<p class=muted>No contacts in this run.</p>"
    return (  # a run built before these tables existed
        "<p class=muted>Not built for this run yet: <code>capaudit build --run-id "
        f"{escape(summary['run_id'])}</code> builds it.</p>"
    )


def _country_cells(
    rows: list[dict[str, Any]], channels: list[str]
) -> list[tuple[float, int] | None]:
    targets: dict[str, int] = {}
    reachable: dict[str, int] = {}
    for row in rows:
        targets[row["channel"]] = targets.get(row["channel"], 0) + int(row["targets"])
        reachable[row["channel"]] = reachable.get(row["channel"], 0) + int(row["reachable"])
    return [(reachable[c] / targets[c], targets[c]) if targets.get(c) else None for c in channels]


def _reasons_chart(reasons: list[dict[str, Any]]) -> str:
    rows = [
        (f"{r['channel']} {r['reason_code']}", float(r["targets"]), f"{r['targets']:,}")
        for r in reasons
    ]
    top = max((r[1] for r in rows), default=0.0)
    return charts.horizontal_bars(rows, maximum=top, label="top reasons", colour="#c23b22")


def _changes_chart(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return "<p class=muted>No status changed since each contact's previous answer.</p>"
    rows = [
        (f"{c['channel']} {c['change']}", float(c["contacts"]), f"{c['contacts']:,}")
        for c in changes
    ]
    top = max(r[1] for r in rows)
    return charts.horizontal_bars(
        rows, maximum=top, label="changes since previous answer", colour="#f0b429"
    )


def _channel_table(channels: list[dict[str, Any]]) -> str:
    shares = ["reachable of all targets", "answered", "reachable of answered"]
    headers = ["channel", "targets", *STATUS_COLUMNS, *shares, "p50 s", "p95 s"]
    rows = [
        [
            c["channel"],
            c["targets"],
            *[c[s] for s in STATUS_COLUMNS],
            f"{float(c['reachable_share'] or 0):.1%}",
            c["answered"],
            _percent(c["reachable_share_of_answered"]),
            c["latency_p50_seconds"],
            c["latency_p95_seconds"],
        ]
        for c in channels
    ]
    return charts.table(headers, rows)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _rejects_table(rejects: list[dict[str, Any]]) -> str:
    if not rejects:
        return "<p class=muted>No input row was rejected.</p>"
    return charts.table(["reason", "rows"], [[r["reason"], r["rows"]] for r in rejects])
