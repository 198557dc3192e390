"""The one typed view of every app setting the hub reads.

Settings hold Key Vault secret *names*, never secret values. The only values that could be
secret (storage and Service Bus connection strings, used locally instead of identities) are
``SecretStr`` and are never echoed, not even in validation errors.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shared.errors import SettingsError
from shared.ncrontab import validate_ncrontab

Schedule = Annotated[str, AfterValidator(validate_ncrontab)]
SecretName = Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,127}$")]
QueueName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,259}$")]


def _alias(name: str) -> Any:
    return Field(validation_alias=AliasChoices(name))


class Settings(BaseSettings):
    """Every setting the code or a binding reads. Each is described in docs/settings.md."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    # --- Host storage and Service Bus (read by bindings; checked here for readiness) -----------
    azure_web_jobs_storage: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage")
    )
    azure_web_jobs_storage_account: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__accountName")
    )
    service_bus_connection: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ServiceBusConnection")
    )
    service_bus_namespace: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ServiceBusConnection__fullyQualifiedNamespace"),
    )
    quotes_queue_name: QueueName = "quotes-to-dataverse"
    urgent_sap_to_dataverse_queue_name: QueueName = "urgent-sap-to-dataverse"
    urgent_dataverse_to_sap_queue_name: QueueName = "urgent-dataverse-to-sap"

    # --- Identity ------------------------------------------------------------------------------
    azure_tenant_id: str = Field(min_length=1)
    azure_authority_host: HttpUrl = HttpUrl("https://login.microsoftonline.com")
    # Client id of the user-assigned managed identity in Azure; the sandbox client locally.
    azure_client_id: str | None = None
    # Local sandbox only (azure-identity client secret); never set in Azure.
    azure_client_secret: SecretStr | None = None
    # Extra CA bundle for TLS to local peers (the sandbox CA). Empty in Azure.
    hub_ca_bundle: Path | None = None

    # --- Key Vault -----------------------------------------------------------------------------
    key_vault_url: HttpUrl

    # --- Dataverse (Dynamics 365 Sales) --------------------------------------------------------
    dataverse_url: HttpUrl
    dataverse_client_id: str = Field(min_length=1)
    dataverse_client_secret_name: SecretName = "dataverse-client-secret"
    dataverse_changes_schedule: Schedule = "0 */2 * * * *"
    # Quote status names that mean "qualified" (the flag back to the Quoting Tool).
    quote_qualified_statuses: str = "Active"

    # --- SAP S/4HANA ---------------------------------------------------------------------------
    sap_base_url: HttpUrl
    sap_username: str = Field(min_length=1)
    # SAP client (mandant) for systems with several; empty means the system default.
    sap_client: str | None = Field(default=None, pattern=r"^(\d{3})?$")
    sap_password_secret_name: SecretName = "sap-communication-user-password"
    sap_inbound_schedule: Schedule = "0 */15 * * * *"
    sap_outbound_schedule: Schedule = "0 */15 * * * *"

    # --- Legacy mainframe ----------------------------------------------------------------------
    mainframe_base_url: HttpUrl
    mainframe_client_id: str = Field(min_length=1)
    mainframe_client_secret_name: SecretName = "mainframe-client-secret"
    mainframe_poll_schedule: Schedule = "0 */5 * * * *"
    mainframe_overlap_seconds: int = Field(default=120, ge=0, le=86_400)

    # --- Lake jobs (blueprints/lake_jobs.py): gold, flow 6 and flow 7 timers ---------------------
    gold_rebuild_schedule: Schedule = "0 15 * * * *"
    dataverse_load_schedule: Schedule = "0 */10 * * * *"
    dataverse_export_schedule: Schedule = "0 */5 * * * *"
    reconcile_schedule: Schedule = "0 0 2 * * *"
    # The dashboard_snapshot timer: gold figures for GET /api/dashboard into one JSON blob.
    dashboard_snapshot_schedule: Schedule = "0 */5 * * * *"

    # --- Quoting Tool --------------------------------------------------------------------------
    quoting_tool_callback_url: HttpUrl
    quoting_tool_hmac_secret_name: SecretName = "quoting-tool-hmac-secret"

    # --- Lake and state (one storage account: Blob for the lake, Tables for hub state) ---------
    lake_blob_url: HttpUrl
    lake_table_url: HttpUrl
    # Azurite: use its well-known development account instead of an Entra identity.
    lake_use_emulator: bool = False
    # The lake_ingest timer: Quoting Tool bronze (forecasts, quote archive) into silver.
    lake_ingest_schedule: Schedule = "0 */1 * * * *"

    # --- Quoting Tool API reads ----------------------------------------------------------------
    # How long an SAP availability answer is reused in-process (0 disables the cache).
    availability_cache_seconds: int = Field(default=30, ge=0, le=3600)

    # --- Outbound HTTP resilience --------------------------------------------------------------
    http_timeout_seconds: float = Field(default=30.0, gt=0, le=230)
    retry_max_attempts: int = Field(default=6, ge=1, le=20)
    retry_base_delay_seconds: float = Field(default=0.5, ge=0, le=60)
    retry_max_delay_seconds: float = Field(default=60.0, ge=0, le=300)

    @field_validator("quote_qualified_statuses")
    @classmethod
    def _non_empty_list(cls, value: str) -> str:
        if not [s for s in value.split(",") if s.strip()]:
            raise ValueError("needs at least one status name")
        return value

    @property
    def qualified_statuses(self) -> frozenset[str]:
        return frozenset(s.strip() for s in self.quote_qualified_statuses.split(",") if s.strip())

    @property
    def authority(self) -> str:
        return f"{str(self.azure_authority_host).rstrip('/')}/{self.azure_tenant_id}"

    def storage_configured(self) -> bool:
        return bool(self.azure_web_jobs_storage or self.azure_web_jobs_storage_account)

    def service_bus_configured(self) -> bool:
        return bool(self.service_bus_connection or self.service_bus_namespace)


def _env_name(field: str) -> str:
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return field.upper()


def describe_errors(error: ValidationError) -> str:
    """One line naming every missing or invalid setting, never echoing a value."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else "?"
        name = _env_name(field) if field in Settings.model_fields else field
        reason = "is missing" if item["type"] == "missing" else f"is invalid: {item['msg']}"
        problems.append(f"{name} {reason}")
    return f"{len(problems)} setting problem(s): " + "; ".join(sorted(problems))


class _ExplicitSettings(Settings):
    """Settings from an explicit mapping only: the process environment is not consulted."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate settings from ``environ`` (default: the process environment)."""
    try:
        if environ is None:
            return Settings()
        # An explicit mapping (tests, the sandbox) is matched case-insensitively, as in Azure.
        lowered = {k.lower(): v for k, v in environ.items()}
        values: dict[str, Any] = {}
        for field, info in Settings.model_fields.items():
            env = _env_name(field)
            if env.lower() in lowered:
                key = env if info.validation_alias else field
                values[key] = lowered[env.lower()]
        return _ExplicitSettings(**values)
    except ValidationError as exc:
        # `from None`: the pydantic error would otherwise ride along in the traceback, values and all.
        raise SettingsError(describe_errors(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """Settings validated once, on first use."""
    return load_settings()
