"""shared.signing: the HMAC-SHA256 callback signature and its verification."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    sign,
    signed_headers,
    verify,
)

pytestmark = pytest.mark.unit

SECRET = "whsec-test-secret"
BODY = b'{"quoteId":"Q-1","status":"accepted"}'
NOW = 1_700_000_000


def test_signature_matches_an_independently_computed_hmac():
    # Given the known answer from `printf '1700000000.<body>' | openssl dgst -sha256 -hmac <secret>`
    expected = "sha256=041499053a7f1f6732f9a173403973baafd6d4db42c55551d439e59af2d1bc93"
    # Then sign() produces exactly that header value
    assert sign(SECRET, NOW, BODY) == expected


def test_verify_accepts_a_fresh_signature():
    verify(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + 10)


def test_verify_accepts_an_upper_case_hex_digest():
    signature = sign(SECRET, NOW, BODY)
    verify(SECRET, str(NOW), BODY, "sha256=" + signature.removeprefix("sha256=").upper(), now=NOW)


def test_verify_refuses_an_altered_body():
    signature = sign(SECRET, NOW, BODY)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), BODY.replace(b"accepted", b"rejected"), signature, now=NOW)


def test_verify_refuses_a_signature_made_with_another_secret():
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), BODY, sign("another-secret", NOW, BODY), now=NOW)


def test_verify_refuses_a_swapped_timestamp():
    # Given a signature for one time; when the timestamp header is moved forward to look fresh
    signature = sign(SECRET, NOW - 3600, BODY)
    # Then it no longer matches, because the timestamp is part of the signed message
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, str(NOW), BODY, signature, now=NOW)


@pytest.mark.parametrize("age", [-301, 301])
def test_verify_refuses_timestamps_outside_the_window(age):
    signature = sign(SECRET, NOW, BODY)
    with pytest.raises(SignatureError, match="tolerance window"):
        verify(SECRET, str(NOW), BODY, signature, now=NOW + age)


@pytest.mark.parametrize("age", [-300, 300])
def test_verify_accepts_timestamps_at_the_window_edges(age):
    verify(SECRET, str(NOW), BODY, sign(SECRET, NOW, BODY), now=NOW + age)


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        ("yesterday", "sha256=00", "unix seconds"),
        ("-5", "sha256=00", "unix seconds"),
        (str(NOW), "md5=abcdef", "sha256= scheme"),
    ],
)
def test_verify_refuses_malformed_headers(timestamp, signature, reason):
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, timestamp, BODY, signature, now=NOW)


def test_signing_with_an_empty_secret_is_refused():
    with pytest.raises(ValueError, match="empty"):
        sign("", NOW, BODY)


def test_signed_headers_carry_the_timestamp_and_its_signature():
    headers = signed_headers(SECRET, BODY, now=NOW + 0.9)
    assert headers == {TIMESTAMP_HEADER: str(NOW), SIGNATURE_HEADER: sign(SECRET, NOW, BODY)}


@given(body=st.binary(max_size=512), timestamp=st.integers(min_value=0, max_value=2**40))
def test_any_body_round_trips(body, timestamp):
    verify(SECRET, str(timestamp), body, sign(SECRET, timestamp, body), now=timestamp)


@given(body=st.binary(min_size=1, max_size=256), data=st.data())
def test_any_single_byte_change_breaks_the_signature(body, data):
    # Given a signed body; when one byte is flipped
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    flipped = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
    # Then verification fails
    with pytest.raises(SignatureError):
        verify(SECRET, str(NOW), flipped, sign(SECRET, NOW, body), now=NOW)
