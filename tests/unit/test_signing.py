"""Callback signatures: the public test vector and every way a signature can be wrong."""

from __future__ import annotations

from pipeline.sinch import signing

# Sinch's own SDK test vector (reference §5).
VECTOR_SECRET = "foo_secret1234"
VECTOR_NONCE = "01FJA8B4A7BM43YGWSG9GBV067"
VECTOR_TIMESTAMP = "1634579353"
VECTOR_BODY = (
    b'{"app_id":"","accepted_time":"2021-10-18T17:49:13.813615Z","project_id":'
    b'"e2df3a34-a71b-4448-9db5-a8d2baad28e4","contact_create_notification":{"contact":'
    b'{"id":"01FJA8B466Y0R2GNXD78MD9SM1","channel_identities":[{"channel":"SMS","identity":'
    b'"48123456789","app_id":""}],"display_name":"New Test Contact","email":'
    b'"new.contact@email.com","external_id":"","metadata":"","language":"EN_US"}},'
    b'"message_metadata":""}'
)
VECTOR_SIGNATURE = "6bpJoRmFoXVjfJIVglMoJzYXxnoxRujzR4k2GOXewOE="


def vector_headers() -> dict[str, str]:
    return {
        signing.TIMESTAMP_HEADER: VECTOR_TIMESTAMP,
        signing.NONCE_HEADER: VECTOR_NONCE,
        signing.ALGORITHM_HEADER: signing.ALGORITHM,
        signing.SIGNATURE_HEADER: VECTOR_SIGNATURE,
    }


def check(
    body: bytes = VECTOR_BODY,
    headers: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (VECTOR_SECRET,),
    now: float = 1634579353,
    max_age: float = 0.0,
) -> signing.Verdict:
    return signing.verify(
        body, headers or vector_headers(), secrets, now=now, max_age_seconds=max_age
    )


def test_public_test_vector_signs_as_sinch_documents() -> None:
    assert signing.sign(VECTOR_SECRET, VECTOR_BODY, VECTOR_NONCE, VECTOR_TIMESTAMP) == (
        VECTOR_SIGNATURE
    )


def test_public_test_vector_verifies() -> None:
    verdict = check()
    assert verdict.ok
    assert verdict.nonce == VECTOR_NONCE


def test_flipped_body_byte_is_refused() -> None:
    body = bytearray(VECTOR_BODY)
    body[40] ^= 0x01
    assert check(bytes(body)).reason == "bad_signature"


def test_wrong_secret_is_refused() -> None:
    assert check(secrets=("not-the-secret",)).reason == "bad_signature"


def test_any_of_several_rotation_secrets_verifies() -> None:
    assert check(secrets=("new-secret", VECTOR_SECRET)).ok


def test_missing_headers_are_refused() -> None:
    for header in vector_headers():
        headers = vector_headers()
        del headers[header]
        assert not check(headers=headers).ok, header


def test_a_right_signature_is_not_refused_for_its_age_by_default() -> None:
    # Sinch's SDKs check no timestamp: a redelivery hours after an outage must still land.
    verdict = check(now=1634579353 + 7200)
    assert verdict.ok
    assert verdict.age_seconds == 7200
    ahead = check(now=1634579353 - 900)  # the sender's clock runs fast
    assert (ahead.ok, ahead.age_seconds) == (True, -900)


def test_an_age_limit_refuses_old_and_future_signatures() -> None:
    assert check(now=1634579353 + 301, max_age=300).reason == "stale_timestamp"
    assert check(now=1634579353 - 301, max_age=300).reason == "stale_timestamp"
    assert check(now=1634579353 + 299, max_age=300).ok
    refused = check(now=1634579353 + 7200, max_age=300)
    assert (refused.nonce, refused.age_seconds) == (VECTOR_NONCE, 7200)  # for the stale count


def test_a_forged_old_signature_is_bad_not_stale() -> None:
    # The age says nothing until the signature is known to be right: a forgery must not be
    # counted as a stale redelivery.
    verdict = check(secrets=("not-the-secret",), now=1634579353 + 7200, max_age=300)
    assert verdict.reason == "bad_signature"


def test_other_algorithm_is_refused() -> None:
    headers = vector_headers() | {signing.ALGORITHM_HEADER: "HmacSHA1"}
    assert check(headers=headers).reason == "unsupported_algorithm"
