"""The composition root: the one place adapters are built from ``Settings``.

Everything is built lazily on first use and then shared for the life of the worker process
(HTTP connection pools, msal's token cache, the secret cache, the territory map). Blueprints ask
for a service here; they never construct an SDK client themselves. ``reset()`` forgets it all,
for tests and the sandbox, which start a new world with new settings.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from azure.core.credentials import TokenCredential

from shared.adapters.dataverse import DataverseClient
from shared.adapters.mainframe import MainframeClient
from shared.adapters.quote_store import TABLE as QUOTES_TABLE
from shared.adapters.quote_store import QuoteStore
from shared.adapters.quoting_tool import QuotingToolClient
from shared.adapters.records import CouplingStore, RejectionStore
from shared.adapters.sap import SapClient
from shared.adapters.secrets import SecretProvider
from shared.adapters.state import DEFAULT_TABLE, WatermarkStore
from shared.adapters.tables import Tables
from shared.config import Settings, get_settings
from shared.http import HttpClient, RetryPolicy, make_session
from shared.identity import ConfidentialClientToken, azure_credential
from shared.lake.bronze import BronzeReader, BronzeWriter
from shared.lake.storage import LakeConfig, LakeStorage
from shared.services.archive import ArchiveImport
from shared.services.availability import TABLE as AVAILABILITY_TABLE
from shared.services.availability import AvailabilityService, LastKnownAvailability
from shared.services.dashboard import Dashboard
from shared.services.dry_run import DryRun
from shared.services.forecasts import INTAKE_TABLE, ForecastIntake, IntakeMarkers
from shared.services.lake_jobs import LakeJobs
from shared.services.pricing import PricingFeed
from shared.services.quotes import QuoteFlow
from shared.services.reconcile import Reconciler
from shared.services.sap_inbound import SapInbound
from shared.services.sap_outbound import SapOutbound
from shared.services.territory import TerritoryDirectory, TerritoryMap
from shared.services.urgent_orders import MESSAGES_TABLE as URGENT_MESSAGES_TABLE
from shared.services.urgent_orders import VERSIONS_TABLE as URGENT_VERSIONS_TABLE
from shared.services.urgent_orders import UrgentOrders
from shared.sync.echo import TABLE as WRITES_TABLE
from shared.sync.echo import EchoFilter, WriteLedger
from shared.sync.engine import (
    CONFLICTS_TABLE,
    DEFERRED_TABLE,
    ConflictLog,
    DeferredStore,
    SyncEngine,
)

if TYPE_CHECKING:
    # azure.servicebus (~0.2 s to import) serves only the dead-letter tools and the dashboard's
    # dead-letter count; importing it here would put it on every function's cold start.
    from shared.adapters.deadletters import DeadLetters

_cached: list[Callable[[], None]] = []


def _once[T](build: Callable[[], T]) -> Callable[[], T]:
    """Build on first call, then share; ``reset()`` forgets it."""
    cached = functools.cache(build)
    _cached.append(cached.cache_clear)
    return cached


def reset() -> None:
    """Forget every built adapter and the validated settings."""
    for clear in _cached:
        clear()
    get_settings.cache_clear()


def settings() -> Settings:
    return get_settings()


@_once
def credential() -> TokenCredential:
    return azure_credential(settings())


@_once
def session() -> requests.Session:
    return make_session(settings().hub_ca_bundle, pool_size=32)


def policy() -> RetryPolicy:
    s = settings()
    return RetryPolicy(s.retry_max_attempts, s.retry_base_delay_seconds, s.retry_max_delay_seconds)


@_once
def secrets() -> SecretProvider:
    s = settings()
    host = urlsplit(str(s.key_vault_url)).hostname or ""
    return SecretProvider(
        str(s.key_vault_url),
        credential(),
        ca_bundle=s.hub_ca_bundle,
        # The challenge's resource is checked against real vault hosts; a local vault isn't one.
        verify_challenge_resource=host.endswith(".vault.azure.net"),
    )


def _secret(name: str) -> tuple[Callable[[], str], Callable[[], None]]:
    vault = secrets()
    return (lambda: vault.get(name)), (lambda: vault.invalidate(name))


@_once
def dataverse() -> DataverseClient:
    s = settings()
    read, forget = _secret(s.dataverse_client_secret_name)
    token = ConfidentialClientToken(
        client_id=s.dataverse_client_id,
        authority=s.authority,
        resource=str(s.dataverse_url),
        secret=read,
        invalidate_secret=forget,
        session=session(),
    )
    http = HttpClient(
        session(), policy=policy(), timeout=s.http_timeout_seconds, token=token, name="dataverse"
    )
    return DataverseClient(http, str(s.dataverse_url))


def _sap_client(http: HttpClient) -> SapClient:
    s = settings()
    read, forget = _secret(s.sap_password_secret_name)
    return SapClient(
        http,
        str(s.sap_base_url),
        username=s.sap_username,
        password=read,
        on_unauthorized=forget,
        sap_client=s.sap_client or None,
    )


@_once
def sap() -> SapClient:
    s = settings()
    return _sap_client(
        HttpClient(session(), policy=policy(), timeout=s.http_timeout_seconds, name="sap")
    )


@_once
def mainframe() -> MainframeClient:
    s = settings()
    read, forget = _secret(s.mainframe_client_secret_name)
    return MainframeClient(
        str(s.mainframe_base_url),
        s.mainframe_client_id,
        read,
        session=session(),
        policy=policy(),
        timeout=s.http_timeout_seconds,
        on_secret_rejected=forget,
    )


@_once
def quoting_tool() -> QuotingToolClient:
    s = settings()
    read, forget = _secret(s.quoting_tool_hmac_secret_name)
    return QuotingToolClient(
        str(s.quoting_tool_callback_url),
        read,
        session=session(),
        policy=policy(),
        timeout=s.http_timeout_seconds,
        on_secret_rejected=forget,
    )


@_once
def lake() -> LakeStorage:
    s = settings()
    return LakeStorage(LakeConfig.from_settings(s, None if s.lake_use_emulator else credential()))


@_once
def tables() -> Tables:
    s = settings()
    return Tables(
        str(s.lake_table_url),
        use_emulator=s.lake_use_emulator,
        credential=None if s.lake_use_emulator else credential(),
    )


@_once
def watermarks() -> WatermarkStore:
    return WatermarkStore(tables().table(DEFAULT_TABLE))


@_once
def couplings() -> CouplingStore:
    return CouplingStore(tables())


@_once
def rejections() -> RejectionStore:
    return RejectionStore(tables())


def _load_territories() -> TerritoryMap:
    client = dataverse()
    return TerritoryMap.from_dataverse(
        client.query(
            "territories",
            select=[
                "territoryid",
                "contoso_territorycode",
                "name",
                "contoso_level",
                "_contoso_parentterritoryid_value",
            ],
        ),
        client.query("contoso_postalcodes", select=["contoso_name", "_contoso_territoryid_value"]),
    )


@_once
def territories() -> TerritoryDirectory:
    return TerritoryDirectory(_load_territories)


@_once
def bronze() -> BronzeWriter:
    return BronzeWriter(lake())


@_once
def quote_store() -> QuoteStore:
    return QuoteStore(tables())


@_once
def quote_flow() -> QuoteFlow:
    return QuoteFlow(
        store=quote_store(),
        bronze=bronze(),
        bronze_reader=BronzeReader(lake()),
        territories=territories(),
        dataverse=dataverse(),
        callbacks=quoting_tool(),
        delta_tokens=watermarks(),
        couplings=couplings(),
        rejections=rejections(),
        qualified_statuses=settings().qualified_statuses,
    )


# ---- Quoting Tool API reads and intake (flows 1b, 3, 4) ------------------------------------------


@_once
def pricing_feed() -> PricingFeed:
    return PricingFeed(dataverse())


@_once
def sap_realtime() -> SapClient:
    """SAP for requests a partner is waiting on: fewer, shorter retries than the batch client,
    because a stale answer now beats a fresh one after a minute of backoff."""
    s = settings()
    quick = RetryPolicy(
        min(2, s.retry_max_attempts),
        min(s.retry_base_delay_seconds, 0.2),
        min(s.retry_max_delay_seconds, 2.0),
    )
    return _sap_client(
        HttpClient(
            session(), policy=quick, timeout=min(s.http_timeout_seconds, 10.0), name="sap-realtime"
        )
    )


@_once
def availability() -> AvailabilityService:
    return AvailabilityService(
        sap_realtime(),
        LastKnownAvailability(tables().table(AVAILABILITY_TABLE)),
        ttl_seconds=settings().availability_cache_seconds,
    )


@_once
def intake_markers() -> IntakeMarkers:
    return IntakeMarkers(tables().table(INTAKE_TABLE))


@_once
def forecast_intake() -> ForecastIntake:
    return ForecastIntake(
        bronze=bronze(),
        markers=intake_markers(),
        territories=lambda: territories().current(),
    )


@_once
def archive_import() -> ArchiveImport:
    return ArchiveImport(bronze=bronze(), markers=intake_markers())


# ---- Lake jobs: mainframe poll, gold, flow 6 and flow 7 (blueprints/lake_jobs.py) -------------


@_once
def lake_jobs() -> LakeJobs:
    return LakeJobs(
        mainframe=mainframe(),
        dataverse=dataverse(),
        watermarks=watermarks(),
        rejections=rejections(),
        storage=lake(),
        overlap_seconds=settings().mainframe_overlap_seconds,
    )


# ---- Flow 12 urgent orders, initial-sync dry run, reconciliation, dead-letter tools ------------


@_once
def urgent_orders() -> UrgentOrders:
    t = tables()
    return UrgentOrders(
        dataverse=dataverse(),
        sap=sap(),
        messages=t.table(URGENT_MESSAGES_TABLE),
        versions=t.table(URGENT_VERSIONS_TABLE),
        rejections=rejections(),
    )


def dry_run(out_dir: Path | None = None) -> DryRun:
    """Not shared: each call may write its report to another folder."""
    return DryRun(
        sap=sap(),
        mainframe=mainframe(),
        dataverse=dataverse(),
        storage=lake(),
        out_dir=out_dir or Path.cwd() / "out",
    )


@_once
def reconciler() -> Reconciler:
    return Reconciler(
        dataverse=dataverse(),
        quotes=tables().table(QUOTES_TABLE),
        storage=lake(),
        rejections=rejections(),
    )


def dead_letters(connection_string: str | None = None) -> DeadLetters:
    """Dead-letter tools for the app's namespace: a connection string when given (or set in
    ``ServiceBusConnection``), else ``ServiceBusConnection__fullyQualifiedNamespace`` with the
    app's credential, as the Functions extension resolves identity-based connections."""
    from shared.adapters.deadletters import DeadLetters

    s = settings()
    configured = s.service_bus_connection.get_secret_value() if s.service_bus_connection else ""
    text = connection_string or configured
    if "Endpoint=" in text:
        return DeadLetters.from_connection_string(text)
    if not s.service_bus_namespace:
        raise ValueError(
            "set ServiceBusConnection (a connection string) or "
            "ServiceBusConnection__fullyQualifiedNamespace"
        )
    return DeadLetters.from_namespace(s.service_bus_namespace, credential())


# ---- SAP batches: flow 10 (inbound) and flow 11 (outbound), under the sync rules --------------


@_once
def write_ledger() -> WriteLedger:
    return WriteLedger(tables().table(WRITES_TABLE))


@_once
def sync_deferred() -> DeferredStore:
    return DeferredStore(tables().table(DEFERRED_TABLE))


@_once
def sync_engine() -> SyncEngine:
    return SyncEngine(rejections(), ConflictLog(tables().table(CONFLICTS_TABLE)))


@_once
def sap_inbound() -> SapInbound:
    return SapInbound(
        sap=sap(),
        dataverse=dataverse(),
        storage=lake(),
        watermarks=watermarks(),
        couplings=couplings(),
        quotes=quote_store(),
        rejections=rejections(),
        deferred=sync_deferred(),
        ledger=write_ledger(),
    )


@_once
def sap_outbound() -> SapOutbound:
    # The hub's Dataverse identity is its application user; WhoAmI names it (one request, once).
    echo = EchoFilter(write_ledger(), lambda: [str(dataverse().whoami().get("UserId") or "")])
    return SapOutbound(
        sap=sap(),
        dataverse=dataverse(),
        watermarks=watermarks(),
        couplings=couplings(),
        rejections=rejections(),
        engine=sync_engine(),
        echo=echo,
        ledger=write_ledger(),
    )


# ---- Operations dashboard (blueprints/dashboard.py) -------------------------------------------


def _dead_letter_counts() -> dict[str, int]:
    from shared.services.dashboard import count_dead_letters

    s = settings()
    queues = (
        s.quotes_queue_name,
        s.urgent_sap_to_dataverse_queue_name,
        s.urgent_dataverse_to_sap_queue_name,
    )
    return count_dead_letters(dead_letters(), queues)


@_once
def dashboard() -> Dashboard:
    # Dead letters are counted only on a configured namespace (identity-based, as in Azure); a
    # bare connection string may be the local sandbox, which has no broker to ask.
    return Dashboard(
        storage=lake(),
        watermarks=watermarks(),
        rejections=rejections(),
        dead_letters=_dead_letter_counts if settings().service_bus_namespace else None,
    )
