"""Azure Key Vault (secrets only) for the sandbox.

Serves what ``azure.keyvault.secrets.SecretClient`` uses, unchanged apart from
``verify_challenge_resource=False`` (the vault lives on 127.0.0.1, not ``*.vault.azure.net``)
and ``connection_verify=<sandbox CA>``:

- ``GET   /secrets/{name}[/{version}]?api-version=...``  -> the secret bundle
- ``PUT   /secrets/{name}?api-version=...``               -> a new version (operators rotate)
- ``PATCH /secrets/{name}/{version}?api-version=...``     -> enable/disable, content type, tags

Behaviour reproduced, with sources:

- Challenge authentication: a request without a bearer token gets 401 with
  ``WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="https://vault.azure.net"``;
  the SDK parses the tenant from the authority path and asks its credential for
  ``https://vault.azure.net/.default`` (Azure/azure-sdk-for-python
  ``sdk/keyvault/azure-keyvault-secrets/azure/keyvault/secrets/_shared/challenge_auth_policy.py``
  and ``http_challenge.py``). The 401 body is
  ``{"error":{"code":"Unauthorized","message":"AKV10000: Request is missing a Bearer or PoP token."}}``
  (recorded service answers in Azure/azure-sdk-for-js ``sdk/keyvault/*/recordings``).
- A token for another resource: 401 ``AKV10022: Invalid audience. Expected
  https://vault.azure.net, found: <aud>.`` (quoted by users hitting it with an ARM token).
- Missing secret: 404 ``SecretNotFound`` "A secret with (name/id) <name> was not found in this key
  vault. If you recently deleted this secret you may be able to recover it using the correct
  recovery command. For help resolving this issue, please see
  https://go.microsoft.com/fwlink/?linkid=2125182" (Azure/azure-sdk-for-js issue #25489).
- Disabled secret: 403 ``Forbidden`` "Operation get is not allowed on a disabled secret." with
  ``innererror.code = SecretDisabled`` (Azure/azure-sdk-for-js issue #24756; ansible-collections/azure #1989).
- Invalid name: 400 ``BadParameter`` "The request URI contains an invalid name: <name>" (names are
  1-127 of ``0-9a-zA-Z-``; learn.microsoft.com ``azure/key-vault/general/about-keys-secrets-certificates``).
- Unrecognised api-version: 400 ``BadParameter`` "The specified version (<v>) is not recognized.
  Consider using the latest supported version (<latest>)." (Azure/azure-sdk-for-python #28595).
  A *missing* api-version also gets 400 ``BadParameter``; its exact wording is not published, so
  the message here is this sandbox's own.
- Bundle: ``{"value", "id": "<vault>/secrets/<name>/<32-hex version>", "attributes": {"enabled",
  "created", "updated" (unix seconds), "recoveryLevel", "recoverableDays"}, "tags"?, "contentType"?}``
  (the SDK's generated ``SecretBundle``/``SecretAttributes`` models). Names are case-insensitive.

Control surface extras: seed ``{"secrets": [{"name", "value", "enabled"?, "contentType"?}]}``
(each row adds a version); ``records/secrets`` lists names and versions, never values.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox import secrets_registry
from sandbox.entra import InvalidToken, Issuer, bearer
from sandbox.peer import Peer, PeerError, json_response
from sandbox.tls import Tls

RESOURCE = "https://vault.azure.net"
LATEST_API_VERSION = "2026-04-01"
# What azure-keyvault-secrets 4.12 can send (its ApiVersion enum) plus the 7.x previews.
_API_VERSION = re.compile(r"^(?:7\.[0-6](?:-preview(?:\.\d+)?)?|2016-10-01|2025-07-01|2026-04-01)$")
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_RECOVERY_LEVEL = "Recoverable+Purgeable"
_RECOVERABLE_DAYS = 90


@dataclass
class _Version:
    version: str
    value: str
    enabled: bool
    created: int
    updated: int
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Secret:
    name: str
    versions: list[_Version] = field(default_factory=list)

    def find(self, version: str) -> _Version | None:
        return next((v for v in self.versions if v.version == version.lower()), None)


class KeyVaultPeer(Peer):
    """The sandbox's Key Vault: secrets with versions, behind the challenge protocol."""

    name = "keyvault"

    def __init__(self, issuer: Issuer, *, tls: Tls | None = None) -> None:
        self.issuer = issuer
        self.secrets: dict[str, _Secret] = {}
        super().__init__(tls=tls)

    # ---- peer API ------------------------------------------------------------------------------
    def routes(self) -> Iterable[Rule]:
        return [
            Rule("/secrets/<name>", methods=["GET", "PUT"], endpoint=self._secret),
            # The SDK asks for the latest version as /secrets/<name>/ (an empty version segment).
            Rule("/secrets/<name>/", methods=["GET"], endpoint=self._secret),
            Rule("/secrets/<name>/<version>", methods=["GET", "PATCH"], endpoint=self._version),
        ]

    def reset_state(self) -> None:
        self.secrets = {}

    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table, rows in data.items():
            if table != "secrets":
                raise PeerError(400, "BadParameter", f"unknown table {table!r}")
            for row in rows:
                if not isinstance(row, dict) or not isinstance(row.get("value"), str):
                    raise PeerError(
                        400, "BadParameter", "a seeded secret needs a name and a string value"
                    )
                self.set_secret(
                    str(row.get("name", "")),
                    row["value"],
                    enabled=bool(row.get("enabled", True)),
                    content_type=row.get("contentType"),
                )
            counts[table] = len(rows)
        return counts

    def records(self, table: str) -> list[dict[str, Any]]:
        if table != "secrets":
            raise PeerError(404, "NotFound", f"unknown table {table!r}")
        return [
            {
                "name": s.name,
                "versions": [
                    {"version": v.version, "enabled": v.enabled, "created": v.created}
                    for v in s.versions
                ],
                "latest": s.versions[-1].version,
            }
            for s in self.secrets.values()
        ]

    def error(self, status: int, code: str, message: str) -> Response:
        return _kv_error(status, code, message)

    # ---- python API (tests and the sandbox launcher) -------------------------------------------
    def set_secret(
        self,
        name: str,
        value: str,
        *,
        enabled: bool = True,
        content_type: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Add a new version of ``name`` (creating the secret) and return the version id."""
        secrets_registry.record("keyvault-secret", value)
        _check_name(name)
        now = int(time.time())
        version = _Version(
            uuid.uuid4().hex, value, enabled, now, now, content_type, dict(tags or {})
        )
        with self.lock:
            secret = self.secrets.setdefault(name.lower(), _Secret(name))
            secret.versions.append(version)
        return version.version

    # ---- handlers ------------------------------------------------------------------------------
    def _secret(self, request: Request, name: str) -> Response:
        self._authorize(request)
        self._check_api_version(request)
        if request.method == "PUT":
            return self._put(request, name)
        _check_name(name)
        with self.lock:
            secret = self.secrets.get(name.lower())
            if secret is None:
                raise _not_found(name)
            return self._get(secret, secret.versions[-1])

    def _version(self, request: Request, name: str, version: str) -> Response:
        self._authorize(request)
        self._check_api_version(request)
        _check_name(name)
        with self.lock:
            secret = self.secrets.get(name.lower())
            found = secret.find(version) if secret else None
            if secret is None or found is None:
                raise _not_found(name, version)
            if request.method == "PATCH":
                return self._patch(request, secret, found)
            return self._get(secret, found)

    def _get(self, secret: _Secret, version: _Version) -> Response:
        if not version.enabled:
            raise PeerError(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
        return json_response(self._bundle(secret, version, with_value=True))

    def _put(self, request: Request, name: str) -> Response:
        _check_name(name)
        body = self.json_body(request)
        if not isinstance(body, dict):
            raise PeerError(400, "BadParameter", "The request body must be a JSON object.")
        value = body.get("value")
        if not isinstance(value, str):
            raise PeerError(400, "BadParameter", "Secret value is required and must be a string.")
        attributes = body.get("attributes") or {}
        tags = body.get("tags") or {}
        if not isinstance(attributes, dict) or not isinstance(tags, dict):
            raise PeerError(400, "BadParameter", "attributes and tags must be JSON objects.")
        version = self.set_secret(
            name,
            value,
            enabled=bool(attributes.get("enabled", True)),
            content_type=body.get("contentType"),
            tags={str(k): str(v) for k, v in tags.items()},
        )
        with self.lock:
            secret = self.secrets[name.lower()]
            found = secret.find(version)
            assert found is not None
            return json_response(self._bundle(secret, found, with_value=True))

    def _patch(self, request: Request, secret: _Secret, version: _Version) -> Response:
        body = self.json_body(request)
        if not isinstance(body, dict):
            raise PeerError(400, "BadParameter", "The request body must be a JSON object.")
        attributes = body.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise PeerError(400, "BadParameter", "attributes must be a JSON object.")
        if "enabled" in attributes:
            version.enabled = bool(attributes["enabled"])
        if "contentType" in body:
            version.content_type = body["contentType"]
        if isinstance(body.get("tags"), dict):
            version.tags = {str(k): str(v) for k, v in body["tags"].items()}
        version.updated = int(time.time())
        # The update answer carries no value (SecretClient.update_secret_properties returns properties).
        return json_response(self._bundle(secret, version, with_value=False))

    # ---- helpers -------------------------------------------------------------------------------
    def _bundle(self, secret: _Secret, version: _Version, *, with_value: bool) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "id": f"{self.base_url}/secrets/{secret.name}/{version.version}",
            "attributes": {
                "enabled": version.enabled,
                "created": version.created,
                "updated": version.updated,
                "recoveryLevel": _RECOVERY_LEVEL,
                "recoverableDays": _RECOVERABLE_DAYS,
            },
            "tags": dict(version.tags),
        }
        if with_value:
            bundle["value"] = version.value
        if version.content_type is not None:
            bundle["contentType"] = version.content_type
        return bundle

    def _challenge(self) -> dict[str, str]:
        authority = f"{self.issuer.base_url}/{self.issuer.tenant_id}"
        return {"WWW-Authenticate": f'Bearer authorization="{authority}", resource="{RESOURCE}"'}

    def _authorize(self, request: Request) -> None:
        token = bearer(request)
        if token is None:
            raise PeerError(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                self._challenge(),
            )
        try:
            self.issuer.verify(token, [RESOURCE])
        except InvalidToken as exc:
            if exc.reason == "audience":
                found = _unverified_audience(token)
                message = f"AKV10022: Invalid audience. Expected {RESOURCE}, found: {found}."
            else:
                message = f"Token validation failed: {exc}"
            raise PeerError(401, "Unauthorized", message, self._challenge()) from None

    def _check_api_version(self, request: Request) -> None:
        version = request.args.get("api-version")
        if not version:
            raise PeerError(400, "BadParameter", "The api-version query parameter is required.")
        if not _API_VERSION.match(version):
            raise PeerError(
                400,
                "BadParameter",
                f"The specified version ({version}) is not recognized. Consider using the latest "
                f"supported version ({LATEST_API_VERSION}).",
            )


def _kv_error(status: int, code: str, message: str) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if code == "Forbidden" and "disabled secret" in message:
        error["innererror"] = {"code": "SecretDisabled"}
    return json_response({"error": error}, status, content_type="application/json; charset=utf-8")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise PeerError(400, "BadParameter", f"The request URI contains an invalid name: {name}")


def _not_found(name: str, version: str | None = None) -> PeerError:
    what = f"{name}/{version}" if version else name
    return PeerError(
        404,
        "SecretNotFound",
        f"A secret with (name/id) {what} was not found in this key vault. If you recently deleted "
        "this secret you may be able to recover it using the correct recovery command. For help "
        "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
    )


def _unverified_audience(token: str) -> str:
    """The token's ``aud`` for the error text; the signature was already checked by verify()."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "?"
    aud = claims.get("aud", "?")
    return ", ".join(aud) if isinstance(aud, list) else str(aud)
