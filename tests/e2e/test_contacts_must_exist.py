"""Whole runs against a simulator as strict as Sinch's Capability Query page: queries run only
for contacts that exist (`contacts_must_exist`), answered CONTACT_NOT_FOUND otherwise, by a
callback about the whole request or as the query's own error; and an app in DISPATCH mode."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import write_config
from tests.e2e.test_audit import capaudit, small_sample

STRICT = {"contacts_must_exist": True, "known_contact_share": 0.6, "latency_ms": 2}


def run(tmp_path: Path, rows: int, **sections: dict[str, object]) -> tuple[int, str, str]:
    contacts = small_sample(tmp_path, rows)
    cfg = write_config(
        tmp_path / "c.toml",
        tmp_path,
        contacts={"paths": [str(contacts)], **sections.pop("contacts", {})},
        collect={"deadline_seconds": 20},
        **sections,
    )
    done = capaudit("run", "--config", str(cfg), "--run-id", "strict")
    return done.returncode, done.stdout, done.stderr


def state(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(tmp_path / "state.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def summary(tmp_path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (tmp_path / "reports" / "strict" / "summary.json").read_text(encoding="utf-8")
    )
    return data


@pytest.mark.parametrize("answer", ["callback", "error"])
def test_without_create_missing_targets_are_not_a_contact_and_add_up(
    tmp_path: Path, answer: str
) -> None:
    code, stdout, stderr = run(tmp_path, 90, simulator={**STRICT, "contact_not_found": answer})
    assert code == 0, stderr
    statuses = dict(state(tmp_path, "SELECT status, count(*) FROM capability GROUP BY ALL"))
    assert statuses.get("NOT_A_CONTACT", 0) > 0
    assert "NO_RESPONSE" not in statuses  # never taken for a missing answer
    # The report's counts add up: per channel, in all, and to the targets.
    data = summary(tmp_path)
    channels = data["channels"]
    assert isinstance(channels, list)
    missing = data["not_a_contact"]
    assert isinstance(missing, dict)
    assert missing["targets"] == statuses["NOT_A_CONTACT"]
    assert missing["targets"] == sum(c["not_a_contact"] for c in channels)
    assert "create_missing = true" in str(missing["fix"])
    for c in channels:
        counted = sum(c[s] for s in ("capability_full", "capability_partial", "no_capability"))
        counted += sum(c[s] for s in ("capability_unknown", "no_response", "request_failed"))
        assert counted + c["not_a_contact"] == c["targets"]
    assert "Not a Sinch contact" in stdout
    html = (tmp_path / "reports" / "strict" / "index.html").read_text(encoding="utf-8")
    assert "Not a Sinch contact" in html


@pytest.mark.parametrize("answer", ["callback", "error"])
def test_create_missing_creates_each_contact_once_and_answers_every_target(
    tmp_path: Path, answer: str
) -> None:
    code, stdout, stderr = run(
        tmp_path,
        90,
        simulator={**STRICT, "contact_not_found": answer},
        contacts={"create_missing": True},
    )
    assert code == 0, stderr
    # Every target asked by phone number is answered; the row with only a contact id Sinch
    # does not know cannot be created (no identities to create it with).
    statuses = dict(
        state(
            tmp_path,
            "SELECT status, count(*) FROM capability WHERE identity IS NOT NULL GROUP BY ALL",
        )
    )
    assert set(statuses) <= {"CAPABILITY_FULL", "CAPABILITY_PARTIAL", "NO_CAPABILITY"} | {
        "CAPABILITY_UNKNOWN"
    }, statuses
    assert state(
        tmp_path, "SELECT DISTINCT contact_key, status FROM capability WHERE identity IS NULL"
    ) == [("CUST-ONLY", "NOT_A_CONTACT")]
    created = state(
        tmp_path,
        "SELECT state, count(*), count(DISTINCT contact_key) FROM contact_creations GROUP BY ALL",
    )
    assert created
    assert all(s == "created" and n == distinct for s, n, distinct in created)
    assert f"Contacts Sinch had none for ([contacts] create_missing): {created[0][1]} created" in (
        stdout
    )
    # Each target is asked at most twice (a first request's channels may be re-asked in two
    # requests, one for the contact it lacked, or one per transient answer as they land).
    assert state(
        tmp_path,
        "SELECT max(n) FROM (SELECT count(*) AS n FROM targets t JOIN requests r "
        "ON r.run_id = t.run_id AND r.contact_key = t.contact_key "
        "AND list_contains(r.channels, t.channel) GROUP BY t.run_id, t.contact_key, t.channel)",
    ) == [(2,)]


def test_dispatch_mode_refuses_contact_id_rows_before_sending(tmp_path: Path) -> None:
    code, _, stderr = run(tmp_path, 60, simulator={"processing_mode": "DISPATCH", "latency_ms": 2})
    assert code == 0, stderr
    refused = state(
        tmp_path,
        "SELECT count(*), count(*) FILTER (WHERE sent_at IS NULL AND http_status IS NULL) "
        "FROM requests WHERE failure_reason = 'DISPATCH_MODE'",
    )
    assert refused[0][0] > 0
    assert refused[0][0] == refused[0][1]  # none was sent
    rows = state(
        tmp_path,
        "SELECT DISTINCT status, error LIKE '%DISPATCH processing mode%' FROM capability "
        "WHERE identity IS NULL",
    )
    assert rows == [("REQUEST_FAILED", True)]
