"""A real receiver process and old signatures: authenticity counts, not age (docs/receiver.md)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from pipeline.landing.ingest import ingest_landing
from pipeline.warehouse import open_warehouse
from tests.conftest import receiver, signed

TWO_HOURS = 2 * 3600


def old_callback() -> bytes:
    """An answer Sinch signed two hours ago: re-delivered after an outage on our side."""
    return orjson.dumps(
        {
            "app_id": "app",
            "project_id": "p",
            "accepted_time": "2026-11-25T00:00:00.5Z",
            "event_time": "2026-11-25T00:00:00Z",
            "capability_notification": {
                "request_id": "req-old",
                "channel": "WHATSAPP",
                "identity": "46701234567",
                "capability_status": "CAPABILITY_FULL",
            },
        }
    )


def post(url: str, body: bytes, nonce: str) -> int:
    headers = signed(body, nonce=nonce, timestamp=int(time.time()) - TWO_HOURS)
    return httpx.post(f"{url}/callbacks/sinch", content=body, headers=headers).status_code


def stale_metric(url: str, outcome: str) -> str:
    metrics = httpx.get(f"{url}/metrics").text
    prefix = f'capaudit_receiver_stale_signatures_total{{outcome="{outcome}",direction="past"}} '
    return next(line for line in metrics.splitlines() if line.startswith(prefix))[len(prefix) :]


def test_a_two_hour_old_signature_is_landed_and_a_replay_appears_once(tmp_path: Path) -> None:
    landing, body = tmp_path / "landing", old_callback()
    with receiver(None, "--landing-dir", str(landing)) as url:
        assert post(url, body, "first-delivery") == 200
        assert post(url, body, "first-delivery") == 200  # the same delivery again: not landed
        assert post(url, body, "redelivery") == 200  # re-signed by Sinch: landed again
        assert stale_metric(url, "accepted") == "3"
    with open_warehouse(tmp_path / "state.duckdb") as conn:
        ingest_landing(conn, landing)
        rows = conn.execute(
            "SELECT request_id, channel, identity, deliveries FROM notifications"
        ).fetchall()
    assert rows == [("req-old", "WHATSAPP", "46701234567", 2)]


def test_with_an_age_limit_the_old_signature_gets_401_and_is_counted(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    limit = {"CAPAUDIT_RECEIVER__MAX_SIGNATURE_AGE_SECONDS": "300"}
    with receiver(None, "--landing-dir", str(landing), **limit) as url:
        assert post(url, old_callback(), "too-old") == 401
        assert stale_metric(url, "refused") == "1"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'capaudit_receiver_callbacks_refused_total{reason="stale_timestamp"} 1' in metrics
    with open_warehouse(tmp_path / "state.duckdb") as conn:
        ingest_landing(conn, landing)
        assert conn.execute("SELECT count(*) FROM notifications").fetchone() == (0,)
