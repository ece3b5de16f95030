"""Per-run report files in `<reports.dir>/<run_id>/` (DESIGN §5):

index.html                 self-contained (inline CSS and SVG), opens offline
summary.json               run, completeness, per-channel counts, rejects, changes, outputs
reachability.csv           one row per channel
channels/<CHANNEL>.csv     one row per contact asked on that channel
channels/<CHANNEL>.parquet the same, typed
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb

from pipeline import charts
from pipeline.completeness import DEFAULT_MAX_NO_RESPONSE_SHARE, completeness
from pipeline.pseudonyms import hmac_sql
from pipeline.report_rolling import rolling_sections, rolling_summary
from pipeline.settings import Settings
from pipeline.sinch.models import ALL_STATUSES

IDENTIFYING = ("contact_key", "contact_id", "identity")
OTHER_COLUMNS = (
    "status, reason_code, array_to_string(channel_capabilities, ' ') AS channel_capabilities, "
    "checked_at, latency_seconds, reused, request_id, error"
)
# reachability has one count column per status, named after it
STATUS_COLUMNS = tuple(status.lower() for status in ALL_STATUSES)
# What each kind of share in `channels` is a share of (summary.json `share_bases`).
SHARE_BASES = {
    "*_share": "share of all targets of the channel (NO_RESPONSE and REQUEST_FAILED included)",
    "*_share_of_answered": "share of the answered targets (one of Sinch's four statuses)",
}


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    index: Path
    summary: Path


def channel_columns(pseudonym_key: bytes | None) -> str:
    """The per-channel export's columns; identities keyed-hashed when pseudonymising (and long
    digit runs masked in Sinch's error messages, which may quote a number)."""
    if pseudonym_key is None:
        return f"{', '.join(IDENTIFYING)}, {OTHER_COLUMNS}"
    identifying = ", ".join(f"{hmac_sql(c, pseudonym_key)} AS {c}" for c in IDENTIFYING)
    others = OTHER_COLUMNS.replace(
        "error", r"regexp_replace(error, '\+?\d[\d \-]{6,}\d', '***', 'g') AS error"
    )
    return f"{identifying}, {others}"


def write_report(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    reports_dir: Path,
    *,
    trend_runs: int = 14,
    pseudonym_key: bytes | None = None,
    max_no_response_share: float = DEFAULT_MAX_NO_RESPONSE_SHARE,
    settings: Settings | None = None,
) -> ReportFiles:
    """Write the run's report; with `pseudonym_key`, into `<run_id>-pseudonymised/` with every
    contact key, contact id and identity replaced by its HMAC-SHA256 under that key."""
    out = reports_dir / (run_id if pseudonym_key is None else f"{run_id}-pseudonymised")
    (out / "channels").mkdir(parents=True, exist_ok=True)
    params = {"run_id": run_id}
    conn.execute(
        f"COPY (SELECT * EXCLUDE (run_id) FROM reachability WHERE run_id = $run_id "
        f"ORDER BY channel) TO '{_sql_path(out / 'reachability.csv')}' (HEADER)",
        params,
    )
    channels = [
        str(r[0])
        for r in conn.execute(
            "SELECT DISTINCT channel FROM capability WHERE run_id = $run_id ORDER BY 1", params
        ).fetchall()
    ]
    for channel in channels:
        query = (
            f"SELECT {channel_columns(pseudonym_key)} FROM capability "
            f"WHERE run_id = $run_id AND channel = '{channel}' ORDER BY 1"
        )
        for fmt, options in (("csv", "HEADER"), ("parquet", "FORMAT parquet")):
            path = out / "channels" / f"{channel}.{fmt}"
            conn.execute(f"COPY ({query}) TO '{_sql_path(path)}' ({options})", params)
    summary = report_summary(conn, run_id, trend_runs, max_no_response_share)
    summary.update(rolling_summary(conn, run_id, settings or Settings()))
    summary["outputs"] = {"directory": str(out), "channels": channels}
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    index = out / "index.html"
    index.write_text(render_html(summary), encoding="utf-8")
    return ReportFiles(out, index, summary_path)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _rows(
    conn: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


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
            WHERE r.run_id IN (SELECT run_id FROM runs WHERE started_at <=
                (SELECT started_at FROM runs WHERE run_id = $run_id)
                ORDER BY started_at DESC LIMIT $limit)
            ORDER BY r.started_at, x.channel""",
            params | {"limit": trend_runs},
        ),
        "totals": _rows(
            conn,
            """
            SELECT count(*) AS targets, count(DISTINCT contact_key) AS contacts,
                count(*) FILTER (WHERE reused) AS reused
            FROM capability WHERE run_id = $run_id""",
            params,
        )[0],
    }


# -- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font-family:sans-serif;margin:2rem auto;max-width:1000px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8rem}td,th{padding:.25rem .6rem;text-align:right;
border-bottom:1px solid #eee}th:first-child,td:first-child{text-align:left}.muted{color:#777}
.incomplete{background:#fde2e1;border:2px solid #c23b22;padding:.75rem 1rem;font-size:1.05rem}
"""


def render_html(summary: dict[str, Any]) -> str:
    channels = summary["channels"]
    sections = [
        ("Reachable share per channel (of all targets)", _reachable_chart(channels)),
        ("Status breakdown per channel", _status_chart(channels)),
        ("Numbers per channel", _channel_table(channels)),
        ("Trend over recent runs", _trend_chart(summary["trend"])),
        ("Top reasons", _reasons_chart(summary["reasons"])),
        ("Changes since the previous answer", _changes_chart(summary["changes"])),
        ("Rejected input rows", _rejects_table(summary["rejects"])),
        *rolling_sections(summary),
    ]
    body = "".join(f"<section><h2>{escape(t)}</h2>{html}</section>" for t, html in sections)
    totals = summary["totals"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>capaudit report {escape(summary['run_id'])}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Capability audit {escape(summary['run_id'])}</h1>"
        f"{_incomplete_banner(summary['completeness'])}"
        f"<p class=muted>{totals['contacts']:,} contacts, {totals['targets']:,} targets "
        f"({totals['reused']:,} answers reused from earlier runs). "
        f"Generated {escape(summary['generated_at'][:19])} UTC.</p>{body}</body></html>\n"
    )


def _incomplete_banner(gate: dict[str, Any]) -> str:
    """An incomplete run says so above everything else: its shares of all targets are low by
    the missing answers."""
    if gate["status"] != "incomplete":
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
    return charts.line_chart(runs, series, label="reachable share trend")


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


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


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
    return _table(headers, rows)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _rejects_table(rejects: list[dict[str, Any]]) -> str:
    if not rejects:
        return "<p class=muted>No input row was rejected.</p>"
    return _table(["reason", "rows"], [[r["reason"], r["rows"]] for r in rejects])
