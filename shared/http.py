"""Outbound HTTP with bounded, Retry-After-honouring retries.

One mechanism serves every peer (Dataverse, SAP, mainframe, Quoting Tool): adapters describe
*what* to send; this module decides *whether to try again*. Retries are bounded by attempt
count and by a cap on any single wait, so a peer can slow the hub down but never hold it forever.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from shared.errors import PermanentError, TransientError
from shared.log import correlation_id

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CLIENT_REQUEST_ID = "x-ms-client-request-id"
"""One id per logical request, the same on each of its retries (as the Azure SDKs send it), so the
peer's logs and support can tell a retry from a new request."""


def make_session(ca_bundle: Path | str | None = None, pool_size: int = 16) -> requests.Session:
    """A session that trusts exactly the CA we name.

    ``trust_env=False`` because the environment's REQUESTS_CA_BUNDLE would otherwise override
    ``Session.verify`` on every request (a documented requests behaviour), silently ignoring the
    sandbox CA locally or a pinned bundle in Azure.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle else True
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter; Retry-After wins when the peer sends it."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            # The peer told us when; waiting less only earns another 429 (Dataverse guidance).
            return min(retry_after, self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass
class RetryStats:
    """Counters for reports and benchmarks (thread-safe)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    slept_seconds: float = 0.0
    longest_wait: float = 0.0
    exhausted: int = 0
    """Logical requests that ran out of attempts (raised TransientError)."""
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(
        self, status: int | None, *, retried: bool, slept: float = 0.0, exhausted: bool = False
    ) -> None:
        with self._lock:
            self.requests += 1
            if status is not None:
                self.by_status[status] = self.by_status.get(status, 0) + 1
            if retried:
                self.retries += 1
                self.slept_seconds += slept
                self.longest_wait = max(self.longest_wait, slept)
            if exhausted:
                self.exhausted += 1
            if status == 429:
                self.throttled += 1


TokenSource = Callable[[bool], str]
"""Returns a bearer token; called with ``True`` to force a refresh after a 401."""


class HttpClient:
    """A requests session plus the retry policy, auth and correlation headers every call needs."""

    def __init__(
        self,
        session: requests.Session,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        token: TokenSource | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        name: str = "peer",
    ) -> None:
        self.session = session
        self.policy = policy or RetryPolicy()
        self.timeout = timeout
        self.token = token
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.name = name
        self.stats = RetryStats()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        retry_statuses: frozenset[int] = RETRYABLE_STATUS,
        on_retry: Callable[[requests.Response | None], None] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send once, retrying transient failures within the policy.

        Returns the final response for any non-retryable status (callers map 4xx themselves).
        Raises TransientError when attempts run out on a retryable failure. A 401 refreshes the
        token and retries exactly once. Every attempt carries the same ``x-ms-client-request-id``
        (one given in ``headers`` wins).
        """
        refreshed = False
        attempt = 0
        request_id = str(uuid.uuid4())
        while True:
            attempt += 1
            sent_headers = {
                "x-correlation-id": correlation_id.get(),
                CLIENT_REQUEST_ID: request_id,
                **(headers or {}),
            }
            if self.token is not None:
                sent_headers["Authorization"] = f"Bearer {self.token(False)}"
            retry_after: float | None = None
            response: requests.Response | None = None
            reason: str
            try:
                response = self.session.request(
                    method, url, headers=sent_headers, timeout=self.timeout, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = type(exc).__name__
            else:
                status = response.status_code
                if status == 401 and self.token is not None and not refreshed:
                    refreshed = True
                    self.token(True)
                    self.stats.record(status, retried=True)
                    attempt -= 1  # a token refresh is not a failed attempt
                    continue
                if status not in retry_statuses:
                    self.stats.record(status, retried=False)
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                reason = f"HTTP {status}"
            if attempt >= self.policy.max_attempts:
                self.stats.record(
                    response.status_code if response is not None else None,
                    retried=False,
                    exhausted=True,
                )
                raise TransientError(
                    f"{self.name}: {method} {_path(url)} failed after {attempt} attempts ({reason})",
                    retry_after=retry_after,
                )
            wait = self.policy.delay(attempt, retry_after, self.rng)
            self.stats.record(
                response.status_code if response is not None else None, retried=True, slept=wait
            )
            log.warning(
                "%s %s %s: %s; retry %d/%d in %.2fs",
                self.name,
                method,
                _path(url),
                reason,
                attempt,
                self.policy.max_attempts - 1,
                wait,
            )
            if on_retry is not None:
                on_retry(response)
            self.sleep(wait)


def _path(url: str) -> str:
    """The URL without its query string, which can carry tokens or user data."""
    return url.split("?", 1)[0]


def raise_for_permanent(response: requests.Response, what: str) -> None:
    """Map a final 4xx to PermanentError with the peer's own message (never its headers)."""
    if response.status_code < 400:
        return
    detail = response.text[:500]
    raise PermanentError(
        f"{what}: HTTP {response.status_code}: {detail}", code=str(response.status_code)
    )
