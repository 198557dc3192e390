"""Identities the hub authenticates with.

- Key Vault and Azure Storage: an azure-identity credential — the managed identity in Azure; the
  sandbox client (``AZURE_CLIENT_SECRET``) on a developer's machine.
- Dataverse: the app registration bound to the Dataverse application user, through msal's
  client-credentials flow, its client secret read from Key Vault by name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msal
import requests
from azure.core.credentials import TokenCredential

from shared.config import Settings
from shared.errors import PermanentError, TransientError
from shared.log import register_secret

log = logging.getLogger(__name__)

# RFC 6749 section 5.2: the token endpoint's refusals, which no retry changes. Any other answer
# (temporarily_unavailable, server_error, or a throttling front end's body that is no OAuth error
# at all) may succeed later.
TOKEN_REFUSALS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
TOKEN_ATTEMPTS = 3
MSAL_THROTTLE_SECONDS = 5.0
"""How long msal answers a confidential client's failed (429/5xx) token request from its cache
(``msal.throttled_http_client``: ``default_throttle_time``, 5 s unless the answer had a
Retry-After)."""


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

    A transient failure of the authority (5xx, 429, timeouts, resets) is tried again up to
    ``attempts`` times before ``TransientError`` reaches the caller. After a failed token request
    the wait is ``MSAL_THROTTLE_SECONDS``: msal keeps answering that failure from its throttling
    cache for that long, so asking sooner (a Service Bus redelivery, the next call of a batch)
    would fail without even reaching Entra ID — ten redeliveries in a second dead-letter a message
    over a blip of one request. The lock serialises callers, so one thread waits, not all.
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
        attempts: int = TOKEN_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client_id = client_id
        self._authority = authority
        self._scopes = [resource.rstrip("/") + "/.default"]
        self._secret = secret
        self._invalidate_secret = invalidate_secret
        self._session = session
        self._attempts = max(1, attempts)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._secret(),
                    authority=self._authority,
                    instance_discovery=False,
                    http_client=self._session,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"token authority unreachable: {type(exc).__name__}") from None
            except ValueError as exc:  # msal: the authority document is missing or unreadable
                raise TransientError(f"token authority answered unexpectedly: {exc}") from None
            except msal.exceptions.MsalServiceError as exc:
                # The OpenID configuration answered 5xx ("transient network error" in
                # msal.authority.tenant_discovery); msal does not cache failed discoveries.
                raise TransientError(f"token authority unavailable: {exc}") from None
        return self._app

    def __call__(self, force_refresh: bool = False) -> str:
        with self._lock:
            if force_refresh:
                self._app = None
            for attempt in range(1, self._attempts + 1):
                try:
                    return self._acquire()
                except TransientError as exc:
                    if attempt >= self._attempts:
                        raise
                    wait = exc.retry_after if exc.retry_after is not None else 0.5 * attempt
                    log.warning(
                        "token for %s: %s; attempt %d/%d again in %.1fs",
                        self._scopes[0],
                        exc,
                        attempt,
                        self._attempts,
                        wait,
                    )
                    self._sleep(wait)
            raise AssertionError("unreachable: the last attempt returns or raises")

    def _acquire(self) -> str:
        for attempt in (1, 2):
            application = self._application()
            try:
                result = application.acquire_token_for_client(scopes=self._scopes)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
            except (ValueError, msal.exceptions.MsalServiceError) as exc:
                # msal raises these for a 5xx (or an unreadable answer) of the token endpoint,
                # and has cached that answer for its throttling period.
                raise TransientError(
                    f"token endpoint answered unexpectedly: {exc}",
                    retry_after=MSAL_THROTTLE_SECONDS,
                ) from None
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
            if error not in TOKEN_REFUSALS:
                raise TransientError(
                    f"token endpoint: {error} {codes}", retry_after=MSAL_THROTTLE_SECONDS
                )
            raise PermanentError(f"token request refused: {error} {codes}", code=error)
        raise PermanentError("token request refused after re-reading the secret")
