"""The app's CAPABILITY webhook: ensure exactly one for our receiver URL (reference §6).

An update sends the whole webhook (`app_id`, `target`, `target_type`, `triggers`, `secret`;
the update model requires `target`) with an `update_mask` naming only the fields that differ,
so nothing else about the webhook changes, and nothing at all is sent when nothing differs.

The secret: Sinch shows it when a webhook is read (the SDKs' tests against Sinch's mock server
read it back from get and list), so it is compared like any field. Should an API ever leave it
out, there is no way to know what the webhook is signed with, so `secret` is always in the mask:
an extra idempotent update instead of a receiver refusing every callback for a stale secret. A
local fingerprint of the secret would not help: `webhooks ensure` and every run may run on
another host, and the webhook can be changed outside capaudit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.errors import SinchApiError, UsageError
from pipeline.sinch.client import SinchClient
from pipeline.sinch.models import CAPABILITY_TRIGGER, MAX_TARGET_LENGTH, MAX_WEBHOOKS_PER_APP

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnsureResult:
    webhook: dict[str, Any]
    action: str  # created / updated / unchanged


async def ensure_webhook(client: SinchClient, target: str, secret: str) -> EnsureResult:
    """Create the CAPABILITY webhook for `target`, or update the one that already points there.

    Running it twice leaves exactly one webhook for the target, and the second run sends no
    update; extra copies for the same target (left by earlier tools) are deleted, since each
    would deliver every callback again.
    """
    if len(target) > MAX_TARGET_LENGTH:
        raise UsageError(
            f"webhook target is {len(target)} characters; Sinch allows {MAX_TARGET_LENGTH}"
        )
    existing = await client.list_webhooks()
    same_target = [w for w in existing if w.get("target") == target]
    if same_target:
        keep, *extra = same_target
        for webhook in extra:
            await client.delete_webhook(str(webhook["id"]))
        return await _bring_up_to_date(client, keep, secret)
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


async def _bring_up_to_date(
    client: SinchClient, current: dict[str, Any], secret: str
) -> EnsureResult:
    wanted = {
        "app_id": client.app_id,
        "target": current["target"],
        "target_type": "HTTP",
        # Triggers someone else added stay: only CAPABILITY is ours to ensure.
        "triggers": sorted({*current.get("triggers", []), CAPABILITY_TRIGGER}),
        "secret": secret,
    }
    mask = changed_fields(current, wanted)
    if not mask:
        return EnsureResult(current, "unchanged")
    updated = await client.update_webhook(str(current["id"]), wanted, mask)
    log.info("updated webhook %s (%s)", current.get("id"), ", ".join(mask))
    return EnsureResult(updated or current, "updated")


def changed_fields(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The fields of `wanted` the webhook `current` does not have yet; a secret the API does
    not show counts as changed (see the module docstring)."""
    changed = []
    for field, value in wanted.items():
        shown = current.get(field)
        if field == "triggers":
            differs = set(shown or []) != set(value)
        elif field == "secret":
            differs = field not in current or shown != value
        else:
            differs = shown != value
        if differs:
            changed.append(field)
    return changed
