"""`[storage]`: how capaudit reaches S3-compatible object storage (`pipeline.storage`).

Only used where a location is an `s3://` URL (`[receiver] landing_url`, `[warehouse] lake_url`).
Credentials are never keys here: they come from the standard AWS chain (environment, profile,
web identity, container or instance role), so a config file can be committed and logged.

[storage]
endpoint_url = "http://127.0.0.1:8333"   # any S3-compatible server; "" = AWS_ENDPOINT_URL or AWS
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

ADDRESSING_STYLES = ("auto", "path", "virtual")


@dataclass(frozen=True)
class StorageSettings:
    # "" lets botocore decide: AWS_ENDPOINT_URL(_S3) or the profile's endpoint_url, else AWS.
    endpoint_url: str = ""
    region: str = ""  # "" = the AWS chain's (AWS_REGION, the profile), else us-east-1
    # "path" for servers that have no wildcard DNS (most self-hosted ones; "auto" picks path
    # for an IP address or a name without dots).
    addressing_style: str = "auto"
    # AWS advises giving up on a PUT that has not answered in 2 s and retrying it; a callback
    # sender waits on the receiver's PUT, so a stalled store must turn into a 503 quickly.
    connect_timeout_seconds: float = 2.0
    read_timeout_seconds: float = 5.0
    max_attempts: int = 3  # botocore's standard retry mode: throttling, 5xx, timeouts

    def checks(self) -> list[tuple[bool, str]]:
        """(valid, message) pairs in the form `settings._validate` takes."""
        return [
            (
                not self.endpoint_url or urlsplit(self.endpoint_url).scheme in ("http", "https"),
                "[storage] endpoint_url must be an http(s) URL, e.g. http://127.0.0.1:8333",
            ),
            (
                self.addressing_style in ADDRESSING_STYLES,
                f"[storage] addressing_style must be one of {', '.join(ADDRESSING_STYLES)}",
            ),
            (self.connect_timeout_seconds > 0, "[storage] connect_timeout_seconds must be > 0"),
            (self.read_timeout_seconds > 0, "[storage] read_timeout_seconds must be > 0"),
            (self.max_attempts >= 1, "[storage] max_attempts must be >= 1"),
        ]
