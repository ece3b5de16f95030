"""The app's CAPABILITY webhook: ensure exactly one for our receiver URL (reference §6)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.errors import SinchApiError, UsageError
from pipeline.sinch.client import CAPABILITY_TRIGGER, SinchClient

log = logging.getLogger(__name__)
MAX_WEBHOOKS_PER_APP = 5
MAX_TARGET_LENGTH = 742


@dataclass(frozen=True)
class EnsureResult:
    webhook: dict[str, Any]
    action: str  # created / updated


async def ensure_webhook(client: SinchClient, target: str, secret: str) -> EnsureResult:
    """Create the CAPABILITY webhook for `target`, or update the one that already points there.

    Running it twice leaves exactly one webhook for the target; extra copies for the same
    target (left by earlier tools) are deleted, since each would deliver every callback again.
    """
    if len(target) > MAX_TARGET_LENGTH:
        raise UsageError(f"webhook target is {len(target)} characters; Sinch allows 742")
    existing = await client.list_webhooks()
    same_target = [w for w in existing if w.get("target") == target]
    if same_target:
        keep, *extra = same_target
        for webhook in extra:
            await client.delete_webhook(str(webhook["id"]))
        triggers = sorted({*keep.get("triggers", []), CAPABILITY_TRIGGER})
        updated = await client.update_webhook(str(keep["id"]), triggers=triggers, secret=secret)
        return EnsureResult(updated or keep, "updated")
    if len(existing) >= MAX_WEBHOOKS_PER_APP:
        raise UsageError(
            f"app {client.app_id} already has {len(existing)} webhooks, Sinch's maximum; "
            "delete one (capaudit webhooks list / delete ID) or reuse one for this target"
        )
    try:
        created = await client.create_webhook(target, secret)
    except SinchApiError as exc:
        raise UsageError(f"Sinch refused to create the webhook for {target}: {exc}") from exc
    log.info("registered CAPABILITY webhook %s -> %s", created.get("id"), target)
    return EnsureResult(created, "created")
