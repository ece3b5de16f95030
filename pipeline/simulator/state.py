"""The simulator's in-memory state: webhooks, contacts, tokens, counters. Webhooks and tokens
are also kept in `[simulator] state_path` when set, and created contacts beside it
(simulator/contacts.py): Sinch forgets none of them when it restarts."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.files import write_text_durably
from pipeline.ids import new_ulid
from pipeline.settings import SimulatorSettings
from pipeline.simulator.contacts import ContactBook, contacts_path
from pipeline.simulator.outcomes import OutcomeModel
from pipeline.simulator.windows import SlidingWindowLimit


@dataclass
class Webhook:
    id: str
    app_id: str
    target: str
    triggers: list[str]
    secret: str = ""
    target_type: str = "HTTP"
    client_credentials: dict[str, str] | None = None

    def public(self) -> dict[str, Any]:
        """The webhook as the API shows it. The secret is shown: the SDKs' tests against
        Sinch's mock server read it back from create, get, list and update alike."""
        shown = asdict(self)
        if self.client_credentials is None:
            del shown["client_credentials"]
        return shown


@dataclass
class Stats:
    queries_received: int = 0
    queries_accepted: int = 0
    queries_refused: Counter[str] = field(default_factory=Counter)
    request_ids_repeated: int = 0
    answers_dropped: int = 0
    checks: int = 0
    callbacks_generated: int = 0
    callbacks_without_request_id: int = 0
    callbacks_dropped: int = 0
    callbacks_duplicated: int = 0
    callbacks_delivered: int = 0
    duplicates_delivered: int = 0
    delivery_failures: int = 0
    callbacks_failed: int = 0
    tokens_issued: int = 0


class SimState:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.model = OutcomeModel(seed=settings.seed)
        self.limit = SlidingWindowLimit(settings.rate_limit)
        kept = _load_kept(settings.state_path)
        self.webhooks = {w["id"]: Webhook(**w) for w in kept.get("webhooks", [])}
        self.tokens: dict[str, float] = kept.get("tokens", {})  # token: expiry (epoch seconds)
        self.contacts = ContactBook(contacts_path(settings.state_path), self.model)
        # Request ids and identities are remembered by their hash (an int: 60-70 bytes an
        # entry where the strings took 95-127; at a million contacts, 3M identities and 1.1M
        # requests, 290 MB instead of 420). Ints are not tracked by the garbage collector, so
        # millions of entries do not make full collections (and loop stalls) long. Two of them
        # sharing a 64-bit hash in one simulator's life (about 1 in 10 million at that size)
        # would count a first check as a second one.
        self.request_ids: set[int] = set()
        self.checks_per_identity: Counter[int] = Counter()
        self.clock_skew_seconds = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = time.monotonic()

    # -- tokens -------------------------------------------------------------------------------

    def issue_token(self) -> str:
        token = new_ulid() + new_ulid()
        self.tokens[token] = time.time() + self.settings.token_ttl_seconds
        self.stats.tokens_issued += 1
        self.keep()
        return token

    def token_state(self, token: str) -> str:
        """'valid', 'expired' or 'unknown'."""
        expires = self.tokens.get(token)
        if expires is None:
            return "unknown"
        return "valid" if time.time() < expires else "expired"

    def expire_tokens(self) -> None:
        self.tokens = dict.fromkeys(self.tokens, 0.0)
        self.keep()

    # -- webhooks -----------------------------------------------------------------------------

    def add_webhook(
        self, app_id: str, target: str, triggers: list[str], secret: str = "", **more: Any
    ) -> Webhook:
        webhook = Webhook(new_ulid(), app_id, target, triggers, secret, **more)
        self.save_webhook(webhook)
        return webhook

    def save_webhook(self, webhook: Webhook) -> None:
        self.webhooks[webhook.id] = webhook
        self.keep()

    def delete_webhook(self, webhook_id: str) -> None:
        del self.webhooks[webhook_id]
        self.keep()

    def keep(self) -> None:
        """Keep the webhooks and tokens as they are now in `state_path` (if set), replaced
        atomically: written on each change of either (rare: a token lasts an hour)."""
        if self.settings.state_path:
            kept = {"webhooks": [asdict(w) for w in self.webhooks.values()], "tokens": self.tokens}
            write_text_durably(Path(self.settings.state_path), json.dumps(kept))

    def app_webhooks(self, app_id: str) -> list[Webhook]:
        return [w for w in self.webhooks.values() if w.app_id == app_id]

    def capability_webhooks(self, app_id: str) -> list[Webhook]:
        return [w for w in self.app_webhooks(app_id) if "CAPABILITY" in w.triggers]

    # -- checks -------------------------------------------------------------------------------

    def nth_check(self, channel: str, identity: str) -> int:
        key = hash((channel, identity))
        self.checks_per_identity[key] += 1
        return self.checks_per_identity[key]

    def seen_request(self, request_id: str) -> bool:
        """Remember `request_id`; whether it was seen before (sent again)."""
        key = hash(request_id)
        if key in self.request_ids:
            return True
        self.request_ids.add(key)
        return False

    def reset_counters(self) -> None:
        self.stats = Stats(tokens_issued=self.stats.tokens_issued)
        self.limit = SlidingWindowLimit(self.settings.rate_limit)
        self.request_ids.clear()
        self.max_in_flight = self.in_flight

    def snapshot(self, pending: int) -> dict[str, Any]:
        stats = asdict(self.stats)
        stats["queries_refused"] = dict(self.stats.queries_refused)
        stats["callbacks_due"] = self.stats.callbacks_generated - self.stats.callbacks_dropped
        stats["callbacks_pending"] = pending
        stats["max_requests_in_1s_window"] = self.limit.max_arrivals_in_window
        stats["max_requests_in_flight"] = self.max_in_flight
        stats["webhooks"] = len(self.webhooks)
        stats["contacts"] = self.contacts.created
        return stats


def _load_kept(path: str) -> dict[str, Any]:
    """What an earlier run of the simulator kept in `path` (nothing without one)."""
    if not path or not Path(path).exists():
        return {}
    try:
        kept: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        for webhook in kept.get("webhooks", []):
            Webhook(**webhook)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a simulator state file: {exc}") from exc
    return kept
