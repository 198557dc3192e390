"""Where the lake lives and how to authenticate to it (Blob API and delta-rs alike).

One storage account holds the three layer containers. Locally that account is Azurite's
well-known development account (shared-key auth); in Azure it is an ADLS Gen2 account reached
with an Entra token from ``azure-identity``. Azurite has no ``dfs`` endpoint, so everything here
uses the Blob endpoint, which ADLS Gen2 accounts serve as well.

delta-rs (object_store) takes its own storage options rather than an SDK credential:

- emulator: ``azure_storage_account_name``/``azure_storage_account_key`` plus
  ``azure_storage_endpoint`` (the Blob URL with its ephemeral port; the ``use_emulator`` shortcut
  assumes port 10000) and ``allow_http`` for a plain-http endpoint;
- Azure: ``azure_storage_token`` (alias ``bearer_token``) holding a token for
  ``https://storage.azure.com/.default``, refreshed here before it expires, because managed
  identity inside delta-rs has open issues.

The option names are object_store's ``AzureConfigKey`` aliases
(docs.rs/object_store/latest/object_store/azure/enum.AzureConfigKey.html).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from shared.log import register_secret

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobServiceClient

    from shared.config import Settings

log = logging.getLogger(__name__)

# Azurite's published development account and key (documented by Microsoft for the emulator):
# public constants, not secrets. Kept here because shared/ must not import sandbox/.
EMULATOR_ACCOUNT = "devstoreaccount1"
EMULATOR_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
STORAGE_SCOPE = "https://storage.azure.com/.default"

Layer = Literal["bronze", "silver", "gold"]
LAYERS: tuple[Layer, ...] = ("bronze", "silver", "gold")
_PREFIX = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,40}[a-z0-9])?-)?$")


@dataclass(frozen=True)
class LakeConfig:
    """The lake's account and authentication.

    ``container_prefix`` (e.g. ``"t1a2b-"``) isolates a set of layer containers on a shared
    account; tests use it so they never see each other's data. Empty in production.
    """

    blob_url: str
    use_emulator: bool = False
    credential: TokenCredential | None = None
    container_prefix: str = ""

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.container_prefix):
            raise ValueError(
                "container_prefix must be lower-case letters, digits and hyphens, ending in '-'"
            )
        if not self.use_emulator and self.credential is None:
            raise ValueError("a credential is required unless the lake uses the emulator")

    @classmethod
    def from_settings(
        cls, settings: Settings, credential: TokenCredential | None = None
    ) -> LakeConfig:
        """The lake of ``LAKE_BLOB_URL``/``LAKE_USE_EMULATOR`` (credential needed in Azure)."""
        return cls(
            blob_url=str(settings.lake_blob_url).rstrip("/"),
            use_emulator=settings.lake_use_emulator,
            credential=None if settings.lake_use_emulator else credential,
        )

    @property
    def account_name(self) -> str:
        """The storage account: Azurite's path-style account, else the first host label."""
        if self.use_emulator:
            return EMULATOR_ACCOUNT
        host = urlsplit(self.blob_url).hostname or ""
        return host.split(".", 1)[0]


@dataclass
class _BearerToken:
    """A storage token that is fetched again some minutes before it expires."""

    credential: TokenCredential
    refresh_margin_seconds: float = 600.0
    _token: str | None = None
    _expires_on: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._expires_on - time.time() < self.refresh_margin_seconds:
                access = self.credential.get_token(STORAGE_SCOPE)
                register_secret(access.token)
                self._token, self._expires_on = access.token, float(access.expires_on)
                log.debug("lake: storage token refreshed, expires at %d", access.expires_on)
            return self._token


class LakeStorage:
    """Clients and delta-rs options for the lake's account, created lazily and reused."""

    def __init__(self, config: LakeConfig) -> None:
        self.config = config
        self._blob_service: BlobServiceClient | None = None
        self._token = _BearerToken(config.credential) if config.credential is not None else None
        self._ensured: set[str] = set()
        self._lock = threading.Lock()

    def container(self, layer: Layer) -> str:
        """The container name of a layer (with the configured prefix)."""
        return f"{self.config.container_prefix}{layer}"

    @property
    def blob_service(self) -> BlobServiceClient:
        """The Blob service client (shared-key for the emulator, the Entra credential in Azure)."""
        with self._lock:
            if self._blob_service is None:
                from azure.core.credentials import AzureNamedKeyCredential
                from azure.storage.blob import BlobServiceClient

                credential: AzureNamedKeyCredential | TokenCredential | None = (
                    AzureNamedKeyCredential(EMULATOR_ACCOUNT, EMULATOR_ACCOUNT_KEY)
                    if self.config.use_emulator
                    else self.config.credential
                )
                self._blob_service = BlobServiceClient(self.config.blob_url, credential=credential)
            return self._blob_service

    def ensure_container(self, layer: Layer) -> str:
        """Create the layer's container if missing (once per process) and return its name."""
        name = self.container(layer)
        if name in self._ensured:
            return name
        from azure.core.exceptions import ResourceExistsError

        try:
            self.blob_service.create_container(name)
            log.info("lake: created container %s", name)
        except ResourceExistsError:
            pass
        self._ensured.add(name)
        return name

    def ensure_containers(self) -> None:
        """Create the bronze, silver and gold containers if they are missing."""
        for layer in LAYERS:
            self.ensure_container(layer)

    def table_uri(self, layer: Layer, table: str) -> str:
        """The delta-rs URI of a table in a layer: ``az://<container>/<table>``."""
        return f"az://{self.container(layer)}/{table}"

    def storage_options(self) -> dict[str, str]:
        """delta-rs/polars storage options, with a token that is valid for a while yet."""
        options = {"azure_storage_account_name": self.config.account_name}
        parts = urlsplit(self.config.blob_url)
        if self.config.use_emulator:
            options["azure_storage_account_key"] = EMULATOR_ACCOUNT_KEY
            options["azure_storage_endpoint"] = self.config.blob_url
        else:
            assert self._token is not None
            options["azure_storage_token"] = self._token.get()
            if not (parts.hostname or "").endswith(".blob.core.windows.net"):
                # Sovereign clouds and private endpoints: tell object_store where the account is.
                options["azure_storage_endpoint"] = self.config.blob_url
        if parts.scheme == "http":
            # object_store refuses plain http unless told; only the emulator is reached that way.
            options["allow_http"] = "true"
        return options
