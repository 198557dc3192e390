"""The hub's Entra ID token source under a misbehaving authority (found by the fault soak).

Against the sandbox Entra peer with its seeded faults (``PUT /_sandbox/faults``): a 5xx of the
OpenID configuration used to escape as msal's ``MsalServiceError`` (a 500 from quote intake), a
429 whose body is no OAuth error was refused for good, and a failed token request failed every
caller for msal's throttling period, which dead-lettered quote messages redelivered in that window.

Sources: RFC 6749 section 5.2 (the token endpoint's refusal codes); msal-python
``authority.tenant_discovery`` (5xx raises ``MsalServiceError``, "transient network error") and
``throttled_http_client`` (a 429/5xx token answer is replayed from cache for its Retry-After, 5 s by
default); the client-credentials flow: learn.microsoft.com/entra/identity-platform/
v2-oauth2-client-creds-grant-flow.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from shared.errors import PermanentError, TransientError
from shared.identity import MSAL_THROTTLE_SECONDS, ConfidentialClientToken

pytestmark = pytest.mark.integration
RESOURCE = "https://contoso-soak.crm.dynamics.com"


@pytest.fixture
def faults(entra, http) -> Iterator[Any]:
    """Set the Entra peer's faults for one test; they are lifted afterwards."""

    def put(body: dict[str, Any]) -> None:
        response = http.put(f"{entra.base_url}/_sandbox/faults", json=body)
        assert response.status_code == 200, response.text

    yield put
    put({})


def token_source(entra, test_client, http, **options: Any) -> ConfidentialClientToken:
    return ConfidentialClientToken(
        client_id=test_client["clientId"],
        authority=f"{entra.base_url}/{test_client['tenantId']}",
        resource=RESOURCE,
        secret=lambda: test_client["clientSecret"],
        invalidate_secret=lambda: None,
        session=http,
        **options,
    )


def logged_since(entra, start: int) -> list[tuple[str, int, str | None]]:
    return [(r.path.rsplit("/", 1)[-1], r.status, r.fault) for r in list(entra.request_log)[start:]]


def test_authority_5xx_is_transient_and_tried_again(entra, test_client, http, faults):
    # Given an authority whose OpenID configuration answers 503 until the first wait is over
    faults({"rate5xx": 1.0, "faultPhase": "before"})
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        faults({})

    start = len(entra.request_log)
    source = token_source(entra, test_client, http, sleep=wait)
    # When the hub asks for a token
    token = source()
    # Then it waited once, asked again and got a token for the resource
    assert entra.issuer.verify(token, [RESOURCE])["appid"] == test_client["clientId"]
    assert waits == [0.5]
    assert logged_since(entra, start) == [
        ("openid-configuration", 503, "5xx"),
        ("openid-configuration", 200, None),
        ("token", 200, None),
    ]


def test_throttled_token_request_waits_out_msals_throttle_then_succeeds(
    entra, test_client, http, faults
):
    # Given faults seeded so that discovery passes, the first token request is throttled (429 with
    # Retry-After: 1, an error body that is no OAuth refusal) and the second passes: the peer
    # draws one number per request from random.Random(seed) and throttles when it is < rate429
    def pattern(rng: random.Random) -> bool:
        return rng.random() >= 0.5 and rng.random() < 0.5 and rng.random() >= 0.5

    seed = next(s for s in range(10_000) if pattern(random.Random(s)))
    faults({"rate429": 0.5, "retryAfterSeconds": 1, "seed": seed})
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(1.1)  # msal replays the 429 from its cache for the Retry-After (1 s)

    start = len(entra.request_log)
    source = token_source(entra, test_client, http, sleep=wait)
    # When the hub asks for a token
    token = source()
    # Then the throttled answer was transient, the hub waited msal's throttling period before
    # asking again, and the second request got the token
    assert entra.issuer.verify(token, [RESOURCE])["appid"] == test_client["clientId"]
    assert waits == [MSAL_THROTTLE_SECONDS]
    assert logged_since(entra, start) == [
        ("openid-configuration", 200, None),
        ("token", 429, "429"),
        ("token", 200, None),
    ]


def test_authority_down_throughout_raises_transient_after_bounded_attempts(
    entra, test_client, http, faults
):
    # Given an authority that answers 503 to everything
    faults({"rate5xx": 1.0, "faultPhase": "before"})
    waits: list[float] = []
    start = len(entra.request_log)
    source = token_source(entra, test_client, http, attempts=2, sleep=waits.append)
    # When the hub asks for a token
    # Then it fails as transient (never an msal exception) after exactly two requests
    with pytest.raises(TransientError, match="token authority unavailable"):
        source()
    assert waits == [0.5]
    assert [status for _, status, _ in logged_since(entra, start)] == [503, 503]


def test_wrong_secret_is_still_a_permanent_refusal(entra, test_client, http):
    # Given a client secret Entra ID refuses (invalid_client, RFC 6749 section 5.2)
    waits: list[float] = []
    source = ConfidentialClientToken(
        client_id=test_client["clientId"],
        authority=f"{entra.base_url}/{test_client['tenantId']}",
        resource=RESOURCE,
        secret=lambda: "not-the-secret",
        invalidate_secret=lambda: None,
        session=http,
        sleep=waits.append,
    )
    # When the hub asks for a token
    # Then it is refused for good, after re-reading the secret once, without waiting
    with pytest.raises(PermanentError) as refused:
        source()
    assert refused.value.code == "invalid_client"
    assert waits == []
