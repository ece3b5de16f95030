"""The simulator's HTTP API: Sinch's paths and answers, plus `/_sim/*` for tests and operators.

    app = create_app(settings.simulator)      # an ASGI app; `capaudit simulate` serves it

Every API call passes the same gate as on Sinch: the project-wide rate limit (sliding one-second
window, 429, with `Retry-After` only when configured), injected faults (503, dropped
connections), the simulated network latency and authentication (OAuth2 bearer token or Basic
access key). The webhook and contact routes live in simulator/webhooks.py and contacts_api.py,
the check behind a query in simulator/checks.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pipeline.ids import new_ulid
from pipeline.settings import SimulatorSettings
from pipeline.simulator.answers import JSONResponse, sinch_error
from pipeline.simulator.apps import app_resource, unknown_app
from pipeline.simulator.checks import Checker
from pipeline.simulator.contacts_api import ContactsApi
from pipeline.simulator.deliverer import Deliverer
from pipeline.simulator.state import SimState
from pipeline.simulator.webhooks import WebhookAdmin
from pipeline.sinch.models import CHANNELS, DISPATCH_MODE

Handler = Callable[[Request], Awaitable[Response]]
# The SDKs' LookupCapabilityRequest, plus the `project_id` of Sinch's own Capability Query page.
QUERY_FIELDS = frozenset({"app_id", "recipient", "request_id", "project_id"})
DISPATCH_RECIPIENT = "If Dispatch Mode is used, only identified_by is allowed"
# The detail of a refused query that found no contact, as Google's ErrorInfo carries a reason.
CONTACT_NOT_FOUND_DETAIL = {
    "type_url": "type.googleapis.com/google.rpc.ErrorInfo",
    "value": "CONTACT_NOT_FOUND",
}


class DroppedConnection(Exception):
    """Raised after the response head is sent: the server closes the connection mid-response."""


class DropConnectionResponse(Response):
    """Promises a body and then breaks the connection, like a reset mid-request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
        )
        raise DroppedConnection


class Simulator:
    """Holds the state and the deliverer; its methods are the route handlers."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.state = SimState(settings)
        self.deliverer = Deliverer(self.state)
        self.checker = Checker(self.state)
        self.webhooks = WebhookAdmin(self.state)
        self.contacts = ContactsApi(self.state)
        self._rng = random.Random(settings.seed ^ 0x5EED)

    # -- the gate every API call passes -----------------------------------------------------

    def api(self, handler: Handler) -> Handler:
        async def gated(request: Request) -> Response:
            state = self.state
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                return await admit(request)
            finally:
                state.in_flight -= 1

        async def admit(request: Request) -> Response:
            settings = self.state.settings
            admitted = self.state.limit.arrive(time.monotonic())
            if settings.latency_ms > 0:
                await asyncio.sleep(settings.latency_ms / 1000)
            if not admitted:
                return self._too_many_requests()
            if self._rng.random() < settings.fault_5xx_rate:
                return sinch_error(503, "UNAVAILABLE", "The service is temporarily unavailable")
            refusal = self._authenticate(request)
            if refusal is None:
                refusal = self._check_project(request.path_params.get("project_id", ""))
            answer = refusal or await handler(request)
            if self._rng.random() < settings.fault_drop_rate:
                # The request was handled (a query was accepted), but the answer is lost: the
                # client cannot know, and a retry makes Sinch run the check twice.
                self.state.stats.answers_dropped += 1
                return DropConnectionResponse()
            return answer

        return gated

    def _too_many_requests(self) -> Response:
        self.state.stats.queries_refused["429"] += 1
        headers = {}
        if self.state.settings.retry_after:
            wait = self.state.limit.retry_after(time.monotonic())
            headers["Retry-After"] = str(max(1, round(wait + 0.5)))
        return sinch_error(429, "RESOURCE_EXHAUSTED", "Too many requests", headers=headers)

    def _authenticate(self, request: Request) -> Response | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            state = self.state.token_state(value)
            if state == "valid":
                return None
            challenge = f'Bearer error="invalid_token", error_description="token {state}"'
            message = "The access token expired" if state == "expired" else "Invalid token"
            headers = {"WWW-Authenticate": challenge}
            return sinch_error(401, "UNAUTHENTICATED", message, headers=headers)
        if scheme.lower() == "basic" and self._key_matches(value):
            return None
        return sinch_error(401, "UNAUTHENTICATED", "Missing or invalid credentials")

    def _key_matches(self, basic_value: str) -> bool:
        try:
            key_id, _, key_secret = base64.b64decode(basic_value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        wanted = self.state.settings
        return bool(key_id and key_secret) and (
            (not wanted.key_id or key_id == wanted.key_id)
            and (not wanted.key_secret or key_secret == wanted.key_secret)
        )

    def _check_project(self, project_id: str) -> Response | None:
        wanted = self.state.settings.project_id
        if wanted and project_id != wanted:
            return sinch_error(404, "NOT_FOUND", f"Project {project_id} not found")
        return None

    # -- OAuth2 -----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not self._key_matches(value):
            return JSONResponse({"error": "invalid_client"}, 401)
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        ttl = self.state.settings.token_ttl_seconds
        answer = {
            "access_token": self.state.issue_token(),
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": "",
        }
        return JSONResponse(answer)

    # -- capability:query -------------------------------------------------------------------

    async def capability_query(self, request: Request) -> Response:
        stats = self.state.stats
        stats.queries_received += 1
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return self._bad_request("Request body is not valid JSON")
        problem = _query_problem(body)
        if not problem and self.state.settings.processing_mode == DISPATCH_MODE:
            problem = DISPATCH_RECIPIENT if "contact_id" in body["recipient"] else ""
        if problem:
            return self._bad_request(problem)
        refusal = unknown_app(self.state.settings, body["app_id"])
        identities = self.checker.identities(body["recipient"])
        if refusal is None and identities is None:
            refusal = self._contact_refusal()
        if refusal is not None:
            stats.queries_refused[str(refusal.status_code)] += 1
            return refusal
        return self._accept(request.path_params["project_id"], body, identities)

    def _accept(
        self, project_id: str, body: dict[str, Any], identities: list[dict[str, str]] | None
    ) -> Response:
        """Answer 200 at once; the check's callbacks are queued for delivery."""
        app_id, recipient = body["app_id"], body["recipient"]
        request_id = str(body.get("request_id") or new_ulid())
        if self.state.seen_request(request_id):
            self.state.stats.request_ids_repeated += 1
        self.state.stats.queries_accepted += 1
        if identities is None:
            bodies = self.checker.contact_not_found(project_id, app_id, request_id, recipient)
        else:
            bodies = self.checker.callbacks(project_id, app_id, request_id, recipient, identities)
        self.deliverer.schedule(app_id, bodies)
        return JSONResponse({"app_id": app_id, "recipient": recipient, "request_id": request_id})

    def _bad_request(self, message: str) -> Response:
        self.state.stats.queries_refused["400"] += 1
        return sinch_error(400, "INVALID_ARGUMENT", message)

    def _contact_refusal(self) -> Response | None:
        """`contact_not_found = "error"`: the query itself is refused, naming the reason."""
        if self.state.settings.contact_not_found != "error":
            return None
        details = [CONTACT_NOT_FOUND_DETAIL]
        return sinch_error(404, "NOT_FOUND", "Contact not found", details=details)

    # -- the app (reference §10) ------------------------------------------------------------

    async def get_app(self, request: Request) -> Response:
        app_id, settings = request.path_params["app_id"], self.state.settings
        return unknown_app(settings, app_id) or JSONResponse(app_resource(settings, app_id))

    # -- /_sim: counters and knobs ----------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot(self.deliverer.pending))

    async def control(self, request: Request) -> Response:
        """Change knobs while running: {"fault_5xx_rate": 0.5, "clock_skew_seconds": 600}."""
        changes = orjson.loads(await request.body() or b"{}")
        if "clock_skew_seconds" in changes:
            self.state.clock_skew_seconds = float(changes.pop("clock_skew_seconds"))
        try:
            self.state.settings = dataclasses.replace(self.state.settings, **changes)
        except TypeError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        self.state.limit.limit = self.state.settings.rate_limit
        return JSONResponse(dataclasses.asdict(self.state.settings))

    async def expire_tokens(self, request: Request) -> Response:
        self.state.expire_tokens()
        return JSONResponse({"expired": len(self.state.tokens)})

    async def arrivals(self, request: Request) -> Response:
        """The latest API arrival times (CLOCK_MONOTONIC seconds): pacing diagnostics."""
        return JSONResponse({"clock": "monotonic", "arrivals": list(self.state.limit.recent)})

    async def reset_stats(self, request: Request) -> Response:
        """Zero the counters and the rate window (benchmarks measure one phase at a time)."""
        self.state.reset_counters()
        return JSONResponse({"reset": True})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})


def _query_problem(body: Any) -> str:
    """Sinch's validation of a capability:query body; '' when it is valid."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    unknown = sorted(set(body) - QUERY_FIELDS)
    if unknown:
        return f"unknown field '{unknown[0]}' in the query"
    if not body.get("app_id") or not isinstance(body["app_id"], str):
        return "app_id is required"
    if not isinstance(body.get("request_id", ""), str):
        return "request_id must be a string"
    recipient = body.get("recipient")
    if not isinstance(recipient, dict):
        return "recipient is required"
    return _recipient_problem(recipient)


def _recipient_problem(recipient: dict[str, Any]) -> str:
    if len(recipient) != 1 or not {"contact_id", "identified_by"} >= set(recipient):
        return "recipient must hold exactly one of contact_id or identified_by"
    if "contact_id" in recipient:
        contact_id = recipient["contact_id"]
        ok = isinstance(contact_id, str) and contact_id
        return "" if ok else "recipient.contact_id must be a non-empty string"
    identified_by = recipient["identified_by"]
    if not isinstance(identified_by, dict) or set(identified_by) != {"channel_identities"}:
        return "recipient.identified_by must hold channel_identities"
    identities = identified_by["channel_identities"]
    if not isinstance(identities, list) or not identities:
        return "recipient.identified_by.channel_identities must be a non-empty list"
    for index, item in enumerate(identities):
        problem = _recipient_identity_problem(item, f"channel_identities[{index}]")
        if problem:
            return problem
    return ""


def _recipient_identity_problem(item: Any, where: str) -> str:
    if not isinstance(item, dict) or set(item) != {"channel", "identity"}:
        return f"{where} must have exactly 'channel' and 'identity'"
    if item["channel"] not in CHANNELS:
        return f"{where}.channel: unknown channel {item['channel']!r}"
    if not isinstance(item["identity"], str) or not item["identity"]:
        return f"{where}.identity must be a non-empty string"
    return ""


def create_app(settings: SimulatorSettings) -> Starlette:
    sim = Simulator(settings)
    project = "/v1/projects/{project_id}"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with sim.deliverer.running_apart():  # callbacks leave from a thread of their own
            yield

    routes = [
        Route("/oauth2/token", sim.token, methods=["POST"]),
        Route(f"{project}/capability:query", sim.api(sim.capability_query), methods=["POST"]),
        Route(f"{project}/apps/{{app_id}}", sim.api(sim.get_app), methods=["GET"]),
        Route(f"{project}/webhooks", sim.api(sim.webhooks.create), methods=["POST"]),
        Route(f"{project}/apps/{{app_id}}/webhooks", sim.api(sim.webhooks.list), methods=["GET"]),
        Route(
            f"{project}/webhooks/{{webhook_id}}",
            sim.api(sim.webhooks.one),
            methods=["GET", "PATCH", "DELETE"],
        ),
        Route(f"{project}/contacts", sim.api(sim.contacts.create), methods=["POST"]),
        Route(f"{project}/contacts", sim.api(sim.contacts.list), methods=["GET"]),
        Route(f"{project}/contacts/{{contact_id}}", sim.api(sim.contacts.one), methods=["GET"]),
        Route("/_sim/stats", sim.stats, methods=["GET"]),
        Route("/_sim/control", sim.control, methods=["POST"]),
        Route("/_sim/expire-tokens", sim.expire_tokens, methods=["POST"]),
        Route("/_sim/reset", sim.reset_stats, methods=["POST"]),
        Route("/_sim/arrivals", sim.arrivals, methods=["GET"]),
        Route("/healthz", sim.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    return app
