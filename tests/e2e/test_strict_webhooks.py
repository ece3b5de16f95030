"""Night after night against one persistent simulator as strict as Sinch's webhook models:
every run succeeds and the app keeps exactly one CAPABILITY webhook (issue 23)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from pipeline.settings import SinchSettings
from tests.conftest import (
    KEY_ID,
    KEY_SECRET,
    SAMPLE,
    receiver,
    sim_stats,
    simulator,
    write_config,
)
from tests.e2e.test_audit import capaudit
from tests.e2e.test_operations import against


def capability_webhooks(sim_url: str) -> list[dict[str, Any]]:
    app = SinchSettings()
    path = f"/v1/projects/{app.project_id}/apps/{app.app_id}/webhooks"
    answer = httpx.get(sim_url + path, auth=(KEY_ID, KEY_SECRET), timeout=5)
    answer.raise_for_status()
    return [w for w in answer.json()["webhooks"] if "CAPABILITY" in w["triggers"]]


def test_three_runs_against_one_persistent_strict_simulator_keep_one_webhook(
    tmp_path: Path,
) -> None:
    contacts = tmp_path / "contacts.csv"  # three people, nine targets: as cheap as a run gets
    contacts.write_text("\n".join(SAMPLE.read_text().splitlines()[:4]) + "\n")
    config = write_config(
        tmp_path / "c.toml",
        tmp_path,
        contacts={"paths": [str(contacts)]},
        collect={"deadline_seconds": 10},
    )
    state = str(tmp_path / "simulator" / "state.json")
    with receiver(config) as receiver_url:
        with simulator(config, "--state-file", state) as sim_url:
            env = against(sim_url, receiver_url)
            for night in range(3):
                again = ["--refresh"] if night else []  # ask again: the webhook must deliver
                done = capaudit("run", "--config", str(config), *again, env=env, timeout=120)
                assert done.returncode == 0, done.stderr
                [webhook] = capability_webhooks(sim_url)
                assert webhook["target"] == f"{receiver_url}/callbacks/sinch"
            assert sim_stats(sim_url)["callbacks_delivered"] >= 3 * 9
        with simulator(config, "--state-file", state) as restarted:
            assert capability_webhooks(restarted) == [webhook]
