"""The one way capaudit talks to object storage: boto3's S3 client behind five verbs.

    store = ObjectStore(settings.storage)
    store.put_if_absent("audit", "landing/2026-12-08/h1/h1-4242-ab12cd/0000000001.ndjson", data)
    store.get("audit", "lake/_published.json")           # (bytes, etag)
    for info in store.objects("audit", "landing/2026-12-08/", start_after=...): ...
    store.delete("audit", ["landing/2026-11-01/h1/.../0000000001.ndjson"])

Why boto3 (docs/design.md, "Why the main choices"): conditional writes are plain arguments
(`IfNoneMatch="*"`, `IfMatch=etag`) with a distinct 412; botocore's *standard* retry mode retries
throttling, 5xx and timeouts with capped exponential back-off and jitter, and its connect and read
timeouts are settings; the credential chain is the standard AWS one (environment, profiles, SSO,
web identity, container and instance roles) and `AWS_ENDPOINT_URL` is honoured by the SDK itself.
It is synchronous: the receiver calls it from a worker thread, as it calls fsync.

Every botocore error is translated here, once, into `StorageError` (an answer refusing the
request) or `StorageUnavailable` (no useful answer after the retries); `put_if_absent` turns
412 into False. Nothing here logs a credential or a request's headers.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pipeline.errors import StorageError, StorageUnavailable
from pipeline.storage.settings import StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")
DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys
# A conditional write racing another one on the same key: AWS answers 409 and says to retry.
CONFLICT_RETRIES = 5


class ObjectNotFound(StorageError):
    """No object under that key."""


class PreconditionFailed(StorageError):
    """A conditional request's condition did not hold (the key exists, the ETag changed)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: datetime


class ObjectStore:
    """S3 with capaudit's timeouts and retries; thread-safe (boto3 clients are)."""

    def __init__(self, settings: StorageSettings, *, client: S3Client | None = None) -> None:
        self.settings = settings
        self._client = client or make_client(settings)

    @property
    def client(self) -> S3Client:
        """The boto3 client itself, for what the verbs below do not cover (tests, tools)."""
        return self._client

    def put_if_absent(self, bucket: str, key: str, body: bytes) -> bool:
        """Create `key` with `body` unless it exists (`If-None-Match: *`): True if created,
        False if the key was already there (whoever wrote it)."""
        try:
            self._conditional(
                lambda: self._client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*"),
                bucket,
                key,
            )
        except PreconditionFailed:
            return False
        return True

    def put(self, bucket: str, key: str, body: bytes, *, if_match: str | None = None) -> str:
        """Write `key` (only if its ETag is still `if_match`, when given); its new ETag.
        Raises PreconditionFailed when the object changed since."""
        extra: dict[str, Any] = {"IfMatch": if_match} if if_match else {}
        answer = self._conditional(
            lambda: self._client.put_object(Bucket=bucket, Key=key, Body=body, **extra),
            bucket,
            key,
        )
        return str(answer["ETag"])

    def put_file(self, bucket: str, key: str, path: Path) -> None:
        """Upload a local file (multipart when large); the object appears whole or not at all."""
        self._call(lambda: self._client.upload_file(str(path), bucket, key), bucket, key)

    def get(self, bucket: str, key: str) -> tuple[bytes, str]:
        """The object's bytes and ETag; ObjectNotFound if there is none."""

        def read() -> tuple[bytes, str]:
            answer = self._client.get_object(Bucket=bucket, Key=key)
            return answer["Body"].read(), str(answer["ETag"])

        return self._call(read, bucket, key)

    def download(self, bucket: str, key: str, path: Path) -> None:
        self._call(lambda: self._client.download_file(bucket, key, str(path)), bucket, key)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            answer = self._call(
                lambda: self._client.head_object(Bucket=bucket, Key=key), bucket, key
            )
        except ObjectNotFound:
            return None
        return ObjectInfo(key, answer["ContentLength"], answer["ETag"], answer["LastModified"])

    def objects(self, bucket: str, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects under `prefix` in key order, after `start_after` when given."""
        extra: dict[str, Any] = {"StartAfter": start_after} if start_after else {}
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, **extra
        )
        with _translated(bucket, prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        item["Key"], item["Size"], item.get("ETag", ""), item["LastModified"]
                    )

    def prefixes(self, bucket: str, prefix: str) -> list[str]:
        """The "folders" right below `prefix` (common prefixes up to the next "/"), sorted."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        found: list[str] = []
        with _translated(bucket, prefix):
            for page in pages:
                found += [p["Prefix"] for p in page.get("CommonPrefixes", []) if "Prefix" in p]
        return sorted(found)

    def delete(self, bucket: str, keys: list[str]) -> None:
        """Delete `keys` (missing ones are no error), a thousand a request."""
        for start in range(0, len(keys), DELETE_BATCH):
            self._delete_batch(bucket, keys[start : start + DELETE_BATCH])

    def _delete_batch(self, bucket: str, keys: list[str]) -> None:
        objects: list[Any] = [{"Key": key} for key in keys]
        answer = self._call(
            lambda: self._client.delete_objects(
                Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
            ),
            bucket,
            keys[0],
        )
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise StorageError(
                f"s3://{bucket}/{first.get('Key')}: delete refused: {first.get('Code')}"
            )

    def probe(self, bucket: str, prefix: str) -> None:
        """One cheap request under `prefix`: raises unless the store answers and lets us in
        (a listing of one key, which a policy can grant for the prefix alone)."""
        self._call(
            lambda: self._client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1),
            bucket,
            prefix,
        )

    def create_bucket(self, bucket: str) -> None:
        """Create `bucket` if it is not there (tests, `make run-s3`)."""
        if self._call(lambda: _bucket_exists(self._client, bucket), bucket, ""):
            return
        self._call(lambda: self._client.create_bucket(Bucket=bucket), bucket, "")

    def _conditional(self, request: Callable[[], T], bucket: str, key: str) -> T:
        """`request`, retried while another conditional write to the key is in progress (409)."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                return self._call(request, bucket, key)
            except _ConcurrentWrite:
                log.debug(
                    "s3://%s/%s: concurrent conditional write, retrying (%d)", bucket, key, attempt
                )
        raise StorageUnavailable(f"s3://{bucket}/{key}: conditional writes kept conflicting")

    def _call(self, request: Callable[[], T], bucket: str, key: str) -> T:
        with _translated(bucket, key):
            return request()
        raise AssertionError("unreachable")  # pragma: no cover - _translated always raises


class _ConcurrentWrite(StorageError):
    pass


def _bucket_exists(client: S3Client, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:  # translated by the caller, except "not there"
        if _status(exc) == 404:
            return False
        raise
    return True


@contextlib.contextmanager
def _translated(bucket: str, key: str) -> Iterator[None]:
    """botocore's errors as capaudit's (the one boundary)."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = f"s3://{bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        raise _from_answer(exc, where) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise StorageError(
            f"{where}: no usable AWS credentials ({exc}); set them the standard way "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role)"
        ) from exc
    except HTTPClientError as exc:
        raise StorageUnavailable(f"{where}: object storage did not answer: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"{where}: {exc}") from exc


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _from_answer(exc: Any, where: str) -> StorageError:
    status = _status(exc)
    code = str(exc.response.get("Error", {}).get("Code", ""))
    message = f"{where}: {status} {code}".strip()
    if status == 412 or code == "PreconditionFailed":
        return PreconditionFailed(message)
    if status == 409 and code in ("ConditionalRequestConflict", "OperationAborted"):
        return _ConcurrentWrite(message)
    if status == 404 or code in ("NoSuchKey", "NotFound"):
        return ObjectNotFound(message)
    if status >= 500 or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable"):
        return StorageUnavailable(message)
    return StorageError(message)


@functools.cache
def shared_store(settings: StorageSettings) -> ObjectStore:
    """One store per settings in a process: a boto3 client costs ~50 ms to make, and keeps a
    pool of connections worth sharing."""
    return ObjectStore(settings)


def make_client(settings: StorageSettings, session: Any = None) -> S3Client:
    """A boto3 S3 client: credentials and (unless configured) endpoint from the AWS chain, or
    from `session` (a boto3 Session: tests and the embedded server hand their own keys)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        s3=cast(Any, {"addressing_style": settings.addressing_style}),
        # A write is checksummed only where the API requires it: some S3-compatible servers
        # store the aws-chunked framing of a streamed checksum as the object's body.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=32,
    )
    session = session or boto3.session.Session()
    client: S3Client = session.client(
        "s3",
        endpoint_url=settings.endpoint_url or None,
        region_name=settings.region or session.region_name or "us-east-1",
        config=config,
    )
    return client
