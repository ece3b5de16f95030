"""The simulator's HTTP API: Sinch's paths and answers, plus `/_sim/*` for tests and operators.

    app = create_app(settings.simulator)      # an ASGI app; `capaudit simulate` serves it

Every API call passes the same gate as on Sinch: the project-wide rate limit (sliding one-second
window, 429 with or without `Retry-After`), injected faults (503, dropped connections), the
simulated network latency and authentication (OAuth2 bearer token or Basic access key).
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
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pipeline.ids import new_ulid
from pipeline.settings import SimulatorSettings
from pipeline.simulator.deliverer import Deliverer
from pipeline.simulator.state import MAX_TARGET_LENGTH, MAX_WEBHOOKS_PER_APP, SimState
from pipeline.sinch.models import CAPABILITY_EVENT_KEY, CHANNELS, NO_CAPABILITY, error_body

Handler = Callable[[Request], Awaitable[Response]]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class DroppedConnection(Exception):
    """Raised after the response head is sent: the server closes the connection mid-response."""


class DropConnectionResponse(Response):
    """Promises a body and then breaks the connection, like a reset mid-request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]}
        )
        raise DroppedConnection


def sinch_error(status: int, grpc_status: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(error_body(status, grpc_status, message), status, headers=headers or None)


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Simulator:
    """Holds the state and the deliverer; its methods are the route handlers."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.state = SimState(settings)
        self.deliverer = Deliverer(self.state)
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
        return sinch_error(429, "RESOURCE_EXHAUSTED", "Too many requests", **headers)

    def _authenticate(self, request: Request) -> Response | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            state = self.state.token_state(value)
            if state == "valid":
                return None
            challenge = f'Bearer error="invalid_token", error_description="token {state}"'
            message = "The access token expired" if state == "expired" else "Invalid token"
            return sinch_error(401, "UNAUTHENTICATED", message, **{"WWW-Authenticate": challenge})
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
        if problem:
            return self._bad_request(problem)
        wanted_app = self.state.settings.app_id
        if wanted_app and body["app_id"] != wanted_app:
            stats.queries_refused["404"] += 1
            return sinch_error(404, "NOT_FOUND", f"App {body['app_id']} not found")
        request_id = str(body.get("request_id") or new_ulid())
        if request_id in self.state.request_ids:
            stats.request_ids_repeated += 1
        self.state.request_ids.add(request_id)
        stats.queries_accepted += 1
        project_id = request.path_params["project_id"]
        bodies = self._check(project_id, body["app_id"], request_id, body["recipient"])
        self.deliverer.schedule(body["app_id"], bodies)
        return JSONResponse(
            {"app_id": body["app_id"], "recipient": body["recipient"], "request_id": request_id}
        )

    def _bad_request(self, message: str) -> Response:
        self.state.stats.queries_refused["400"] += 1
        return sinch_error(400, "INVALID_ARGUMENT", message)

    def _check(
        self, project_id: str, app_id: str, request_id: str, recipient: dict[str, Any]
    ) -> list[bytes]:
        """Run the capability check now; the answers are delivered later as callbacks."""
        contact_id = recipient.get("contact_id", "")
        if contact_id:
            contact = self.state.contacts.get(contact_id)
            if contact is None:
                unknown = {
                    "capability_status": NO_CAPABILITY,
                    "reason": _reason("CONTACT_NOT_FOUND"),
                }
                return [
                    _callback(
                        project_id=project_id,
                        app_id=app_id,
                        request_id=self._echoed(request_id, "", contact_id, 1),
                        contact_id=contact_id,
                        channel="",
                        identity="",
                        note=unknown,
                    )
                ]
            identities = contact["channel_identities"]
        else:
            identities = recipient["identified_by"]["channel_identities"]
        bodies = []
        for item in identities:
            channel, identity = item["channel"], item["identity"]
            self.state.stats.checks += 1
            nth = self.state.nth_check(channel, identity)
            outcome = self.state.model.check(channel, identity, nth)
            note: dict[str, Any] = {
                "capability_status": outcome.status,
                "channel_capabilities": list(outcome.capabilities),
            }
            if outcome.reason:
                note["reason"] = _reason(outcome.reason)
            bodies.append(
                _callback(
                    project_id=project_id,
                    app_id=app_id,
                    request_id=self._echoed(request_id, channel, identity, nth),
                    contact_id=contact_id,
                    channel=channel,
                    identity=identity,
                    note=note,
                )
            )
        return bodies

    def _echoed(self, request_id: str, channel: str, identity: str, nth_check: int) -> str:
        """The request_id the callback carries; '' (left out) for `omit_request_id_share`."""
        share = self.state.settings.omit_request_id_share
        omit = self.state.model.omits_request_id(channel, identity, nth_check, share)
        if omit:
            self.state.stats.callbacks_without_request_id += 1
        return "" if omit else request_id

    # -- webhooks (reference §6) ------------------------------------------------------------

    async def create_webhook(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            app_id, target = str(body["app_id"]), str(body["target"])
            triggers = [str(t) for t in body.get("triggers", [])]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return sinch_error(400, "INVALID_ARGUMENT", "app_id and target are required")
        if len(target) > MAX_TARGET_LENGTH or not target.startswith(("http://", "https://")):
            return sinch_error(400, "INVALID_ARGUMENT", "target must be an http(s) URL")
        if len(self.state.app_webhooks(app_id)) >= MAX_WEBHOOKS_PER_APP:
            return sinch_error(
                400, "INVALID_ARGUMENT", f"App {app_id} already has {MAX_WEBHOOKS_PER_APP} webhooks"
            )
        webhook = self.state.add_webhook(app_id, target, triggers, str(body.get("secret", "")))
        return JSONResponse(webhook.public())

    async def list_webhooks(self, request: Request) -> Response:
        hooks = self.state.app_webhooks(request.path_params["app_id"])
        return JSONResponse({"webhooks": [w.public() for w in hooks]})

    async def one_webhook(self, request: Request) -> Response:
        webhook = self.state.webhooks.get(request.path_params["webhook_id"])
        if webhook is None:
            return sinch_error(404, "NOT_FOUND", "Webhook not found")
        if request.method == "DELETE":
            del self.state.webhooks[webhook.id]
            self.state.keep()
            return JSONResponse({})
        if request.method == "PATCH":
            changes = orjson.loads(await request.body() or b"{}")
            for key in ("target", "triggers", "secret"):
                if key in changes:
                    setattr(webhook, key, changes[key])
            self.state.keep()
        return JSONResponse(webhook.public())

    # -- contacts (reference §8) ------------------------------------------------------------

    async def create_contact(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            identities = [
                {"channel": str(i["channel"]), "identity": str(i["identity"])}
                for i in body["channel_identities"]
            ]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return sinch_error(400, "INVALID_ARGUMENT", "channel_identities are required")
        extra = {k: body.get(k, "") for k in ("display_name", "email", "external_id", "metadata")}
        return JSONResponse(self.state.add_contact(identities, **extra))

    async def get_contact(self, request: Request) -> Response:
        contact = self.state.contacts.get(request.path_params["contact_id"])
        if contact is None:
            return sinch_error(404, "NOT_FOUND", "Contact not found")
        return JSONResponse(contact)

    async def find_contacts(self, request: Request) -> Response:
        channel, identity = (
            request.query_params.get("channel"),
            request.query_params.get("identity"),
        )
        found = [
            c
            for c in self.state.contacts.values()
            if any(
                i["channel"] == channel and i["identity"] == identity
                for i in c["channel_identities"]
            )
        ]
        return JSONResponse({"contacts": found, "total_size": len(found)})

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
    if not body.get("app_id"):
        return "app_id is required"
    recipient = body.get("recipient")
    if not isinstance(recipient, dict):
        return "recipient is required"
    has_contact, has_ids = "contact_id" in recipient, "identified_by" in recipient
    if has_contact == has_ids:
        return "recipient must hold exactly one of contact_id or identified_by"
    if has_contact:
        return (
            ""
            if isinstance(recipient["contact_id"], str) and recipient["contact_id"]
            else ("recipient.contact_id must be a non-empty string")
        )
    identities = (recipient["identified_by"] or {}).get("channel_identities")
    if not isinstance(identities, list) or not identities:
        return "recipient.identified_by.channel_identities must be a non-empty list"
    for index, item in enumerate(identities):
        where = f"channel_identities[{index}]"
        if not isinstance(item, dict) or set(item) != {"channel", "identity"}:
            return f"{where} must have exactly 'channel' and 'identity'"
        if item["channel"] not in CHANNELS:
            return f"{where}.channel: unknown channel {item['channel']!r}"
        if not isinstance(item["identity"], str) or not item["identity"]:
            return f"{where}.identity must be a non-empty string"
    return ""


def _reason(code: str) -> dict[str, str]:
    description = code.replace("_", " ").capitalize()
    return {"code": code, "description": description, "sub_code": "UNSPECIFIED_SUB_CODE"}


def _callback(
    *,
    project_id: str,
    app_id: str,
    request_id: str,
    contact_id: str,
    channel: str,
    identity: str,
    note: dict[str, Any],
) -> bytes:
    stamp = now_iso()
    notification = {
        **({"request_id": request_id} if request_id else {}),
        "contact_id": contact_id,
        "channel": channel,
        "identity": identity,
        **note,
    }
    return orjson.dumps(
        {
            "app_id": app_id,
            "project_id": project_id,
            "accepted_time": stamp,
            "event_time": stamp,
            "message_metadata": "",
            "correlation_id": "",
            CAPABILITY_EVENT_KEY: notification,
        }
    )


def create_app(settings: SimulatorSettings) -> Starlette:
    sim = Simulator(settings)
    project = "/v1/projects/{project_id}"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(sim.deliverer.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes = [
        Route("/oauth2/token", sim.token, methods=["POST"]),
        Route(f"{project}/capability:query", sim.api(sim.capability_query), methods=["POST"]),
        Route(f"{project}/webhooks", sim.api(sim.create_webhook), methods=["POST"]),
        Route(f"{project}/apps/{{app_id}}/webhooks", sim.api(sim.list_webhooks), methods=["GET"]),
        Route(
            f"{project}/webhooks/{{webhook_id}}",
            sim.api(sim.one_webhook),
            methods=["GET", "PATCH", "DELETE"],
        ),
        Route(f"{project}/contacts", sim.api(sim.create_contact), methods=["POST"]),
        Route(f"{project}/contacts", sim.api(sim.find_contacts), methods=["GET"]),
        Route(f"{project}/contacts/{{contact_id}}", sim.api(sim.get_contact), methods=["GET"]),
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
