"""Identities the hub authenticates with.

- Key Vault and Azure Storage: an azure-identity credential — the managed identity in Azure; the
  sandbox client (``AZURE_CLIENT_SECRET``) on a developer's machine.
- Dataverse: the app registration bound to the Dataverse application user, through msal's
  client-credentials flow, its client secret read from Key Vault by name.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import msal
import requests
from azure.core.credentials import TokenCredential

from shared.config import Settings
from shared.errors import PermanentError, TransientError
from shared.log import register_secret

log = logging.getLogger(__name__)


def azure_credential(settings: Settings) -> TokenCredential:
    """The managed identity in Azure; the sandbox client secret locally."""
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    if settings.azure_client_secret is not None:
        options: dict[str, Any] = {
            "authority": str(settings.azure_authority_host).rstrip("/"),
            "disable_instance_discovery": True,
        }
        if settings.hub_ca_bundle is not None:
            options["connection_verify"] = str(settings.hub_ca_bundle)
        return ClientSecretCredential(
            settings.azure_tenant_id,
            settings.azure_client_id or "",
            settings.azure_client_secret.get_secret_value(),
            **options,
        )
    return DefaultAzureCredential(
        managed_identity_client_id=settings.azure_client_id,
        exclude_interactive_browser_credential=True,
    )


class ConfidentialClientToken:
    """A ``TokenSource`` (see ``shared.http``) for one resource via msal client credentials.

    msal caches the token and renews it before expiry. ``force_refresh`` (after a 401) drops
    the cache; a refused secret is re-read from Key Vault once, which is how a rotated secret
    is picked up without a restart.
    """

    def __init__(
        self,
        *,
        client_id: str,
        authority: str,
        resource: str,
        secret: Callable[[], str],
        invalidate_secret: Callable[[], None],
        session: requests.Session,
    ) -> None:
        self._client_id = client_id
        self._authority = authority
        self._scopes = [resource.rstrip("/") + "/.default"]
        self._secret = secret
        self._invalidate_secret = invalidate_secret
        self._session = session
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._secret(),
                authority=self._authority,
                instance_discovery=False,
                http_client=self._session,
            )
        return self._app

    def __call__(self, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                self._app = None
            for attempt in (1, 2):
                try:
                    result = self._application().acquire_token_for_client(scopes=self._scopes)
                except (requests.ConnectionError, requests.Timeout) as exc:
                    raise TransientError(
                        f"token endpoint unreachable: {type(exc).__name__}"
                    ) from None
                except ValueError as exc:  # msal raises ValueError on a bad authority document
                    raise TransientError(f"token endpoint answered unexpectedly: {exc}") from None
                token = result.get("access_token")
                if token:
                    register_secret(str(token))
                    return str(token)
                error = str(result.get("error", "unknown_error"))
                if error in ("invalid_client", "unauthorized_client") and attempt == 1:
                    log.warning("token request refused (%s); re-reading the client secret", error)
                    self._invalidate_secret()
                    self._app = None
                    continue
                codes = result.get("error_codes") or []
                if error in ("temporarily_unavailable", "server_error"):
                    raise TransientError(f"token endpoint: {error}")
                raise PermanentError(f"token request refused: {error} {codes}", code=error)
            raise PermanentError("token request refused after re-reading the secret")
