"""The simulator's contacts, app and processing modes (reference §8, §10)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pipeline.errors import ConfigError
from pipeline.settings import SimulatorSettings
from pipeline.simulator.outcomes import OutcomeModel
from pipeline.simulator.state import SimState
from tests.unit.test_simulator_webhooks import against_simulator, assert_refused

CONTACTS = "/v1/projects/p/contacts"
QUERY = "/v1/projects/p/capability:query"
NUMBERS = [f"4670{n:07d}" for n in range(400)]


def by_identity(channel: str, identity: str) -> dict[str, str]:
    return {"channel": channel, "identity": identity}


def query(*identities: str, request_id: str = "r") -> dict[str, Any]:
    channel_identities = [by_identity("WHATSAPP", i) for i in identities]
    recipient = {"identified_by": {"channel_identities": channel_identities}}
    return {"app_id": "app", "recipient": recipient, "request_id": request_id}


def captured(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The notifications the simulator will call back with from now on, kept as it makes
    them (there is no webhook to deliver them to)."""
    sim = http._transport.app.state.simulator  # type: ignore[attr-defined]
    made: list[dict[str, Any]] = []

    def schedule(app_id: str, bodies: list[bytes]) -> None:
        made.extend(orjson.loads(body)["capability_notification"] for body in bodies)

    sim.deliverer.schedule = schedule
    return made


def test_a_share_of_numbers_has_a_contact_found_by_identity_and_by_id() -> None:
    async def found(http: httpx.AsyncClient, number: str) -> list[dict[str, Any]]:
        answer = await http.get(CONTACTS, params={"channel": "SMS", "identity": number})
        contacts: list[dict[str, Any]] = answer.json()["contacts"]
        return contacts

    def known(share: float, seed: int = 1) -> list[str]:
        async def scenario(http: httpx.AsyncClient) -> None:
            for number in NUMBERS:
                contacts = await found(http, number)
                if contacts:
                    [contact] = contacts
                    assert contact == (await found(http, f"+{number}"))[0]  # '+' or not
                    one = await http.get(f"{CONTACTS}/{contact['id']}")
                    assert one.json() == contact
                    result.append(number)

        result: list[str] = []
        against_simulator(scenario, known_contact_share=share, seed=seed, rate_limit=0)
        return result

    some = known(0.3)
    assert 80 < len(some) < 160
    assert known(0.3) == some  # the same numbers for the same seed
    assert known(0.3, seed=2) != some
    assert len(known(1.0)) == len(NUMBERS)
    assert known(0.0) == []


def test_an_unknown_contact_id_is_not_found() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        for contact_id in ("01UNKNOWN", "01VC" + "Z" * 22, "01VC" + "0" * 22):
            answer = await http.get(f"{CONTACTS}/{contact_id}")
            assert_refused(answer, 404, "NOT_FOUND", "Contact not found")

    against_simulator(scenario)


def test_created_contacts_survive_a_restart_and_a_torn_last_line(tmp_path: Path) -> None:
    state_path = str(tmp_path / "sim" / "state.json")
    contact = {
        "channel_identities": [by_identity("MESSENGER", "psid-1")],
        "language": "EN_US",
        "external_id": "CUST-1",
    }

    async def create(http: httpx.AsyncClient) -> None:
        answer = await http.post(CONTACTS, json=contact)
        assert answer.status_code == 200, answer.text
        made.append(answer.json())

    async def find(http: httpx.AsyncClient) -> None:
        answer = await http.get(CONTACTS, params={"channel": "MESSENGER", "identity": "psid-1"})
        assert answer.json()["contacts"] == made
        assert (await http.get(f"{CONTACTS}/{made[0]['id']}")).json() == made[0]
        listed = await http.get(CONTACTS, params={"external_id": "CUST-1"})
        assert listed.json()["contacts"] == made

    made: list[dict[str, Any]] = []
    against_simulator(create, state_path=state_path)
    assert made[0]["display_name"] == "Unknown"
    kept = tmp_path / "sim" / "state.contacts.jsonl"
    assert kept.stat().st_mode & 0o777 == 0o640
    with kept.open("a") as log:
        log.write('{"id": "torn-by-a-kill')
    against_simulator(find, state_path=state_path)
    contact["channel_identities"] = [by_identity("MESSENGER", "psid-2")]
    against_simulator(create, state_path=state_path)  # appended after the cut-off torn line
    assert SimState(SimulatorSettings(state_path=state_path)).contacts.created == 2
    kept.write_text('{"nope": 1}\n' + kept.read_text())
    with pytest.raises(ConfigError, match=r"state\.contacts\.jsonl:1: not a simulator contact"):
        SimState(SimulatorSettings(state_path=state_path))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"language": "EN_US"}, "channel_identities is required"),
        ({"channel_identities": [], "language": "EN_US"}, "at least one identity"),
        (
            {"channel_identities": [{"identity": "46701234567"}], "language": "EN_US"},
            "channel_identities[0] must have 'channel' and 'identity'",
        ),
        (
            {"channel_identities": [by_identity("PIGEON", "1")], "language": "EN_US"},
            "unknown channel 'PIGEON'",
        ),
        ({"channel_identities": [by_identity("SMS", "46701234567")]}, "language is required"),
        (
            {"channel_identities": [by_identity("SMS", "1")], "language": "UNSPECIFIED"},
            "language is required",
        ),
        (
            {"channel_identities": [by_identity("SMS", "1")], "language": "EN", "age": 3},
            "unknown field 'age'",
        ),
    ],
)
def test_a_contact_the_model_refuses_is_refused(body: dict[str, Any], words: str) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        assert_refused(await http.post(CONTACTS, json=body), 400, "INVALID_ARGUMENT", words)

    against_simulator(scenario)


def test_contacts_calls_count_against_the_project_rate_limit() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        params = {"channel": "SMS", "identity": "46701234567"}
        answers = [await http.get(CONTACTS, params=params) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]

    against_simulator(scenario, rate_limit=2)


def test_with_contacts_must_exist_a_query_for_no_contact_gets_one_whole_request_callback() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        notes = captured(http)
        model = OutcomeModel(seed=1)
        number = next(n for n in NUMBERS if not model.has_contact(n, 0.5))
        known = next(n for n in NUMBERS if model.has_contact(n, 0.5))
        for n in range(30):
            answer = await http.post(QUERY, json=query(number, request_id=f"r{n}"))
            assert answer.status_code == 200
        channels = Counter(note.get("channel", "<missing>") for note in notes)
        assert set(channels) == {"CHANNEL_UNSPECIFIED", "", "<missing>"}
        assert sum(channels.values()) == 30  # one callback a request
        for note in notes:
            assert note["capability_status"] == "NO_CAPABILITY"
            assert note["reason"]["code"] == "CONTACT_NOT_FOUND"
            assert not {"identity", "contact_id"} & set(note)
        notes.clear()
        await http.post(QUERY, json=query(number, known))  # one identity with a contact: checked
        assert [n["identity"] for n in notes] == [number, known]

    against_simulator(scenario, contacts_must_exist=True, known_contact_share=0.5)


def test_contact_not_found_error_refuses_the_query_with_a_detail() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        by_id = {"app_id": "app", "recipient": {"contact_id": "01UNKNOWN"}}
        for body in (query("46701234567"), by_id):
            answer = await http.post(QUERY, json=body)
            assert answer.status_code == 404
            error = answer.json()["error"]
            assert (error["status"], error["message"]) == ("NOT_FOUND", "Contact not found")
            assert [d["value"] for d in error["details"]] == ["CONTACT_NOT_FOUND"]

    against_simulator(
        scenario, contacts_must_exist=True, known_contact_share=0.0, contact_not_found="error"
    )


def test_dispatch_refuses_contact_ids_and_checks_identities_without_contacts() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        notes = captured(http)
        by_id = {"app_id": "app", "recipient": {"contact_id": "01SOMEONE"}}
        answer = await http.post(QUERY, json=by_id)
        assert_refused(answer, 400, "INVALID_ARGUMENT", "only identified_by is allowed")
        assert (await http.post(QUERY, json=query("46701234567"))).status_code == 200
        [note] = notes
        assert (note["channel"], note["identity"]) == ("WHATSAPP", "46701234567")
        assert note.get("reason", {}).get("code") != "CONTACT_NOT_FOUND"

    against_simulator(
        scenario, processing_mode="DISPATCH", contacts_must_exist=True, known_contact_share=0.0
    )


def test_the_app_shows_its_processing_mode_and_webhook_rate() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        app = (await http.get("/v1/projects/p/apps/app")).json()
        assert (app["id"], app["processing_mode"]) == ("app", "DISPATCH")
        assert app["rate_limits"]["webhooks"] == 40
        other = await http.get("/v1/projects/p/apps/other")
        assert_refused(other, 404, "NOT_FOUND", "App other not found")

    against_simulator(scenario, processing_mode="DISPATCH", webhook_rate=40.0, app_id="app")


def test_a_query_by_a_found_contact_s_id_checks_its_identities() -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        notes = captured(http)
        found = await http.get(CONTACTS, params={"channel": "RCS", "identity": "46701234567"})
        [contact] = found.json()["contacts"]
        by_id = {"app_id": "app", "recipient": {"contact_id": contact["id"]}}
        assert (await http.post(QUERY, json=by_id)).status_code == 200
        assert [n["channel"] for n in notes] == ["WHATSAPP", "RCS", "SMS"]
        assert {n["contact_id"] for n in notes} == {contact["id"]}
        notes.clear()
        unknown = {"app_id": "app", "recipient": {"contact_id": "01NOBODY"}}
        assert (await http.post(QUERY, json=unknown)).status_code == 200
        [note] = notes
        assert (note["contact_id"], note["reason"]["code"]) == ("01NOBODY", "CONTACT_NOT_FOUND")

    against_simulator(scenario, contacts_must_exist=True)
