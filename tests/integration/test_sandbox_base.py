"""The sandbox base: Entra ID token flow, control surface, faults, Azurite."""

from __future__ import annotations

import msal
import pytest
import requests
from azure.identity import ClientSecretCredential
from azure.storage.blob import BlobServiceClient

pytestmark = pytest.mark.integration


def test_msal_gets_a_client_credentials_token_with_instance_discovery_off(entra, test_client, http):
    # Given the sandbox authority (v2 endpoints, documented client-credentials flow:
    # learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow)
    app = msal.ConfidentialClientApplication(
        test_client["clientId"],
        client_credential=test_client["clientSecret"],
        authority=f"{entra.base_url}/{test_client['tenantId']}",
        instance_discovery=False,
        http_client=http,
    )
    # When msal asks for a token for a resource's /.default scope
    result = app.acquire_token_for_client(scopes=["https://org.crm.dynamics.com/.default"])
    # Then it gets a Bearer JWT whose audience is that resource
    assert result["token_type"] == "Bearer"
    claims = entra.issuer.verify(result["access_token"], ["https://org.crm.dynamics.com"])
    assert claims["tid"] == test_client["tenantId"]


def test_azure_identity_credential_works_unchanged(entra, test_client, tls):
    credential = ClientSecretCredential(
        test_client["tenantId"],
        test_client["clientId"],
        test_client["clientSecret"],
        authority=entra.base_url,
        disable_instance_discovery=True,
        connection_verify=str(tls.ca_path),
    )
    token = credential.get_token("https://vault.azure.net/.default")
    assert (
        entra.issuer.verify(token.token, ["https://vault.azure.net"])["appid"]
        == test_client["clientId"]
    )


def test_wrong_secret_gets_aadsts7000215_invalid_client(entra, test_client, http):
    # Documented error: 401 invalid_client, AADSTS7000215 (client-creds flow error responses)
    response = http.post(
        f"{entra.base_url}/{test_client['tenantId']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": test_client["clientId"],
            "client_secret": "wrong",
            "scope": "https://vault.azure.net/.default",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [7000215]


def test_scope_without_default_suffix_is_invalid_scope(entra, test_client, http):
    response = http.post(
        f"{entra.base_url}/{test_client['tenantId']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": test_client["clientId"],
            "client_secret": test_client["clientSecret"],
            "scope": "https://vault.azure.net/secrets.read",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_expired_and_wrong_audience_tokens_are_refused_with_reasons(entra, test_client):
    expired = entra.issuer.issue(test_client["clientId"], "https://x.example", lifetime=-10)
    with pytest.raises(Exception, match="expired"):
        entra.issuer.verify(expired, ["https://x.example"])
    other = entra.issuer.issue(test_client["clientId"], "https://y.example")
    with pytest.raises(Exception, match="audience"):
        entra.issuer.verify(other, ["https://x.example"])


def test_faults_are_deterministic_for_a_seed_and_spare_control_routes(entra, http):
    # Given a 50% 429 rate with a fixed seed
    def run() -> list[int]:
        http.post(f"{entra.base_url}/_sandbox/reset").raise_for_status()
        http.put(
            f"{entra.base_url}/_sandbox/faults",
            json={"rate429": 0.5, "retryAfterSeconds": 3, "seed": 42},
        ).raise_for_status()
        return [
            http.get(f"{entra.base_url}/{entra.issuer.tenant_id}/discovery/v2.0/keys").status_code
            for _ in range(20)
        ]

    # When the same sequence is replayed twice
    first, second = run(), run()
    # Then the faults land identically, some but not all requests are throttled,
    assert first == second
    assert 0 < first.count(429) < 20
    # the control surface itself is never faulted, and the log counts what happened
    log = http.get(f"{entra.base_url}/_sandbox/requests").json()
    assert log["count"] == 20
    assert log["byStatus"]["429"] == first.count(429)
    http.post(f"{entra.base_url}/_sandbox/reset").raise_for_status()


def test_throttled_answer_carries_retry_after(entra, http):
    http.put(f"{entra.base_url}/_sandbox/faults", json={"rate429": 1, "retryAfterSeconds": 7})
    response = http.get(f"{entra.base_url}/{entra.issuer.tenant_id}/discovery/v2.0/keys")
    http.post(f"{entra.base_url}/_sandbox/reset")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"


def test_reset_fault_drops_the_connection(entra, http):
    http.put(f"{entra.base_url}/_sandbox/faults", json={"rateReset": 1, "faultPhase": "before"})
    with pytest.raises(requests.ConnectionError):
        http.get(f"{entra.base_url}/{entra.issuer.tenant_id}/discovery/v2.0/keys")
    http.post(f"{entra.base_url}/_sandbox/reset")


def test_bad_fault_settings_are_refused(entra, http):
    response = http.put(f"{entra.base_url}/_sandbox/faults", json={"rate429": 2})
    assert response.status_code == 400


def test_azurite_serves_blob_storage(azurite):
    client = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = client.get_container_client("smoke")
    container.create_container()
    container.upload_blob("a.txt", b"hello")
    assert container.download_blob("a.txt").readall() == b"hello"
