"""Lake storage options for delta-rs: emulator shared key, Azure bearer token refresh."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest
from azure.core.credentials import AccessToken

from shared.lake.storage import (
    EMULATOR_ACCOUNT,
    EMULATOR_ACCOUNT_KEY,
    STORAGE_SCOPE,
    LakeConfig,
    LakeStorage,
)
from shared.log import redact

pytestmark = pytest.mark.unit


@dataclass
class FakeCredential:
    """A TokenCredential handing out numbered tokens that live ``lifetime`` seconds."""

    lifetime: float
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes, **kwargs):
        self.scopes.append(scopes)
        return AccessToken(f"token-number-{len(self.scopes)}", int(time.time() + self.lifetime))


def test_emulator_options_name_the_endpoint_with_its_port_and_allow_http():
    # Given Azurite on an ephemeral port (use_emulator would assume 10000)
    storage = LakeStorage(LakeConfig("http://127.0.0.1:49152/devstoreaccount1", use_emulator=True))
    # When delta-rs options are built (object_store AzureConfigKey aliases,
    # docs.rs/object_store/latest/object_store/azure/enum.AzureConfigKey.html)
    options = storage.storage_options()
    # Then they carry the development account, its key, the endpoint and allow_http
    assert options == {
        "azure_storage_account_name": EMULATOR_ACCOUNT,
        "azure_storage_account_key": EMULATOR_ACCOUNT_KEY,
        "azure_storage_endpoint": "http://127.0.0.1:49152/devstoreaccount1",
        "allow_http": "true",
    }
    assert storage.table_uri("silver", "legacy_orders") == "az://silver/legacy_orders"


def test_azure_options_carry_a_storage_token_and_no_key():
    # Given an ADLS Gen2 account reached with an Entra credential
    credential = FakeCredential(lifetime=3600)
    storage = LakeStorage(
        LakeConfig("https://contosolake.blob.core.windows.net", credential=credential)
    )
    # When delta-rs options are built
    options = storage.storage_options()
    # Then a bearer token for the storage scope is passed, the account comes from the host
    assert options == {
        "azure_storage_account_name": "contosolake",
        "azure_storage_token": "token-number-1",
    }
    assert credential.scopes == [(STORAGE_SCOPE,)]
    # and the token is registered for log redaction
    assert "token-number-1" not in redact("sent token-number-1")


def test_token_is_reused_while_fresh_and_refreshed_before_expiry():
    # Given tokens that live an hour, then one that is about to expire
    fresh = FakeCredential(lifetime=3600)
    storage = LakeStorage(LakeConfig("https://acct.blob.core.windows.net", credential=fresh))
    # When options are built twice
    first = storage.storage_options()["azure_storage_token"]
    second = storage.storage_options()["azure_storage_token"]
    # Then one token serves both
    assert first == second == "token-number-1"

    expiring = FakeCredential(lifetime=60)
    storage = LakeStorage(LakeConfig("https://acct.blob.core.windows.net", credential=expiring))
    storage.storage_options()
    # When a token is within the refresh margin on the next call
    again = storage.storage_options()["azure_storage_token"]
    # Then a new one is fetched rather than risking expiry mid-commit
    assert again == "token-number-2"


def test_prefixed_containers_isolate_a_lake():
    # Given a prefix
    storage = LakeStorage(
        LakeConfig("http://127.0.0.1:1/devstoreaccount1", use_emulator=True, container_prefix="t1-")
    )
    # Then every layer lives in its own prefixed container
    assert [storage.container(layer) for layer in ("bronze", "silver", "gold")] == [
        "t1-bronze",
        "t1-silver",
        "t1-gold",
    ]


@pytest.mark.parametrize("prefix", ["T1-", "t1", "-t1-", "t_1-"])
def test_container_prefix_must_make_valid_container_names(prefix):
    # Given a prefix that would give an invalid container name
    # Then the configuration is refused
    with pytest.raises(ValueError):
        LakeConfig(
            "http://127.0.0.1:1/devstoreaccount1", use_emulator=True, container_prefix=prefix
        )


def test_azure_needs_a_credential():
    # Given no emulator and no credential
    # Then the configuration is refused up front
    with pytest.raises(ValueError, match="credential"):
        LakeConfig("https://acct.blob.core.windows.net")
