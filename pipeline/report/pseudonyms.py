"""Keyed pseudonyms for exports shared outside the team: HMAC-SHA256, computed inside DuckDB.

The same identity always maps to the same pseudonym under one key (so shared exports can
still be joined with each other), and without the key nobody can tell which number it was
(a plain hash of a phone number is reversed by trying every number).

    hmac_sql("identity", key)
    # -> sha256(unhex('<outer pad>') || unhex(sha256(unhex('<inner pad>') || encode(identity))))
"""

from __future__ import annotations

import hashlib

from pipeline.errors import ConfigError
from pipeline.settings import Secret

BLOCK = 64  # SHA-256's block size (RFC 2104)
KEY_VARIABLE = "CAPAUDIT_PSEUDONYM_KEY"


def hmac_sql(column: str, key: bytes) -> str:
    """An SQL expression for HMAC-SHA256(key, column) as hex, or NULL when column is NULL."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(BLOCK, b"\0")
    inner = bytes(b ^ 0x36 for b in padded).hex()
    outer = bytes(b ^ 0x5C for b in padded).hex()
    return (
        f"sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || encode({column}::VARCHAR))))"
    )


def pseudonym_key(secret: Secret | None) -> bytes:
    if secret is None or len(secret.reveal()) < 16:
        raise ConfigError(
            f"--pseudonymise needs {KEY_VARIABLE} in the environment: a secret of at least 16 "
            "characters, kept as long as pseudonymised exports must stay comparable"
        )
    return secret.reveal().encode("utf-8")
