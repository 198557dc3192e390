"""The sandbox Dataverse environment: the Web API v9.2 as the hub uses it.

Behaviour and wording come from the public documentation (MicrosoftDocs/powerapps-docs,
``powerapps-docs/developer/data-platform/...``; SupportArticles-docs for client errors):

- Auth (``authenticate-oauth.md``): a Bearer token whose audience is the environment URL. A
  missing or bad token gets 401, an empty body and ``WWW-Authenticate: Bearer
  authorization_uri=<authority>/<tenant>/oauth2/authorize, resource_id=<environment>/``, the
  challenge clients use for tenant discovery. Each app id becomes an application user
  (``systemusers`` row with ``applicationid``) that stamps ``_createdby_value`` /
  ``_modifiedby_value`` on its writes.
- Create, retrieve, update, upsert, delete (``webapi/create-entity-web-api.md``,
  ``update-delete-entities-using-web-api.md``, ``use-upsert-insert-update-record.md``,
  ``perform-conditional-operations-using-web-api.md``), by primary key or alternate key
  (``use-alternate-key-reference-record.md``), lookups via ``<nav>@odata.bind``.
- Queries (``webapi/query/*.md``): ``$select $filter $orderby $top $count``, paging with
  ``Prefer: odata.maxpagesize`` -> ``@odata.nextLink`` (``$skiptoken``) and ``Preference-Applied``.
- ``$batch`` (``execute-batch-operations-using-web-api.md``), bulk messages (``bulk-operations.md``),
  change tracking (``use-change-tracking-synchronize-data-external-systems.md``), service
  protection limits (``api-limits.md``, ``send-parallel-requests.md``).

The control surface adds ``GET|PUT /_sandbox/settings`` (see ``settings.py``) and
``POST /_sandbox/expire-delta-tokens``; ``POST /_sandbox/seed`` takes ``{entityset: [rows]}``
plus ``{"_settings": [{...}]}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox.dataverse import batch as batchfmt
from sandbox.dataverse import odata
from sandbox.dataverse.limits import REQUESTS_CODE, ServiceProtection, requests_message
from sandbox.dataverse.schema import (
    BULK_MESSAGES,
    Column,
    Schema,
    Table,
    coerce,
    invalid_property,
    key_value,
    payload_error,
    to_json,
)
from sandbox.dataverse.settings import Settings
from sandbox.dataverse.store import Row, Store
from sandbox.entra import InvalidToken, Issuer, bearer
from sandbox.peer import Peer, PeerError, json_response
from sandbox.tls import Tls

log = logging.getLogger(__name__)

API_PREFIX = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
ACTION_PREFIX = "Microsoft.Dynamics.CRM."
# ASP.NET's default requestPathInvalidCharacters: such characters in a decoded URL path are
# refused before Dataverse sees the request ("Define alternate keys": keys holding / # < > * % &
# : \ ? + do not work with GET or PATCH).
_DANGEROUS_PATH_CHARS = "<>*%&:\\?"
_ETAG_RE = re.compile(r'^(?:W/)?"?([^"]*)"?$')
_SKIP_RE = re.compile(r'skip="(\d+)"')
_LAST_RE = re.compile(r'last="([0-9a-fA-F-]{36})"')
_TRACKING_VERSION_RE = re.compile(r'version="(\d+)"')
_QUERY_OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$skiptoken", "$deltatoken"}
_UNSUPPORTED_OPTIONS = {"$expand", "$apply", "$search", "$skip", "$levels", "$compute", "$format"}
_NOT_FOUND_BY_ID = "0x80040217"
_NOT_FOUND_BY_KEY = "0x80060891"
_DUPLICATE = "0x80040237"
_READ_ONLY = "0x8004022e"
_STATE_CODE = "0x80048408"
_VERSION_MISMATCH = "0x80060882"
_SEGMENT_NOT_FOUND = "0x8006088a"
_QUERY_ERROR = "0x80060888"
_INVALID_ARGUMENT = "0x80040203"
_TOKEN_EXPIRED = "0x80044352"
_NOT_TRACKED = "0x80072491"
_UNSUPPORTED_MESSAGE = "0x80040800"
_CODES = {
    "InternalServerError": "0x80040216",
    "ServiceUnavailable": "0x80040216",
    "TooManyRequests": REQUESTS_CODE,
}


class DataverseError(PeerError):
    """A Web API error; ``target`` names the failing item of a bulk request (OData ``target``)."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(status, code, message)
        self.target = target


@dataclass
class ApiRequest:
    """One Web API operation, from HTTP or from inside a ``$batch``."""

    method: str
    path: str  # relative to the service root, percent-decoded, no leading slash
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    user_id: str
    content_ids: dict[str, str] | None = None
    in_batch: bool = False

    def option(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def prefer(self) -> dict[str, str]:
        prefs: dict[str, str] = {}
        for token in self.headers.get("prefer", "").split(","):
            name, _, value = token.strip().partition("=")
            if name:
                prefs[name.strip().lower()] = value.strip().strip('"')
        return prefs


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> ApiResponse:
        return cls(
            status,
            {"Content-Type": JSON_TYPE, **(headers or {})},
            json.dumps(payload, separators=(",", ":"), default=to_json).encode("utf-8"),
        )


@dataclass
class _Locator:
    """Where a URL key points: the row if it exists, and what a create would be keyed by."""

    table: Table
    row_id: str | None
    new_id: str | None  # primary key given in the URL
    key_values: dict[str, Any]  # alternate-key column name -> stored value
    by_key: bool
    segment: str


@dataclass
class _DeltaToken:
    entity_set: str
    version: int
    issued_at: float


class DataversePeer(Peer):
    """Dataverse Web API v9.2 for one environment, backed by memory. See the module docstring."""

    name = "dataverse"
    max_body_bytes = 32 * 1024 * 1024

    def __init__(
        self,
        issuer: Issuer | None = None,
        *,
        tls: Tls | None = None,
        schema_path: Path | None = None,
    ) -> None:
        self.issuer = issuer
        self.schema = Schema.load(schema_path)
        self.store = Store(self.schema)
        self.settings = Settings()
        self.limits = ServiceProtection()
        self._data_lock = threading.RLock()
        # keyed by (entity set, token): tables read in the same second share a token text
        self._delta_tokens: dict[tuple[str, str], _DeltaToken] = {}
        self._users_by_app: dict[str, str] = {}
        self.organization_id = str(uuid.uuid4())
        self.business_unit_id = str(uuid.uuid4())
        self.system_user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "dataverse-sandbox/SYSTEM"))
        super().__init__(tls=tls)

    # ---- Peer API -----------------------------------------------------------------------------
    def routes(self) -> Iterable[Rule]:
        methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
        return [
            Rule(f"{API_PREFIX}/", methods=methods, endpoint=self._api_root),
            Rule(f"{API_PREFIX}/<path:rest>", methods=methods, endpoint=self._api),
            Rule("/_sandbox/settings", methods=["GET", "PUT"], endpoint=self._control_settings),
            Rule("/_sandbox/expire-delta-tokens", methods=["POST"], endpoint=self._control_expire),
        ]

    def reset_state(self) -> None:
        with self._data_lock:
            self.store.clear()
            self.settings = Settings()
            self.limits.reset()
            self._delta_tokens = {}
            self._users_by_app = {}
            now = _now()
            self.store.put(
                "systemuser",
                self.system_user_id,
                self._stamp_new(
                    {"systemuserid": self.system_user_id, "fullname": "SYSTEM"},
                    self.system_user_id,
                    now,
                ),
            )

    def json_body(self, request: Request) -> Any:
        """Seed rows keep exact numbers, as the Web API path does: Dataverse's decimal and money
        columns refuse a float, and a seeded 1.37 must arrive as 1.37."""
        if request.path != "/_sandbox/seed":
            return super().json_body(request)
        raw = request.get_data(cache=True)
        try:
            return json.loads(raw.decode("utf-8"), parse_float=Decimal) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PeerError(
                400, "BadRequest", f"The request body is not valid JSON: {exc}"
            ) from None

    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._data_lock, self.store.transaction():
            for name, rows in data.items():
                if name == "_settings":
                    for row in rows:
                        # settings are plain numbers; only seed rows need exact decimals
                        self._apply_settings(
                            {k: float(v) if isinstance(v, Decimal) else v for k, v in row.items()}
                        )
                    counts[name] = len(rows)
                    continue
                table = self.schema.by_set.get(name) or self.schema.tables.get(name)
                if table is None:
                    raise DataverseError(
                        400, _SEGMENT_NOT_FOUND, f"Resource not found for the segment '{name}'."
                    )
                for index, row in enumerate(rows):
                    if not isinstance(row, dict):
                        raise DataverseError(400, "0x0", f"{name}[{index}] is not an object")
                    self._seed_row(table, row)
                counts[name] = len(rows)
        return counts

    def records(self, table: str) -> list[dict[str, Any]]:
        with self._data_lock:
            found = self.schema.by_set.get(table) or self.schema.tables.get(table)
            if found is None:
                raise DataverseError(
                    404, _SEGMENT_NOT_FOUND, f"Resource not found for the segment '{table}'."
                )
            rows = self.store.data(found.logical_name).rows.values()
            return [self._entity(found, row, None, annotations=True) for row in rows]

    def error(self, status: int, code: str, message: str) -> Response:
        hex_code = code if code.startswith("0x") else _CODES.get(code, "0x0")
        return json_response(
            {"error": {"code": hex_code, "message": message}}, status, content_type=JSON_TYPE
        )

    def throttled(self, retry_after: float) -> Response:
        response = self.error(429, REQUESTS_CODE, requests_message(self.settings))
        response.headers["Retry-After"] = str(max(0, round(retry_after)))
        return response

    # ---- control surface extras ---------------------------------------------------------------
    def _apply_settings(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise PeerError(400, "BadRequest", "settings must be an object")
        try:
            self.settings = Settings.parse(body, self.settings)
        except (TypeError, ValueError) as exc:
            raise PeerError(400, "BadRequest", str(exc)) from None

    def _control_settings(self, request: Request) -> Response:
        if request.method == "PUT":
            with self._data_lock:
                self._apply_settings(self.json_body(request) or {})
        return json_response(self.settings.as_dict())

    def _control_expire(self, request: Request) -> Response:
        with self._data_lock:
            expired = len(self._delta_tokens)
            self._delta_tokens = {}
        return json_response({"expired": expired})

    # ---- HTTP entry ---------------------------------------------------------------------------
    def _api_root(self, request: Request) -> Response:
        return self._api(request, "")

    def _api(self, request: Request, rest: str) -> Response:
        started = time.monotonic()
        challenge = self._authenticate(request)
        if isinstance(challenge, Response):
            return challenge
        user_id = challenge
        refusal = self.limits.admit(user_id, self.settings, started)
        if refusal is not None:
            response = self.error(429, refusal.code, refusal.message)
            response.headers["Retry-After"] = str(max(0, round(refusal.retry_after)))
            return self._decorate(response, user_id)
        try:
            if self.settings.executionDelayMs:
                time.sleep(self.settings.executionDelayMs / 1000)
            bad = next((c for c in rest if c in _DANGEROUS_PATH_CHARS + "+#"), None)
            if bad is not None:
                result = _rejected_path(bad)
            else:
                api_request = ApiRequest(
                    method=request.method,
                    path=rest,
                    query=list(request.args.items(multi=True)),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=request.get_data(cache=False),
                    user_id=user_id,
                )
                result = self.execute(api_request)
        finally:
            self.limits.release(user_id, time.monotonic() - started, time.monotonic())
        response = Response(result.body, status=result.status, headers=result.headers)
        return self._decorate(response, user_id)

    def _decorate(self, response: Response, user_id: str) -> Response:
        response.headers["OData-Version"] = "4.0"
        response.headers["REQ_ID"] = str(uuid.uuid4())
        response.headers["x-ms-dop-hint"] = str(self.settings.dopHint)
        for name, value in self.limits.headers(user_id, self.settings, time.monotonic()).items():
            response.headers[name] = value
        return response

    def _authenticate(self, request: Request) -> str | Response:
        """The caller's systemuserid, or the 401 challenge."""
        if self.issuer is None:
            return self.system_user_id
        try:
            claims = self.issuer.verify(bearer(request), [self.base_url])
        except InvalidToken as exc:
            log.info("dataverse: refused token (%s)", exc.reason)
            authority = (self.issuer.base_url or "https://login.microsoftonline.com").rstrip("/")
            response = Response(b"", status=401)
            response.headers["WWW-Authenticate"] = (
                f"Bearer authorization_uri={authority}/{self.issuer.tenant_id}/oauth2/authorize, "
                f"resource_id={self.base_url}/"
            )
            return response
        app_id = str(claims.get("appid") or claims.get("azp") or "")
        with self._data_lock:
            return self._application_user(app_id, str(claims.get("oid") or ""))

    def _application_user(self, app_id: str, object_id: str) -> str:
        """The application user bound to an app registration, created on first sight."""
        known = self._users_by_app.get(app_id)
        if known is not None and self.store.get("systemuser", known) is not None:
            return known
        for row_id, row in self.store.data("systemuser").rows.items():
            if row.get("applicationid") == app_id:
                self._users_by_app[app_id] = row_id
                return row_id
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"dataverse-sandbox/app/{app_id}"))
        row = {
            "systemuserid": user_id,
            "fullname": f"# {app_id}",
            "applicationid": _guid_or_none(app_id),
            "azureactivedirectoryobjectid": _guid_or_none(object_id),
            "isdisabled": False,
        }
        with self.store.transaction():
            self.store.put("systemuser", user_id, self._stamp_new(row, self.system_user_id, _now()))
        self._users_by_app[app_id] = user_id
        return user_id

    # ---- dispatch -----------------------------------------------------------------------------
    def execute(self, request: ApiRequest) -> ApiResponse:
        """Run one operation; every failure becomes the Web API's error response."""
        try:
            with self._data_lock, self.store.transaction():
                return self._route(request)
        except DataverseError as exc:
            return _error_response(exc.status, exc.code, exc.message, exc.target)
        except PeerError as exc:
            return _error_response(exc.status, exc.code, exc.message)
        except odata.ODataError as exc:
            return _odata_error(exc)

    def _route(self, req: ApiRequest) -> ApiResponse:
        path = req.path.strip("/")
        if path == "":
            return self._service_document(req)
        if path == "$batch":
            if req.in_batch:
                raise DataverseError(
                    400, _INVALID_ARGUMENT, "A batch request cannot contain another batch request."
                )
            _allow(req, "POST")
            return self._batch(req)
        if path in ("WhoAmI", "WhoAmI()"):
            _allow(req, "GET")
            return ApiResponse.json(
                200,
                {
                    "@odata.context": f"{self._svc()}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                    "BusinessUnitId": self.business_unit_id,
                    "UserId": req.user_id,
                    "OrganizationId": self.organization_id,
                },
            )
        try:
            resource = odata.parse_resource_path(path)
        except odata.ODataError as exc:
            raise DataverseError(400, _QUERY_ERROR, str(exc)) from None
        if resource.segment == "sdkmessagefilters" and resource.key is None and not resource.rest:
            _allow(req, "GET")
            return self._message_filters(req)
        table = self.schema.by_set.get(resource.segment)
        if table is None:
            raise DataverseError(
                404, _SEGMENT_NOT_FOUND, f"Resource not found for the segment '{resource.segment}'."
            )
        if resource.key is None:
            if not resource.rest:
                if req.method == "GET":
                    return self._list(req, table)
                if req.method == "POST":
                    return self._create(req, table)
                raise _method_not_allowed(req.method)
            if resource.rest == ("$count",):
                _allow(req, "GET")
                count = min(len(self.store.data(table.logical_name).rows), 5000)
                return ApiResponse(200, {"Content-Type": "text/plain"}, str(count).encode())
            if len(resource.rest) == 1 and resource.rest[0].startswith(ACTION_PREFIX):
                _allow(req, "POST")
                return self._bulk(req, table, resource.rest[0][len(ACTION_PREFIX) :])
            raise DataverseError(
                404, _SEGMENT_NOT_FOUND, f"Resource not found for the segment '{resource.rest[0]}'."
            )
        locator = self._locate(table, resource.key, path)
        if not resource.rest:
            if req.method == "GET":
                return self._retrieve(req, locator)
            if req.method == "PATCH":
                return self._patch(req, locator)
            if req.method == "DELETE":
                return self._delete(req, locator)
            raise _method_not_allowed(req.method)
        if len(resource.rest) == 1:
            return self._property(req, locator, resource.rest[0])
        raise DataverseError(
            404, _SEGMENT_NOT_FOUND, f"Resource not found for the segment '{resource.rest[1]}'."
        )

    def _svc(self) -> str:
        return f"{self.base_url}{API_PREFIX}/"

    def _service_document(self, req: ApiRequest) -> ApiResponse:
        _allow(req, "GET")
        sets = sorted(self.schema.by_set)
        return ApiResponse.json(
            200,
            {
                "@odata.context": f"{self._svc()}$metadata",
                "value": [{"name": s, "kind": "EntitySet", "url": s} for s in sets],
            },
        )

    # ---- locating rows ------------------------------------------------------------------------
    def _locate(self, table: Table, key: odata.KeyPredicate, segment: str) -> _Locator:
        if key.unnamed is not None:
            if key.unnamed.edm != odata.EDM_GUID:
                raise DataverseError(
                    400,
                    _QUERY_ERROR,
                    f"The key value '{odata.format_literal(key.unnamed.value)}' is not a valid "
                    f"'Edm.Guid' for '{table.primary_key}'.",
                )
            row_id = str(key.unnamed.value)
            exists = self.store.get(table.logical_name, row_id) is not None
            return _Locator(table, row_id if exists else None, row_id, {}, False, segment)
        named = key.as_dict()
        if set(named) == {table.primary_key}:
            row_id = key_value(table, table.columns[table.primary_key], named[table.primary_key])
            exists = self.store.get(table.logical_name, row_id) is not None
            return _Locator(table, row_id if exists else None, row_id, {}, False, segment)
        alt = table.key_named(set(named))
        if alt is None:
            raise DataverseError(
                400,
                "0x80060890",
                f"The specified key attributes are not a defined key for the {table.logical_name} entity",
            )
        values = {}
        for column_name in alt.columns:
            column = table.columns[column_name]
            values[column_name] = key_value(table, column, named[column.read_name])
        return _Locator(
            table, self.store.find(table.logical_name, alt, values), None, values, True, segment
        )

    def _not_found(self, locator: _Locator) -> DataverseError:
        if locator.by_key:
            return DataverseError(
                404,
                _NOT_FOUND_BY_KEY,
                f"A record with the specified key values does not exist in {locator.table.logical_name} entity",
            )
        return DataverseError(
            404,
            _NOT_FOUND_BY_ID,
            f"{locator.table.logical_name} With Id = {locator.new_id} Does Not Exist",
        )

    def _resolve_reference(
        self,
        reference: Any,
        targets: dict[str, str],
        nav: str,
        table: Table,
        content_ids: dict[str, str] | None,
    ) -> tuple[str, str]:
        """An ``@odata.bind`` value -> (target logical name, id), checking the row exists."""
        if not isinstance(reference, str):
            raise payload_error(
                table.entity_set, f"The value of '{nav}@odata.bind' must be a URI string."
            )
        text = reference.strip()
        if text.startswith("$"):
            if content_ids is None or text not in content_ids:
                raise DataverseError(
                    400,
                    _INVALID_ARGUMENT,
                    f"Content-ID Reference: '{text}' does not exist in the batch context.",
                )
            text = content_ids[text]
        text = urllib.parse.unquote(_service_relative(text, self.base_url))
        try:
            resource = odata.parse_resource_path(text)
        except odata.ODataError:
            raise payload_error(
                table.entity_set, f"The URI '{reference}' is not valid for '{nav}'."
            ) from None
        target = self.schema.by_set.get(resource.segment)
        if target is None or resource.key is None or resource.rest:
            raise payload_error(
                table.entity_set, f"The URI '{reference}' is not valid for '{nav}'."
            )
        expected = set(targets.values())
        if target.logical_name not in expected:
            raise payload_error(
                table.entity_set,
                f"An undeclared property '{nav}' which only has property annotations in the payload "
                "but no property value was found in the payload.",
            )
        locator = self._locate(target, resource.key, text)
        if locator.row_id is None:
            raise self._not_found(locator)
        return target.logical_name, locator.row_id

    # ---- payloads and writes ------------------------------------------------------------------
    def _changes(
        self,
        table: Table,
        body: Any,
        content_ids: dict[str, str] | None,
        *,
        allow_system: bool = False,
    ) -> dict[str, Any]:
        """A request body as stored values (read names), validated against the table."""
        if not isinstance(body, dict):
            raise payload_error(
                table.entity_set, "A resource (an object) was expected in the payload."
            )
        changes: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@"):
                continue  # @odata.type, @odata.id, @odata.etag are instructions, not data
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                found = table.by_navigation.get(nav)
                if found is None:
                    raise payload_error(
                        table.entity_set,
                        f"An undeclared property '{nav}' which only has property annotations in the "
                        "payload but no property value was found in the payload. In OData, only "
                        "declared navigation properties and declared named streams can be "
                        "represented as properties without values.",
                    )
                column, _ = found
                if column.read_only and column.name != "ownerid":
                    continue
                if value is None:
                    changes[column.read_name] = None
                    changes[column.read_name + _TARGET] = None
                    continue
                target, row_id = self._resolve_reference(
                    value, {nav: found[1]}, nav, table, content_ids
                )
                changes[column.read_name] = row_id
                changes[column.read_name + _TARGET] = target
                continue
            if "@" in name:
                continue  # instance annotations such as FormattedValue are ignored on write
            column = table.columns.get(name)
            if column is None or column.type == "lookup":
                if allow_system and column is None and name in table.by_read_name:
                    lookup = table.by_read_name[name]
                    changes[name] = (
                        None if value is None else coerce(table, Column(name, "guid"), value)
                    )
                    if value is not None:
                        changes[name + _TARGET] = next(iter(lookup.navigation.values()))
                    continue
                raise invalid_property(table, name)
            if column.read_only and not allow_system:
                continue  # Dataverse ignores values for columns not valid for create/update
            changes[name] = coerce(table, column, value)
        return changes

    def _stamp_new(self, row: Row, user_id: str, now: dt.datetime) -> Row:
        row.setdefault("createdon", now)
        row.setdefault("modifiedon", now)
        row.setdefault("_createdby_value", user_id)
        row.setdefault("_createdby_value" + _TARGET, "systemuser")
        row.setdefault("_modifiedby_value", user_id)
        row.setdefault("_modifiedby_value" + _TARGET, "systemuser")
        row.setdefault("_ownerid_value", user_id)
        row.setdefault("_ownerid_value" + _TARGET, "systemuser")
        row["versionnumber"] = self.store.next_version()
        return row

    def _check_state(
        self, table: Table, row_id: str, old: Row | None, changes: dict[str, Any]
    ) -> None:
        """Fill in and validate statecode/statuscode (quote.md state model, status pairs)."""
        if not table.states:
            return
        current_state = old.get("statecode") if old else None
        current_status = old.get("statuscode") if old else None
        state = changes.get("statecode", current_state)
        if state is None:
            state = (
                min(table.states) if table.editable_states is None else min(table.editable_states)
            )
        if "statecode" in changes and "statuscode" not in changes and state != current_state:
            changes["statuscode"] = table.default_status(state)
        status = changes.get("statuscode", current_status)
        if status is None:
            status = table.default_status(state)
        if status not in table.states[state]:
            raise DataverseError(
                400,
                _STATE_CODE,
                f"{status} is not a valid status code for state code {table.state_label(state)} on "
                f"{table.logical_name} with Id {row_id}.",
            )
        if table.editable_states is not None:
            if old is None and state not in table.editable_states:
                raise DataverseError(
                    400,
                    _STATE_CODE,
                    f"{status} is not a valid status code for state code "
                    f"{table.state_label(min(table.editable_states))} on {table.logical_name} with Id {row_id}.",
                )
            # an editable record must be activated before it can be won or closed
            if (
                old is not None
                and current_state in table.editable_states
                and state not in table.editable_states
                and state != min(table.editable_states) + 1
            ):
                raise DataverseError(
                    400,
                    _STATE_CODE,
                    "The state transition requested is not valid for the current state. Current "
                    f"state: {current_state}, current status: {current_status}, target state: {state}",
                )
        changes["statecode"] = state
        changes["statuscode"] = status

    def _check_editable(self, table: Table, old: Row | None, changes: dict[str, Any]) -> None:
        """Only draft quotes (and lines of draft quotes) can change (quote.md)."""
        if (
            old is not None
            and table.editable_states is not None
            and old.get("statecode") not in table.editable_states
            and set(changes) - {"statecode", "statuscode"}
        ):
            raise _read_only()
        if table.locked_by_parent is not None:
            lookup = table.columns[table.locked_by_parent]
            parent_table = self.schema.tables[next(iter(lookup.navigation.values()))]
            parents = {changes.get(lookup.read_name), old.get(lookup.read_name) if old else None}
            for parent_id in parents - {None}:
                parent = self.store.get(parent_table.logical_name, parent_id)
                if (
                    parent is not None
                    and parent_table.editable_states is not None
                    and parent.get("statecode") not in parent_table.editable_states
                ):
                    raise _read_only()

    def _write(
        self, table: Table, row_id: str, old: Row | None, changes: dict[str, Any], user_id: str
    ) -> Row:
        """Apply validated changes (create when ``old`` is None) with Dataverse's stamps."""
        self._check_editable(table, old, changes)
        self._check_state(table, row_id, old, changes)
        now = _now()
        if old is None:
            row = {table.primary_key: row_id, **changes}
            row.pop("versionnumber", None)
            self._stamp_new(row, user_id, now)
        else:
            row = {**old, **changes}
            row["modifiedon"] = now
            row["_modifiedby_value"] = user_id
            row["versionnumber"] = self.store.next_version()
        row[table.primary_key] = row_id
        if self.store.conflicting_key(table.logical_name, row_id, row) is not None:
            raise DataverseError(
                412, _DUPLICATE, "A record with matching key values already exists."
            )
        self.store.put(table.logical_name, row_id, row)
        return row

    def _upsert(
        self,
        locator: _Locator,
        body: Any,
        req: ApiRequest,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
        update_only: bool = False,
    ) -> tuple[Row, bool]:
        """PATCH semantics (use-upsert-insert-update-record.md); returns (row, created)."""
        table = locator.table
        old = self.store.get(table.logical_name, locator.row_id) if locator.row_id else None
        if if_none_match == "*" and old is not None:
            raise DataverseError(
                412, _DUPLICATE, "A record with matching key values already exists."
            )
        if (if_match is not None or update_only) and old is None:
            raise self._not_found(locator)
        if (
            if_match not in (None, "*")
            and old is not None
            and _etag_version(if_match) != str(old["versionnumber"])
        ):
            raise DataverseError(
                412,
                _VERSION_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property provided.",
            )
        changes = self._changes(table, body, req.content_ids)
        body_id = changes.pop(table.primary_key, None)
        if old is not None:
            if body_id is not None and body_id != locator.row_id:
                raise DataverseError(
                    400,
                    _INVALID_ARGUMENT,
                    "Entity Id must be the same as the value set in property bag.",
                )
            for column in locator.key_values:
                changes.pop(column, None)  # key values in the URL win over the body on update
            assert locator.row_id is not None
            return self._write(table, locator.row_id, old, changes, req.user_id), False
        for column, value in locator.key_values.items():
            changes.setdefault(column, value)  # ...and fill in the body on create
        if locator.new_id is not None and body_id is not None and body_id != locator.new_id:
            raise DataverseError(
                400,
                _INVALID_ARGUMENT,
                "Entity Id must be the same as the value set in property bag.",
            )
        row_id = locator.new_id or body_id or str(uuid.uuid4())
        if (
            locator.new_id is None
            and body_id is not None
            and self.store.get(table.logical_name, body_id)
        ):
            raise DataverseError(412, _DUPLICATE, "Cannot insert duplicate key.")
        return self._write(table, row_id, None, changes, req.user_id), True

    def _seed_row(self, table: Table, body: dict[str, Any]) -> None:
        changes = self._changes(table, body, None, allow_system=True)
        row_id = changes.pop(table.primary_key, None) or str(uuid.uuid4())
        old = self.store.get(table.logical_name, row_id)
        now = _now()
        row = {**(old or {}), **changes, table.primary_key: row_id}
        if table.states:
            state = row.get("statecode")
            if state is None:
                state = (
                    min(table.states)
                    if table.editable_states is None
                    else min(table.editable_states)
                )
            row["statecode"] = state
            if row.get("statuscode") is None:
                row["statuscode"] = table.default_status(state)
            if row["statuscode"] not in table.states[state]:
                raise DataverseError(
                    400,
                    _STATE_CODE,
                    f"{row['statuscode']} is not a valid status code "
                    f"for state code {table.state_label(state)} on {table.logical_name}.",
                )
        row.pop("versionnumber", None)
        self._stamp_new(row, self.system_user_id, now)
        if self.store.conflicting_key(table.logical_name, row_id, row) is not None:
            raise DataverseError(
                412,
                _DUPLICATE,
                f"A record with matching key values already exists ({table.entity_set}).",
            )
        self.store.put(table.logical_name, row_id, row)

    def _delete_row(self, table: Table, row_id: str) -> None:
        """Delete with the relationship behaviours: parental lookups cascade, others unlink."""
        row = self.store.get(table.logical_name, row_id)
        if row is not None and table.locked_by_parent is not None:
            self._check_editable(table, row, {})
        self.store.delete(table.logical_name, row_id)
        for other in self.schema.tables.values():
            for column in other.columns.values():
                if column.type != "lookup" or table.logical_name not in column.navigation.values():
                    continue
                if column.name in ("createdby", "modifiedby", "ownerid"):
                    continue
                data = self.store.data(other.logical_name)
                holders = [i for i, r in data.rows.items() if r.get(column.read_name) == row_id]
                for holder in holders:
                    if column.cascade_delete:
                        if self.store.get(other.logical_name, holder) is not None:
                            self.store.delete(other.logical_name, holder)
                    else:
                        current = data.rows[holder]
                        updated = {
                            **current,
                            column.read_name: None,
                            column.read_name + _TARGET: None,
                            "versionnumber": self.store.next_version(),
                        }
                        self.store.put(other.logical_name, holder, updated)

    # ---- handlers: single records -------------------------------------------------------------
    def _select(self, req: ApiRequest, table: Table) -> list[str] | None:
        text = req.option("$select")
        return odata.parse_select(text, table.type_of, table.logical_name) if text else None

    def _entity(
        self, table: Table, row: Row, select: list[str] | None, *, annotations: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": f'W/"{row["versionnumber"]}"'}
        names = select if select is not None else list(table.by_read_name)
        for name in names:
            out[name] = to_json(row.get(name))
            if (
                annotations
                and table.by_read_name[name].type == "lookup"
                and row.get(name) is not None
            ):
                out[f"{name}@Microsoft.Dynamics.CRM.lookuplogicalname"] = row.get(name + _TARGET)
        if table.primary_key not in out:
            out[table.primary_key] = row[table.primary_key]
        return out

    def _context(self, table: Table, select: list[str] | None, suffix: str = "") -> str:
        cols = f"({','.join(select)})" if select else ""
        return f"{self._svc()}$metadata#{table.entity_set}{cols}{suffix}"

    def _retrieve(self, req: ApiRequest, locator: _Locator) -> ApiResponse:
        if locator.row_id is None:
            raise self._not_found(locator)
        table = locator.table
        row = self.store.get(table.logical_name, locator.row_id)
        assert row is not None
        etag = f'W/"{row["versionnumber"]}"'
        if _etag_version(req.headers.get("if-none-match", "")) == str(row["versionnumber"]):
            return ApiResponse(304, {"ETag": etag})
        select = self._select(req, table)
        body = {
            "@odata.context": self._context(table, select, "/$entity"),
            **self._entity(table, row, select, annotations=_annotations(req)),
        }
        return ApiResponse.json(200, body, {"ETag": etag})

    def _representation(
        self, req: ApiRequest, table: Table, row: Row, status: int, headers: dict[str, str]
    ) -> ApiResponse:
        select = self._select(req, table)
        body = {
            "@odata.context": self._context(table, select, "/$entity"),
            **self._entity(table, row, select, annotations=_annotations(req)),
        }
        headers = {
            **headers,
            "ETag": f'W/"{row["versionnumber"]}"',
            "Preference-Applied": "return=representation",
        }
        return ApiResponse.json(status, body, headers)

    def _entity_url(self, table: Table, row_id: str) -> str:
        return f"{self._svc()}{table.entity_set}({row_id})"

    def _create(self, req: ApiRequest, table: Table) -> ApiResponse:
        body = _json(req, table)
        locator = _Locator(table, None, None, {}, False, table.entity_set)
        row, _ = self._upsert(locator, body, req)
        url = self._entity_url(table, row[table.primary_key])
        headers = {"OData-EntityId": url, "Location": url}
        if req.prefer().get("return") == "representation":
            return self._representation(req, table, row, 201, headers)
        return ApiResponse(204, headers)

    def _patch(self, req: ApiRequest, locator: _Locator) -> ApiResponse:
        body = _json(req, locator.table)
        if_match = _condition(req.headers.get("if-match"))
        if_none_match = _condition(req.headers.get("if-none-match"))
        row, created = self._upsert(
            locator, body, req, if_match=if_match, if_none_match=if_none_match
        )
        table = locator.table
        url = (
            f"{self._svc()}{locator.segment}"
            if locator.by_key
            else self._entity_url(table, row[table.primary_key])
        )
        headers = {"OData-EntityId": url}
        if req.prefer().get("return") == "representation":
            return self._representation(req, table, row, 201 if created else 200, headers)
        return ApiResponse(204, headers)

    def _delete(self, req: ApiRequest, locator: _Locator) -> ApiResponse:
        if locator.row_id is None:
            raise self._not_found(locator)
        row = self.store.get(locator.table.logical_name, locator.row_id)
        assert row is not None
        if_match = _condition(req.headers.get("if-match"))
        if if_match not in (None, "*") and _etag_version(if_match) != str(row["versionnumber"]):
            raise DataverseError(
                412,
                _VERSION_MISMATCH,
                "The version of the existing record doesn't match the RowVersion property provided.",
            )
        self._delete_row(locator.table, locator.row_id)
        return ApiResponse(204)

    def _property(self, req: ApiRequest, locator: _Locator, name: str) -> ApiResponse:
        table = locator.table
        if name == "$ref" or name.endswith("/$ref"):
            raise DataverseError(
                400, _QUERY_ERROR, "The sandbox does not support $ref; use @odata.bind."
            )
        column = table.by_read_name.get(name) or table.columns.get(name)
        if column is None:
            raise DataverseError(
                400,
                "0x0",
                f"Could not find a property named '{name}' on type '{table.entity_type}'.",
            )
        if locator.row_id is None:
            raise self._not_found(locator)
        row = self.store.get(table.logical_name, locator.row_id)
        assert row is not None
        if req.method == "GET":
            return ApiResponse.json(
                200,
                {
                    "@odata.context": f"{self._svc()}$metadata#{table.entity_set}({locator.row_id})/{name}",
                    "value": to_json(row.get(column.read_name)),
                },
            )
        if req.method not in ("PUT", "DELETE") or column.type == "lookup" or column.read_only:
            raise _method_not_allowed(req.method)
        if req.method == "PUT":
            body = _json(req, table)
            if not isinstance(body, dict) or "value" not in body:
                raise payload_error(
                    table.entity_set, "A 'value' property was expected in the payload."
                )
            changes = self._changes(table, {column.name: body["value"]}, req.content_ids)
        else:
            changes = {column.name: None}
        self._write(table, locator.row_id, row, changes, req.user_id)
        return ApiResponse(204)

    # ---- handlers: queries --------------------------------------------------------------------
    def _query_options(self, req: ApiRequest) -> dict[str, str]:
        options: dict[str, str] = {}
        for name, value in req.query:
            if name.startswith("$"):
                if name in _UNSUPPORTED_OPTIONS:
                    raise DataverseError(
                        400,
                        _QUERY_ERROR,
                        f"The query parameter {name} is not supported by this environment.",
                    )
                if name not in _QUERY_OPTIONS:
                    raise DataverseError(
                        400, _QUERY_ERROR, f"The query parameter {name} is not supported."
                    )
                if name in options:
                    raise DataverseError(
                        400,
                        _QUERY_ERROR,
                        f"Query option '{name}' was specified more than once, but it must be specified at most once.",
                    )
                options[name] = value
        return options

    def _list(self, req: ApiRequest, table: Table) -> ApiResponse:
        options = self._query_options(req)
        prefer = req.prefer()
        if "odata.track-changes" in prefer or "$deltatoken" in options:
            return self._track_changes(req, table, options, prefer)
        select = self._select(req, table)
        aliases = {k: v for k, v in req.query if k.startswith("@")}
        rows: list[Row] = list(self.store.data(table.logical_name).rows.values())
        if "$filter" in options:
            predicate = odata.compile_filter(
                options["$filter"], table.type_of, table.logical_name, aliases
            )
            rows = [r for r in rows if predicate(r.get)]
        ordering = (
            odata.parse_orderby(options["$orderby"], table.type_of, table.logical_name)
            if "$orderby" in options
            else []
        )
        rows.sort(key=lambda r: r[table.primary_key])
        for name, descending in reversed(ordering):
            rows.sort(key=lambda r, n=name: _sort_key(r.get(n)), reverse=descending)
        if "$top" in options:
            top = _non_negative_int(options["$top"], "$top")
            rows = rows[:top]
        return self._page(req, table, rows, select, options, prefer, self._context(table, select))

    def _page(
        self,
        req: ApiRequest,
        table: Table,
        rows: list[Row],
        select: list[str] | None,
        options: dict[str, str],
        prefer: dict[str, str],
        context: str,
    ) -> ApiResponse:
        size, applied = self._page_size(prefer)
        offset = 0
        if "$skiptoken" in options:
            offset = _skip_of(options["$skiptoken"])
        if "$top" in options:
            size = max(1, len(rows))  # $top wins over paging
        page = rows[offset : offset + size]
        body: dict[str, Any] = {"@odata.context": context}
        if options.get("$count") == "true":
            body["@odata.count"] = min(len(rows), 5000)
        annotations = _annotations(req)
        body["value"] = [self._entity(table, r, select, annotations=annotations) for r in page]
        if offset + size < len(rows):
            page_number = offset // size + 2
            token = _skiptoken(
                page_number, f'<cookie page="{page_number - 1}" skip="{offset + size}" />'
            )
            body["@odata.nextLink"] = self._next_link(req, {"$skiptoken": token})
        headers = {"Preference-Applied": applied} if applied else {}
        return ApiResponse.json(200, body, headers)

    def _page_size(self, prefer: dict[str, str]) -> tuple[int, str | None]:
        requested = prefer.get("odata.maxpagesize")
        if requested is None:
            return self.settings.defaultPageSize, None
        size = _non_negative_int(requested, "odata.maxpagesize")
        size = max(1, min(size, self.settings.defaultPageSize))
        return size, f"odata.maxpagesize={size}"

    def _next_link(self, req: ApiRequest, replace: dict[str, str]) -> str:
        params = [(k, v) for k, v in req.query if k not in replace] + list(replace.items())
        query = "&".join(f"{k}={urllib.parse.quote(v, safe=_SAFE)}" for k, v in params)
        return f"{self._svc()}{req.path.strip('/')}?{query}"

    def _message_filters(self, req: ApiRequest) -> ApiResponse:
        """``sdkmessagefilters``: which messages each table supports (bulk-operations.md)."""
        options = self._query_options(req)
        rows = []
        for table in self.schema.tables.values():
            messages = [
                "Create",
                "Update",
                "Delete",
                "Retrieve",
                "RetrieveMultiple",
                "Upsert",
                *sorted(self._bulk_support(table)),
            ]
            for message in messages:
                rows.append(
                    {
                        "sdkmessagefilterid": str(
                            uuid.uuid5(uuid.NAMESPACE_URL, f"{table.logical_name}/{message}")
                        ),
                        "primaryobjecttypecode": table.logical_name,
                        "sdkmessageid/name": message,
                        "versionnumber": 1,
                    }
                )
        types = {
            "sdkmessagefilterid": odata.EDM_GUID,
            "primaryobjecttypecode": odata.EDM_STRING,
            "sdkmessageid/name": odata.EDM_STRING,
        }
        aliases = {k: v for k, v in req.query if k.startswith("@")}
        if "$filter" in options:
            predicate = odata.compile_filter(
                options["$filter"], types.get, "sdkmessagefilter", aliases
            )
            rows = [r for r in rows if predicate(r.get)]
        select = ["sdkmessagefilterid"]
        if "$select" in options:
            select = odata.parse_select(
                options["$select"],
                {k: v for k, v in types.items() if "/" not in k}.get,
                "sdkmessagefilter",
            )
        return ApiResponse.json(
            200,
            {
                "@odata.context": f"{self._svc()}$metadata#sdkmessagefilters({','.join(select)})",
                "value": [{"@odata.etag": 'W/"1"', **{c: r[c] for c in select}} for r in rows],
            },
        )

    # ---- change tracking ----------------------------------------------------------------------
    def _track_changes(
        self, req: ApiRequest, table: Table, options: dict[str, str], prefer: dict[str, str]
    ) -> ApiResponse:
        if not table.change_tracking:
            raise DataverseError(
                400, _NOT_TRACKED, f"Entity {table.logical_name} isn't enabled for change tracking."
            )
        for name in ("$filter", "$orderby", "$top"):
            if name in options:
                raise DataverseError(
                    400,
                    _QUERY_ERROR,
                    f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.',
                )
        select = self._select(req, table)
        size, applied_size = self._page_size(prefer)
        applied = ",".join(p for p in ("odata.track-changes", applied_size) if p)
        data = self.store.data(table.logical_name)
        annotations = _annotations(req)
        if "$deltatoken" in options:
            since = self._delta_version(table, options["$deltatoken"])
            skip = options.get("$skiptoken")
            # the window (since, until] is fixed by the first page, so later pages stay stable
            until = _tracking_version(skip) if skip else self.store.version
            upserted, deleted = self.store.changes_between(table.logical_name, since, until)
            entries: list[dict[str, Any]] = [
                self._entity(table, data.rows[i], select, annotations=annotations) for i in upserted
            ]
            entries += [
                {
                    "@odata.context": f"{self._svc()}$metadata#{table.entity_set}/$deletedEntity",
                    "id": i,
                    "reason": "deleted",
                }
                for i in deleted
            ]
            offset = _skip_of(skip) if skip else 0
            body: dict[str, Any] = {
                "@odata.context": self._context(table, select, "/$delta"),
                "value": entries[offset : offset + size],
            }
            if offset + size < len(entries):
                cookie = f'<cookie page="{offset // size + 1}" skip="{offset + size}" version="{until}" />'
                body["@odata.nextLink"] = self._next_link(
                    req, {"$skiptoken": _skiptoken(offset // size + 2, cookie, tracking=True)}
                )
            else:
                body["@odata.deltaLink"] = self._delta_link(req, table, until)
            return ApiResponse.json(200, body, {"Preference-Applied": applied})
        skip = options.get("$skiptoken")
        version = _tracking_version(skip) if skip else self.store.version
        last = _last_of(skip) if skip else None
        # keyset paging by primary key: rows changing while a client pages are neither skipped
        # nor lost (they reappear in the next delta, since their version is newer)
        ids = sorted(i for i in data.rows if last is None or i > last)
        page_ids = ids[:size]
        body = {
            "@odata.context": self._context(table, select),
            "value": [
                self._entity(table, data.rows[i], select, annotations=annotations) for i in page_ids
            ],
        }
        if len(ids) > size:
            cookie = f'<cookie page="1" version="{version}"><{table.primary_key} last="{page_ids[-1]}" /></cookie>'
            body["@odata.nextLink"] = self._next_link(
                req, {"$skiptoken": _skiptoken(2, cookie, tracking=True)}
            )
        else:
            body["@odata.deltaLink"] = self._delta_link(req, table, version)
        return ApiResponse.json(200, body, {"Preference-Applied": applied})

    def _delta_link(self, req: ApiRequest, table: Table, version: int) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%m/%d/%Y %H:%M:%S")
        token = f"{version}!{stamp}"
        self._delta_tokens[(table.entity_set, token)] = _DeltaToken(
            table.entity_set, version, time.time()
        )
        params = [(k, v) for k, v in req.query if k in ("$select",)] + [("$deltatoken", token)]
        query = "&".join(f"{k}={urllib.parse.quote(v, safe=_SAFE)}" for k, v in params)
        return f"{self._svc()}{table.entity_set}?{query}"

    def _delta_version(self, table: Table, token: str) -> int:
        known = self._delta_tokens.get((table.entity_set, token))
        expired = (
            known is None
            or known.entity_set != table.entity_set
            or time.time() - known.issued_at > self.settings.deltaTokenMaxAgeSeconds
        )
        if expired or known is None:
            raise DataverseError(
                400,
                _TOKEN_EXPIRED,
                "Version stamp associated with the client has expired. Please perform a full sync.",
            )
        return known.version

    # ---- bulk messages ------------------------------------------------------------------------
    def _bulk_support(self, table: Table) -> frozenset[str]:
        override = self.settings.bulkSupport.get(table.logical_name)
        return frozenset(override) if override is not None else table.bulk

    def _bulk(self, req: ApiRequest, table: Table, message: str) -> ApiResponse:
        if message not in BULK_MESSAGES:
            raise DataverseError(
                404,
                _SEGMENT_NOT_FOUND,
                f"Resource not found for the segment '{ACTION_PREFIX}{message}'.",
            )
        if message not in self._bulk_support(table):
            raise DataverseError(
                400,
                _UNSUPPORTED_MESSAGE,
                f"The '{message}' method does not support entities of type '{table.logical_name}'. "
                "MessageProcessorCache returned MessageProcessor.Empty. ",
            )
        body = _json(req, table)
        targets = body.get("Targets") if isinstance(body, dict) else None
        if not isinstance(targets, list):
            raise payload_error(
                table.entity_set,
                "The parameter 'Targets' in the request payload is not a valid collection.",
            )
        if len(targets) > self.settings.maxBulkTargets:
            raise DataverseError(
                400,
                _INVALID_ARGUMENT,
                f"The number of records in Targets ({len(targets)}) exceeds the limit of "
                f"{self.settings.maxBulkTargets} for one request in this environment.",
            )
        ids: list[str] = []
        expected_type = f"#{table.entity_type}"
        for index, target in enumerate(targets):
            try:
                if not isinstance(target, dict):
                    raise payload_error(
                        table.entity_set, "A resource (an object) was expected in Targets."
                    )
                declared = target.get("@odata.type")
                if declared not in (table.entity_type, expected_type):
                    raise payload_error(
                        table.entity_set,
                        f"The '@odata.type' annotation of each item in Targets must be '{table.entity_type}'.",
                    )
                ids.append(self._bulk_one(req, table, message, target))
            except PeerError as exc:
                # standard tables: the whole request rolls back (bulk-operations.md, On Error behavior)
                raise DataverseError(
                    exc.status, exc.code, exc.message, target=f"Targets[{index}]"
                ) from None
        if message == "CreateMultiple":
            return ApiResponse.json(
                200,
                {
                    "@odata.context": f"{self._svc()}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                    "Ids": ids,
                },
            )
        return ApiResponse(204)

    def _bulk_one(self, req: ApiRequest, table: Table, message: str, target: dict[str, Any]) -> str:
        reference = target.get("@odata.id")
        pk = target.get(table.primary_key)
        if reference is not None:
            text = urllib.parse.unquote(_service_relative(str(reference), self.base_url))
            try:
                resource = odata.parse_resource_path(text)
            except odata.ODataError as exc:
                raise payload_error(table.entity_set, str(exc)) from None
            if resource.segment != table.entity_set or resource.key is None or resource.rest:
                raise payload_error(
                    table.entity_set,
                    f"The '@odata.id' value '{reference}' does not identify a {table.logical_name} record.",
                )
            locator = self._locate(table, resource.key, text)
        elif pk is not None:
            row_id = coerce(table, table.columns[table.primary_key], pk)
            exists = self.store.get(table.logical_name, row_id) is not None
            locator = _Locator(
                table, row_id if exists else None, row_id, {}, False, table.entity_set
            )
        else:
            locator = _Locator(table, None, None, {}, False, table.entity_set)
        if message == "CreateMultiple":
            if locator.row_id is not None:
                raise DataverseError(412, _DUPLICATE, "Cannot insert duplicate key.")
            row, _ = self._upsert(locator, target, req, if_none_match="*")
        elif message == "UpdateMultiple":
            if locator.row_id is None and reference is None and pk is None:
                raise DataverseError(
                    400,
                    _INVALID_ARGUMENT,
                    f"Entity Id must be specified for Update ({table.logical_name}).",
                )
            if locator.row_id is None:
                raise DataverseError(
                    404,
                    _NOT_FOUND_BY_ID,
                    f"{table.display_name} With Ids = {locator.new_id or reference} Do Not Exist",
                )
            row, _ = self._upsert(locator, target, req, update_only=True)
        else:
            if locator.new_id is None and locator.row_id is None and not locator.by_key:
                raise DataverseError(
                    400,
                    _INVALID_ARGUMENT,
                    "UpsertMultiple needs a primary key or an '@odata.id' alternate key for each target.",
                )
            row, _ = self._upsert(locator, target, req)
        return str(row[table.primary_key])

    # ---- $batch -------------------------------------------------------------------------------
    def _batch(self, req: ApiRequest) -> ApiResponse:
        try:
            items = batchfmt.parse(req.body, req.headers.get("content-type", ""))
        except batchfmt.BatchFormatError as exc:
            raise DataverseError(
                400,
                "0x80048d19",
                "Error identified in Payload provided by the user for Entity :'', For more information on "
                "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  "
                f"---->  InnerException : System.ArgumentException: {exc}",
            ) from None
        count = sum(len(i.requests) if isinstance(i, batchfmt.ChangeSet) else 1 for i in items)
        if count > self.settings.maxBatchRequests:
            raise DataverseError(
                400,
                _INVALID_ARGUMENT,
                f"The batch contains {count} requests; a batch can contain at most {self.settings.maxBatchRequests}.",
            )
        continue_on_error = "odata.continue-on-error" in req.prefer()
        out: list[batchfmt.BatchResponse | batchfmt.ChangeSetResponse] = []
        failure: int | None = None
        for item in items:
            if isinstance(item, batchfmt.ChangeSet):
                result = self._run_changeset(req, item)
                out.append(result)
                if isinstance(result, batchfmt.BatchResponse):
                    failure = failure or result.status
            else:
                response = self._run_part(req, item, None)
                out.append(response)
                if response.status >= 400:
                    failure = failure or response.status
            if failure is not None and not continue_on_error:
                break
        content_type, body = batchfmt.write(out)
        status = 200 if continue_on_error or failure is None else failure
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Preference-Applied"] = "odata.continue-on-error"
        return ApiResponse(status, headers, body)

    def _run_changeset(
        self, req: ApiRequest, changeset: batchfmt.ChangeSet
    ) -> batchfmt.ChangeSetResponse | batchfmt.BatchResponse:
        content_ids: dict[str, str] = {}
        responses: list[batchfmt.BatchResponse] = []
        failed: list[batchfmt.BatchResponse] = []
        try:
            with self.store.transaction():
                for part in changeset.requests:
                    if part.method == "GET":
                        response = _batch_response(
                            _error_response(
                                400,
                                _INVALID_ARGUMENT,
                                "GET requests are not allowed within a change set.",
                            ),
                            part.content_id,
                        )
                    else:
                        response = self._run_part(req, part, content_ids)
                    if response.status >= 400:
                        failed.append(response)
                        raise _ChangeSetFailed
                    responses.append(response)
                    entity_id = response.headers.get("OData-EntityId")
                    if part.content_id is not None and entity_id:
                        content_ids[f"${part.content_id}"] = _service_relative(
                            entity_id, self.base_url
                        )
        except _ChangeSetFailed:
            return failed[0]
        return batchfmt.ChangeSetResponse(responses)

    def _run_part(
        self, outer: ApiRequest, part: batchfmt.BatchRequest, content_ids: dict[str, str] | None
    ) -> batchfmt.BatchResponse:
        url = part.url
        if url.startswith("$"):
            ref, _, remainder = url.partition("/")
            if content_ids is None or ref not in content_ids:
                return _batch_response(
                    _error_response(
                        400,
                        _INVALID_ARGUMENT,
                        f"Content-ID Reference: '{ref}' does not exist in the batch context.",
                    ),
                    part.content_id,
                )
            url = content_ids[ref] + (f"/{remainder}" if remainder else "")
        path_and_query = _service_relative(url, self.base_url)
        path, _, query = path_and_query.partition("?")
        inner = ApiRequest(
            method=part.method,
            path=urllib.parse.unquote(path),
            query=urllib.parse.parse_qsl(query, keep_blank_values=True),
            headers=part.headers,
            body=part.body,
            user_id=outer.user_id,
            content_ids=content_ids,
            in_batch=True,
        )
        return _batch_response(self._dispatch_safely(inner), part.content_id)

    def _dispatch_safely(self, inner: ApiRequest) -> ApiResponse:
        """Run a batch part inside the caller's lock and transaction; errors become responses."""
        try:
            with self.store.transaction():
                return self._route(inner)
        except DataverseError as exc:
            return _error_response(exc.status, exc.code, exc.message, exc.target)
        except PeerError as exc:
            return _error_response(exc.status, exc.code, exc.message)
        except odata.ODataError as exc:
            return _odata_error(exc)


# ---- helpers ------------------------------------------------------------------------------------

_TARGET = "@target"
_SAFE = "$,()'=@:!*/;"


class _ChangeSetFailed(Exception):
    """Internal: unwinds a change set's savepoint after one of its operations failed."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _guid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _allow(req: ApiRequest, method: str) -> None:
    if req.method != method:
        raise _method_not_allowed(req.method)


def _method_not_allowed(method: str) -> DataverseError:
    return DataverseError(
        405, _QUERY_ERROR, f"The requested resource does not support http method '{method}'."
    )


def _read_only() -> DataverseError:
    return DataverseError(400, _READ_ONLY, "The object cannot be updated because it is read-only.")


def _error_response(status: int, code: str, message: str, target: str | None = None) -> ApiResponse:
    error: dict[str, Any] = {
        "code": code if code.startswith("0x") else _CODES.get(code, "0x0"),
        "message": message,
    }
    if target is not None:
        error["target"] = target
    return ApiResponse.json(status, {"error": error})


def _odata_error(exc: odata.ODataError) -> ApiResponse:
    # powerapps troubleshooting: an unknown property is 400 with code 0x0
    code = "0x0" if isinstance(exc, odata.UnknownProperty) else _QUERY_ERROR
    return _error_response(400, code, str(exc))


def _rejected_path(char: str) -> ApiResponse:
    """What IIS/ASP.NET answer before Dataverse runs (see _DANGEROUS_PATH_CHARS)."""
    if char in "+#":
        return ApiResponse(
            404,
            {"Content-Type": "text/html"},
            b"HTTP Error 404.11 - Not Found: The request filtering module is configured "
            b"to deny a request that contains a double escape sequence.",
        )
    message = f"A potentially dangerous Request.Path value was detected from the client ({char})."
    return ApiResponse(400, {"Content-Type": "text/html"}, message.encode("utf-8"))


def _json(req: ApiRequest, table: Table) -> Any:
    if not req.body.strip():
        raise payload_error(table.entity_set, "A resource (an object) was expected in the payload.")
    try:
        return json.loads(req.body.decode("utf-8"), parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise payload_error(table.entity_set, f"Invalid JSON. {exc}") from None


def _condition(value: str | None) -> str | None:
    if value is None or value.strip().lower() in ("", "null"):
        return None
    return value.strip()


def _etag_version(value: str) -> str | None:
    match = _ETAG_RE.match(value.strip()) if value else None
    return match.group(1) if match else None


def _annotations(req: ApiRequest) -> bool:
    wanted = req.prefer().get("odata.include-annotations", "")
    return wanted in ("*", "Microsoft.Dynamics.CRM.lookuplogicalname", "Microsoft.Dynamics.CRM.*")


def _sort_key(value: Any) -> tuple[int, Any]:
    # SQL Server sorts NULL first ascending
    return (0, 0) if value is None else (1, odata.comparable(value))


def _non_negative_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DataverseError(400, _QUERY_ERROR, f"Invalid value '{text}' for {name}.") from None
    if value < 0:
        raise DataverseError(400, _QUERY_ERROR, f"Invalid value '{text}' for {name}.")
    return value


def _skiptoken(page_number: int, cookie: str, *, tracking: bool = False) -> str:
    """Dataverse's paging token shape: a ``<cookie>`` element with a doubly-encoded paging cookie."""
    inner = urllib.parse.quote(urllib.parse.quote(cookie, safe=""), safe="")
    return (
        f'<cookie pagenumber="{page_number}" pagingcookie="{inner}" '
        f'istracking="{"True" if tracking else "False"}" />'
    )


def _decoded(token: str) -> str:
    previous = None
    while previous != token:
        previous, token = token, urllib.parse.unquote(token)
    return token


def _skip_of(token: str) -> int:
    match = _SKIP_RE.search(_decoded(token))
    if not match:
        raise DataverseError(400, _QUERY_ERROR, "The $skiptoken value is not valid.")
    return int(match.group(1))


def _last_of(token: str) -> str:
    match = _LAST_RE.search(_decoded(token))
    if not match:
        raise DataverseError(400, _QUERY_ERROR, "The $skiptoken value is not valid.")
    return match.group(1).lower()


def _tracking_version(token: str) -> int:
    match = _TRACKING_VERSION_RE.search(_decoded(token))
    if not match:
        raise DataverseError(400, _QUERY_ERROR, "The $skiptoken value is not valid.")
    return int(match.group(1))


def _service_relative(url: str, base_url: str) -> str:
    """``https://host/api/data/v9.2/accounts(…)``, ``/api/data/v9.2/accounts(…)`` -> ``accounts(…)``."""
    text = url.strip()
    if text.lower().startswith(("https://", "http://")):
        parsed = urllib.parse.urlsplit(text)
        text = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    if text.startswith(API_PREFIX + "/"):
        text = text[len(API_PREFIX) + 1 :]
    elif text == API_PREFIX:
        text = ""
    return text.lstrip("/")


def _batch_response(response: ApiResponse, content_id: str | None) -> batchfmt.BatchResponse:
    headers = {"OData-Version": "4.0", **response.headers}
    return batchfmt.BatchResponse(response.status, headers, response.body, content_id)
