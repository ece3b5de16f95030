"""A real S3 server for the tests (SeaweedFS, `pipeline.storage.embedded`).

Starting one costs about 3.5-8 s and stopping it 3 s (SIGTERM, then SIGKILL as the recipe
says), ~150 MB of memory while it runs. So `s3` is one server for the whole session, started by
the first test that asks for it: every test gets a bucket of its own (`bucket`), so none sees
another's objects. A test that freezes the server (SIGSTOP, to play a store outage) resumes it
in a `finally`, so the tests after it find it answering.

    def test_something(s3: EmbeddedS3, bucket: str) -> None:
        s3.store().put_if_absent(bucket, "key", b"body")
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pipeline.storage.embedded import EmbeddedS3, embedded_s3

_buckets = itertools.count(1)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """A running SeaweedFS S3 gateway on free loopback ports, shared by the session."""
    with embedded_s3(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def bucket(s3: EmbeddedS3) -> str:
    """A new, empty bucket on the module's server."""
    name = f"t{os.getpid()}-{next(_buckets)}"
    s3.store().create_bucket(name)
    return name
