"""The webhook receiver: verify, land durably, then acknowledge (DESIGN §7 rules 2 and 3).

    POST /callbacks/sinch   a Sinch callback: 200 once it is fsynced in a landing segment
    GET  /healthz           liveness and the segment being written
    GET  /metrics           Prometheus text: received, accepted, refused by reason, stale
                            signatures, landed, fsync

Refusals: 401 bad or missing signature (or, only when `[receiver] max_signature_age_seconds` is
set, one signed longer ago than that), 413 body too large, 415 not JSON, 400 malformed JSON,
405 wrong method (by the router), 503 while shutting down. A correctly signed callback is not
refused for its age by default: Sinch re-delivers after an outage on an unpublished schedule and
ingestion dedupes replays (docs/receiver.md); old signatures are counted and logged instead.
A repeated nonce is acknowledged (the sender must stop retrying) but not landed again. Valid
JSON that is not a CAPABILITY event is acknowledged and landed apart (`kind: other`): other
triggers may share the webhook. The receiver never opens the warehouse; `landing.ingest` does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pipeline.errors import ConfigError
from pipeline.landing.place import landing_writer
from pipeline.landing.segments import KIND_CAPABILITY, KIND_OTHER, encode_line
from pipeline.landing.writer import FSYNC_BUCKETS_MS
from pipeline.readable import duration
from pipeline.settings import ReceiverSettings, Secret
from pipeline.sinch import signing
from pipeline.sinch.models import CAPABILITY_EVENT_KEY
from pipeline.storage.settings import StorageSettings

log = logging.getLogger(__name__)
CALLBACK_PATH = "/callbacks/sinch"
MAX_REMEMBERED_NONCES = 2_000_000
# Nonces are remembered this long (or twice the age limit, if longer). Forgetting one costs
# nothing but a second landed copy of a late replay, which ingestion merges into one row.
NONCE_HORIZON_SECONDS = 3600.0
# A correctly signed callback signed this long ago (or this far ahead: a skewed clock) is counted
# and logged as stale, whether accepted or refused: Svix's window, a common default elsewhere.
STALE_SIGNATURE_SECONDS = 300.0
STALE_LOG_INTERVAL_SECONDS = 60.0
ACK = Response(b'{"ok":true}', 200, media_type="application/json")


class BodyTooLarge(Exception):
    pass


class NonceMemory:
    """Recently seen nonces, so a repeated delivery is acknowledged without landing it again;
    bounded by age (`horizon_seconds`) and count (`capacity`), whichever is reached first."""

    def __init__(self, horizon_seconds: float, capacity: int = MAX_REMEMBERED_NONCES) -> None:
        self.horizon = horizon_seconds
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, nonce: str, now: float) -> bool:
        """Remember `nonce`; False if it was already seen."""
        if nonce in self._seen:
            return False
        self._seen[nonce] = now
        while self._seen and (
            len(self._seen) > self.capacity or next(iter(self._seen.values())) < now - self.horizon
        ):
            self._seen.popitem(last=False)
        return True

    def forget(self, nonce: str) -> None:
        self._seen.pop(nonce, None)


class StaleSignatures:
    """Correctly signed callbacks signed long ago or ahead, by outcome (`accepted`, `refused`)
    and direction (`past`, `future`). Each outcome is logged at most once a minute, with how
    many came since: after an outage Sinch may re-deliver thousands at once."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._clock = clock
        self._logged_at = {"accepted": -math.inf, "refused": -math.inf}
        self._since_log = Counter[str]()

    def note(self, verdict: signing.Verdict) -> None:
        """Count `verdict` if it is about a stale signature (a refusal for age, or an accepted
        one older or further ahead than STALE_SIGNATURE_SECONDS)."""
        if verdict.reason == "stale_timestamp":
            outcome = "refused"
        elif verdict.ok and abs(verdict.age_seconds) > STALE_SIGNATURE_SECONDS:
            outcome = "accepted"
        else:
            return
        direction = "past" if verdict.age_seconds > 0 else "future"
        self.counts[outcome, direction] += 1
        self._since_log[outcome] += 1
        if self._clock() - self._logged_at[outcome] >= STALE_LOG_INTERVAL_SECONDS:
            self._log(outcome, verdict)

    def _log(self, outcome: str, verdict: signing.Verdict) -> None:
        age = verdict.age_seconds
        when = f"{duration(age)} ago" if age > 0 else f"{duration(-age)} in the future: clock skew?"
        action = "refused (max_signature_age_seconds)" if outcome == "refused" else "accepted"
        log.log(
            logging.WARNING if outcome == "refused" else logging.INFO,
            "%s a correctly signed callback signed %s (nonce %s); %d stale signatures %s "
            "since the last such line",
            action,
            when,
            verdict.nonce,
            self._since_log[outcome],
            outcome,
        )
        self._logged_at[outcome] = self._clock()
        self._since_log[outcome] = 0

    def prometheus_lines(self) -> list[str]:
        metric = "capaudit_receiver_stale_signatures_total"
        lines = [f"# TYPE {metric} counter"]
        for outcome in ("accepted", "refused"):
            for direction in ("past", "future"):
                count = self.counts[outcome, direction]
                lines.append(f'{metric}{{outcome="{outcome}",direction="{direction}"}} {count}')
        return lines


class Receiver:
    def __init__(
        self,
        settings: ReceiverSettings,
        secrets: tuple[Secret, ...],
        storage: StorageSettings | None = None,
    ) -> None:
        if not secrets and not settings.insecure:
            raise ConfigError(
                "the receiver needs CAPAUDIT_WEBHOOK_SECRET (or [receiver] insecure = true, "
                "which accepts unsigned callbacks and is for local experiments only)"
            )
        self.settings = settings
        self.secrets = tuple(s.reveal() for s in secrets)
        self.writer = landing_writer(settings, storage or StorageSettings())
        self.nonces = NonceMemory(
            max(NONCE_HORIZON_SECONDS, 2 * settings.max_signature_age_seconds)
        )
        self.stale = StaleSignatures()
        self.counts: Counter[str] = Counter()
        self.landing: dict[str, asyncio.Future[bool]] = {}  # nonce -> its write in progress
        self.refused: Counter[str] = Counter()

    async def callback(self, request: Request) -> Response:
        self.counts["received"] += 1
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return self._refuse(415, "unsupported_media_type")
        try:
            body = await self._read_body(request)
        except BodyTooLarge:
            return self._refuse(413, "body_too_large")
        nonce = await self._verify(request, body)
        if isinstance(nonce, Response):
            return nonce
        if nonce in self.landing:  # the same delivery again while its write is in progress
            self.counts["replayed"] += 1
            durable = await asyncio.shield(self.landing[nonce])
            return ACK if durable else self._refuse(503, "not_durable")
        if nonce and not self.nonces.first_time(nonce, time.time()):
            self.counts["replayed"] += 1
            return ACK
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            self.nonces.forget(nonce)
            return self._refuse(400, "malformed_json")
        if not isinstance(event, dict):
            self.nonces.forget(nonce)
            return self._refuse(400, "not_an_object")
        kind = KIND_CAPABILITY if CAPABILITY_EVENT_KEY in event else KIND_OTHER
        line = encode_line(body, nonce, self.writer.writer_id, kind, datetime.now(UTC))
        if not await self._land(nonce, line):
            return self._refuse(503, "not_durable")
        self.counts["accepted"] += 1
        self.counts[f"landed_{kind}"] += 1
        return ACK

    async def _land(self, nonce: str, line: bytes) -> bool:
        """Append durably; a copy of this delivery arriving meanwhile waits for the outcome."""
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if nonce:
            self.landing[nonce] = outcome
        try:
            await self.writer.append(line)
            outcome.set_result(True)
        except (OSError, RuntimeError) as exc:
            # Not on disk, so not acknowledged: Sinch retries, and this nonce must be accepted then.
            self.nonces.forget(nonce)
            # An unhealthy writer has said why once already: one line per refused callback
            # would flood the log through a storage outage.
            log.log(
                logging.ERROR if self.writer.healthy else logging.DEBUG, "landing failed: %s", exc
            )
            outcome.set_result(False)
        finally:
            if not outcome.done():  # cancelled mid-write: copies waiting must not hang
                outcome.set_result(False)
            self.landing.pop(nonce, None)
        return outcome.result()

    async def _verify(self, request: Request, body: bytes) -> str | Response:
        """The delivery's nonce if it may be landed, else the refusal to send."""
        if not self.secrets:
            log.warning("receiver is insecure: accepting a callback without checking a signature")
            return request.headers.get(signing.NONCE_HEADER, "")
        verdict = signing.verify(
            body,
            request.headers,
            self.secrets,
            now=time.time(),
            max_age_seconds=self.settings.max_signature_age_seconds,
        )
        self.stale.note(verdict)
        if not verdict.ok:
            return self._refuse(401, verdict.reason)
        return verdict.nonce

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.settings.max_body_bytes:
            raise BodyTooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.settings.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _refuse(self, status: int, reason: str) -> Response:
        self.refused[reason] += 1
        log.debug("refused a callback: %s %s", status, reason)
        return Response(orjson.dumps({"error": reason}), status, media_type="application/json")

    async def health(self, request: Request) -> Response:
        healthy = self.writer.healthy
        body = {
            "ok": healthy,
            "problem": self.writer.failure,
            "pid": os.getpid(),
            "writer": self.writer.writer_id,
            "segment": self.writer.current_name,
        }
        return Response(orjson.dumps(body), 200 if healthy else 503, media_type="application/json")

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(self.prometheus_text())

    def prometheus_text(self) -> str:
        lines = []
        for name in ("received", "accepted", "replayed", "landed_capability", "landed_other"):
            metric = f"capaudit_receiver_callbacks_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {self.counts[name]}"]
        lines.append("# TYPE capaudit_receiver_callbacks_refused_total counter")
        for reason, count in sorted(self.refused.items()):
            lines.append(f'capaudit_receiver_callbacks_refused_total{{reason="{reason}"}} {count}')
        lines += self.stale.prometheus_lines()
        writer = self.writer.metrics
        lines.append("# TYPE capaudit_receiver_fsync_seconds histogram")
        for bound, count in zip(FSYNC_BUCKETS_MS, writer.fsync_buckets, strict=True):
            lines.append(f'capaudit_receiver_fsync_seconds_bucket{{le="{bound / 1000}"}} {count}')
        lines += [
            f'capaudit_receiver_fsync_seconds_bucket{{le="+Inf"}} {writer.batches}',
            f"capaudit_receiver_fsync_seconds_sum {writer.fsync_seconds_sum:.6f}",
            f"capaudit_receiver_fsync_seconds_count {writer.batches}",
            "# TYPE capaudit_receiver_segments_closed_total counter",
            f"capaudit_receiver_segments_closed_total {writer.segments_closed}",
        ]
        return "\n".join(lines) + "\n"


def create_app(
    settings: ReceiverSettings,
    secrets: tuple[Secret, ...],
    storage: StorageSettings | None = None,
) -> Starlette:
    """The receiver as an ASGI app; its landing writer lives for the app's lifespan."""
    receiver = Receiver(settings, secrets, storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await receiver.writer.start()
        where = settings.landing_url or settings.landing_dir
        log.info("receiver landing into %s as %s", where, receiver.writer.writer_id)
        try:
            yield
        finally:
            await receiver.writer.close()  # graceful shutdown: flush and seal the segment

    app = Starlette(
        routes=[
            Route(CALLBACK_PATH, receiver.callback, methods=["POST"]),
            Route("/healthz", receiver.health, methods=["GET"]),
            Route("/metrics", receiver.metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.receiver = receiver
    return app
