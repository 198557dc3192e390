"""The whole local world in one object: Azurite, every peer, the app's settings, and optionally the
Functions app itself behind the dev HTTP adapter with the local message dispatcher.

``python -m sandbox serve`` and ``make demo`` run it as a process; tests use the same class.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import azurite as azurite_mod
from sandbox import secrets_registry
from sandbox import tls as tls_mod
from sandbox.entra import EntraPeer, Issuer
from sandbox.peer import Peer

log = logging.getLogger(__name__)

SECRET_NAMES = {
    "dataverse": "dataverse-client-secret",
    "sap": "sap-communication-user-password",
    "mainframe": "mainframe-client-secret",
    "hmac": "quoting-tool-hmac-secret",
}
ROOT_STATE = Path(__file__).resolve().parent.parent / ".sandbox"
SAP_USER = "DATAHUB_COMM"
MAINFRAME_CLIENT = "datahub"


@dataclass
class Ports:
    """Fixed ports by option; 0 means ephemeral."""

    entra: int = 0
    keyVault: int = 0
    dataverse: int = 0
    sap: int = 0
    mainframe: int = 0
    quotingTool: int = 0
    blob: int = 0
    queue: int = 0
    table: int = 0
    hub: int = 0


@dataclass
class World:
    """Start with ``start()``; stop with ``stop()`` (or use as a context manager)."""

    state_dir: Path
    persist: bool = False
    ports: Ports = field(default_factory=Ports)
    issuer: Issuer = field(default_factory=Issuer)
    peers: dict[str, Peer] = field(default_factory=dict)
    azurite: azurite_mod.Azurite | None = None
    # An Azurite someone else started (the test session's) is used, and left running.
    shared_azurite: azurite_mod.Azurite | None = None
    hub: Any = None  # sandbox.app.LocalApp once start_app() ran
    hub_client: tuple[str, str] = ("", "")
    test_client: tuple[str, str] = ("", "")
    secret_values: dict[str, str] = field(default_factory=dict)
    service_bus_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> World:
        from sandbox.dataverse import DataversePeer
        from sandbox.keyvault import KeyVaultPeer
        from sandbox.mainframe import MainframePeer
        from sandbox.quoting_tool import QuotingToolPeer
        from sandbox.sap import SapPeer

        tls = tls_mod.create(self.state_dir / "tls")
        self.secret_values = {
            "sap": secrets.token_urlsafe(24),
            "mainframe": secrets.token_urlsafe(24),
            "hmac": secrets.token_urlsafe(32),
        }
        launch = None
        if self.shared_azurite is None:
            # A folder, not --inMemoryPersistence: Azurite starts in ~2.5 s from a folder but
            # ~4 s in memory, and the state dir is temporary unless persisted anyway.
            launch = azurite_mod.spawn(
                self.state_dir / "azurite",
                blob_port=self.ports.blob,
                queue_port=self.ports.queue,
                table_port=self.ports.table,
            )
        try:
            entra = EntraPeer(self.issuer, tls=tls)
            self.peers = {
                "entra": entra,
                "keyVault": KeyVaultPeer(self.issuer, tls=tls),
                "dataverse": DataversePeer(self.issuer, tls=tls),
                "sap": SapPeer(self.issuer, tls=tls),
                "mainframe": MainframePeer(tls=tls),
                "quotingTool": QuotingToolPeer(tls=tls, hmac_secret=self.secret_values["hmac"]),
            }
            for name, peer in self.peers.items():
                peer.start(port=getattr(self.ports, name))
            self.hub_client = entra.register_client()
            self.test_client = entra.register_client()
            self.secret_values["dataverse"] = self.hub_client[1]
            self.peers["sap"].add_user(SAP_USER, self.secret_values["sap"])  # type: ignore[attr-defined]
            self.peers["mainframe"].register_client(  # type: ignore[attr-defined]
                MAINFRAME_CLIENT, self.secret_values["mainframe"]
            )
            vault = self.peers["keyVault"]
            # Recorded before Key Vault sees them, so they keep their configured kind (a value is
            # recorded once, under the first kind it is given).
            for key, value in self.secret_values.items():
                secrets_registry.record(f"configured-{key}", value)
            secrets_registry.record("service-bus-key", self.service_bus_key)
            for key, name in SECRET_NAMES.items():
                vault.set_secret(name, self.secret_values[key])  # type: ignore[attr-defined]
            self.azurite = self.shared_azurite or (launch.wait(20.0) if launch else None)
        except BaseException:
            if launch is not None and self.azurite is None:
                launch.kill()
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.hub is not None:
            self.hub.stop()
            self.hub = None
        for peer in self.peers.values():
            with contextlib.suppress(Exception):
                peer.stop()
        if self.azurite is not None and self.azurite is not self.shared_azurite:
            self.azurite.stop()
        self.azurite = None

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what the app and clients need ---------------------------------------------------------
    @property
    def ca_bundle(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def endpoints(self) -> dict[str, str]:
        assert self.azurite is not None
        endpoints = {name: peer.base_url for name, peer in self.peers.items()}
        endpoints |= {
            "blob": self.azurite.blob_url,
            "queue": self.azurite.queue_url,
            "table": self.azurite.table_url,
        }
        if self.hub is not None:
            endpoints["hub"] = self.hub.base_url
        return endpoints

    def settings(self) -> dict[str, str]:
        """Exactly the app settings the Functions app needs to run against this world."""
        assert self.azurite is not None
        e = self.endpoints()
        return {
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "AzureWebJobsStorage": self.azurite.connection_string,
            "AzureWebJobsFeatureFlags": "EnableWorkerIndexing",
            "ServiceBusConnection": (
                "Endpoint=sb://127.0.0.1;SharedAccessKeyName=RootManageSharedAccessKey;"
                f"SharedAccessKey={self.service_bus_key};UseDevelopmentEmulator=true;"
            ),
            "QUOTES_QUEUE_NAME": "quotes-to-dataverse",
            "URGENT_SAP_TO_DATAVERSE_QUEUE_NAME": "urgent-sap-to-dataverse",
            "URGENT_DATAVERSE_TO_SAP_QUEUE_NAME": "urgent-dataverse-to-sap",
            "AZURE_TENANT_ID": self.issuer.tenant_id,
            "AZURE_AUTHORITY_HOST": e["entra"],
            "AZURE_CLIENT_ID": self.hub_client[0],
            "AZURE_CLIENT_SECRET": self.hub_client[1],
            "HUB_CA_BUNDLE": str(self.ca_bundle),
            "KEY_VAULT_URL": e["keyVault"],
            "DATAVERSE_URL": e["dataverse"],
            "DATAVERSE_CLIENT_ID": self.hub_client[0],
            "DATAVERSE_CLIENT_SECRET_NAME": SECRET_NAMES["dataverse"],
            "DATAVERSE_CHANGES_SCHEDULE": "0 */2 * * * *",
            "QUOTE_QUALIFIED_STATUSES": "Active",
            "SAP_BASE_URL": e["sap"],
            "SAP_USERNAME": SAP_USER,
            "SAP_CLIENT": "",
            "SAP_PASSWORD_SECRET_NAME": SECRET_NAMES["sap"],
            "SAP_INBOUND_SCHEDULE": "0 */15 * * * *",
            "SAP_OUTBOUND_SCHEDULE": "0 */15 * * * *",
            "MAINFRAME_BASE_URL": e["mainframe"],
            "MAINFRAME_CLIENT_ID": MAINFRAME_CLIENT,
            "MAINFRAME_CLIENT_SECRET_NAME": SECRET_NAMES["mainframe"],
            "MAINFRAME_POLL_SCHEDULE": "0 */5 * * * *",
            "MAINFRAME_OVERLAP_SECONDS": "120",
            "GOLD_REBUILD_SCHEDULE": "0 15 * * * *",
            "DATAVERSE_LOAD_SCHEDULE": "0 */10 * * * *",
            "DATAVERSE_EXPORT_SCHEDULE": "0 */5 * * * *",
            "RECONCILE_SCHEDULE": "0 0 2 * * *",
            "DASHBOARD_SNAPSHOT_SCHEDULE": "0 */5 * * * *",
            "QUOTING_TOOL_CALLBACK_URL": f"{e['quotingTool']}/api/hub-callbacks",
            "QUOTING_TOOL_HMAC_SECRET_NAME": SECRET_NAMES["hmac"],
            "LAKE_BLOB_URL": self.azurite.blob_url,
            "LAKE_TABLE_URL": self.azurite.table_url,
            "LAKE_USE_EMULATOR": "true",
            "LAKE_INGEST_SCHEDULE": "0 */1 * * * *",
            "AVAILABILITY_CACHE_SECONDS": "30",
            # Local peers answer in milliseconds; short timeouts make fault runs quick.
            "HTTP_TIMEOUT_SECONDS": "5",
            "RETRY_MAX_ATTEMPTS": "6",
            "RETRY_BASE_DELAY_SECONDS": "0.05",
            "RETRY_MAX_DELAY_SECONDS": "5",
        }

    def descriptor(self) -> dict[str, Any]:
        """The first stdout line of ``python -m sandbox serve``."""
        out: dict[str, Any] = {
            "endpoints": self.endpoints(),
            "settings": self.settings(),
            "testClient": {
                "tenantId": self.issuer.tenant_id,
                "clientId": self.test_client[0],
                "clientSecret": self.test_client[1],
            },
        }
        if self.hub is not None:
            out["hubKey"] = self.hub.function_key
        return out

    # ---- the app -------------------------------------------------------------------------------
    def start_app(self, port: int | None = None) -> Any:
        """Serve the Functions app (dev HTTP adapter + dispatcher), configured with settings()."""
        from sandbox.app import LocalApp

        os.environ.update(self.settings())
        self.hub = LocalApp().start(port=self.ports.hub if port is None else port)
        secrets_registry.record("function-key", self.hub.function_key)
        secrets_registry.record("master-key", self.hub.devhost.master_key)
        return self.hub

    @property
    def issued_secrets_path(self) -> Path:
        """Where :meth:`dump_issued_secrets` writes: the state dir, never ``out/``."""
        return self.state_dir / "issued-secrets.txt"

    def dump_issued_secrets(self) -> Path:
        """Write every secret and token this process's sandbox issued (``sandbox.secrets_registry``)
        for a search in another process (``python -m sandbox.scan_secrets``)."""
        secrets_registry.dump(self.issued_secrets_path)
        return self.issued_secrets_path


@contextlib.contextmanager
def running(state_dir: Path, *, persist: bool = False, app: bool = False) -> Iterator[World]:
    """A started world (and app), stopped on exit; the state dir is removed unless persisted."""
    world = World(state_dir, persist=persist)
    try:
        world.start()
        if app:
            world.start_app()
        yield world
    finally:
        world.stop()
        if not persist:
            shutil.rmtree(state_dir, ignore_errors=True)
