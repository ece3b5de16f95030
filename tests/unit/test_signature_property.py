"""Property: any byte flipped in the body, nonce, timestamp or signature gives 401."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.sinch import signing
from tests.conftest import WEBHOOK_SECRET, receiver, signed

BODY = b'{"app_id":"a","capability_notification":{"request_id":"r","channel":"SMS"}}'
FIELDS = ("body", signing.NONCE_HEADER, signing.TIMESTAMP_HEADER, signing.SIGNATURE_HEADER)


@pytest.fixture(scope="module")
def callback_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    landing = tmp_path_factory.mktemp("landing")
    with receiver(None, "--landing-dir", str(landing)) as url:
        yield f"{url}/callbacks/sinch"


def flip(value: bytes, position: int, bit: int) -> bytes:
    data = bytearray(value)
    data[position % len(data)] ^= 1 << bit
    return bytes(data)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), position=st.integers(0, 10_000), bit=st.integers(0, 6))
def test_any_flipped_byte_is_refused(
    callback_url: str, field: str, position: int, bit: int
) -> None:
    headers = signed(BODY, nonce=f"n-{time.time_ns()}")
    body = BODY
    if field == "body":
        body = flip(BODY, position, bit)
    else:
        value = flip(headers[field].encode(), position, bit)
        # Bytes that are not visible ASCII would be refused by HTTP itself, before our check.
        assume(all(0x21 <= b <= 0x7E for b in value))
        headers[field] = value.decode("ascii")
    response = httpx.post(callback_url, content=body, headers=headers)
    assert response.status_code == 401, (field, position, bit)


def test_the_unflipped_delivery_is_accepted(callback_url: str) -> None:
    response = httpx.post(callback_url, content=BODY, headers=signed(BODY, secret=WEBHOOK_SECRET))
    assert response.status_code == 200
