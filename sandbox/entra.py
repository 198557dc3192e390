"""Entra ID (Microsoft identity platform v2) for the sandbox.

Serves what msal and azure-identity use for the client-credentials flow, unchanged apart from
instance discovery being off:

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration``
- ``GET  /{tenant}/discovery/v2.0/keys`` (JWKS)
- ``POST /{tenant}/oauth2/v2.0/token`` (``grant_type=client_credentials``, secret in the form or
  HTTP basic), answering ``{"token_type": "Bearer", "expires_in", "ext_expires_in", "access_token"}``
  and AADSTS errors in the documented shape.

Source: learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
(request parameters, the ``/.default`` scope, success and error responses, AADSTS codes).

Tokens are RS256 JWTs with ``aud`` (the resource of the ``/.default`` scope), ``iss``, ``tid``,
``appid``/``azp``, ``iat``/``nbf``/``exp``. ``Issuer.verify`` is what every other peer uses to
accept or refuse a bearer token.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox import secrets_registry
from sandbox.peer import Peer, PeerError, json_response
from sandbox.tls import Tls


class InvalidToken(Exception):
    """Why a bearer token was refused: missing, malformed, signature, expired or audience."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Issuer:
    """Signs and verifies the sandbox's access tokens for one tenant."""

    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    base_url: str = ""
    token_lifetime_seconds: int = 3599

    @property
    def issuer(self) -> str:
        # Resource tokens carry the v1 STS issuer form, which is what Dataverse and Key Vault see.
        return f"{self.base_url}/{self.tenant_id}/"

    def issue(self, client_id: str, audience: str, lifetime: int | None = None) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + (self.token_lifetime_seconds if lifetime is None else lifetime),
            "tid": self.tenant_id,
            "appid": client_id,
            "azp": client_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, client_id)),
            "idtyp": "app",
            "ver": "1.0",
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        secrets_registry.record("entra-jwt", token)
        return token

    def verify(self, token: str | None, audiences: Iterable[str]) -> dict[str, Any]:
        """Return the claims, or raise InvalidToken saying why the token is refused."""
        if not token:
            raise InvalidToken("missing", "No bearer token was presented.")
        accepted = {a.rstrip("/") for a in audiences} | {a.rstrip("/") + "/" for a in audiences}
        try:
            return jwt.decode(
                token,
                self.key.public_key(),
                algorithms=["RS256"],
                audience=sorted(accepted),
                issuer=self.issuer,
                options={"require": ["exp", "aud", "iss", "tid"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired", "The token is expired.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("audience", "The audience of the token is not valid.") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("signature", "The token signature is not valid.") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(
                "malformed", f"The token is not valid: {type(exc).__name__}."
            ) from None

    def jwk(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()

        def b64(n: int) -> str:
            raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": b64(numbers.n),
            "e": b64(numbers.e),
        }


def bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class EntraPeer(Peer):
    """The sandbox's Microsoft identity platform (one tenant)."""

    name = "entra"

    def __init__(self, issuer: Issuer, *, tls: Tls | None = None) -> None:
        self.issuer = issuer
        self.clients: dict[str, str] = {}
        self.issued: list[dict[str, Any]] = []
        super().__init__(tls=tls)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = super().start(host, port)
        self.issuer.base_url = url
        return url

    def register_client(
        self, client_id: str | None = None, secret: str | None = None
    ) -> tuple[str, str]:
        """Register an app (client id, secret); both are generated when not given."""
        client_id = client_id or str(uuid.uuid4())
        secret = secret or secrets.token_urlsafe(32)
        secrets_registry.record("entra-client-secret", secret)
        with self.lock:
            self.clients[client_id] = secret
        return client_id, secret

    def routes(self) -> Iterable[Rule]:
        return [
            Rule(
                "/<tenant>/v2.0/.well-known/openid-configuration",
                methods=["GET"],
                endpoint=self.openid,
            ),
            Rule("/<tenant>/discovery/v2.0/keys", methods=["GET"], endpoint=self.keys),
            Rule("/<tenant>/oauth2/v2.0/token", methods=["POST"], endpoint=self.token),
        ]

    def reset_state(self) -> None:
        self.issued = []
        self.issuer.token_lifetime_seconds = 3599

    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        counts = {}
        for table, rows in data.items():
            if table == "clients":
                for row in rows:
                    self.register_client(str(row["clientId"]), str(row["clientSecret"]))
            elif table == "settings":
                for row in rows:
                    if "tokenLifetimeSeconds" in row:
                        self.issuer.token_lifetime_seconds = int(row["tokenLifetimeSeconds"])
            else:
                raise PeerError(400, "invalid_request", f"unknown table {table!r}")
            counts[table] = len(rows)
        return counts

    def records(self, table: str) -> list[dict[str, Any]]:
        if table == "clients":
            return [{"clientId": c} for c in self.clients]
        if table == "tokens":
            return list(self.issued)
        raise PeerError(404, "invalid_request", f"unknown table {table!r}")

    def error(self, status: int, code: str, message: str) -> Response:
        now = dt.datetime.now(dt.UTC)
        return json_response(
            {
                "error": code,
                "error_description": f"{message}\r\nTrace ID: {uuid.uuid4()}\r\nCorrelation ID: "
                f"{uuid.uuid4()}\r\nTimestamp: {now:%Y-%m-%d %H:%M:%SZ}",
                "error_codes": [_AADSTS.get(code, 90000)],
                "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
                "trace_id": str(uuid.uuid4()),
                "correlation_id": str(uuid.uuid4()),
            },
            status,
        )

    def _check_tenant(self, tenant: str) -> None:
        if tenant not in (self.issuer.tenant_id, "organizations", "common"):
            raise PeerError(
                400,
                "invalid_tenant",
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )

    def openid(self, request: Request, tenant: str) -> Response:
        self._check_tenant(tenant)
        base = f"{self.base_url}/{self.issuer.tenant_id}"
        return json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/openid/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
            }
        )

    def keys(self, request: Request, tenant: str) -> Response:
        self._check_tenant(tenant)
        return json_response({"keys": [self.issuer.jwk()]})

    def token(self, request: Request, tenant: str) -> Response:
        self._check_tenant(tenant)
        form = request.form
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id = client_id or request.authorization.username
            secret = secret or request.authorization.password
        grant = form.get("grant_type")
        if grant != "client_credentials":
            raise PeerError(
                400,
                "unsupported_grant_type",
                f"AADSTS70003: The app requested an unsupported grant type '{grant}'.",
            )
        if not client_id:
            raise PeerError(
                400,
                "invalid_request",
                "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
            )
        with self.lock:
            expected = self.clients.get(client_id)
        if expected is None:
            raise PeerError(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{self.issuer.tenant_id}'.",
            )
        if not secret or not secrets.compare_digest(secret, expected):
            raise PeerError(
                401,
                "invalid_client",
                f"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                f"the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{client_id}'.",
            )
        scope = (form.get("scope") or "").split()
        resources = [s for s in scope if s.endswith("/.default")]
        if len(resources) != 1:
            raise PeerError(
                400,
                "invalid_scope",
                "AADSTS1002012: The provided value for scope is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        audience = resources[0][: -len("/.default")]
        lifetime = self.issuer.token_lifetime_seconds
        token = self.issuer.issue(client_id, audience, lifetime)
        with self.lock:
            self.issued.append({"clientId": client_id, "audience": audience, "expiresIn": lifetime})
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            }
        )


_AADSTS = {
    "invalid_client": 7000215,
    "unauthorized_client": 700016,
    "invalid_scope": 1002012,
    "unsupported_grant_type": 70003,
    "invalid_tenant": 90002,
    "invalid_request": 900144,
}
