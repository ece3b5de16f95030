"""The S3 server the tests start is a real one, and keeps the promise landing relies on: of
concurrent conditional PUTs (`If-None-Match: *`) of one new key exactly one succeeds. SeaweedFS
fixed a race here only recently (PR 9639, May 2026): a regression must not pass silently.

Its fix makes the losers of a race wait on a lock in steps of about a second, so a trial takes
1-3 s: a few trials here (the reference measured 75 offline), for the suite's time budget."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.storage.client import ObjectStore
from pipeline.storage.embedded import EmbeddedS3

RACERS = 8


def race(store: ObjectStore, bucket_name: str, key: str, size: int) -> tuple[list[bool], bytes]:
    """`RACERS` threads PUT `key` at once, each its own body; (who won, what is stored)."""
    start = threading.Barrier(RACERS)

    def put(index: int) -> bool:
        body = bytes([index]) * size
        start.wait()
        return store.put_if_absent(bucket_name, key, body)

    with ThreadPoolExecutor(RACERS) as pool:
        won = list(pool.map(put, range(RACERS)))
    return won, store.get(bucket_name, key)[0]


@pytest.mark.parametrize(("size", "trials"), [(64, 5), (1 << 20, 2)])
def test_concurrent_conditional_puts_let_exactly_one_through(
    s3: EmbeddedS3,
    bucket: str,
    size: int,
    trials: int,
) -> None:
    store = s3.store()
    for trial in range(trials):
        won, stored = race(store, bucket, f"race/{size}/{trial}", size)
        assert won.count(True) == 1, f"trial {trial}: {won.count(True)} PUTs won"
        assert stored == bytes([won.index(True)]) * size  # the winner's body, whole


def test_a_second_conditional_put_is_refused_and_changes_nothing(
    s3: EmbeddedS3,
    bucket: str,
) -> None:
    store = s3.store()
    assert store.put_if_absent(bucket, "k", b"first")
    assert not store.put_if_absent(bucket, "k", b"second")
    body, etag = store.get(bucket, "k")
    assert body == b"first"
    assert store.put(bucket, "k", b"third", if_match=etag) != etag
