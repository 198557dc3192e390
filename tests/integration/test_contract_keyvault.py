"""Contract: the sandbox Key Vault behaves as Azure Key Vault does for the secrets the hub reads.

The client is azure-keyvault-secrets' SecretClient exactly as the hub builds it
(``verify_challenge_resource=False`` because the vault is on 127.0.0.1, ``connection_verify`` the
sandbox CA). Sources are named per test; the peer's module docstring lists them all.
"""

from __future__ import annotations

import re

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient

pytestmark = pytest.mark.integration

API = "api-version=7.6"


@pytest.fixture
def client(keyvault, vault_credential, tls) -> SecretClient:
    return SecretClient(
        keyvault.base_url,
        vault_credential,
        verify_challenge_resource=False,
        connection_verify=str(tls.ca_path),
    )


def test_secret_client_answers_the_challenge_then_reads_the_latest_version(keyvault, client):
    # Given a secret with one version
    version = keyvault.set_secret("mainframe-client-secret", "first-value")
    # When the unchanged SDK reads it (challenge flow: challenge_auth_policy.py in
    # Azure/azure-sdk-for-python sends the request bare first, expects 401 + WWW-Authenticate)
    secret = client.get_secret("mainframe-client-secret")
    # Then it gets the value and bundle fields of the REST API's SecretBundle
    assert secret.value == "first-value"
    assert secret.properties.version == version
    assert secret.properties.enabled is True
    assert secret.id == f"{keyvault.base_url}/secrets/mainframe-client-secret/{version}"
    # and the vault saw one unauthenticated request refused with 401, then the authorised one
    statuses = [entry.status for entry in keyvault.request_log]
    assert statuses[:2] == [401, 200]


def test_unauthenticated_request_gets_bearer_challenge_naming_authority_and_resource(
    keyvault, entra, http
):
    # Given no Authorization header (the SDK's first request)
    response = http.get(f"{keyvault.base_url}/secrets/anything?{API}")
    # Then 401 with the challenge the SDK parses (http_challenge.py: authorization + resource)
    # and the service's AKV10000 body (recorded answers in Azure/azure-sdk-for-js recordings)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge == (
        f'Bearer authorization="{entra.base_url}/{entra.issuer.tenant_id}", '
        'resource="https://vault.azure.net"'
    )
    assert response.json() == {
        "error": {
            "code": "Unauthorized",
            "message": "AKV10000: Request is missing a Bearer or PoP token.",
        }
    }


def test_token_for_another_resource_is_refused_with_akv10022(keyvault, bearer, http):
    # Given a valid token whose audience is Resource Manager, not Key Vault
    keyvault.set_secret("s1", "v")
    token = bearer("https://management.azure.com")
    # When it is presented to the vault
    response = http.get(
        f"{keyvault.base_url}/secrets/s1?{API}", headers={"Authorization": f"Bearer {token}"}
    )
    # Then the documented AKV10022 refusal, with a fresh challenge
    assert response.status_code == 401
    assert response.json()["error"]["message"] == (
        "AKV10022: Invalid audience. Expected https://vault.azure.net, "
        "found: https://management.azure.com."
    )
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization=")


def test_missing_secret_is_404_secret_not_found_with_the_service_message(keyvault, client):
    # Given an empty vault; when the SDK asks for a secret that does not exist
    with pytest.raises(ResourceNotFoundError) as caught:
        client.get_secret("no-such-secret")
    # Then SecretNotFound with the service's own text (quoted in Azure/azure-sdk-for-js #25489)
    assert caught.value.error.code == "SecretNotFound"
    assert caught.value.error.message.startswith(
        "A secret with (name/id) no-such-secret was not found in this key vault."
    )


def test_setting_a_secret_again_creates_a_new_version_and_keeps_the_old_one(keyvault, client):
    # Given a secret set through the SDK (PUT /secrets/{name})
    first = client.set_secret("sap-password", "old")
    # When an operator rotates it
    second = client.set_secret("sap-password", "new")
    # Then each set is a new 32-hex version, the latest is served without a version,
    # and the old version is still readable by id
    assert re.fullmatch(r"[0-9a-f]{32}", second.properties.version)
    assert second.properties.version != first.properties.version
    assert client.get_secret("sap-password").value == "new"
    assert client.get_secret("sap-password", first.properties.version).value == "old"


def test_disabled_secret_is_403_forbidden_with_inner_error_secret_disabled(keyvault, client):
    # Given the latest version of a secret is disabled (update_secret_properties -> PATCH)
    version = keyvault.set_secret("retired", "value")
    client.update_secret_properties("retired", version, enabled=False)
    # When it is read
    with pytest.raises(HttpResponseError) as caught:
        client.get_secret("retired")
    # Then the service's 403 (Azure/azure-sdk-for-js #24756, ansible-collections/azure #1989)
    assert caught.value.status_code == 403
    assert caught.value.error.code == "Forbidden"
    assert caught.value.error.message == "Operation get is not allowed on a disabled secret."
    assert caught.value.error.innererror["code"] == "SecretDisabled"


def test_missing_or_unrecognised_api_version_is_400_bad_parameter(keyvault, bearer, http):
    keyvault.set_secret("s1", "v")
    headers = {"Authorization": f"Bearer {bearer('https://vault.azure.net')}"}
    # When the api-version is missing, then 400 BadParameter (exact wording unpublished)
    missing = http.get(f"{keyvault.base_url}/secrets/s1", headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "BadParameter"
    # When it is unknown, then the service's wording (Azure/azure-sdk-for-python #28595)
    unknown = http.get(f"{keyvault.base_url}/secrets/s1?api-version=9.9", headers=headers)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"].startswith(
        "The specified version (9.9) is not recognized."
    )


def test_invalid_secret_name_is_400_bad_parameter(keyvault, bearer, http):
    # Names are 1-127 of 0-9, a-z, A-Z and '-'; an underscore is the classic mistake
    response = http.get(
        f"{keyvault.base_url}/secrets/my_secret?{API}",
        headers={"Authorization": f"Bearer {bearer('https://vault.azure.net')}"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "BadParameter",
        "message": "The request URI contains an invalid name: my_secret",
    }


def test_seed_and_records_list_names_and_versions_but_never_values(keyvault, http):
    # Given secrets seeded through the control surface
    seeded = http.post(
        f"{keyvault.base_url}/_sandbox/seed",
        json={"secrets": [{"name": "a", "value": "va"}, {"name": "a", "value": "vb"}]},
    )
    assert seeded.json() == {"seeded": {"secrets": 2}}
    # When the records are listed
    records = http.get(f"{keyvault.base_url}/_sandbox/records/secrets").json()["records"]
    # Then both versions show, latest last, and no value leaks through the control surface
    assert [len(r["versions"]) for r in records] == [2]
    assert records[0]["latest"] == records[0]["versions"][-1]["version"]
    assert "va" not in str(records) and "vb" not in str(records)
