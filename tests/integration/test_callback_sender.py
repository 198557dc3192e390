"""QuotingToolClient against the sandbox Quoting Tool: signed, idempotent, retried callbacks."""

from __future__ import annotations

import time

import pytest

from shared.adapters.quoting_tool import QuotingToolClient
from shared.errors import PermanentError, TransientError
from shared.http import RetryPolicy, make_session

pytestmark = pytest.mark.integration

EVENT = {"quoteId": "Q-000777", "status": "qualified", "eventType": "quote.status"}


def _no_sleep(_: float) -> None:
    """Retries are exercised for real; only the waiting between them is skipped."""


@pytest.fixture
def make_client(quoting_tool, quoting_tool_hmac_secret, tls):
    def make(**overrides) -> QuotingToolClient:
        options = {
            "session": make_session(tls.ca_path),
            "policy": RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05),
            "sleep": _no_sleep,
        }
        options.update(overrides)
        secret = options.pop("hmac_secret", lambda: quoting_tool_hmac_secret)
        return QuotingToolClient(f"{quoting_tool.base_url}/api/hub-callbacks", secret, **options)

    return make


def test_send_delivers_a_signed_callback_recorded_once(quoting_tool, make_client):
    # When the hub sends a status callback
    result = make_client().send(EVENT, "quote-Q-000777-qualified")
    # Then the tool verified and recorded it with the key and the exact event
    assert result.duplicate is False
    callbacks = quoting_tool.records("callbacks")
    assert [(c["idempotencyKey"], c["body"]) for c in callbacks] == [
        ("quote-Q-000777-qualified", EVENT)
    ]


def test_sending_the_same_callback_again_is_reported_as_duplicate(quoting_tool, make_client):
    client = make_client()
    client.send(EVENT, "cb-dup")
    assert client.send(EVENT, "cb-dup").duplicate is True
    assert len(quoting_tool.records("callbacks")) == 1


def test_lost_answers_are_retried_and_the_callback_is_recorded_once(
    quoting_tool, make_client, http
):
    # Given a tool that loses half its answers after recording (deterministic seed)
    http.put(
        f"{quoting_tool.base_url}/_sandbox/faults",
        json={"rate5xx": 0.6, "faultPhase": "after", "seed": 3},
    ).raise_for_status()
    client = make_client(policy=RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.05))
    # When five callbacks are sent
    for n in range(5):
        client.send({**EVENT, "quoteId": f"Q-{n}"}, f"cb-{n}")
    # Then some answers were lost and retried, yet each callback is recorded exactly once
    assert client.stats.retries > 0
    assert sorted(c["idempotencyKey"] for c in quoting_tool.records("callbacks")) == [
        f"cb-{n}" for n in range(5)
    ]


def test_exhausted_retries_raise_a_transient_error(quoting_tool, make_client, http):
    http.put(
        f"{quoting_tool.base_url}/_sandbox/faults", json={"rate5xx": 1, "faultPhase": "before"}
    ).raise_for_status()
    with pytest.raises(TransientError, match="after 4 attempts"):
        make_client().send(EVENT, "cb-down")
    assert quoting_tool.records("callbacks") == []


def test_conflicting_body_for_a_used_key_is_a_permanent_error(quoting_tool, make_client):
    client = make_client()
    client.send(EVENT, "cb-conflict")
    with pytest.raises(PermanentError, match="HTTP 409") as caught:
        client.send({**EVENT, "status": "rejected"}, "cb-conflict")
    assert caught.value.code == "409"


def test_wrong_secret_is_a_permanent_error_that_never_shows_the_secret(make_client):
    with pytest.raises(PermanentError, match="HTTP 401") as caught:
        make_client(hmac_secret=lambda: "stale-shared-secret").send(EVENT, "cb-wrong")
    assert "stale-shared-secret" not in str(caught.value)


def test_clock_skew_beyond_the_window_is_refused(make_client):
    skewed = make_client(clock=lambda: time.time() - 3600)
    with pytest.raises(PermanentError, match="tolerance window"):
        skewed.send(EVENT, "cb-skewed")


def test_rotated_secret_is_reread_once_the_tool_refuses_the_old_one(
    quoting_tool, make_client, http
):
    # Given the tool rotated its shared secret, and the hub's cache still holds the old one
    http.post(
        f"{quoting_tool.base_url}/_sandbox/seed",
        json={"settings": [{"hmacSecret": "rotated-shared-secret"}]},
    ).raise_for_status()
    cache = {"value": "previous-shared-secret"}

    def invalidate() -> None:
        cache["value"] = "rotated-shared-secret"  # what a fresh Key Vault read returns

    client = make_client(hmac_secret=lambda: cache["value"], on_secret_rejected=invalidate)
    # When a callback is sent, then the refused signature leads to one re-read and success
    assert client.send(EVENT, "cb-rotated").duplicate is False
    assert len(quoting_tool.records("rejections")) == 1
    assert len(quoting_tool.records("callbacks")) == 1
