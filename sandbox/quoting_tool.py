"""The Quoting Tool for the sandbox: it receives the hub's signed status callbacks and holds quotes.

Callback contract (Contoso's design; the hub's ``QuotingToolClient`` sends exactly this):

``POST /api/hub-callbacks`` with a JSON object body and three headers:

- ``X-Hub-Timestamp``: unix seconds when the hub signed the request;
- ``X-Hub-Signature``: ``sha256=<hex>``, HMAC-SHA256 with the shared secret over
  ``f"{timestamp}.".encode() + raw_body`` (the GitHub/Stripe webhook scheme: the timestamp is
  signed with the body, so it cannot be swapped to replay an old request later);
- ``Idempotency-Key``: the hub's id for this callback; retries reuse it.

The body names the quote and its new status: ``{"quoteId": str, "status": str, ...}``; the hub may
add ``eventId``, ``eventType``, ``occurredAt``, ``reason``, ``dataverseQuoteId`` and so on, which
the tool records as sent.

Answers (errors are ``{"error": "<text>"}``):

- 200 ``{"status": "accepted", "idempotencyKey": k, "duplicate": false}``: verified and recorded;
- 200 with ``"duplicate": true``: the same Idempotency-Key with the same JSON body was already
  accepted; nothing is recorded twice (a retry after a lost answer must succeed);
- 409: the Idempotency-Key was already used with a different body;
- 401: missing or malformed signature headers, a signature that does not verify, or a timestamp
  outside ``±tolerance_seconds`` (replays of old requests);
- 400: a body that is not a JSON object with string ``quoteId`` and ``status``, or no
  Idempotency-Key.

Signatures are checked here with the tool's own code (``hmac.compare_digest``), independent of
the hub's ``shared.signing``, so a contract test proves the two agree rather than agree with
themselves. Every refused attempt is recorded with its reason (``records/rejections``).

Quotes: seed ``{"quotes": [{...}]}``; ``GET /api/quotes`` lists them, and
``QuotingToolPeer.post_quotes_to`` plays the tool's outbound side, posting each held quote to the
hub's ``/api/quotes`` with a function key.

Settings seed: ``{"settings": [{"hmacSecret": "...", "toleranceSeconds": 300}]}`` (a rotation of
the shared secret on the tool's side); reset restores the constructor's values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import requests
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox import secrets_registry
from sandbox.peer import Peer, PeerError, json_response
from sandbox.tls import Tls

_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_TIMESTAMP = re.compile(r"^\d{1,12}$")


class QuotingToolPeer(Peer):
    """The Quoting Tool: verifies and records the hub's callbacks; holds quotes to send."""

    name = "quoting-tool"

    def __init__(
        self,
        *,
        tls: Tls | None = None,
        hmac_secret: str,
        tolerance_seconds: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not hmac_secret:
            raise ValueError("the Quoting Tool needs a non-empty HMAC secret")
        self._initial_secret = hmac_secret
        self._initial_tolerance = tolerance_seconds
        self.hmac_secret = hmac_secret
        self.tolerance_seconds = tolerance_seconds
        self.clock = clock
        self.callbacks: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.quotes: list[dict[str, Any]] = []
        self._by_key: dict[str, str] = {}
        super().__init__(tls=tls)

    # ---- peer API ------------------------------------------------------------------------------
    def routes(self) -> Iterable[Rule]:
        return [
            Rule("/api/hub-callbacks", methods=["POST"], endpoint=self._callback),
            Rule("/api/quotes", methods=["GET"], endpoint=self._list_quotes),
        ]

    def reset_state(self) -> None:
        self.hmac_secret = self._initial_secret
        self.tolerance_seconds = self._initial_tolerance
        self.callbacks = []
        self.rejections = []
        self.quotes = []
        self._by_key = {}

    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table, rows in data.items():
            if table == "quotes":
                for row in rows:
                    if not isinstance(row, dict):
                        raise PeerError(400, "BadRequest", "quotes must be JSON objects")
                    self.quotes.append(dict(row))
            elif table == "settings":
                for row in rows:
                    self._apply_settings(row)
            else:
                raise PeerError(400, "BadRequest", f"unknown table {table!r}")
            counts[table] = len(rows)
        return counts

    def records(self, table: str) -> list[dict[str, Any]]:
        if table == "callbacks":
            return [dict(c) for c in self.callbacks]
        if table == "rejections":
            return [dict(r) for r in self.rejections]
        if table == "quotes":
            return [dict(q) for q in self.quotes]
        raise PeerError(404, "NotFound", f"unknown table {table!r}")

    def error(self, status: int, code: str, message: str) -> Response:
        return json_response({"error": message}, status)

    # ---- python API ----------------------------------------------------------------------------
    def post_quotes_to(
        self, hub_base_url: str, function_key: str, session: requests.Session
    ) -> list[requests.Response]:
        """POST every held quote to ``{hub}/api/quotes`` with ``x-functions-key``; the answers."""
        with self.lock:
            quotes = [dict(q) for q in self.quotes]
        url = f"{hub_base_url.rstrip('/')}/api/quotes"
        return [
            session.post(url, json=quote, headers={"x-functions-key": function_key}, timeout=30)
            for quote in quotes
        ]

    # ---- handlers ------------------------------------------------------------------------------
    def _list_quotes(self, request: Request) -> Response:
        with self.lock:
            quotes = [dict(q) for q in self.quotes]
        return json_response({"count": len(quotes), "quotes": quotes})

    def _callback(self, request: Request) -> Response:
        raw = request.get_data(cache=True)
        key = request.headers.get("Idempotency-Key", "").strip()
        try:
            self._verify(request, raw)
            body = _parse_body(raw)
            if not key:
                raise PeerError(400, "BadRequest", "missing Idempotency-Key header")
        except PeerError as exc:
            self._reject(key, exc)
            raise
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self.lock:
            seen = self._by_key.get(key)
            if seen is not None and seen != digest:
                exc = PeerError(
                    409, "Conflict", f"Idempotency-Key {key} was already used with a different body"
                )
                self._reject(key, exc)
                raise exc
            duplicate = seen is not None
            if not duplicate:
                self._by_key[key] = digest
                self.callbacks.append(
                    {
                        "idempotencyKey": key,
                        "timestamp": int(request.headers["X-Hub-Timestamp"]),
                        "receivedAt": self.clock(),
                        "body": body,
                    }
                )
        return json_response({"status": "accepted", "idempotencyKey": key, "duplicate": duplicate})

    def _verify(self, request: Request, raw: bytes) -> None:
        timestamp = request.headers.get("X-Hub-Timestamp", "").strip()
        signature = request.headers.get("X-Hub-Signature", "").strip()
        if not timestamp or not signature:
            raise PeerError(
                401, "Unauthorized", "missing X-Hub-Timestamp or X-Hub-Signature header"
            )
        match = _SIGNATURE.match(signature)
        if not _TIMESTAMP.match(timestamp) or match is None:
            raise PeerError(
                401, "Unauthorized", "malformed X-Hub-Timestamp or X-Hub-Signature header"
            )
        with self.lock:
            secret = self.hmac_secret.encode()
            tolerance = self.tolerance_seconds
        expected = hmac.new(secret, timestamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match.group(1).lower()):
            raise PeerError(401, "Unauthorized", "signature does not match")
        # Checked after the signature, so a reason of "stale" is only ever given to an authentic
        # request (an attacker learns nothing about the window from forged ones).
        if abs(self.clock() - int(timestamp)) > tolerance:
            raise PeerError(401, "Unauthorized", "timestamp outside the tolerance window")

    def _reject(self, key: str, exc: PeerError) -> None:
        with self.lock:
            self.rejections.append(
                {
                    "idempotencyKey": key or None,
                    "status": exc.status,
                    "reason": exc.message,
                    "at": self.clock(),
                }
            )

    def _apply_settings(self, row: dict[str, Any]) -> None:
        unknown = set(row) - {"hmacSecret", "toleranceSeconds"}
        if unknown:
            raise PeerError(400, "BadRequest", f"unknown settings {sorted(unknown)}")
        if "hmacSecret" in row:
            if not isinstance(row["hmacSecret"], str) or not row["hmacSecret"]:
                raise PeerError(400, "BadRequest", "hmacSecret must be a non-empty string")
            self.hmac_secret = row["hmacSecret"]
            secrets_registry.record("quotingtool-hmac-secret", self.hmac_secret)
        if "toleranceSeconds" in row:
            if not isinstance(row["toleranceSeconds"], int) or row["toleranceSeconds"] < 0:
                raise PeerError(
                    400, "BadRequest", "toleranceSeconds must be a non-negative integer"
                )
            self.tolerance_seconds = row["toleranceSeconds"]


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PeerError(400, "BadRequest", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PeerError(400, "BadRequest", "the body must be a JSON object")
    for name in ("quoteId", "status"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise PeerError(400, "BadRequest", f"the body needs a non-empty string {name!r}")
    return body
