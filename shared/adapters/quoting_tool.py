"""Status callbacks from the hub to the Quoting Tool, signed with the shared HMAC secret.

The contract (headers, signature, answers) is described in ``sandbox/quoting_tool.py``, which
plays the tool locally; the signing scheme is ``shared.signing``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from shared.errors import PermanentError
from shared.http import HttpClient, RetryPolicy, RetryStats
from shared.signing import IDEMPOTENCY_HEADER, signed_headers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackResult:
    """What the Quoting Tool answered to an accepted callback."""

    idempotency_key: str
    duplicate: bool


class QuotingToolClient:
    """Sends signed, idempotent status callbacks.

    ``hmac_secret`` is called for every callback (for example ``lambda: secrets.get(name)``), so
    a rotated secret is used as soon as the secret cache lets it through. On a 401 the tool either
    rejected the signature (the secret was rotated on its side) or the timestamp (clock skew):
    ``on_secret_rejected`` (for example ``lambda: secrets.invalidate(name)``) is called and the
    callback is signed afresh and sent once more.
    """

    def __init__(
        self,
        callback_url: str,
        hmac_secret: Callable[[], str],
        *,
        session: requests.Session,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        on_secret_rejected: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.callback_url = callback_url
        self._hmac_secret = hmac_secret
        self._on_secret_rejected = on_secret_rejected
        self._clock = clock
        self.http = HttpClient(
            session, policy=policy, timeout=timeout, sleep=sleep, name="quoting-tool"
        )

    @property
    def stats(self) -> RetryStats:
        """Counters of the callback requests."""
        return self.http.stats

    def send(self, event: Mapping[str, Any], idempotency_key: str) -> CallbackResult:
        """Deliver ``event`` (a JSON object with ``quoteId`` and ``status``) once.

        Retries transient failures (TransientError when they run out); a repeat with the same
        ``idempotency_key`` and body is harmless. Any other 4xx raises PermanentError.
        """
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()
        for attempt in (1, 2):
            headers = self._headers(body, idempotency_key)

            def resign(_: requests.Response | None, headers: dict[str, str] = headers) -> None:
                # HttpClient rebuilds its headers from this dict on every attempt; a fresh
                # timestamp keeps long Retry-After waits inside the tool's tolerance window.
                headers.update(self._headers(body, idempotency_key))

            response = self.http.request(
                "POST", self.callback_url, headers=headers, data=body, on_retry=resign
            )
            if response.status_code == 401 and attempt == 1 and self._on_secret_rejected:
                log.warning("Quoting Tool refused the callback signature; re-reading the secret")
                self._on_secret_rejected()
                continue
            break
        if response.status_code >= 300:
            raise PermanentError(
                f"Quoting Tool callback {idempotency_key}: HTTP {response.status_code}: "
                f"{_error_text(response)}",
                code=str(response.status_code),
            )
        duplicate = False
        try:
            duplicate = bool(response.json().get("duplicate", False))
        except (ValueError, AttributeError):
            log.info("Quoting Tool accepted callback %s without a JSON answer", idempotency_key)
        return CallbackResult(idempotency_key=idempotency_key, duplicate=duplicate)

    def _headers(self, body: bytes, idempotency_key: str) -> dict[str, str]:
        headers = signed_headers(self._hmac_secret(), body, now=self._clock())
        headers["Content-Type"] = "application/json"
        headers[IDEMPOTENCY_HEADER] = idempotency_key
        return headers


def _error_text(response: requests.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    return str(error)[:300] if error else response.reason or "no error text"
