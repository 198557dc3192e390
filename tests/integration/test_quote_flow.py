"""Quote flow end to end against the sandbox: intake over real HTTP (dev HTTP adapter), the push
through the local dispatcher into the Dataverse peer, qualification back to the Quoting Tool peer."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.fixtures.quote_flow import ACCOUNT, SKUS

pytestmark = pytest.mark.integration


def quote(
    quote_id: str, revision: int = 0, *, skus: tuple[str, ...] = SKUS, **changes: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "quoteId": quote_id,
        "revision": revision,
        "accountNumber": ACCOUNT,
        "salesRep": "rep@contoso.example",
        "currency": "USD",
        "expectedCloseDate": "2026-12-15",
        "probability": 0.6,
        "shipTo": {
            "street": "1 Pike St",
            "city": "Seattle",
            "county": "King",
            "region": "West",
            "postalCode": "98101",
            "country": "US",
        },
        "lines": [
            {
                "lineNumber": i + 1,
                "sku": sku,
                "quantity": 2,
                "unitPrice": "12500.00",
                "discountPct": 5,
                "configuration": {"tonnage": 25, "voltage": "460V", "refrigerant": "R-454B"},
            }
            for i, sku in enumerate(skus)
        ],
        "modifiedAt": "2026-11-20T10:00:00+01:00",
    }
    body.update(changes)
    return body


def post(world, http, body: Any, **kwargs: Any):
    headers = {"x-functions-key": world.hub.function_key, "Content-Type": "application/json"}
    headers.update(kwargs.pop("headers", {}))
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return http.post(f"{world.hub.base_url}/api/quotes", data=data, headers=headers, **kwargs)


def dv_records(world, http, table: str) -> list[dict[str, Any]]:
    return http.get(f"{world.endpoints()['dataverse']}/_sandbox/records/{table}").json()["records"]


def dv_writes(world, http) -> int:
    log = http.get(f"{world.endpoints()['dataverse']}/_sandbox/requests").json()["requests"]
    return sum(1 for r in log if r["method"] in ("PATCH", "POST", "DELETE"))


def status(world, http, quote_id: str) -> dict[str, Any]:
    response = http.get(
        f"{world.hub.base_url}/api/quotes/{quote_id}",
        headers={"x-functions-key": world.hub.function_key},
    )
    assert response.status_code == 200, response.text
    return response.json()


def qualify_in_dataverse(world, http, dataverse_id: str) -> None:
    token = world.issuer.issue(world.test_client[0], world.endpoints()["dataverse"])
    response = http.patch(
        f"{world.endpoints()['dataverse']}/api/data/v9.2/quotes({dataverse_id})",
        json={"statecode": 1, "statuscode": 2},
        headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
    )
    assert response.status_code == 204, response.text


def test_posted_quote_lands_in_dataverse_with_all_lines_after_one_delivery(flow, hub_http):
    # Given a valid quote with three lines
    # When the Quoting Tool posts it over HTTP
    response = post(flow, hub_http, quote("Q-1001"))
    # Then the hub answers 202 with a tracking id and a Location
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "received"
    assert response.headers["Location"] == "/api/quotes/Q-1001"
    # When its message is delivered once
    stats = flow.hub.dispatcher.run_until_idle()
    assert stats.deliveries == 1
    # Then Dataverse holds the quote and all three lines, by alternate key
    quotes = [
        q for q in dv_records(flow, hub_http, "quotes") if q["contoso_quotingtoolid"] == "Q-1001"
    ]
    assert len(quotes) == 1
    assert quotes[0]["contoso_territorycode"] == "Z-98101"
    assert quotes[0]["contoso_territoryrule"] == "zip"
    lines = [
        d
        for d in dv_records(flow, hub_http, "quotedetails")
        if d["contoso_quotelinekey"].startswith("Q-1001|")
    ]
    assert sorted(d["lineitemnumber"] for d in lines) == [1, 2, 3]
    # and GET shows it in Dataverse with its id
    current = status(flow, hub_http, "Q-1001")
    assert current["status"] == "inDataverse"
    assert current["dataverseId"] == quotes[0]["quoteid"]
    assert [s["step"] for s in current["steps"]] == ["received", "inDataverse"]


def test_exact_replay_gets_the_same_answer_and_no_second_downstream_write(flow, hub_http):
    first = post(flow, hub_http, quote("Q-1002"))
    flow.hub.dispatcher.run_until_idle()
    writes = dv_writes(flow, hub_http)
    # When the same quote is posted again, with other whitespace and member order
    replay_body = json.dumps(dict(reversed(list(quote("Q-1002").items()))), indent=2)
    replay = post(flow, hub_http, replay_body)
    flow.hub.dispatcher.run_until_idle()
    # Then the answer is the same and Dataverse saw no write
    assert replay.status_code == 202
    assert replay.json()["trackingId"] == first.json()["trackingId"]
    assert dv_writes(flow, hub_http) == writes


def test_same_revision_with_other_content_is_409(flow, hub_http):
    post(flow, hub_http, quote("Q-1003"))
    changed = quote("Q-1003", notes="different")
    response = post(flow, hub_http, changed)
    assert response.status_code == 409
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/revision-conflict")
    assert response.json()["currentRevision"] == 0


def test_lower_revision_than_accepted_is_409_with_current_revision(flow, hub_http):
    post(flow, hub_http, quote("Q-1004", revision=3))
    response = post(flow, hub_http, quote("Q-1004", revision=2))
    assert response.status_code == 409
    assert response.json()["type"].endswith("/stale-revision")
    assert response.json()["currentRevision"] == 3


def test_new_revision_replaces_lines_and_dropped_lines_are_removed(flow, hub_http):
    post(flow, hub_http, quote("Q-1005"))
    flow.hub.dispatcher.run_until_idle()
    # Given revision 1 keeps only the first line, at a new price
    body = quote("Q-1005", revision=1)
    body["lines"] = [dict(body["lines"][0], unitPrice="11000.00")]
    assert post(flow, hub_http, body).status_code == 202
    flow.hub.dispatcher.run_until_idle()
    lines = [
        d
        for d in dv_records(flow, hub_http, "quotedetails")
        if d["contoso_quotelinekey"].startswith("Q-1005|")
    ]
    assert [(d["lineitemnumber"], Decimal(str(d["priceperunit"]))) for d in lines] == [
        (1, Decimal("11000"))
    ]
    assert status(flow, hub_http, "Q-1005")["currentRevision"] == 1


def test_qualifying_in_dataverse_sends_exactly_one_verified_callback(flow, hub_http):
    post(flow, hub_http, quote("Q-1006"))
    flow.hub.dispatcher.run_until_idle()
    dataverse_id = status(flow, hub_http, "Q-1006")["dataverseId"]
    # When a sales manager qualifies the quote in Dynamics 365 (Draft -> Active)
    qualify_in_dataverse(flow, hub_http, dataverse_id)
    # and the change-tracking timer runs twice
    flow.hub.run_timer("quote_qualification")
    flow.hub.run_timer("quote_qualification")
    # Then the Quoting Tool recorded exactly one verified, signed callback for it
    callbacks = [
        c
        for c in hub_http.get(
            f"{flow.endpoints()['quotingTool']}/_sandbox/records/callbacks"
        ).json()["records"]
        if c["body"]["quoteId"] == "Q-1006"
    ]
    assert len(callbacks) == 1
    assert callbacks[0]["body"]["status"] == "qualified"
    # and GET shows the qualified step with the approved prices
    current = status(flow, hub_http, "Q-1006")
    assert current["status"] == "qualified"
    assert [line["lineNumber"] for line in current["approvedLines"]] == [1, 2, 3]


def test_expired_delta_token_resyncs_without_duplicate_callbacks(flow, hub_http):
    post(flow, hub_http, quote("Q-1007"))
    flow.hub.dispatcher.run_until_idle()
    qualify_in_dataverse(flow, hub_http, status(flow, hub_http, "Q-1007")["dataverseId"])
    flow.hub.run_timer("quote_qualification")
    # When Dataverse expires every delta token and the timer runs again
    hub_http.post(
        f"{flow.endpoints()['dataverse']}/_sandbox/expire-delta-tokens"
    ).raise_for_status()
    flow.hub.run_timer("quote_qualification")
    # Then the run resynchronised (a full read, visible in Dataverse's request log) and sent no
    # second callback
    log = hub_http.get(f"{flow.endpoints()['dataverse']}/_sandbox/requests").json()["requests"]
    assert any(r["path"].startswith("/api/data/v9.2/quotes?") for r in log)
    callbacks = [
        c
        for c in hub_http.get(
            f"{flow.endpoints()['quotingTool']}/_sandbox/records/callbacks"
        ).json()["records"]
        if c["body"]["quoteId"] == "Q-1007"
    ]
    assert len(callbacks) == 1


def test_unknown_account_is_rejected_with_a_reason_shown_by_get(flow, hub_http):
    post(flow, hub_http, quote("Q-1008", accountNumber="NOPE-1"))
    flow.hub.dispatcher.run_until_idle()
    current = status(flow, hub_http, "Q-1008")
    assert current["status"] == "rejected"
    assert current["rejection"]["code"] == "unknown-account"
    assert "NOPE-1" in current["rejection"]["reason"]
    # and nothing was dead-lettered: a permanent failure completes its message
    assert flow.hub.dispatcher.dead_letters("quotes-to-dataverse") == []


def test_unknown_product_is_rejected(flow, hub_http):
    body = quote("Q-1009")
    body["lines"][1]["sku"] = "XYZ-9999"
    post(flow, hub_http, body)
    flow.hub.dispatcher.run_until_idle()
    current = status(flow, hub_http, "Q-1009")
    assert current["rejection"]["code"] == "unknown-product"
    assert "XYZ-9999" in current["rejection"]["reason"]


def test_quote_no_longer_in_draft_is_rejected(flow, hub_http):
    post(flow, hub_http, quote("Q-1010"))
    flow.hub.dispatcher.run_until_idle()
    qualify_in_dataverse(flow, hub_http, status(flow, hub_http, "Q-1010")["dataverseId"])
    # When a new revision arrives for a quote Sales has already activated
    post(flow, hub_http, quote("Q-1010", revision=1, notes="late change"))
    flow.hub.dispatcher.run_until_idle()
    current = status(flow, hub_http, "Q-1010")
    assert current["rejection"]["code"] == "not-draft"


def test_transient_dataverse_failures_are_retried_with_retry_after(flow, hub_http):
    # Given Dataverse throttles a quarter of requests with Retry-After 0
    hub_http.put(
        f"{flow.endpoints()['dataverse']}/_sandbox/faults",
        json={"rate429": 0.25, "retryAfterSeconds": 0, "seed": 3},
    ).raise_for_status()
    try:
        post(flow, hub_http, quote("Q-1011"))
        flow.hub.dispatcher.run_until_idle()
    finally:
        hub_http.put(f"{flow.endpoints()['dataverse']}/_sandbox/faults", json={}).raise_for_status()
    # Then the quote still lands, and the peer did throttle
    assert status(flow, hub_http, "Q-1011")["status"] == "inDataverse"
    log = hub_http.get(f"{flow.endpoints()['dataverse']}/_sandbox/requests").json()
    assert log["byStatus"].get("429", 0) > 0


def test_quote_id_with_odata_metacharacters_is_refused_by_the_pattern(flow, hub_http):
    response = post(flow, hub_http, quote("Q'1 or 1 eq 1"))
    assert response.status_code == 422
    assert any(e["pointer"] == "/quoteId" for e in response.json()["errors"])


def test_account_number_with_odata_metacharacters_is_refused_by_the_schema(flow, hub_http):
    response = post(flow, hub_http, quote("Q-1012", accountNumber="X') or (true"))
    assert response.status_code == 422
    assert any(e["pointer"] == "/accountNumber" for e in response.json()["errors"])


def test_keys_from_user_input_are_escaped_so_they_cannot_change_the_request(flow, hub_http):
    # Given a key value that would widen the request if pasted into the URL unescaped
    from shared import wiring

    client = wiring.dataverse()
    # When the hub looks an account up by it (the same call the push makes)
    found = client.get(
        "accounts", {"accountnumber": "X' or accountnumber ne 'Y"}, select=["accountid"]
    )
    # Then it is compared literally: no account matches, although one exists
    assert found is None
    assert client.get("accounts", {"accountnumber": ACCOUNT}, select=["accountid"]) is not None


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"{not json", {}, 400),
        (json.dumps(quote("Q-2001")).encode(), {"Content-Type": "text/plain"}, 415),
        (b'{"quoteId": "' + b"x" * (1024 * 1024) + b'"}', {}, 413),
        (json.dumps({"quoteId": "Q-2002"}).encode(), {}, 422),
    ],
    ids=["malformed-400", "content-type-415", "oversized-413", "schema-422"],
)
def test_limits_answer_problem_json(flow, hub_http, body, headers, expected):
    response = post(flow, hub_http, body, headers=headers)
    assert response.status_code == expected
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == expected


def test_schema_violations_list_every_failing_field(flow, hub_http):
    body = quote("Q-2003", revision=-1, currency="XXX1", probability=2)
    body["lines"][0]["unitPrice"] = "1.234"
    body["unknownField"] = 1
    response = post(flow, hub_http, body)
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert {
        "/revision",
        "/currency",
        "/probability",
        "/lines/0/unitPrice",
        "/unknownField",
    } <= pointers


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_function_key_is_401(flow, hub_http, key):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-functions-key"] = key
    response = hub_http.post(
        f"{flow.hub.base_url}/api/quotes", data=json.dumps(quote("Q-2004")), headers=headers
    )
    assert response.status_code == 401


def test_unexpected_failure_is_500_with_a_correlation_id_and_no_internals(
    flow, hub_http, monkeypatch
):
    # Given a fresh app instance whose lake URL points at a server that is not Blob storage
    # (the hub's own dev host answers 404 to every storage call)
    from sandbox.app import LocalApp

    monkeypatch.setenv("LAKE_BLOB_URL", f"{flow.hub.base_url}/devstoreaccount1")
    broken = LocalApp().start()
    try:
        response = hub_http.post(
            f"{broken.base_url}/api/quotes",
            data=json.dumps(quote("Q-2005")),
            headers={"x-functions-key": broken.function_key, "Content-Type": "application/json"},
        )
    finally:
        broken.stop()
        monkeypatch.undo()
        from shared import wiring

        wiring.reset()
    # Then the answer is a 500 problem with a correlation id, and says nothing about internals
    assert response.status_code == 500
    problem = response.json()
    assert problem["correlationId"] == response.headers["x-correlation-id"]
    assert "127.0.0.1" not in response.text and "Traceback" not in response.text


def test_unknown_quote_is_404_problem(flow, hub_http):
    response = hub_http.get(
        f"{flow.hub.base_url}/api/quotes/NOPE", headers={"x-functions-key": flow.hub.function_key}
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("/not-found")
