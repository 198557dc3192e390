"""The legacy mainframe's LOS gateway (``docs/mainframe-api.md``): tokens and changed-only pages.

Records are returned exactly as the mainframe sent them (upper-case fields, padded strings,
implied decimals): interpreting them is the silver transforms' job, and bronze keeps the raw form.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from shared.errors import PermanentError
from shared.http import HttpClient, RetryPolicy, RetryStats
from shared.log import register_secret

log = logging.getLogger(__name__)

ENTITIES = frozenset({"orders", "orderlines", "inventory", "customers"})
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
DEFAULT_PAGE_SIZE = 500


@dataclass(frozen=True)
class Page:
    """One page of a changed-only listing.

    ``asof`` is the mainframe's time at the first page of the listing (the same on every page);
    saved less an overlap, it is the next ``since``.
    """

    records: list[dict[str, Any]]
    next_page_token: str | None
    asof: dt.datetime


def format_timestamp(value: dt.datetime) -> str:
    """``YYYYMMDDHHMMSS`` in UTC. Sub-second parts are dropped, which only widens the listing."""
    if value.tzinfo is None:
        raise ValueError("mainframe timestamps need a timezone-aware datetime")
    return value.astimezone(dt.UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(value: str) -> dt.datetime:
    """Parse a ``YYYYMMDDHHMMSS`` UTC timestamp."""
    if len(value) != 14 or not value.isdigit():
        raise ValueError(f"not a YYYYMMDDHHMMSS timestamp: {value!r}")
    return dt.datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)


class MainframeClient:
    """Client of the LOS gateway.

    ``client_secret`` is called whenever a token is needed (for example
    ``lambda: secrets.get(name)``), so a rotated secret is picked up. When the token endpoint
    refuses the credentials, ``on_secret_rejected`` (for example
    ``lambda: secrets.invalidate(name)``) is called and the request is tried once more with a
    freshly read secret. Tokens are cached until ``refresh_margin_seconds`` before they expire
    and refreshed once on a 401 (``HttpClient``'s token protocol).
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: Callable[[], str],
        *,
        session: requests.Session,
        policy: RetryPolicy | None = None,
        timeout: float = 30.0,
        refresh_margin_seconds: float = 30.0,
        on_secret_rejected: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._on_secret_rejected = on_secret_rejected
        self._margin = refresh_margin_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.token_requests = 0
        self._auth_http = HttpClient(
            session, policy=policy, timeout=timeout, sleep=sleep, name="mainframe-auth"
        )
        self.http = HttpClient(
            session, policy=policy, timeout=timeout, token=self.token, sleep=sleep, name="mainframe"
        )

    @property
    def stats(self) -> RetryStats:
        """Counters of the listing requests (including 401s that forced a token refresh)."""
        return self.http.stats

    @property
    def token_stats(self) -> RetryStats:
        """Counters of the token endpoint requests."""
        return self._auth_http.stats

    def token(self, force_refresh: bool = False) -> str:
        """A valid bearer token; a new one when ``force_refresh`` or the cached one is stale."""
        with self._lock:
            # Holding the lock while fetching makes concurrent callers share one token request.
            if not force_refresh and self._token is not None and self._clock() < self._refresh_at:
                return self._token
            token, lifetime = self._request_token()
            margin = min(self._margin, lifetime / 2)
            self._token = token
            self._refresh_at = self._clock() + max(0.0, lifetime - margin)
            return token

    def list_changes(
        self,
        entity: str,
        since: dt.datetime | None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> Iterator[Page]:
        """Pages of ``entity`` records whose ``LSTUPD`` is strictly after ``since`` (all if None).

        Raises PermanentError for answers no retry can change (a bad parameter, an unknown
        entity, refused credentials) and TransientError when retries run out.
        """
        if entity not in ENTITIES:
            raise ValueError(f"unknown mainframe entity {entity!r}")
        url = f"{self.base_url}/los/v1/{entity}"
        first: dict[str, str] = {"pageSize": str(page_size)}
        if since is not None:
            first["changedSince"] = format_timestamp(since)
        params = first
        while True:
            response = self.http.request("GET", url, params=params)
            if response.status_code != 200:
                raise _permanent(response, f"mainframe: listing {entity}")
            page = _parse_page(response, entity)
            yield page
            if page.next_page_token is None:
                return
            params = {"pageSize": str(page_size), "pageToken": page.next_page_token}

    def _request_token(self) -> tuple[str, float]:
        url = f"{self.base_url}/auth/token"
        for attempt in (1, 2):
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret(),
            }
            self.token_requests += 1
            response = self._auth_http.request("POST", url, data=form)
            if response.status_code == 200:
                return _parse_token(response)
            if response.status_code == 401 and attempt == 1 and self._on_secret_rejected:
                log.warning(
                    "mainframe refused the credentials of client %s; re-reading the secret",
                    self.client_id,
                )
                self._on_secret_rejected()
                continue
            break
        raise _permanent(response, f"mainframe: token for client {self.client_id}")


def _parse_token(response: requests.Response) -> tuple[str, float]:
    try:
        body = response.json()
        token = body["access_token"]
        lifetime = float(body.get("expires_in", 300))
    except (ValueError, KeyError, TypeError):
        raise PermanentError("mainframe: malformed token response", code="bad_response") from None
    if not isinstance(token, str) or not token:
        raise PermanentError("mainframe: token response has no access_token", code="bad_response")
    register_secret(token)
    return token, lifetime


def _parse_page(response: requests.Response, entity: str) -> Page:
    try:
        body = response.json()
        records = body["RECORDS"]
        next_token = body.get("NEXTPAGE")
        asof = parse_timestamp(body["ASOF"])
    except (ValueError, KeyError, TypeError):
        raise PermanentError(
            f"mainframe: malformed {entity} listing", code="bad_response"
        ) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise PermanentError(
            f"mainframe: {entity} RECORDS is not a list of records", code="bad_response"
        )
    if next_token is not None and (not isinstance(next_token, str) or not next_token):
        raise PermanentError(f"mainframe: {entity} NEXTPAGE is not a token", code="bad_response")
    return Page(records=records, next_page_token=next_token, asof=asof)


def _permanent(response: requests.Response, what: str) -> PermanentError:
    """The legacy ``{"RC", "REASON"}`` answer as a PermanentError (only RC and REASON are quoted)."""
    try:
        body = response.json()
        detail = f"RC {body['RC']}: {body['REASON']}"
    except (ValueError, KeyError, TypeError):
        detail = "no legacy error body"
    return PermanentError(
        f"{what}: HTTP {response.status_code} ({detail})", code=str(response.status_code)
    )
