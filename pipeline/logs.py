"""Logging: readable lines on a terminal, JSON lines otherwise; phone numbers masked.

No secret is ever passed to a logger (settings hold them in `Secret`). Phone numbers can appear
in messages about contacts, so every record passes a filter that masks any run of 8 or more
digits (spaces and dashes allowed inside) to its last 3 (`+46701234567` -> `********567`), at
every level. Counts in messages are therefore written with thousands separators (`1,234,567`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

# A run of digits that may be a phone number; the report masks it in SQL (RE2 reads it alike).
PHONE_PATTERN = r"\+?\d[\d \-]{6,}\d"
DIGIT_RUN = re.compile(PHONE_PATTERN)
QUIET_LOGGERS = ("httpx", "httpcore", "uvicorn.access", "aiohttp.access")


def mask_digits(text: str) -> str:
    """Mask long digit runs (phone numbers), keeping the last three digits."""

    def _mask(match: re.Match[str]) -> str:
        run = match.group(0)
        digits = [c for c in run if c.isdigit()]
        if len(digits) < 8:
            return run
        return "*" * (len(digits) - 3) + "".join(digits[-3:])

    return DIGIT_RUN.sub(_mask, text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_digits(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = value
        if record.exc_info:
            entry["error"] = mask_digits(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def use_console(format_name: str) -> bool:
    return format_name == "console" or (format_name == "auto" and sys.stderr.isatty())


def configure_logging(level: str = "INFO", format_name: str = "auto") -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if use_console(format_name):
        from rich.console import Console
        from rich.logging import RichHandler

        # On stderr like every log line: stdout carries the command's result.
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def log_fields(logger: logging.Logger, message: str, **fields: object) -> None:
    """One INFO event: `fields` become JSON keys (and trail the message on a terminal)."""
    text = message + ("  " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else "")
    logger.info(text, extra={"fields": fields})
