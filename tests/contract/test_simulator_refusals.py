"""The simulator refuses what the SDKs' request models refuse, in Sinch's error envelope.

For each operation with a body, a valid example is accepted, and every way of breaking it that
tests/contract/sdk_requests.py can derive from the model (a required field left out, a value
outside an enum, a field the model lacks, a wrong type, an empty required list, a text too
long) is refused with 400 INVALID_ARGUMENT.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pipeline.settings import SimulatorSettings
from pipeline.simulator.app import create_app
from tests.conftest import asgi_client
from tests.contract.sdk_requests import (
    CONTACT_CREATE,
    CREATE_WEBHOOK,
    LOOKUP_CAPABILITY,
    UPDATE_WEBHOOK,
    Enum,
    ListOf,
    Model,
    Spec,
    Text,
    problems,
)

PROJECT = "/v1/projects/p"
WEBHOOK = {
    "app_id": "app",
    "target": "https://capaudit.example.com/callbacks/sinch",
    "target_type": "HTTP",
    "triggers": ["CAPABILITY"],
    "secret": "s",
    "client_credentials": {
        "client_id": "id",
        "client_secret": "secret",
        "endpoint": "https://auth.example.com/token",
        "scope": "capability",
    },
}
EXAMPLES: dict[str, tuple[str, str, Model, dict[str, Any]]] = {
    "capability query": (
        "POST",
        f"{PROJECT}/capability:query",
        LOOKUP_CAPABILITY,
        {
            "app_id": "app",
            "recipient": {
                "identified_by": {
                    "channel_identities": [{"channel": "WHATSAPP", "identity": "46701234567"}]
                }
            },
            "request_id": "r-1",
        },
    ),
    "webhook create": ("POST", f"{PROJECT}/webhooks", CREATE_WEBHOOK, WEBHOOK),
    "webhook update": ("PATCH", f"{PROJECT}/webhooks/{{id}}", UPDATE_WEBHOOK, WEBHOOK),
    "contact create": (
        "POST",
        f"{PROJECT}/contacts",
        CONTACT_CREATE,
        {
            "channel_identities": [{"channel": "SMS", "identity": "46701234567", "app_id": ""}],
            "channel_priority": ["SMS"],
            "language": "EN_US",
            "display_name": "A",
            "email": "a@example.com",
            "external_id": "CUST-1",
            "metadata": "m",
        },
    ),
}
Path = tuple[str | int, ...]


def breakages(value: Any, spec: Spec, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Each (where, broken value) the model refuses, one change at a time."""
    if isinstance(spec, Text):
        yield path, 42
        if spec.non_empty:
            yield path, ""
        if spec.max_length is not None:
            yield path, "x" * (spec.max_length + 1)
    elif isinstance(spec, Enum):
        yield path, "NOT_AN_ENUM_VALUE"
    elif isinstance(spec, ListOf):
        yield path, 42
        if spec.min_items:
            yield path, []
        if value:
            yield from breakages(value[0], spec.item, (*path, 0))
    elif isinstance(spec, Model):
        yield from _model_breakages(value, spec, path)


def _model_breakages(value: Any, spec: Model, path: Path) -> Iterator[tuple[Path, Any]]:
    if path:
        yield path, 42
    yield path, {**value, "unexpected_field": "x"}
    for key in spec.required:
        yield path, {k: v for k, v in value.items() if k != key}
    if spec.exactly_one_of:
        yield path, {k: v for k, v in value.items() if k not in spec.exactly_one_of}
    for key, item in value.items():
        yield from breakages(item, spec.fields[key], (*path, key))


def broken(example: dict[str, Any], path: Path, replacement: Any) -> Any:
    if not path:
        return replacement
    body = copy.deepcopy(example)
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = replacement
    return body


def cases() -> Iterator[Any]:
    for name, (_, _, model, example) in EXAMPLES.items():
        for path, replacement in breakages(example, model):
            where = ".".join(str(p) for p in path) or "body"
            yield pytest.param(name, path, replacement, id=f"{name}: {where}={replacement!r:.20}")


def send(name: str, body: Any) -> httpx.Response:
    """`body` sent to a fresh simulator as the operation `name` (a webhook to update exists)."""
    method, path, _, _ = EXAMPLES[name]

    async def main() -> httpx.Response:
        app = create_app(SimulatorSettings(latency_ms=0, rate_limit=0))
        async with asgi_client(app) as http:
            http.auth = httpx.BasicAuth("key", "secret")
            hook = app.state.simulator.state.add_webhook("app", WEBHOOK["target"], [], "s")
            return await http.request(method, path.format(id=hook.id), json=body)

    return asyncio.run(main())


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_valid_example_fits_the_model_and_is_accepted(name: str) -> None:
    _, _, model, example = EXAMPLES[name]
    assert problems(example, model) == []
    answer = send(name, example)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(("name", "path", "replacement"), list(cases()))
def test_what_the_model_refuses_the_simulator_refuses(
    name: str, path: Path, replacement: Any
) -> None:
    _, _, model, example = EXAMPLES[name]
    body = broken(example, path, replacement)
    assert problems(body, model) != [], "the breakage must break the model"
    answer = send(name, body)
    assert answer.status_code == 400, f"{name} accepted {body}"
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "status", "details"}
    assert (error["code"], error["status"], error["details"]) == (400, "INVALID_ARGUMENT", [])
    assert error["message"]


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", f"{PROJECT}/contacts", {"channel": "SMS"}),
        ("GET", f"{PROJECT}/contacts", {"identity": "46701234567"}),
        ("GET", f"{PROJECT}/contacts", {"channel": "PIGEON", "identity": "46701234567"}),
        ("PATCH", f"{PROJECT}/webhooks/{{id}}", {"update_mask": "secret,colour"}),
    ],
)
def test_query_parameters_the_models_refuse_are_refused(
    method: str, path: str, params: dict[str, str]
) -> None:
    async def main() -> httpx.Response:
        app = create_app(SimulatorSettings(latency_ms=0))
        async with asgi_client(app) as http:
            http.auth = httpx.BasicAuth("key", "secret")
            hook = app.state.simulator.state.add_webhook("app", WEBHOOK["target"], [], "s")
            body = WEBHOOK if method == "PATCH" else None
            return await http.request(method, path.format(id=hook.id), params=params, json=body)

    answer = asyncio.run(main())
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
