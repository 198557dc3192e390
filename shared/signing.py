"""HMAC signatures on the hub's callbacks to the Quoting Tool.

The scheme is the familiar webhook one (GitHub's ``X-Hub-Signature-256``, Stripe's signed
timestamp): ``sha256=<hex>`` of HMAC-SHA256 with the shared secret over
``f"{timestamp}.".encode() + body``. Signing the timestamp with the body means an old request
cannot be replayed later with a fresh timestamp; the receiver's tolerance window bounds how long a
captured request stays usable.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Hub-Timestamp"
SIGNATURE_HEADER = "X-Hub-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SCHEME = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """A signature or timestamp that does not verify; the message says which, never the secret."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Hub-Signature`` value for ``body`` sent at unix time ``timestamp``."""
    if not secret:
        raise ValueError("the HMAC secret is empty")
    digest = hmac.new(secret.encode(), _message(timestamp, body), hashlib.sha256).hexdigest()
    return SCHEME + digest


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """Timestamp and signature headers for ``body`` signed now (or at ``now``)."""
    timestamp = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise SignatureError unless ``signature`` signs ``body`` at a ``timestamp`` within tolerance.

    Header values are taken as received (strings). The comparison is constant-time.
    """
    if not timestamp.isdigit():
        raise SignatureError("the timestamp is not unix seconds")
    if not signature.startswith(SCHEME):
        raise SignatureError("the signature does not use the sha256= scheme")
    expected = sign(secret, int(timestamp), body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise SignatureError("the signature does not match the body")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_seconds:
        raise SignatureError("the timestamp is outside the tolerance window")


def _message(timestamp: int, body: bytes) -> bytes:
    return str(int(timestamp)).encode() + b"." + body
