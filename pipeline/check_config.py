"""What `capaudit check` finds in the configuration itself, before any request.

A config that parses is not yet ready: the example's placeholders (`YOUR-PROJECT-ID`,
`capaudit.example.com`) parse fine, a short webhook secret verifies fine, and a rate above what
Sinch allows only earns 429s. Each finding names the key; a secret's value is never shown.

    placeholders(settings)  # {"[sinch] project_id": "YOUR-PROJECT-ID", ...}
"""

from __future__ import annotations

from dataclasses import fields
from urllib.parse import urlsplit

from pipeline.check_runner import Check
from pipeline.settings import SECTIONS, Settings
from pipeline.submit.dispatch import SINCH_MAX_RATE

# The example config's placeholders: "YOUR-..." values and hosts under the domains RFC 2606
# reserves for documentation (capaudit.example.com), which no real receiver or API can have.
PLACEHOLDER_MARKS = ("YOUR-", "YOUR_")
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")
# The webhook secret is an HMAC-SHA256 key: RFC 2104 §3 discourages keys shorter than the hash's
# output (32 bytes), and `openssl rand -base64 32` (docs/operations.md) gives 44 characters.
WEBHOOK_SECRET_MIN_CHARS = 32
SECRET_NAMES = ("SINCH_KEY_ID", "SINCH_KEY_SECRET", "CAPAUDIT_WEBHOOK_SECRET")


def is_placeholder(value: str) -> bool:
    if any(mark in value for mark in PLACEHOLDER_MARKS):
        return True
    host = (urlsplit(value).hostname if "://" in value else value) or ""
    return any(host == domain or host.endswith(f".{domain}") for domain in EXAMPLE_DOMAINS)


def placeholders(settings: Settings) -> dict[str, str]:
    """Every key still holding a placeholder, as "[section] key" -> its value."""
    found: dict[str, str] = {}
    for section in SECTIONS:
        values = getattr(settings, section)
        for field in fields(values):
            value = getattr(values, field.name)
            texts = value if isinstance(value, tuple) else (value,)
            if any(isinstance(text, str) and is_placeholder(text) for text in texts):
                found[f"[{section}] {field.name}"] = str(value)
    return found


def config_check(settings: Settings) -> Check:
    left = placeholders(settings)
    if not left:
        return Check("config", True, f"{settings.source} is valid")
    named = ", ".join(f"{key} = {value!r}" for key, value in left.items())
    return Check("config", False, f"{settings.source}: placeholders left in {named}")


def secrets_check(settings: Settings) -> Check:
    values = settings.secrets
    missing = [
        name
        for name, value in zip(
            SECRET_NAMES, (values.key_id, values.key_secret, values.webhook_secret), strict=True
        )
        if value is None
    ]
    short = [
        _nth(position, len(values.webhook_secrets))
        for position, secret in enumerate(values.webhook_secrets, 1)
        if len(secret.reveal()) < WEBHOOK_SECRET_MIN_CHARS
    ]
    problems = [f"not set: {', '.join(missing)}"] if missing else []
    if short:
        problems.append(
            f"{', '.join(short)} shorter than {WEBHOOK_SECRET_MIN_CHARS} characters "
            "(make one with `openssl rand -base64 32`)"
        )
    if problems:
        return Check("secrets", False, "; ".join(problems))
    return Check("secrets", True, "all three are set (values not shown)")


def _nth(position: int, count: int) -> str:
    """Which webhook secret: the only one, or its place in the rotation list."""
    if count == 1:
        return "CAPAUDIT_WEBHOOK_SECRET is"
    return f"CAPAUDIT_WEBHOOK_SECRET's secret {position} of {count} is"


def rate_check(settings: Settings) -> Check:
    rate = settings.dispatch.rate_per_second
    if rate > SINCH_MAX_RATE:
        return Check(
            "rate",
            True,
            f"[dispatch] rate_per_second = {rate:g} is above Sinch's {SINCH_MAX_RATE:g} queries/s "
            f"per project: capaudit sends at most {SINCH_MAX_RATE:g}/s",
            warning=True,
        )
    return Check(
        "rate",
        True,
        f"[dispatch] rate_per_second = {rate:g}, within Sinch's {SINCH_MAX_RATE:g}/s per project",
    )
