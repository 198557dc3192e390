"""Contract: the sandbox Quoting Tool verifies the hub's callbacks as its contract says.

The contract (sandbox/quoting_tool.py docstring) is Contoso's, on the webhook pattern of GitHub's
``X-Hub-Signature-256`` and Stripe's signed timestamps (HMAC-SHA256 over
``timestamp + "." + body``, a tolerance window against replays). Requests here are signed with the
hub's ``shared.signing``; the tool verifies with its own code, so these tests prove the two agree.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from shared.signing import sign

pytestmark = pytest.mark.integration

EVENT = {"quoteId": "Q-000123", "status": "accepted", "eventType": "quote.status"}


def _post(http, tool, secret, body: bytes, *, key=None, timestamp=None, signature=None):
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Timestamp": str(ts),
        "X-Hub-Signature": signature or sign(secret, ts, body),
    }
    if key is not False:
        headers["Idempotency-Key"] = key or str(uuid.uuid4())
    return http.post(f"{tool.base_url}/api/hub-callbacks", data=body, headers=headers)


def _body(event=EVENT) -> bytes:
    return json.dumps(event).encode()


def test_valid_callback_is_accepted_and_recorded_once(quoting_tool, quoting_tool_hmac_secret, http):
    # Given a callback signed with the shared secret
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, _body(), key="cb-1")
    # Then it is accepted and recorded with its key and body
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "idempotencyKey": "cb-1", "duplicate": False}
    callbacks = quoting_tool.records("callbacks")
    assert [(c["idempotencyKey"], c["body"]) for c in callbacks] == [("cb-1", EVENT)]


def test_replay_with_the_same_key_and_body_is_idempotent(
    quoting_tool, quoting_tool_hmac_secret, http
):
    # Given an accepted callback
    _post(http, quoting_tool, quoting_tool_hmac_secret, _body(), key="cb-2")
    # When the hub retries it (same key, same body, signed again a second later)
    again = _post(
        http,
        quoting_tool,
        quoting_tool_hmac_secret,
        _body(),
        key="cb-2",
        timestamp=int(time.time()) + 1,
    )
    # Then 200, marked duplicate, and still one record
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    assert len(quoting_tool.records("callbacks")) == 1


def test_same_key_with_a_different_body_is_409(quoting_tool, quoting_tool_hmac_secret, http):
    _post(http, quoting_tool, quoting_tool_hmac_secret, _body(), key="cb-3")
    other = _body({**EVENT, "status": "rejected"})
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, other, key="cb-3")
    assert response.status_code == 409
    assert "cb-3" in response.json()["error"]
    assert len(quoting_tool.records("callbacks")) == 1


def test_altered_body_is_refused_401(quoting_tool, quoting_tool_hmac_secret, http):
    # Given a signature over one body; when a different body is sent with it
    ts = int(time.time())
    signature = sign(quoting_tool_hmac_secret, ts, _body())
    tampered = _body({**EVENT, "status": "qualified"})
    response = _post(
        http, quoting_tool, quoting_tool_hmac_secret, tampered, timestamp=ts, signature=signature
    )
    # Then it is refused and recorded as a rejection with its reason
    assert response.status_code == 401
    assert response.json() == {"error": "signature does not match"}
    assert quoting_tool.records("callbacks") == []
    assert quoting_tool.records("rejections")[0]["reason"] == "signature does not match"


def test_signature_with_another_secret_is_refused_401(quoting_tool, http):
    response = _post(http, quoting_tool, "not-the-shared-secret", _body())
    assert response.status_code == 401


def test_stale_timestamp_is_refused_even_with_a_valid_signature(
    quoting_tool, quoting_tool_hmac_secret, http
):
    # Given a correctly signed request captured 301 s ago (tolerance is ±300 s)
    stale = int(time.time()) - 301
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, _body(), timestamp=stale)
    # Then the replay is refused
    assert response.status_code == 401
    assert response.json() == {"error": "timestamp outside the tolerance window"}


def test_timestamp_too_far_in_the_future_is_refused(quoting_tool, quoting_tool_hmac_secret, http):
    future = int(time.time()) + 400
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, _body(), timestamp=future)
    assert response.status_code == 401


def test_missing_or_malformed_signature_headers_are_refused_401(quoting_tool, http):
    bare = http.post(f"{quoting_tool.base_url}/api/hub-callbacks", data=_body())
    malformed = http.post(
        f"{quoting_tool.base_url}/api/hub-callbacks",
        data=_body(),
        headers={"X-Hub-Timestamp": "yesterday", "X-Hub-Signature": "md5=abc"},
    )
    assert bare.status_code == 401
    assert malformed.status_code == 401
    assert len(quoting_tool.records("rejections")) == 2


def test_signed_body_that_is_not_json_is_400(quoting_tool, quoting_tool_hmac_secret, http):
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, b"{not json")
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not valid JSON"}


def test_body_without_quote_id_or_status_is_400(quoting_tool, quoting_tool_hmac_secret, http):
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, _body({"quoteId": "Q-1"}))
    assert response.status_code == 400


def test_missing_idempotency_key_is_400(quoting_tool, quoting_tool_hmac_secret, http):
    response = _post(http, quoting_tool, quoting_tool_hmac_secret, _body(), key=False)
    assert response.status_code == 400
    assert response.json() == {"error": "missing Idempotency-Key header"}


def test_get_quotes_lists_the_quotes_the_tool_holds(quoting_tool, http):
    # Given two seeded quotes
    quotes = [{"quoteId": "Q-1", "total": "100.00"}, {"quoteId": "Q-2", "total": "25.50"}]
    seeded = http.post(f"{quoting_tool.base_url}/_sandbox/seed", json={"quotes": quotes})
    assert seeded.json() == {"seeded": {"quotes": 2}}
    # When listed, then both come back as seeded
    assert http.get(f"{quoting_tool.base_url}/api/quotes").json() == {"count": 2, "quotes": quotes}
