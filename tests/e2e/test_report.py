"""The report: two runs with different simulator seeds, changes found, charts drawn offline."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from html import escape, unescape
from pathlib import Path
from typing import Any

import duckdb
import phonenumbers
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.report.charts import PALETTE
from pipeline.report.writer import STATUS_COLUMNS, render_html
from tests.conftest import write_config
from tests.e2e.test_audit import capaudit, small_sample

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def two_runs(tmp_path: Path) -> Path:
    contacts = small_sample(tmp_path, 150)
    for run_id, seed in (("monday", 1), ("tuesday", 2)):
        config = write_config(
            tmp_path / f"{run_id}.toml",
            tmp_path,
            contacts={"paths": [str(contacts)]},
            freshness={"ttl_days": 0},  # ask again: the answers are a day old
            simulator={"seed": seed},
        )
        done = capaudit("run", "--config", str(config), "--run-id", run_id)
        assert done.returncode == 0, done.stderr
    return tmp_path / "reports" / "tuesday"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_runs(tmp_path_factory.mktemp("report"))


def test_another_seed_gives_changes_and_the_report_shows_them(report: Path) -> None:
    warehouse = report.parent.parent / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        changes = dict(
            conn.execute(
                "SELECT change, count(*) FROM capability_changes WHERE run_id = 'tuesday' GROUP BY 1"
            ).fetchall()
        )
    assert changes.get("gained", 0) > 0
    assert changes.get("lost", 0) > 0
    summary = json.loads((report / "summary.json").read_text())
    shown = {(c["channel"], c["change"]): c["contacts"] for c in summary["changes"]}
    assert sum(shown.values()) == sum(changes.values())
    html = (report / "index.html").read_text()
    assert "WHATSAPP gained" in html
    assert [t["run_id"] for t in summary["trend"]].count("monday") == 3  # the trend has both


def first_channels(answers: Iterable[tuple[str, str, str, str]]) -> dict[str, str | None]:
    """contact -> its best channel: fully reachable before partially, then the default
    preference WHATSAPP, RCS, SMS; None when no channel reaches it."""
    preference = ["WHATSAPP", "RCS", "SMS"]
    best: dict[str, tuple[int, int] | None] = {}
    for _, key, channel, status in answers:
        rank = {"CAPABILITY_FULL": 0, "CAPABILITY_PARTIAL": 1}.get(status)
        candidate = None if rank is None else (rank, preference.index(channel))
        if key not in best or (candidate is not None and (best[key] or (9, 9)) > candidate):
            best[key] = candidate
    return {key: None if b is None else preference[b[1]] for key, b in best.items()}


def test_routing_mix_adds_up_and_follows_the_channel_preference(report: Path) -> None:
    """Each contact's first channel worked out here from its answers and the default
    preference (WHATSAPP, RCS, SMS; fully reachable before partially) is the one in
    routing.csv, and the mix in summary.json counts them, with the change since monday."""
    summary = json.loads((report / "summary.json").read_text())
    warehouse = report.parent.parent / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        answers = conn.execute(
            "SELECT run_id, contact_key, channel, status FROM capability "
            "WHERE run_id IN ('monday', 'tuesday')"
        ).fetchall()
    first = {
        run_id: first_channels(a for a in answers if a[0] == run_id)
        for run_id in ("monday", "tuesday")
    }
    with (report / "routing.csv").open(newline="", encoding="utf-8") as handle:
        exported = {r["contact_key"]: r["first_channel"] or None for r in csv.DictReader(handle)}
    assert exported == first["tuesday"]
    assert pq.read_table(report / "routing.parquet").num_rows == len(exported)

    def mix(run_id: str) -> Counter[str | None]:
        return Counter(first[run_id].values())

    assert sum(r["contacts"] for r in summary["routing"]) == summary["totals"]["contacts"] == 150
    assert {r["first_channel"]: r["contacts"] for r in summary["routing"]} == mix("tuesday")
    assert summary["routing_compared_with"] == "monday"
    assert {r["first_channel"]: r["change"] for r in summary["routing"]} == {
        channel: mix("tuesday")[channel] - mix("monday")[channel]
        for channel in mix("tuesday") | mix("monday")
    }
    assert "RCS first" in (report / "index.html").read_text()


def test_countries_add_up_to_the_channels(report: Path) -> None:
    summary = json.loads((report / "summary.json").read_text())
    for channel in summary["channels"]:
        rows = [c for c in summary["countries"] if c["channel"] == channel["channel"]]
        assert sum(c["targets"] for c in rows) == channel["targets"]
        assert sum(c["reachable"] for c in rows) == channel["reachable"]
    warehouse = report.parent.parent / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        targets = conn.execute(
            "SELECT identity, country FROM targets WHERE run_id = 'tuesday'"
        ).fetchall()
    for identity, country in targets:  # the phone's region, or unknown by contact id
        if identity is None:
            assert country == "unknown"
        else:
            number = phonenumbers.parse("+" + identity)
            assert country == phonenumbers.region_code_for_number(number), identity
    assert {"unknown", "SE", "US"} <= {c["country"] for c in summary["countries"]}


def test_the_report_is_self_contained(report: Path) -> None:
    html = (report / "index.html").read_text()
    for outside in ("<script", "<link", "src=", "url(", "@import", "http://", "https://"):
        if outside in ("http://",):  # the SVG namespace is an identifier, not a fetch
            assert html.count(outside) == html.count('xmlns="http://www.w3.org/2000/svg"')
            continue
        assert outside not in html, outside


def can_unshare_network() -> bool:
    """Root in a sandbox may still be refused a new network namespace: then flags alone."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def chromium(tmp_path: Path, page: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on `page` with no network at all."""
    command = [
        CHROMIUM or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--hide-scrollbars",
        # no network: any request would fail (and then the charts would be missing)
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        *options,
        page.as_uri(),
    ]
    if can_unshare_network():
        command = ["unshare", "--net", *command]  # a network namespace with no network at all
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: `make test` installs it")
def test_headless_chromium_draws_the_charts_offline(report: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
    chromium(
        tmp_path, report / "index.html", "--window-size=1000,3000", f"--screenshot={screenshot}"
    )
    image = Image.open(screenshot).convert("RGB")
    counts: dict[tuple[int, int, int], int] = {}
    for pixel in image.get_flattened_data():
        counts[pixel] = counts.get(pixel, 0) + 1
    for status in ("CAPABILITY_FULL", "CAPABILITY_PARTIAL", "NO_CAPABILITY"):
        colour = tuple(int(PALETTE[status][i : i + 2], 16) for i in (1, 3, 5))
        assert counts.get(colour, 0) > 500, f"{status} bars not drawn"  # type: ignore[call-overload]
    for bar in ("#1f77b4", "#c23b22", "#f0b429"):  # reachable share, reasons, changes
        colour = tuple(int(bar[i : i + 2], 16) for i in (1, 3, 5))
        assert counts.get(colour, 0) > 500, f"{bar} chart not drawn"  # type: ignore[call-overload]


# Run in the report by the layout test: every chart drawn at this width (the other width's
# drawing is hidden), every text's box (getBBox, in viewBox units) inside its svg's viewBox,
# no two texts of a chart overlapping, every text at least 9 px on screen, and nothing wider
# than the page. The report is shown in an iframe of the width tested (headless Chromium
# keeps its window at least 500 px wide); the results go into the outer page's DOM, which
# --dump-dom prints.
LAYOUT_CHECK = """<script>
(() => {
  const problems = [];
  let charts = 0, texts = 0;
  for (const svg of document.querySelectorAll('svg.chart')) {
    const shown = svg.getBoundingClientRect();
    if (shown.width === 0) continue;
    charts++;
    const view = svg.viewBox.baseVal, scale = shown.width / view.width;
    const name = svg.getAttribute('aria-label');
    if (shown.right > document.documentElement.clientWidth + 0.5)
      problems.push(`${name}: svg wider than the page (${shown.right})`);
    const boxes = [];
    for (const text of svg.querySelectorAll('text')) {
      const b = text.getBBox(), label = text.textContent;
      texts++;
      if (b.x < view.x - 0.5 || b.y < view.y - 0.5 || b.x + b.width > view.x + view.width + 0.5
          || b.y + b.height > view.y + view.height + 0.5)
        problems.push(`${name}: "${label}" at ${[b.x, b.y, b.width, b.height]} outside ` +
                      `${[view.width, view.height]}`);
      const size = parseFloat(text.getAttribute('font-size')) * scale;
      if (size < 9) problems.push(`${name}: "${label}" drawn at ${size.toFixed(1)} px`);
      for (const [other, o] of boxes)
        if (b.x < o.x + o.width - 1 && o.x < b.x + b.width - 1
            && b.y < o.y + o.height - 1 && o.y < b.y + b.height - 1)
          problems.push(`${name}: "${label}" overlaps "${other}"`);
      boxes.push([label, b]);
    }
  }
  const page = document.documentElement.scrollWidth, viewport = window.innerWidth;
  if (page > viewport) problems.push(`page ${page} px wide in a ${viewport} px window`);
  const out = parent.document.createElement('pre');
  out.id = 'layout-check';
  out.textContent = JSON.stringify({charts, texts, viewport, problems});
  parent.document.body.appendChild(out);
})();
</script>"""


def layout(html: str, tmp_path: Path, width: int) -> dict[str, Any]:
    """LAYOUT_CHECK's findings for `html` shown `width` px wide in headless Chromium."""
    page = tmp_path / "frame.html"
    checked = html.replace("</body>", LAYOUT_CHECK + "</body>")
    page.write_text(
        f'<!doctype html><html><body style="margin:0"><iframe style="border:0;'
        f'width:{width}px;height:2000px" srcdoc="{escape(checked)}"></iframe>'
        "</body></html>",
        encoding="utf-8",
    )
    dom = chromium(tmp_path, page, "--window-size=1400,2100", "--dump-dom").stdout
    found = re.search(r'<pre id="layout-check">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    result: dict[str, Any] = json.loads(unescape(found.group(1)))
    assert result["viewport"] == width
    assert result["charts"] == html.count('class="chart-wide"')  # one drawing of each chart
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: `make test` installs it")
@pytest.mark.parametrize("width", [1280, 400])
def test_no_chart_text_is_clipped_at_desktop_or_phone_width(
    report: Path, tmp_path: Path, width: int
) -> None:
    result = layout((report / "index.html").read_text(encoding="utf-8"), tmp_path, width)
    assert result["texts"] > 100
    assert result["problems"] == []


def crowded_summary() -> dict[str, Any]:
    """Everything at once: six channels, long reason codes, 30 runs, 20 countries."""
    channels = ["WHATSAPP", "RCS", "SMS", "MESSENGER", "VIBERBM", "KAKAOTALKCHAT"]
    start = datetime(2026, 10, 27, 2, 0, tzinfo=UTC)
    counts = dict.fromkeys(STATUS_COLUMNS, 1000) | {"capability_full": 123_456}
    return {
        "run_id": "20261125T020000Z-4f2a",
        "generated_at": "2026-11-25T02:30:00",
        "totals": {"contacts": 1_234_567, "targets": 7_407_402, "reused": 12},
        "channels": [
            {
                "channel": c,
                "targets": 128_456,
                "reachable_share": 0.9988,
                "answered": 126_000,
                "reachable_share_of_answered": 0.9991,
                **counts,
                "latency_p50_seconds": 1.5,
                "latency_p95_seconds": 12.25,
            }
            for c in channels
        ],
        "trend": [
            {
                "run_id": f"r{d}",
                "started_at": start + timedelta(days=d),
                "channel": c,
                "reachable_share": 0.5 + 0.01 * i,
                "targets": 1000,
            }
            for d in range(30)
            for i, c in enumerate(channels)
        ],
        "reasons": [
            {"channel": c, "reason_code": code, "targets": 100_000 - 7 * n}
            for n, (c, code) in enumerate(
                (c, code)
                for c in channels
                for code in (
                    "RECIPIENT_NOT_OPTED_IN",
                    "RECIPIENT_NOT_REACHABLE",
                    "CHANNEL_NOT_SUPPORTED_FOR_THIS_KIND_OF_RECIPIENT",
                )
            )
        ][:15],
        "changes": [
            {"channel": c, "change": change, "contacts": 1234}
            for c in channels
            for change in ("gained", "lost", "changed")
        ],
        "rejects": [{"reason": "phone_without_country", "rows": 1_000_000}],
        "routing": [
            {"first_channel": c, "contacts": 200_000, "share": 0.162, "change": -12_345}
            for c in channels
        ]
        + [{"first_channel": None, "contacts": 34_567, "share": 0.028, "change": 1}],
        "routing_compared_with": "20261124T020000Z-1b2c",
        "completeness": {
            "status": "incomplete",
            "queried": 7_407_402,
            "no_response": 1_000_000,
            "no_response_share": 0.135,
            "max_no_response_share": 0.02,
            "resume": "capaudit run --resume --run-id 20261125T020000Z-4f2a",
        },
        "estimates": [
            {
                "channel": c,
                "stratum": stratum,
                "share": 0.6,
                "low": 0.55,
                "high": 0.65,
                "sample": 20_000,
                "population": 1_234_567,
                "reachable_low": 678_000,
                "reachable_high": 802_000,
                "no_response": 12,
                "no_response_share": 0.001,
            }
            for c in channels
            for stratum in (None, "unknown", "SE")
        ],
        "coverage": {
            "fresh_share": 0.25,
            "fresh_targets": 1_851_850,
            "list_targets": 7_407_402,
            "nights_to_full_refresh": 56,
            "night_seconds": 21_600,
            "deferred": 5_000_000,
            "callback_rate_per_second": 25,
            "ages": [
                {"age": age, "answers": 1_000_000}
                for age in ("< 1 day", "1-3 days", "30 days or more")
            ],
        },
        "late_answers": 1234,
        "countries": [
            {"country": country, "channel": c, "targets": 1_000_000 - n, "reachable": 999_999 - n}
            for n, country in enumerate([f"C{i:02d}" for i in range(19)] + ["unknown"])
            for c in channels
        ],
    }


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: `make test` installs it")
@pytest.mark.parametrize("width", [1280, 400])
def test_a_crowded_report_still_fits(tmp_path: Path, width: int) -> None:
    result = layout(render_html(crowded_summary()), tmp_path, width)
    assert result["texts"] > 200
    assert result["problems"] == []
