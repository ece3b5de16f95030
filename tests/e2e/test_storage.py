"""`pipeline.storage.ObjectStore` against the real S3 server: the five verbs, and a store that
does not answer turning into StorageUnavailable within the configured timeouts."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from pipeline.checks import run_checks
from pipeline.errors import StorageError, StorageUnavailable
from pipeline.settings import Secrets, Settings
from pipeline.storage import ObjectNotFound, ObjectStore, PreconditionFailed, location, parse_s3
from pipeline.storage.client import make_client
from pipeline.storage.embedded import ACCESS_KEY, EmbeddedS3
from pipeline.storage.settings import StorageSettings


def session(secret: str) -> Any:
    """Credentials handed in (not the environment's), as a test needs wrong ones."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret, region_name="us-east-1"
    )


def test_put_if_absent_get_list_delete(s3: EmbeddedS3, bucket: str) -> None:
    store = s3.store()
    for key in ("a/2026-12-07/h1/x", "a/2026-12-08/h1/y", "a/2026-12-08/h2/z", "b/other"):
        assert store.put_if_absent(bucket, key, key.encode())
    assert not store.put_if_absent(bucket, "a/2026-12-08/h1/y", b"again")
    assert store.get(bucket, "a/2026-12-08/h1/y")[0] == b"a/2026-12-08/h1/y"
    assert store.prefixes(bucket, "a/") == ["a/2026-12-07/", "a/2026-12-08/"]
    assert store.prefixes(bucket, "a/2026-12-08/") == ["a/2026-12-08/h1/", "a/2026-12-08/h2/"]
    listed = [o.key for o in store.objects(bucket, "a/", start_after="a/2026-12-07/h1/x")]
    assert listed == ["a/2026-12-08/h1/y", "a/2026-12-08/h2/z"]
    assert [o.size for o in store.objects(bucket, "b/")] == [len(b"b/other")]
    store.delete(bucket, ["a/2026-12-07/h1/x", "not/there"])
    with pytest.raises(ObjectNotFound):
        store.get(bucket, "a/2026-12-07/h1/x")
    assert store.head(bucket, "a/2026-12-07/h1/x") is None


def test_listing_pages_past_a_thousand_keys(s3: EmbeddedS3, bucket: str) -> None:
    store = s3.store()
    keys = [f"p/{n:05d}" for n in range(1001)]
    store.delete(bucket, [])  # nothing to do, no request
    for key in keys:
        store.put(bucket, key, b"")
    assert [o.key for o in store.objects(bucket, "p/")] == keys
    store.delete(bucket, keys)  # two requests: a thousand keys each at most
    assert list(store.objects(bucket, "p/")) == []


def test_if_match_guards_an_update(s3: EmbeddedS3, bucket: str) -> None:
    store = s3.store()
    etag = store.put(bucket, "manifest", b"1")
    newer = store.put(bucket, "manifest", b"2", if_match=etag)
    with pytest.raises(PreconditionFailed):
        store.put(bucket, "manifest", b"3", if_match=etag)
    assert store.get(bucket, "manifest") == (b"2", newer)


def test_a_refusal_is_a_storage_error_not_unavailable(s3: EmbeddedS3, bucket: str) -> None:
    store = ObjectStore(s3.settings(), client=make_client(s3.settings(), session("wrong")))
    with pytest.raises(StorageError, match="403") as caught:
        store.put(bucket, "k", b"")
    assert not isinstance(caught.value, StorageUnavailable)


@pytest.mark.timed  # asserts what happens within the store's timeouts
def test_a_store_that_does_not_answer_is_unavailable_within_its_timeouts() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings = StorageSettings(
            endpoint_url=endpoint,
            read_timeout_seconds=0.3,
            connect_timeout_seconds=0.3,
            max_attempts=2,
        )
        store = ObjectStore(settings, client=make_client(settings, session("s")))
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            store.put_if_absent("bkt", "k", b"x")
    # 2 attempts of 0.3 s and botocore's back-off (up to 1 s), on a busy machine
    assert time.monotonic() - started < 10


def test_locations_parse() -> None:
    assert parse_s3("s3://audit/landing").prefix == "landing/"
    assert parse_s3("s3://audit").url("x") == "s3://audit/x"
    assert str(location("data/landing")) == "data/landing"
    with pytest.raises(StorageError.__mro__[2]):  # CapauditError: a ConfigError
        parse_s3("s3:///nobucket")


def test_check_probes_each_configured_bucket(
    s3: EmbeddedS3, bucket: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    configured = settings.replace("receiver", landing_url=f"s3://{bucket}/landing/")
    configured = configured.replace("warehouse", lake_url="s3://no-such-bucket-here/lake/")
    configured = Settings(**{**configured.__dict__, "secrets": Secrets(None, None, ())})
    report = asyncio.run(run_checks(configured, budget_seconds=10.0))
    found = [c for c in report.checks if c.name == "storage"]
    assert [c.ok for c in found] == [True, False]
    assert "no-such-bucket-here" in found[1].detail
