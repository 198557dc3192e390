"""Settings: one typed view, validated on first use, never echoing a value."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.config import Settings, load_settings
from shared.errors import SettingsError
from shared.ncrontab import validate_ncrontab

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def _valid() -> dict[str, str]:
    return {
        "AZURE_TENANT_ID": "t",
        "KEY_VAULT_URL": "https://kv.example",
        "DATAVERSE_URL": "https://org.crm.dynamics.com",
        "DATAVERSE_CLIENT_ID": "c",
        "SAP_BASE_URL": "https://sap.example",
        "SAP_USERNAME": "u",
        "MAINFRAME_BASE_URL": "https://mf.example",
        "MAINFRAME_CLIENT_ID": "m",
        "QUOTING_TOOL_CALLBACK_URL": "https://qt.example/cb",
        "LAKE_BLOB_URL": "https://acct.blob.core.windows.net",
        "LAKE_TABLE_URL": "https://acct.table.core.windows.net",
    }


def _env_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(str(alias.choices[0]) if alias is not None else field.upper())  # type: ignore[union-attr]
    return names


def test_valid_settings_load_with_defaults():
    settings = load_settings(_valid())
    assert settings.quotes_queue_name == "quotes-to-dataverse"
    assert settings.qualified_statuses == frozenset({"Active"})
    assert settings.authority == "https://login.microsoftonline.com/t"


def test_names_are_matched_case_insensitively_as_in_azure():
    settings = load_settings({k.lower(): v for k, v in _valid().items()})
    assert settings.sap_username == "u"


def test_one_message_names_every_missing_and_invalid_setting():
    # Given two settings missing and two invalid
    env = _valid()
    del env["AZURE_TENANT_ID"], env["SAP_USERNAME"]
    env["RETRY_MAX_ATTEMPTS"] = "zero"
    env["MAINFRAME_POLL_SCHEDULE"] = "*/5 * * * *"
    # When the settings are validated
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    message = str(caught.value)
    # Then one message names all four
    for name in (
        "AZURE_TENANT_ID",
        "SAP_USERNAME",
        "RETRY_MAX_ATTEMPTS",
        "MAINFRAME_POLL_SCHEDULE",
    ):
        assert name in message
    assert message.startswith("4 setting problem(s)")


def test_validation_errors_never_echo_a_value_and_carry_no_cause():
    # Given a connection string holding a key, and an invalid URL holding a secret-looking value
    env = _valid()
    env["ServiceBusConnection"] = "Endpoint=sb://x/;SharedAccessKey=TOPSECRETKEY123"
    env["KEY_VAULT_URL"] = "not a url TOPSECRETKEY123"
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    # Then neither the message nor a chained cause contains the value
    assert "TOPSECRETKEY123" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_secret_valued_settings_are_masked_in_repr():
    env = _valid() | {"ServiceBusConnection": "Endpoint=sb://x/;SharedAccessKey=TOPSECRETKEY123"}
    assert "TOPSECRETKEY123" not in repr(load_settings(env))


def test_readiness_sees_identity_based_connections():
    env = _valid() | {
        "AzureWebJobsStorage__accountName": "hubhost",
        "ServiceBusConnection__fullyQualifiedNamespace": "hub.servicebus.windows.net",
    }
    settings = load_settings(env)
    assert settings.storage_configured() and settings.service_bus_configured()


def test_sample_settings_validate():
    # The sample must itself be a valid configuration (placeholders included).
    load_settings(SAMPLE)


def test_every_setting_is_in_the_sample_and_documented():
    documented = set(re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs/settings.md").read_text(), re.M))
    # Identity-based variants (X__accountName) are alternatives to the connection setting X.
    names = {n.split("__")[0] for n in _env_names()}
    assert names - set(SAMPLE) == set(), "settings missing from local.settings.sample.json"
    assert set(SAMPLE) - documented == set(), "sample settings missing from docs/settings.md"
    assert documented - set(SAMPLE) == set(), "docs/settings.md lists settings the sample lacks"


@pytest.mark.parametrize(
    "expression",
    ["0 */5 * * * *", "0 30 9 * * 1-5", "0 0 0 1 JAN,JUL *", "*/10 * * * * SUN"],
)
def test_valid_ncrontab_expressions_pass(expression):
    assert validate_ncrontab(expression) == expression


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("*/5 * * * *", "6 fields"),
        ("0 61 * * * *", "outside"),
        ("0 */0 * * * *", "bad step"),
        ("0 0 25 * * *", "outside"),
        ("0 0 5-2 * * *", "backwards"),
        ("00:05:00", "TimeSpan"),
    ],
)
def test_invalid_ncrontab_expressions_are_refused_with_a_reason(expression, reason):
    with pytest.raises(ValueError, match=reason):
        validate_ncrontab(expression)
