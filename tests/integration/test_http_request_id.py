"""``shared.http.HttpClient`` sends one ``x-ms-client-request-id`` per logical request, the same on
each of its retries, and the sandbox peers log it: that is how the fault soak counts attempts per
request and times the waits between them. (The Azure SDKs' header: "an opaque, globally-unique,
client-generated string identifier for the request", which Azure services log for correlation, e.g.
Azure Storage's diagnostic logs' ``client-request-id``; learn.microsoft.com, Azure SDK reference,
``Azure.Core.Request.ClientRequestId``.)"""

from __future__ import annotations

import uuid

import pytest

from shared.http import CLIENT_REQUEST_ID, HttpClient, RetryPolicy, make_session

pytestmark = pytest.mark.integration


def test_retries_carry_the_request_id_of_their_logical_request(entra, tls, http):
    # Given a peer that throttles every request until the client's first wait is over
    response = http.put(f"{entra.base_url}/_sandbox/faults", json={"rate429": 1.0})
    assert response.status_code == 200

    def lift_faults(seconds: float) -> None:
        http.put(f"{entra.base_url}/_sandbox/faults", json={})

    client = HttpClient(
        make_session(tls.ca_path), policy=RetryPolicy(3, 0.01, 1.0), sleep=lift_faults
    )
    url = f"{entra.base_url}/{entra.issuer.tenant_id}/v2.0/.well-known/openid-configuration"
    start = len(entra.request_log)
    try:
        # When the client sends two logical requests, the first one throttled once
        first = client.request("GET", url)
        second = client.request("GET", url)
    finally:
        http.put(f"{entra.base_url}/_sandbox/faults", json={})
    # Then the peer saw three attempts: the throttled one and its retry under one id, and the
    # second request under another
    assert (first.status_code, second.status_code) == (200, 200)
    log = list(entra.request_log)[start:]
    assert [(entry.status, entry.fault) for entry in log] == [
        (429, "429"),
        (200, None),
        (200, None),
    ]
    ids = [entry.clientRequestId for entry in log]
    assert ids[0] == ids[1] != ids[2]
    assert all(uuid.UUID(str(i)) for i in ids)
    # and logged when each attempt started, before it ended
    assert all(entry.started is not None and entry.started <= entry.at for entry in log)


def test_a_request_id_given_by_the_caller_is_kept(entra, tls):
    # Given a caller that names its own request id
    client = HttpClient(make_session(tls.ca_path))
    url = f"{entra.base_url}/{entra.issuer.tenant_id}/v2.0/.well-known/openid-configuration"
    mine = str(uuid.uuid4())
    start = len(entra.request_log)
    # When it sends the request
    client.request("GET", url, headers={CLIENT_REQUEST_ID: mine})
    # Then the peer logged that id
    assert [entry.clientRequestId for entry in list(entra.request_log)[start:]] == [mine]
