"""Object storage (S3 and compatible servers): landing, lake and catalog beyond one machine.

`client.ObjectStore` is the one way to talk to it (boto3; why in its docstring and
docs/design.md); `location` parses `s3://bucket/prefix/` URLs; `settings` is `[storage]`;
`embedded` starts a real S3 server (SeaweedFS) on loopback for tests and `make run-s3`.
"""

from __future__ import annotations

from pipeline.storage.client import ObjectInfo, ObjectNotFound, ObjectStore, PreconditionFailed
from pipeline.storage.location import S3Location, is_s3, location, parse_s3

__all__ = [
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "PreconditionFailed",
    "S3Location",
    "is_s3",
    "location",
    "parse_s3",
]
