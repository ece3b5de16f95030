"""Where something lives: a local directory or an `s3://bucket/prefix/` URL.

location("s3://audit/landing/")  # S3Location(bucket="audit", prefix="landing/")
location("data/landing")         # PosixPath('data/landing')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigError

SCHEME = "s3://"


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    def key(self, relative: str) -> str:
        return self.prefix + relative

    def relative(self, key: str) -> str:
        return key.removeprefix(self.prefix)

    def url(self, relative: str = "") -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}{relative}"

    def child(self, relative: str) -> S3Location:
        """The location `relative` (a folder) below this one."""
        return S3Location(self.bucket, self.key(relative.strip("/") + "/"))

    def __str__(self) -> str:
        return self.url()


def is_s3(text: str | Path) -> bool:
    return str(text).startswith(SCHEME)


def parse_s3(url: str, where: str = "") -> S3Location:
    """`s3://bucket[/prefix]` as a location; the prefix always ends in "/"."""
    parts = urlsplit(url)
    prefix = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{where or url}: expected s3://bucket/prefix/, got {url!r}")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Location(parts.netloc, prefix)


def location(text: str, where: str = "") -> Path | S3Location:
    return parse_s3(text, where) if is_s3(text) else Path(text)
