"""SecretProvider against the sandbox Key Vault: caching, rotation, redaction and error mapping."""

from __future__ import annotations

import pytest

from shared.adapters.secrets import SecretProvider
from shared.errors import PermanentError, TransientError
from shared.log import redact

pytestmark = pytest.mark.integration


class ManualClock:
    """A monotonic clock the test moves by hand, so TTL tests never sleep."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def provider(keyvault, vault_credential, tls, clock) -> SecretProvider:
    # retry_total=0: the SDK's own retries would otherwise sit in front of every fault test.
    return SecretProvider(
        keyvault.base_url,
        vault_credential,
        ca_bundle=tls.ca_path,
        verify_challenge_resource=False,
        clock=clock,
        retry_total=0,
    )


def _vault_reads(keyvault, name: str) -> int:
    return sum(
        1 for e in keyvault.request_log if e.path.startswith(f"/secrets/{name}") and e.status == 200
    )


def test_get_returns_the_value_and_registers_it_for_redaction(keyvault, provider):
    # Given a secret in the vault
    keyvault.set_secret("sap-communication-user-password", "Pa55-word-for-SAP")
    # When the provider reads it
    value = provider.get("sap-communication-user-password")
    # Then the value comes back and is scrubbed from any later log line
    assert value == "Pa55-word-for-SAP"
    assert redact("login with Pa55-word-for-SAP failed") == "login with *** failed"


def test_value_is_served_from_cache_until_the_ttl_passes(keyvault, provider, clock):
    # Given a secret read once
    keyvault.set_secret("mainframe-client-secret", "v1")
    assert provider.get("mainframe-client-secret") == "v1"
    # When it is rotated in the vault but the TTL (5 minutes) has not passed
    keyvault.set_secret("mainframe-client-secret", "v2")
    clock.now += 299
    # Then the cached value is served without another vault read
    assert provider.get("mainframe-client-secret") == "v1"
    assert _vault_reads(keyvault, "mainframe-client-secret") == 1
    # And once the TTL has passed, the new version is read
    clock.now += 2
    assert provider.get("mainframe-client-secret") == "v2"
    assert _vault_reads(keyvault, "mainframe-client-secret") == 2


def test_invalidate_makes_the_next_get_read_the_rotated_value(keyvault, provider):
    # Given a cached secret that an operator then rotates
    keyvault.set_secret("quoting-tool-hmac-secret", "old-hmac")
    assert provider.get("quoting-tool-hmac-secret") == "old-hmac"
    keyvault.set_secret("quoting-tool-hmac-secret", "new-hmac")
    # When an adapter saw its credentials refused and invalidates the name
    provider.invalidate("quoting-tool-hmac-secret")
    # Then the next get reads the new version at once
    assert provider.get("quoting-tool-hmac-secret") == "new-hmac"


def test_missing_secret_is_a_permanent_error_naming_the_secret(keyvault, provider):
    # Given a vault holding another secret's value
    keyvault.set_secret("other", "do-not-leak-this")
    # When a missing secret is asked for
    with pytest.raises(PermanentError) as caught:
        provider.get("dataverse-client-secret")
    # Then the error names the secret, carries a stable code and no value
    assert "dataverse-client-secret" in str(caught.value)
    assert caught.value.code == "secret_not_found"
    assert "do-not-leak-this" not in str(caught.value)


def test_disabled_secret_is_a_permanent_error(keyvault, provider):
    keyvault.set_secret("retired", "value", enabled=False)
    with pytest.raises(PermanentError, match="disabled secret") as caught:
        provider.get("retired")
    assert caught.value.code == "secret_unavailable"


def test_unavailable_vault_is_a_transient_error_and_nothing_is_cached(keyvault, provider, http):
    # Given a vault that answers 503 to everything
    keyvault.set_secret("s1", "value")
    http.put(
        f"{keyvault.base_url}/_sandbox/faults", json={"rate5xx": 1, "faultPhase": "before"}
    ).raise_for_status()
    # When the provider reads, then it is transient (the caller may retry later)
    with pytest.raises(TransientError, match="HTTP 503"):
        provider.get("s1")
    # And when the vault recovers, the value is read (no failure was cached)
    http.put(f"{keyvault.base_url}/_sandbox/faults", json={}).raise_for_status()
    assert provider.get("s1") == "value"


def test_throttled_vault_is_transient_and_carries_retry_after(keyvault, provider, http):
    keyvault.set_secret("s1", "value")
    http.put(
        f"{keyvault.base_url}/_sandbox/faults", json={"rate429": 1, "retryAfterSeconds": 9}
    ).raise_for_status()
    with pytest.raises(TransientError) as caught:
        provider.get("s1")
    assert caught.value.retry_after == 9
