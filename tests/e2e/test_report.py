"""The report: two runs with different simulator seeds, changes found, charts drawn offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from pipeline.charts import PALETTE
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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: `make test` installs it")
def test_headless_chromium_draws_the_charts_offline(report: Path, tmp_path: Path) -> None:
    screenshot = tmp_path / "report.png"
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
        "--window-size=1000,3000",
        f"--screenshot={screenshot}",
        (report / "index.html").as_uri(),
    ]
    if can_unshare_network():
        command = ["unshare", "--net", *command]  # a network namespace with no network at all
    subprocess.run(command, check=True, capture_output=True, timeout=120)
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
