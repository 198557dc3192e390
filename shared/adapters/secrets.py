"""Secrets from Azure Key Vault, cached briefly.

Every value read is registered with ``shared.log.register_secret`` before it is returned, so it
is scrubbed from any later log line. Errors name the secret, never its value.

The cache is short (5 minutes by default) because secrets rotate: an adapter that sees its
credentials refused calls ``invalidate(name)`` and the next ``get`` reads the new version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shared.errors import PermanentError, TransientError
from shared.http import RETRYABLE_STATUS, parse_retry_after
from shared.log import register_secret

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 300.0


class SecretProvider:
    """Reads secrets by name through ``SecretClient`` with a TTL cache (thread-safe).

    ``credential`` is any azure-identity credential (managed identity in Azure, the sandbox
    client locally). ``verify_challenge_resource`` stays True in Azure; the sandbox vault on
    127.0.0.1 is not a ``*.vault.azure.net`` host, so it is turned off there, with ``ca_bundle``
    naming the sandbox CA. ``client_options`` go to ``SecretClient`` (for example ``retry_total``).
    """

    def __init__(
        self,
        vault_url: str,
        credential: TokenCredential,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        ca_bundle: Path | str | None = None,
        verify_challenge_resource: bool = True,
        clock: Callable[[], float] = time.monotonic,
        **client_options: Any,
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must not be negative")
        options = dict(client_options)
        if ca_bundle is not None:
            options["connection_verify"] = str(ca_bundle)
        self._client = SecretClient(
            vault_url,
            credential,
            verify_challenge_resource=verify_challenge_resource,
            **options,
        )
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float]] = {}
        self.fetches = 0

    def get(self, name: str) -> str:
        """The current value of secret ``name``.

        Raises PermanentError when the secret does not exist, is disabled or access is refused,
        and TransientError when Key Vault is unreachable or throttling past the SDK's retries.
        """
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
        value = self._fetch(name)
        register_secret(value)
        with self._lock:
            self._cache[name] = (value, self._clock() + self._ttl)
            self.fetches += 1
        return value

    def invalidate(self, name: str | None = None) -> None:
        """Forget ``name`` (or everything) so the next ``get`` reads Key Vault again."""
        with self._lock:
            if name is None:
                self._cache.clear()
            else:
                self._cache.pop(name, None)

    def close(self) -> None:
        """Close the underlying client's transport."""
        self._client.close()

    def _fetch(self, name: str) -> str:
        try:
            secret = self._client.get_secret(name)
        except ResourceNotFoundError as exc:
            raise PermanentError(
                f"Key Vault secret {name!r} was not found", code="secret_not_found"
            ) from exc
        except ClientAuthenticationError as exc:
            # Raised both for a 401 from the vault and when the credential cannot get a token:
            # misconfiguration that no retry fixes.
            raise PermanentError(
                f"Key Vault secret {name!r}: authentication failed ({_describe(exc)})",
                code="secret_access_denied",
            ) from exc
        except HttpResponseError as exc:
            status = exc.status_code
            if status is None or status in RETRYABLE_STATUS:
                raise TransientError(
                    f"Key Vault secret {name!r}: {_describe(exc)}", retry_after=_retry_after(exc)
                ) from exc
            raise PermanentError(
                f"Key Vault secret {name!r}: {_describe(exc)}", code="secret_unavailable"
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientError(
                f"Key Vault secret {name!r}: {type(exc).__name__} reaching the vault"
            ) from exc
        if secret.value is None:
            raise PermanentError(
                f"Key Vault secret {name!r} has no value", code="secret_unavailable"
            )
        log.info("read Key Vault secret %s (version %s)", name, secret.properties.version)
        return secret.value


def _describe(exc: HttpResponseError) -> str:
    """Status and the vault's error code and message: never a value, header or URL."""
    parts = [f"HTTP {exc.status_code}" if exc.status_code is not None else type(exc).__name__]
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code:
        parts.append(str(code))
    if message:
        parts.append(str(message).splitlines()[0][:200])
    return ": ".join(parts)


def _retry_after(exc: HttpResponseError) -> float | None:
    headers = getattr(exc.response, "headers", None)
    return parse_retry_after(headers.get("Retry-After")) if headers is not None else None
