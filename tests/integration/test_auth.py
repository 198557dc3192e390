"""Auth: function keys on every non-anonymous route, signed Quoting Tool callbacks that cannot be
replayed or altered, and exactly one token refresh when a peer says a token expired.

Function keys: the host refuses a request to a FUNCTION-level HTTP function without a valid key in
``x-functions-key`` or ``?code=`` with 401 before any code runs
(learn.microsoft.com/azure/azure-functions/functions-bindings-http-webhook-trigger#api-keys).
Callback signatures: HMAC-SHA256 over ``timestamp.body`` with a ±300 s window (docs in
``shared/signing.py``; the pattern of Stripe's signed webhooks). Expired bearer tokens: Dataverse
answers 401 and a client acquires a new token (learn.microsoft.com/power-apps/developer/data-platform/
authenticate-oauth); the LOS gateway does the same (docs/mainframe-api.md).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import pytest

from shared import wiring
from shared.signing import sign
from tests.fixtures.quote_flow import seed_master_data
from tests.indexing.checks import ROOT, index
from tests.integration.test_quote_flow import (
    post,
    qualify_in_dataverse,
    quote,
    status,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def protected_routes() -> list[tuple[str, str]]:
    """(method, path) of every HTTP function the real worker indexes with a non-anonymous
    authLevel, route parameters filled with a harmless value."""
    routes = []
    for function in index(ROOT)["functions"]:
        for binding in function["bindings"]:
            if binding.get("type") != "httpTrigger":
                continue
            if str(binding.get("authLevel", "function")).lower() == "anonymous":
                continue
            path = "/api/" + re.sub(r"\{[^}]+\}", "x1", binding.get("route") or function["name"])
            for method in binding.get("methods") or ["GET", "POST"]:
                routes.append((method.upper(), path))
    return routes


def test_index_lists_the_protected_routes(protected_routes):
    # The check below is only as good as this list: every FUNCTION-level route is in it.
    assert ("POST", "/api/quotes") in protected_routes
    assert ("GET", "/api/products/x1/availability") in protected_routes
    assert len(protected_routes) >= 6


@pytest.mark.parametrize("how", ["missing", "wrong-header", "wrong-code", "empty", "master-only"])
def test_every_protected_route_refuses_a_missing_or_wrong_key(
    world, hub_http, protected_routes, how
):
    # Given every non-anonymous route and a request without a valid function key
    base = world.hub.base_url
    for method, path in protected_routes:
        headers: dict[str, str] = {"Content-Type": "application/json"}
        url = f"{base}{path}"
        if how == "wrong-header":
            headers["x-functions-key"] = world.hub.function_key[::-1]
        elif how == "wrong-code":
            url += "?code=" + world.hub.function_key[:-1]
        elif how == "empty":
            headers["x-functions-key"] = ""
        elif how == "master-only":
            # A key of the right shape from another app is still wrong.
            headers["x-functions-key"] = uuid.uuid4().hex + uuid.uuid4().hex
        # When it is sent
        response = hub_http.request(method, url, headers=headers, data=b"{}")
        # Then the host refuses it with 401 and an empty body, before any function code runs
        assert response.status_code == 401, (how, method, path, response.status_code)
        assert response.content == b""


def test_protected_routes_accept_the_right_key_so_the_401s_mean_something(
    world, hub_http, protected_routes
):
    for method, path in protected_routes:
        response = hub_http.request(
            method,
            f"{world.hub.base_url}{path}",
            headers={"x-functions-key": world.hub.function_key, "Content-Type": "application/json"},
            data=b"{}",
        )
        assert response.status_code != 401, (method, path)
        assert response.status_code < 500, (method, path, response.text)


def _qualified_callback(world, http) -> dict[str, Any]:
    """Run the quote flow until the hub sent its signed qualification callback; return it."""
    e = world.endpoints()
    for name in ("dataverse", "quotingTool"):
        http.post(f"{e[name]}/_sandbox/reset").raise_for_status()
    seed_master_data(world, http)
    world.hub.dispatcher.run_until_idle()
    quote_id = f"Q-A{uuid.uuid4().hex[:8].upper()}"
    assert post(world, http, quote(quote_id)).status_code == 202
    world.hub.dispatcher.run_until_idle()
    qualify_in_dataverse(world, http, status(world, http, quote_id)["dataverseId"])
    world.hub.run_timer("quote_qualification")
    records = http.get(f"{e['quotingTool']}/_sandbox/records/callbacks").json()["records"]
    assert len(records) == 1
    return dict(records[0])


def _replay(world, http, body: bytes, timestamp: int, signature: str, key: str):
    return http.post(
        f"{world.endpoints()['quotingTool']}/api/hub-callbacks",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Timestamp": str(timestamp),
            "X-Hub-Signature": signature,
            "Idempotency-Key": key,
        },
    )


def test_hub_callback_replayed_late_or_altered_is_refused(world, hub_http):
    # Given the hub sent one signed qualification callback, which the tool accepted
    callback = _qualified_callback(world, hub_http)
    body = json.dumps(callback["body"]).encode()
    secret = world.secret_values["hmac"]
    key = str(uuid.uuid4())
    # When an attacker replays it 301 s after signing (the window is ±300 s)
    stale = int(time.time()) - 301
    late = _replay(world, hub_http, body, stale, sign(secret, stale, body), key)
    # or alters it and keeps a valid signature of the original
    now = int(time.time())
    altered = json.dumps({**callback["body"], "status": "rejected"}).encode()
    changed = _replay(world, hub_http, altered, now, sign(secret, now, body), key)
    # Then both are refused, recorded as rejections, and the tool still holds one callback
    assert late.status_code == 401, late.text
    assert changed.status_code == 401, changed.text
    tool = world.endpoints()["quotingTool"]
    rejections = hub_http.get(f"{tool}/_sandbox/records/rejections").json()["records"]
    assert len(rejections) == 2
    callbacks = hub_http.get(f"{tool}/_sandbox/records/callbacks").json()["records"]
    assert len(callbacks) == 1


def _statuses(http, base: str, path_part: str) -> list[int]:
    log = http.get(f"{base}/_sandbox/requests").json()["requests"]
    return [r["status"] for r in log if path_part in r["path"]]


def test_dataverse_refusing_an_expired_token_gets_exactly_one_refresh_and_retry(
    world, hub_http, monkeypatch
):
    # Given Dataverse with master data, and the hub about to receive a token whose JWT has already
    # expired although the token response promises an hour (clock skew between the hub and
    # Dataverse, or a revoked session, look the same to the hub)
    e = world.endpoints()
    original = world.issuer.issue
    dataverse_tokens: list[str] = []

    def issue(client_id: str, audience: str, lifetime: int | None = None) -> str:
        for_dataverse = audience.rstrip("/") == e["dataverse"].rstrip("/")
        expired = for_dataverse and not dataverse_tokens
        token = original(client_id, audience, -60 if expired else lifetime)
        if for_dataverse:
            dataverse_tokens.append(token)
        return token

    monkeypatch.setattr(world.issuer, "issue", issue)
    wiring.reset()
    hub_http.post(f"{e['dataverse']}/_sandbox/reset").raise_for_status()
    seed_master_data(world, hub_http)
    before = len(_statuses(hub_http, e["dataverse"], "/api/data/"))
    # When the hub reads Dataverse
    found = wiring.dataverse().get("accounts", {"accountnumber": "C0001001"}, select=["accountid"])
    # Then the read succeeded after exactly one 401 and one retry with a fresh token
    assert found is not None
    statuses = _statuses(hub_http, e["dataverse"], "/api/data/")[before:]
    assert statuses == [401, 200], statuses
    assert len(dataverse_tokens) == 2


def test_mainframe_refusing_an_expired_token_gets_exactly_one_refresh_and_retry(world, hub_http):
    # Given the hub holds a mainframe token from an earlier poll
    base = world.endpoints()["mainframe"]
    hub_http.post(f"{base}/_sandbox/reset").raise_for_status()
    wiring.reset()
    world.hub.run_timer("mainframe_poll")
    tokens_before = len(hub_http.get(f"{base}/_sandbox/records/tokens").json()["records"])
    # When the gateway expires every token and the hub polls again
    hub_http.post(f"{base}/_sandbox/tokens/expire").raise_for_status()
    log_before = len(hub_http.get(f"{base}/_sandbox/requests").json()["requests"])
    world.hub.run_timer("mainframe_poll")
    # Then the first listing got one 401, the hub fetched one new token and the retry succeeded
    log = hub_http.get(f"{base}/_sandbox/requests").json()["requests"][log_before:]
    listings = [r for r in log if not r["path"].startswith(("/auth/", "/_sandbox/"))]
    token_calls = [r for r in log if r["path"].startswith("/auth/token")]
    assert [r["status"] for r in listings][:2] == [401, 200], listings
    assert sum(1 for r in listings if r["status"] == 401) == 1
    assert len(token_calls) == 1
    tokens_after = len(hub_http.get(f"{base}/_sandbox/records/tokens").json()["records"])
    assert tokens_after == tokens_before + 1
