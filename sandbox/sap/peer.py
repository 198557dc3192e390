"""SAP S/4HANA for the sandbox: six OData V2 services behind SAP Gateway's conventions.

What it reproduces (``docs/sap-api.md`` gives the source of each behaviour):

- Services under ``/sap/opu/odata/sap/<SERVICE>/``: ``API_SALES_ORDER_SRV`` (read, deep insert,
  update, delete), ``API_PRODUCT_SRV``, ``API_SLSPRICINGCONDITIONRECORD_SRV``,
  ``API_EQUIPMENT`` and ``API_BUSINESS_PARTNER`` (``A_Customer``; read-only here),
  ``API_PRODUCT_AVAILY_INFO_BASIC`` (function imports).
- Pricing of order items from price condition records of type ``PPR0`` (S/4HANA's price
  condition) or ``PR00`` (the classic one, still in on-premise pricing procedures).
- Communication users with HTTP basic auth, or Entra bearer tokens for ``api://sap-s4hana``.
  Refusals are SAP's ``401`` HTML logon page with ``WWW-Authenticate: Basic realm="SAP
  NetWeaver Application Server [<SID>/<client>]"``.
- CSRF: ``X-CSRF-Token: Fetch`` on a GET/HEAD returns a token bound to a new or current
  security session (cookie ``SAP_SESSIONID_<SID>_<client>``); every POST/PUT/PATCH/MERGE/DELETE
  (``$batch`` included) must send both, else ``403`` with ``X-CSRF-Token: Required``.
- V2 JSON (``{"d": ...}``, ``__metadata`` with uri/type/etag, ``__deferred`` links,
  ``/Date(ms)/`` and ``/Date(ms+0000)/``, decimals as strings), query options ``$filter``,
  ``$orderby``, ``$top``, ``$skip``, ``$inlinecount``, ``$select``, ``$expand``, ``$format`` and
  server-side paging with ``__next``/``$skiptoken``.
- Optimistic locking on sales orders: ``LastChangeDateTime`` is the ETag; updates without
  ``If-Match`` get ``428``, with a stale one ``412``; every change advances the stamp.
- SAP's V2 error body ``{"error": {"code", "message": {"lang", "value"}, "innererror": ...}}``.

Control surface extras (sandbox only):

- seed ``{"A_SalesOrder": [{..., "to_Item": [...], "to_Partner": [...]}], "A_Product": [{...,
  "to_Description": [...], "to_Plant": [...]}], "A_SlsPrcgConditionRecord": [{...,
  "to_SlsPrcgCndnRecdValidity": [...]}], "Equipment": [{..., "to_Partner": [...]}],
  "A_Customer": [{...}], "stock": [{"Material", "Plant", "qty", "BaseUnit"?}]}``. Values in
  V2 JSON form, or ISO dates and plain numbers. Read-only fields may be seeded; a record
  without a change stamp is stamped now; seeding a key again replaces the record (and advances
  its stamp), as SAP keys are unique.
- seed ``{"settings": [{"maxPageSize", "defaultCurrency", "sessionTimeoutSeconds",
  "failNext": {"method": "POST", "phase": "before" | "after", "times": 1}}]}``. ``failNext``
  answers the next matching OData requests with 503, either before they run or after they
  ran (the answer to a committed change is lost): targeted, unlike the random ``faults``.
- ``POST /_sandbox/change`` ``[{"entitySet", "key": {...}, "values": {...}}]`` (also seedable as
  ``{"changes": [...]}``): a change made by a user in SAP; it may touch read-only fields such as
  ``OverallSDProcessStatus`` and advances ``LastChangeDateTime``.
- ``POST /_sandbox/sessions/expire``: every security session (and its CSRF token) ends.
- ``records/<EntitySet>``, ``records/stock``, ``records/sessions`` (no token values).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlencode

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from sandbox import secrets_registry
from sandbox.entra import InvalidToken, Issuer, bearer
from sandbox.peer import Peer, PeerError, json_response
from sandbox.sap import model
from sandbox.sap.edmx import metadata_xml
from sandbox.sap.odata import (
    DECIMAL,
    UTC,
    EntitySet,
    FunctionImport,
    ODataError,
    Prop,
    Service,
    bad_request,
    check_decimal,
    check_names,
    epoch_ms,
    etag_for,
    from_json,
    key_predicate,
    literal_value,
    normalize_alpha,
    parse_filter,
    parse_key,
    parse_orderby,
    sort_records,
    split_list,
    to_json,
    tokenize,
)
from sandbox.tls import Tls

AUDIENCE = "api://sap-s4hana"
ODATA_ROOT = "/sap/opu/odata/sap"
MODIFYING = frozenset({"POST", "PUT", "PATCH", "MERGE", "DELETE"})
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "MERGE", "DELETE"]
QUERY_OPTIONS = frozenset(
    {
        "$filter",
        "$orderby",
        "$top",
        "$skip",
        "$skiptoken",
        "$inlinecount",
        "$select",
        "$expand",
        "$format",
    }
)
END_OF_TIME = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
OPEN_STATUSES = frozenset({"", "A", "B"})
# Price condition types: PPR0 is the price in S/4HANA's delivered pricing (learning.sap.com,
# "Introducing Pricing Fundamentals in S/4HANA Cloud"); PR00 is the ECC one that on-premise
# procedures still use.
PRICE_CONDITION_TYPES = frozenset({"PPR0", "PR00"})
SAP_NOTE = (
    "See SAP Note 1797736 for error analysis (https://service.sap.com/sap/support/notes/1797736)"
)

# Nav properties that seeds and deep inserts may carry, per parent set.
CHILDREN = {
    "A_SalesOrder": ("to_Item", "to_Partner"),
    "A_Product": ("to_Description", "to_Plant"),
    "A_SlsPrcgConditionRecord": ("to_SlsPrcgCndnRecdValidity",),
    "Equipment": ("to_Partner",),
}
HEADER_REQUIRED = (
    "SalesOrderType",
    "SalesOrganization",
    "DistributionChannel",
    "OrganizationDivision",
    "SoldToParty",
)


@dataclass
class _Session:
    id: str
    user: str
    token: str
    expires: float


class _Unauthorized(Exception):
    """Authentication failed; answered with SAP's logon error page."""


class SapPeer(Peer):
    """SAP S/4HANA Cloud (or on-premise Gateway) as the hub sees it. See the module docstring."""

    name = "sap"

    def __init__(
        self,
        issuer: Issuer | None = None,
        *,
        tls: Tls | None = None,
        system_id: str = "S4H",
        client: str = "100",
        max_page_size: int = 1000,
    ) -> None:
        self.issuer = issuer
        self.system_id = system_id
        self.client = client
        self.default_max_page_size = max_page_size
        self.users: dict[str, str] = {}
        self.services: dict[str, Service] = dict(model.SERVICES)
        self.tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        self.stock: dict[tuple[str, str], dict[str, Any]] = {}
        self.sessions: dict[str, _Session] = {}
        self.max_page_size = max_page_size
        self.default_currency = "EUR"
        self.session_timeout = 1800.0
        self._last_stamp = dt.datetime.min.replace(tzinfo=UTC)
        self.fail_next: dict[str, Any] | None = None
        super().__init__(tls=tls)

    # ---- set-up --------------------------------------------------------------------------------
    def add_user(self, username: str, password: str) -> None:
        """Register a communication user (kept across resets, like the user master)."""
        with self.lock:
            self.users[username] = password

    @property
    def cookie_name(self) -> str:
        return f"SAP_SESSIONID_{self.system_id}_{self.client}"

    def routes(self) -> Iterable[Rule]:
        return [
            Rule(f"{ODATA_ROOT}/<service>", methods=ALL_METHODS, endpoint=self._odata),
            Rule(f"{ODATA_ROOT}/<service>/", methods=ALL_METHODS, endpoint=self._odata),
            Rule(f"{ODATA_ROOT}/<service>/<path:rest>", methods=ALL_METHODS, endpoint=self._odata),
            Rule("/_sandbox/change", methods=["POST"], endpoint=self._control_change),
            Rule("/_sandbox/sessions/expire", methods=["POST"], endpoint=self._control_expire),
        ]

    def reset_state(self) -> None:
        self.tables = {name: {} for name in model.ENTITY_SETS}
        self.stock = {}
        self.sessions = {}
        self.max_page_size = self.default_max_page_size
        self.default_currency = "EUR"
        self.session_timeout = 1800.0
        self.fail_next = None

    def expire_sessions(self) -> None:
        """End every security session, as a session timeout or logoff would."""
        with self.lock:
            self.sessions.clear()

    # ---- control surface -----------------------------------------------------------------------
    def seed(self, data: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for table, rows in data.items():
            try:
                if table == "settings":
                    for row in rows:
                        self._apply_settings(row)
                elif table == "stock":
                    for row in rows:
                        self._seed_stock(row)
                elif table == "changes":
                    for row in rows:
                        self.apply_change(row)
                elif table in model.ENTITY_SETS:
                    for row in rows:
                        self._seed_record(table, row)
                else:
                    raise PeerError(400, "ZSANDBOX/400", f"unknown table {table!r}")
            except ODataError as exc:
                raise PeerError(exc.status, exc.code, f"{table}: {exc.message}") from None
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                raise PeerError(400, "ZSANDBOX/400", f"{table}: {exc}") from None
            counts[table] = len(rows)
        return counts

    def records(self, table: str) -> list[dict[str, Any]]:
        if table == "stock":
            return [
                {"Material": m, "Plant": p, "qty": str(row["qty"]), "BaseUnit": row["BaseUnit"]}
                for (m, p), row in sorted(self.stock.items())
            ]
        if table == "sessions":
            return [
                {"user": s.user, "expiresIn": round(s.expires - time.time())}
                for s in self.sessions.values()
            ]
        if table not in model.ENTITY_SETS:
            raise PeerError(
                404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{table}'"
            )
        _, entity_set = model.ENTITY_SETS[table]
        rows = sort_records(entity_set, list(self.tables[table].values()), [])
        return [{p.name: to_json(p, r.get(p.name), r) for p in entity_set.props} for r in rows]

    def _control_change(self, request: Request) -> Response:
        body = self.json_body(request)
        if isinstance(body, dict):
            body = [body]
        if not isinstance(body, list) or not all(isinstance(c, dict) for c in body):
            raise PeerError(400, "ZSANDBOX/400", "change takes [{entitySet, key, values}]")
        with self.lock:
            try:
                changed = [self.apply_change(change) for change in body]
            except ODataError as exc:
                raise PeerError(exc.status, exc.code, exc.message) from None
            except (TypeError, ValueError) as exc:
                raise PeerError(400, "ZSANDBOX/400", str(exc)) from None
        return json_response({"changed": len(changed), "records": changed})

    def _control_expire(self, request: Request) -> Response:
        self.expire_sessions()
        return json_response({"expired": True})

    def _apply_settings(self, row: dict[str, Any]) -> None:
        unknown = set(row) - {
            "maxPageSize",
            "defaultCurrency",
            "sessionTimeoutSeconds",
            "expireSessions",
            "failNext",
        }
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        if "maxPageSize" in row:
            size = int(row["maxPageSize"])
            if size < 1:
                raise ValueError("maxPageSize must be at least 1")
            self.max_page_size = size
        if "defaultCurrency" in row:
            self.default_currency = str(row["defaultCurrency"])
        if "sessionTimeoutSeconds" in row:
            self.session_timeout = float(row["sessionTimeoutSeconds"])
        if row.get("expireSessions"):
            self.sessions.clear()
        if "failNext" in row:
            plan = row["failNext"]
            if plan is None:
                self.fail_next = None
            else:
                if not isinstance(plan, dict) or plan.get("phase", "after") not in (
                    "before",
                    "after",
                ):
                    raise ValueError("failNext takes {method, phase: before|after, times}")
                self.fail_next = {
                    "method": str(plan.get("method", "POST")).upper(),
                    "phase": plan.get("phase", "after"),
                    "times": int(plan.get("times", 1)),
                }

    def apply_change(self, change: dict[str, Any]) -> dict[str, Any]:
        """A user's change in SAP: merge ``values`` into the record with ``key``."""
        with self.lock:
            return self._apply_change(change)

    def _apply_change(self, change: dict[str, Any]) -> dict[str, Any]:
        name = change.get("entitySet")
        if name not in model.ENTITY_SETS:
            raise ODataError(
                404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'"
            )
        _, entity_set = model.ENTITY_SETS[name]
        key = self._key_from_mapping(entity_set, change.get("key") or {})
        record = self.tables[name].get(key)
        if record is None:
            raise ODataError(
                404,
                "/IWBEP/CM_MGW_RT/020",
                f"Resource not found for segment '{entity_set.type_name}'",
            )
        values = change.get("values") or {}
        if not isinstance(values, dict):
            raise ValueError("values must be an object")
        for prop_name, raw in values.items():
            prop = entity_set.prop(prop_name)
            if prop.name in entity_set.keys:
                raise ValueError(f"key property {prop.name} cannot change")
            record[prop.name] = self._seed_value(prop, raw)
        self._after_change(entity_set, record)
        return {p.name: to_json(p, record.get(p.name), record) for p in entity_set.props}

    def _seed_stock(self, row: dict[str, Any]) -> None:
        material = normalize_alpha(model.PRODUCT.prop("Product"), str(row["Material"]))
        plant = str(row["Plant"])
        qty = Decimal(str(row["qty"]))
        product = self.tables["A_Product"].get((material,))
        unit = str(row.get("BaseUnit") or (product or {}).get("BaseUnit") or "PC")
        self.stock[(material, plant)] = {"qty": qty, "BaseUnit": unit}
        plants = self.tables["A_ProductPlant"]
        if (material, plant) not in plants:
            # Stock at a plant means the material is extended to it.
            plants[(material, plant)] = {
                "Product": material,
                "Plant": plant,
                "IsMarkedForDeletion": False,
            }

    def _seed_value(self, prop: Prop, raw: Any) -> Any:
        if prop.type == DECIMAL and isinstance(raw, int | float) and not isinstance(raw, bool):
            raw = str(raw)
        return from_json(prop, raw)

    def _seed_record(
        self, table: str, row: dict[str, Any], parent: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        _, entity_set = model.ENTITY_SETS[table]
        record: dict[str, Any] = {}
        children: dict[str, list[dict[str, Any]]] = {}
        for field_name, raw in row.items():
            if field_name in entity_set.nav_by_name:
                if field_name not in CHILDREN.get(table, ()):
                    raise ValueError(f"{field_name} cannot be seeded inline")
                children[field_name] = _nav_rows(raw, field_name)
                continue
            record[field_name] = self._seed_value(entity_set.prop(field_name), raw)
        if table == "A_SalesOrder" and not record.get("SalesOrder"):
            record["SalesOrder"] = self._next_order_number()
        if table == "A_SalesOrderItem" and parent is not None and not record.get("SalesOrderItem"):
            record["SalesOrderItem"] = self._next_item_number(parent["SalesOrder"])
        for name in entity_set.keys:
            if record.get(name) in (None, ""):
                raise ValueError(f"{table} record lacks key {name}")
        stamp_prop = entity_set.by_name.get("LastChangeDateTime")
        if stamp_prop is not None and record.get("LastChangeDateTime") is None:
            record["LastChangeDateTime"] = self._stamp()
        if "CreationDate" in entity_set.by_name and record.get("CreationDate") is None:
            record["CreationDate"] = _today()
        key = tuple(record[name] for name in entity_set.keys)
        if table == "A_SalesOrder" and key in self.tables[table]:
            self._delete_order_children(key[0])
        self.tables[table][key] = record
        for nav_name, child_rows in children.items():
            nav = entity_set.nav_by_name[nav_name]
            for child in child_rows:
                linked = dict(child)
                for source, target in nav.link:
                    linked[target] = to_json(entity_set.prop(source), record[source])
                self._seed_record(nav.target, linked, record)
        if table == "A_SalesOrder":
            self._seed_order_defaults(record)
        return record

    def _seed_order_defaults(self, order: dict[str, Any]) -> None:
        order.setdefault("OverallSDProcessStatus", "A")
        order.setdefault("TransactionCurrency", self.default_currency)
        for item in self._items(order["SalesOrder"]):
            item.setdefault("SDProcessStatus", "A")
            item["TransactionCurrency"] = order["TransactionCurrency"]
            if item.get("NetAmount") is None:
                item["NetAmount"] = self._price(order, item)
        if order.get("TotalNetAmount") is None:
            order["TotalNetAmount"] = self._total(order["SalesOrder"])

    # ---- the OData endpoint --------------------------------------------------------------------
    def _odata(self, request: Request, service: str, rest: str = "") -> Response:
        svc = self.services.get(service.split(";", 1)[0])
        try:
            with self.lock:
                return self._serve(request, service)
        except _Unauthorized:
            return self._logon_error()
        except ODataError as exc:
            response = self.sap_error(exc.status, exc.code, exc.message, svc, exc.target)
            if exc.status == 405:
                response.headers["Allow"] = "GET, HEAD"
            return response

    def _serve(self, request: Request, service_segment: str) -> Response:
        user = self._authenticate(request)
        method = request.method
        override = request.headers.get("X-HTTP-Method")
        if (
            method == "POST"
            and override
            and override.upper() in ("MERGE", "PATCH", "PUT", "DELETE")
        ):
            method = override.upper()
        set_cookies: list[str] = []
        token_header: str | None = None
        if method in MODIFYING:
            self._check_csrf(request, user)
        elif request.headers.get("X-CSRF-Token", "").lower() == "fetch":
            session, set_cookies = self._session_for_fetch(request, user)
            token_header = session.token
        service_name, _, version = service_segment.partition(";")
        service = self.services.get(service_name)
        if service is None or (version and version not in (f"v={service.version}", "v=1")):
            raise ODataError(
                404,
                "/IWFND/MED/170",
                f"No service found for namespace '/SAP/', name '{service_name}', version '0001'",
            )
        segments = _segments(_raw_path(request))
        self._planned_failure(method, "before")
        response = self._route(request, method, service, segments, user)
        if response.status_code < 400:
            self._planned_failure(method, "after")
        response.headers["dataserviceversion"] = "2.0"
        response.headers["sap-server"] = "true"
        if token_header is not None:
            response.headers["x-csrf-token"] = token_header
        for cookie in set_cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    def _route(
        self, request: Request, method: str, service: Service, segments: list[str], user: str
    ) -> Response:
        self._check_query_options(request)
        if not segments:
            if method not in ("GET", "HEAD"):
                raise _not_allowed(method)
            self._require_json(request)
            return self._json({"d": {"EntitySets": sorted(service.sets)}})
        head = segments[0]
        if head == "$metadata" and len(segments) == 1:
            if method not in ("GET", "HEAD"):
                raise _not_allowed(method)
            return Response(metadata_xml(service), content_type="application/xml")
        if head == "$batch" and len(segments) == 1:
            # The CSRF check above already ran: a $batch needs the token like any change.
            raise ODataError(
                501, "ZSANDBOX/501", "$batch is not supported by the sandbox; send single requests"
            )
        if head in service.functions and len(segments) == 1:
            return self._function(request, method, service, service.functions[head])
        name, predicate = _split_segment(head)
        entity_set = service.entity_set(name)
        if predicate is None:
            if len(segments) > 1:
                raise bad_request(f"Resource path {'/'.join(segments)} needs a key for {name}")
            if method in ("GET", "HEAD"):
                self._require_json(request)
                rows = list(self.tables[entity_set.name].values())
                return self._collection(request, service, entity_set, rows)
            if method == "POST":
                return self._create(request, service, entity_set, user)
            raise _not_allowed(method)
        key = parse_key(entity_set, predicate)
        record = self.tables[entity_set.name].get(key)
        if record is None:
            raise ODataError(
                404,
                "/IWBEP/CM_MGW_RT/020",
                f"Resource not found for segment '{entity_set.type_name}'",
            )
        if len(segments) == 2:
            return self._navigate(request, method, service, entity_set, record, segments[1], user)
        if len(segments) > 2:
            raise bad_request(f"Resource path {'/'.join(segments)} is not supported")
        if method in ("GET", "HEAD"):
            self._require_json(request)
            select, expand = self._select_expand(request, entity_set)
            body = self._render(request, service, entity_set, record, select, expand)
            response = self._json({"d": body})
            etag = self._etag(entity_set, record)
            if etag:
                response.headers["ETag"] = etag
            return response
        if method in ("PATCH", "MERGE", "PUT"):
            return self._update(request, method, service, entity_set, record, user)
        if method == "DELETE":
            return self._delete(request, service, entity_set, record)
        raise _not_allowed(method)

    def _planned_failure(self, method: str, phase: str) -> None:
        plan = self.fail_next
        if plan is None or plan["method"] != method or plan["phase"] != phase:
            return
        plan["times"] -= 1
        if plan["times"] <= 0:
            self.fail_next = None
        raise ODataError(
            503, "ZSANDBOX/503", "The service is temporarily unavailable (sandbox failNext)"
        )

    # ---- authentication and CSRF ---------------------------------------------------------------
    def _authenticate(self, request: Request) -> str:
        sap_client = request.args.get("sap-client")
        if sap_client is not None and sap_client != self.client:
            # The user master is per client: the user does not exist in another one.
            raise _Unauthorized
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                username, _, password = (
                    base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                raise _Unauthorized from None
            expected = self.users.get(username)
            if expected is None or not secrets.compare_digest(password.encode(), expected.encode()):
                raise _Unauthorized
            return username
        if scheme.lower() == "bearer":
            if self.issuer is None:
                raise _Unauthorized
            try:
                claims = self.issuer.verify(bearer(request), [AUDIENCE, self.base_url])
            except InvalidToken:
                raise _Unauthorized from None
            return str(claims.get("appid") or claims.get("azp") or claims.get("sub"))
        session = self._session(request)
        if session is not None:
            return session.user
        raise _Unauthorized

    def _session(self, request: Request) -> _Session | None:
        session_id = request.cookies.get(self.cookie_name)
        session = self.sessions.get(session_id) if session_id else None
        if session is None:
            return None
        if session.expires < time.time():
            del self.sessions[session.id]
            return None
        session.expires = time.time() + self.session_timeout
        return session

    def _session_for_fetch(self, request: Request, user: str) -> tuple[_Session, list[str]]:
        session = self._session(request)
        if session is not None and session.user == user:
            return session, []
        session = _Session(
            id=secrets.token_urlsafe(32),
            user=user,
            token=base64.b64encode(secrets.token_bytes(16)).decode(),
            expires=time.time() + self.session_timeout,
        )
        self.sessions[session.id] = session
        secrets_registry.record("sap-session-id", session.id)
        secrets_registry.record("sap-csrf-token", session.token)
        secure = "; secure" if self.tls is not None else ""
        return session, [
            f"{self.cookie_name}={session.id}; path=/; HttpOnly{secure}",
            f"sap-usercontext=sap-client={self.client}; path=/",
        ]

    def _check_csrf(self, request: Request, user: str) -> None:
        token = request.headers.get("X-CSRF-Token", "")
        session = self._session(request)
        if (
            session is None
            or session.user != user
            or not token
            or not secrets.compare_digest(token.encode(), session.token.encode())
        ):
            raise _CsrfRequired

    def _logon_error(self) -> Response:
        body = (
            "<html><head><title>Logon Error Message</title></head><body>"
            "<h1>Logon failed</h1><p>Logon failed. Contact your system administrator.</p>"
            "</body></html>"
        )
        return Response(
            body,
            status=401,
            content_type="text/html; charset=utf-8",
            headers={
                "WWW-Authenticate": f'Basic realm="SAP NetWeaver Application Server [{self.system_id}/{self.client}]"',
                "sap-server": "true",
            },
        )

    # ---- reading -------------------------------------------------------------------------------
    def _check_query_options(self, request: Request) -> None:
        for name in request.args:
            if name.startswith("$") and name not in QUERY_OPTIONS:
                raise bad_request(
                    f"System query option '{name}' is not supported", code="/IWBEP/CM_MGW_RT/001"
                )
        fmt = request.args.get("$format")
        if fmt is not None and fmt != "json":
            raise bad_request(
                f"$format={fmt} is not supported by the sandbox (it serves JSON only)"
            )

    def _require_json(self, request: Request) -> None:
        if request.args.get("$format") == "json":
            return
        accept = request.headers.get("Accept", "")
        if "application/json" not in accept:
            # SAP Gateway answers Atom XML here; a client expecting JSON would fail on it.
            raise ODataError(
                406,
                "ZSANDBOX/406",
                "The sandbox serves JSON only: send Accept: application/json or $format=json "
                "(SAP Gateway would answer this request with Atom XML)",
            )

    def _select_expand(
        self, request: Request, entity_set: EntitySet
    ) -> tuple[list[str], list[str]]:
        select = split_list(request.args.get("$select", ""))
        expand = split_list(request.args.get("$expand", ""))
        for name in expand:
            if "/" in name:
                raise bad_request(f"Nested $expand ({name}) is not supported by the sandbox")
            if name not in entity_set.nav_by_name:
                raise bad_request(
                    f"Property '{name}' not found in type '{entity_set.type_name}'",
                    code="/IWBEP/CM_MGW_RT/022",
                )
        check_names(entity_set, [s.split("/", 1)[0] for s in select])
        return select, expand

    def _collection(
        self, request: Request, service: Service, entity_set: EntitySet, rows: list[dict[str, Any]]
    ) -> Response:
        args = request.args
        select, expand = self._select_expand(request, entity_set)
        if args.get("$filter"):
            predicate = parse_filter(entity_set, args["$filter"])
            rows = [r for r in rows if predicate(r)]
        order = parse_orderby(entity_set, args["$orderby"]) if args.get("$orderby") else []
        rows = sort_records(entity_set, rows, order)
        top = _non_negative(args, "$top")
        skip = _non_negative(args, "$skip") or 0
        token = _non_negative(args, "$skiptoken") or 0
        inlinecount = args.get("$inlinecount")
        if inlinecount not in (None, "allpages", "none"):
            raise bad_request(f"Invalid value '{inlinecount}' for $inlinecount")
        start = skip + token
        wanted = None if top is None else max(top - token, 0)
        limit = self.max_page_size if wanted is None else min(wanted, self.max_page_size)
        page = rows[start : start + limit]
        body: dict[str, Any] = {}
        if inlinecount == "allpages":
            body["__count"] = str(len(rows))
        body["results"] = [
            self._render(request, service, entity_set, r, select, expand) for r in page
        ]
        more_wanted = wanted is None or wanted > len(page)
        if len(page) == limit and start + limit < len(rows) and more_wanted:
            params = [(k, v) for k, v in args.items(multi=True) if k != "$skiptoken"]
            params.append(("$skiptoken", str(token + len(page))))
            body["__next"] = (
                f"{request.base_url}?{urlencode(params, quote_via=quote, safe=',$()/:')}"
            )
        return self._json({"d": body})

    def _navigate(
        self,
        request: Request,
        method: str,
        service: Service,
        entity_set: EntitySet,
        record: dict[str, Any],
        nav_name: str,
        user: str,
    ) -> Response:
        nav = entity_set.nav_by_name.get(nav_name)
        if nav is None:
            if nav_name in entity_set.by_name:
                raise bad_request(
                    f"Reading single properties ({nav_name}) is not supported by the sandbox"
                )
            raise bad_request(
                f"Property '{nav_name}' not found in type '{entity_set.type_name}'",
                code="/IWBEP/CM_MGW_RT/022",
            )
        target = service.entity_set(nav.target)
        related = self._related(entity_set, record, nav)
        if method == "POST" and entity_set is model.SALES_ORDER and nav_name == "to_Item":
            return self._create_item(request, service, record, user)
        if method not in ("GET", "HEAD"):
            raise _not_allowed(method)
        self._require_json(request)
        if nav.many:
            return self._collection(request, service, target, related)
        if not related:
            return self._json({"d": None})
        select, expand = self._select_expand(request, target)
        return self._json({"d": self._render(request, service, target, related[0], select, expand)})

    def _related(
        self, entity_set: EntitySet, record: dict[str, Any], nav: Any
    ) -> list[dict[str, Any]]:
        rows = self.tables[nav.target].values()
        return [r for r in rows if all(r.get(t) == record.get(s) for s, t in nav.link)]

    def _render(
        self,
        request: Request,
        service: Service,
        entity_set: EntitySet,
        record: dict[str, Any],
        select: list[str],
        expand: list[str],
    ) -> dict[str, Any]:
        root = f"{request.host_url.rstrip('/')}{ODATA_ROOT}/{service.name}"
        uri = (
            f"{root}/{entity_set.name}{quote(key_predicate(entity_set, record), safe=chars_safe())}"
        )
        metadata: dict[str, Any] = {
            "id": uri,
            "uri": uri,
            "type": f"{service.name}.{entity_set.type_name}",
        }
        etag = self._etag(entity_set, record)
        if etag:
            metadata["etag"] = etag
        top = {s.split("/", 1)[0] for s in select}
        everything = not select or "*" in top
        body: dict[str, Any] = {"__metadata": metadata}
        for prop in entity_set.props:
            if everything or prop.name in top:
                body[prop.name] = to_json(prop, record.get(prop.name), record)
        for nav in entity_set.navs:
            if nav.name in expand:
                target = service.entity_set(nav.target)
                nested = [s.split("/", 1)[1] for s in select if s.startswith(nav.name + "/")]
                related = sort_records(target, self._related(entity_set, record, nav), [])
                rendered = [self._render(request, service, target, r, nested, []) for r in related]
                body[nav.name] = (
                    {"results": rendered} if nav.many else (rendered[0] if rendered else None)
                )
            elif everything or nav.name in top:
                body[nav.name] = {"__deferred": {"uri": f"{uri}/{nav.name}"}}
        return body

    def _etag(self, entity_set: EntitySet, record: dict[str, Any]) -> str | None:
        prop = entity_set.etag_prop
        if prop is not None and record.get(prop.name) is not None:
            return etag_for(record[prop.name])
        if entity_set is model.SALES_ORDER_ITEM:
            # Items are locked with their order: the order's time stamp guards them too.
            order = self.tables["A_SalesOrder"].get((record["SalesOrder"],))
            if order is not None:
                return etag_for(order["LastChangeDateTime"])
        return None

    # ---- writing -------------------------------------------------------------------------------
    def _create(
        self, request: Request, service: Service, entity_set: EntitySet, user: str
    ) -> Response:
        if entity_set is not model.SALES_ORDER:
            raise ODataError(
                405,
                "ZSANDBOX/405",
                f"Creating {entity_set.name} is not implemented in the sandbox (the hub only reads it)",
            )
        self._require_json(request)
        payload = self._payload(request)
        order = self._create_order(payload, user)
        body = self._render(request, service, entity_set, order, [], ["to_Item", "to_Partner"])
        response = self._json({"d": body}, 201)
        response.headers["Location"] = body["__metadata"]["uri"]
        response.headers["ETag"] = body["__metadata"]["etag"]
        return response

    def _create_order(self, payload: dict[str, Any], user: str) -> dict[str, Any]:
        entity_set = model.SALES_ORDER
        items_raw = _nav_rows(payload.get("to_Item", []), "to_Item")
        partners_raw = _nav_rows(payload.get("to_Partner", []), "to_Partner")
        if payload.get("SalesOrder"):
            raise bad_request(
                "Sales order numbers are assigned internally; leave SalesOrder empty",
                code="ZSANDBOX/SO_NUMBER",
                target="SalesOrder",
            )
        order = self._assign(
            entity_set,
            {},
            {k: v for k, v in payload.items() if k not in ("SalesOrder", "to_Item", "to_Partner")},
            "create",
        )
        for name in HEADER_REQUIRED:
            if not order.get(name):
                raise bad_request(
                    f"Enter a value for field {name}", code="ZSANDBOX/REQUIRED", target=name
                )
        now = self._stamp()
        order["SalesOrder"] = self._next_order_number()
        order.setdefault("SalesOrderDate", _today())
        order.setdefault("PricingDate", order["SalesOrderDate"])
        order.setdefault("TransactionCurrency", self.default_currency)
        order.update(
            CreationDate=_today(),
            CreatedByUser=user[:12].upper(),
            LastChangeDateTime=now,
            LastChangeDate=_today(),
            OverallSDProcessStatus="A",
            OverallTotalDeliveryStatus="A",
            TotalCreditCheckStatus="",
        )
        items = [self._new_item(order, raw, index) for index, raw in enumerate(items_raw)]
        numbers = [item["SalesOrderItem"] for item in items]
        if len(set(numbers)) != len(numbers):
            raise bad_request(
                "Item numbers must be unique within the order", code="ZSANDBOX/ITEM_DUP"
            )
        partners = []
        for raw in partners_raw:
            partner = self._assign(model.SALES_ORDER_PARTNER, {}, raw, "create")
            if not partner.get("PartnerFunction"):
                raise bad_request(
                    "Enter a partner function", code="ZSANDBOX/REQUIRED", target="PartnerFunction"
                )
            partner["SalesOrder"] = order["SalesOrder"]
            partners.append(partner)
        # All checks passed: commit the whole document (a deep insert is all or nothing).
        self.tables["A_SalesOrder"][(order["SalesOrder"],)] = order
        for item in items:
            self.tables["A_SalesOrderItem"][(order["SalesOrder"], item["SalesOrderItem"])] = item
        for partner in partners:
            self.tables["A_SalesOrderHeaderPartner"][
                (order["SalesOrder"], partner["PartnerFunction"])
            ] = partner
        order["TotalNetAmount"] = self._total(order["SalesOrder"])
        return order

    def _new_item(
        self, order: dict[str, Any], raw: dict[str, Any], index: int, taken: Iterable[str] = ()
    ) -> dict[str, Any]:
        item = self._assign(model.SALES_ORDER_ITEM, {}, raw, "create")
        if not item.get("SalesOrderItem"):
            numbers = [int(n) for n in taken if n.isdigit()]
            item["SalesOrderItem"] = str((max(numbers) if numbers else 0) + 10 * (index + 1))
        material = item.get("Material")
        if not material:
            raise bad_request("Enter a material", code="ZSANDBOX/REQUIRED", target="Material")
        product = self.tables["A_Product"].get((material,))
        if product is None:
            raise bad_request(
                f"Material {material} does not exist", code="ZSANDBOX/MATERIAL", target="Material"
            )
        quantity = item.get("RequestedQuantity")
        if quantity is None or quantity <= 0:
            raise bad_request(
                "Enter a requested quantity greater than zero",
                code="ZSANDBOX/QUANTITY",
                target="RequestedQuantity",
            )
        item["SalesOrder"] = order["SalesOrder"]
        item.setdefault("RequestedQuantityUnit", product.get("BaseUnit") or "PC")
        item.setdefault("PricingDate", order.get("PricingDate"))
        item["TransactionCurrency"] = order["TransactionCurrency"]
        item["NetAmount"] = self._price(order, item)
        item["SDProcessStatus"] = "A"
        item["DeliveryStatus"] = "A"
        return item

    def _create_item(
        self, request: Request, service: Service, order: dict[str, Any], user: str
    ) -> Response:
        self._require_json(request)
        payload = self._payload(request)
        taken = [i["SalesOrderItem"] for i in self._items(order["SalesOrder"])]
        item = self._new_item(order, payload, 0, taken)
        if item["SalesOrderItem"] in taken:
            raise bad_request(
                f"Item {item['SalesOrderItem']} already exists", code="ZSANDBOX/ITEM_DUP"
            )
        self.tables["A_SalesOrderItem"][(order["SalesOrder"], item["SalesOrderItem"])] = item
        self._touch_order(order)
        body = self._render(request, service, model.SALES_ORDER_ITEM, item, [], [])
        response = self._json({"d": body}, 201)
        response.headers["Location"] = body["__metadata"]["uri"]
        response.headers["ETag"] = body["__metadata"]["etag"]
        return response

    def _update(
        self,
        request: Request,
        method: str,
        service: Service,
        entity_set: EntitySet,
        record: dict[str, Any],
        user: str,
    ) -> Response:
        if entity_set not in (model.SALES_ORDER, model.SALES_ORDER_ITEM):
            raise ODataError(
                405, "ZSANDBOX/405", f"Updating {entity_set.name} is not implemented in the sandbox"
            )
        self._check_if_match(request, service, entity_set, record)
        payload = self._payload(request)
        for nav in entity_set.navs:
            if nav.name in payload:
                raise bad_request(
                    f"Deep updates ({nav.name}) are not supported", code="/IWBEP/CM_MGW_RT/021"
                )
        updated = self._assign(
            entity_set, dict(record), payload, "replace" if method == "PUT" else "update"
        )
        if entity_set is model.SALES_ORDER:
            for name in HEADER_REQUIRED:
                if not updated.get(name):
                    raise bad_request(
                        f"Enter a value for field {name}", code="ZSANDBOX/REQUIRED", target=name
                    )
        record.clear()
        record.update(updated)
        if entity_set is model.SALES_ORDER:
            for item in self._items(record["SalesOrder"]):
                item["TransactionCurrency"] = record["TransactionCurrency"]
                item["NetAmount"] = self._price(record, item)
            self._touch_order(record)
        else:
            order = self.tables["A_SalesOrder"][(record["SalesOrder"],)]
            record["NetAmount"] = self._price(order, record)
            self._touch_order(order)
        response = Response(status=204)
        etag = self._etag(entity_set, record)
        if etag:
            response.headers["ETag"] = etag
        return response

    def _delete(
        self, request: Request, service: Service, entity_set: EntitySet, record: dict[str, Any]
    ) -> Response:
        if entity_set not in (model.SALES_ORDER, model.SALES_ORDER_ITEM):
            raise ODataError(
                405, "ZSANDBOX/405", f"Deleting {entity_set.name} is not implemented in the sandbox"
            )
        self._check_if_match(request, service, entity_set, record)
        if entity_set is model.SALES_ORDER:
            self._delete_order_children(record["SalesOrder"])
            del self.tables["A_SalesOrder"][(record["SalesOrder"],)]
        else:
            del self.tables["A_SalesOrderItem"][(record["SalesOrder"], record["SalesOrderItem"])]
            self._touch_order(self.tables["A_SalesOrder"][(record["SalesOrder"],)])
        return Response(status=204)

    def _check_if_match(
        self, request: Request, service: Service, entity_set: EntitySet, record: dict[str, Any]
    ) -> None:
        header = request.headers.get("If-Match")
        current = self._etag(entity_set, record)
        if not header:
            raise ODataError(
                428,
                "SADL_ENTITY_RUNTIME/004",
                f"Precondition required for entity {service.name}~{entity_set.name.upper()} (If-Match missing)",
            )
        if header.strip() == "*" or current is None:
            return
        offered = {unquote(part.strip()) for part in _split_etags(header)}
        if unquote(current) not in offered:
            raise ODataError(
                412,
                "/IWBEP/CM_MGW_RT/190",
                "State of the resource (entity) was already changed (If-Match)",
            )

    def _payload(self, request: Request) -> dict[str, Any]:
        raw = request.get_data(cache=True)
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad_request(
                f"Malformed request body: {exc.msg if hasattr(exc, 'msg') else exc}",
                code="/IWBEP/CM_MGW_RT/008",
            ) from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object", code="/IWBEP/CM_MGW_RT/008")
        if "d" in body and isinstance(body["d"], dict) and len(body) == 1:
            body = body["d"]
        body.pop("__metadata", None)
        return body

    def _assign(
        self, entity_set: EntitySet, record: dict[str, Any], payload: dict[str, Any], mode: str
    ) -> dict[str, Any]:
        """Apply payload values to a record as SAP does for ``mode`` create | update | replace."""
        result = dict(record)
        for name, raw in payload.items():
            if name == "__metadata":
                continue
            if name in entity_set.nav_by_name:
                raise bad_request(
                    f"Navigation property {name} cannot be written here",
                    code="/IWBEP/CM_MGW_RT/021",
                )
            if name not in entity_set.by_name:
                raise bad_request(
                    f"Property '{name}' is invalid", code="/IWBEP/CM_MGW_RT/021", target=name
                )
            prop = entity_set.by_name[name]
            try:
                value = from_json(prop, raw)
            except ValueError as exc:
                raise bad_request(str(exc), code="/IWBEP/CM_MGW_RT/021", target=name) from None
            if mode == "create":
                if not prop.creatable and value not in (None, ""):
                    raise bad_request(
                        f"Property '{name}' is read-only and cannot be set",
                        code="ZSANDBOX/READ_ONLY",
                        target=name,
                    )
                if prop.creatable:
                    result[name] = value
                continue
            if name in entity_set.keys:
                if not _same(value, record.get(name)):
                    raise bad_request(
                        f"Key property '{name}' cannot be changed", code="ZSANDBOX/KEY", target=name
                    )
                continue
            if not prop.updatable:
                # Echoing an unchanged read-only value (a fetched entity sent back) is harmless.
                if not _same(value, record.get(name)):
                    raise bad_request(
                        f"Property '{name}' is read-only and cannot be changed",
                        code="ZSANDBOX/READ_ONLY",
                        target=name,
                    )
                continue
            result[name] = value
        if mode == "replace":
            for prop in entity_set.props:
                if prop.updatable and prop.name not in payload and prop.name not in entity_set.keys:
                    result[prop.name] = None
        return result

    # ---- business logic ------------------------------------------------------------------------
    def _items(self, order_number: str) -> list[dict[str, Any]]:
        return [r for (so, _), r in self.tables["A_SalesOrderItem"].items() if so == order_number]

    def _total(self, order_number: str) -> Decimal:
        return sum(
            (
                i.get("NetAmount") or Decimal(0)
                for i in self._items(order_number)
                if not i.get("SalesDocumentRjcnReason")
            ),
            Decimal(0),
        )

    def _price(self, order: dict[str, Any], item: dict[str, Any]) -> Decimal:
        """Net value from the price (``PPR0``/``PR00``) valid on the pricing date
        (customer-specific first)."""
        quantity = item.get("RequestedQuantity") or Decimal(0)
        on = item.get("PricingDate") or order.get("PricingDate") or _today()
        best: tuple[int, dict[str, Any]] | None = None
        for validity in self.tables["A_SlsPrcgCndnRecdValidity"].values():
            condition = self.tables["A_SlsPrcgConditionRecord"].get((validity["ConditionRecord"],))
            if condition is None or condition.get("ConditionIsDeleted"):
                continue
            condition_type = validity.get("ConditionType") or condition.get("ConditionType")
            if condition_type not in PRICE_CONDITION_TYPES:
                continue
            if validity.get("Material") != item.get("Material"):
                continue
            if any(
                validity.get(f) and validity.get(f) != order.get(o)
                for f, o in (
                    ("SalesOrganization", "SalesOrganization"),
                    ("DistributionChannel", "DistributionChannel"),
                )
            ):
                continue
            customer = validity.get("Customer")
            if customer and customer != order.get("SoldToParty"):
                continue
            start = validity.get("ConditionValidityStartDate") or dt.datetime.min.replace(
                tzinfo=UTC
            )
            if not (start <= on <= validity["ConditionValidityEndDate"]):
                continue
            if condition.get("ConditionRateValueUnit") != order.get("TransactionCurrency"):
                continue
            rank = 0 if customer else 1
            if best is None or rank < best[0]:
                best = (rank, condition)
        if best is None:
            return Decimal(0)
        condition = best[1]
        per = condition.get("ConditionQuantity") or Decimal(1)
        return (quantity * (condition.get("ConditionRateValue") or Decimal(0)) / per).quantize(
            Decimal("0.001")
        )

    def _touch_order(self, order: dict[str, Any]) -> None:
        order["TotalNetAmount"] = self._total(order["SalesOrder"])
        order["LastChangeDateTime"] = self._stamp()
        order["LastChangeDate"] = _today()

    def _after_change(self, entity_set: EntitySet, record: dict[str, Any]) -> None:
        if entity_set is model.SALES_ORDER_ITEM:
            order = self.tables["A_SalesOrder"].get((record["SalesOrder"],))
            if order is not None:
                record["NetAmount"] = self._price(order, record)
                self._touch_order(order)
        elif entity_set is model.SALES_ORDER:
            self._touch_order(record)
        elif "LastChangeDateTime" in entity_set.by_name:
            record["LastChangeDateTime"] = self._stamp()

    def _delete_order_children(self, order_number: str) -> None:
        for table in ("A_SalesOrderItem", "A_SalesOrderHeaderPartner"):
            for key in [k for k in self.tables[table] if k[0] == order_number]:
                del self.tables[table][key]

    def _next_order_number(self) -> str:
        numbers = [int(k[0]) for k in self.tables["A_SalesOrder"] if str(k[0]).isdigit()]
        return str(max(numbers, default=0) + 1)

    def _next_item_number(self, order_number: str) -> str:
        numbers = [
            int(i["SalesOrderItem"])
            for i in self._items(order_number)
            if i["SalesOrderItem"].isdigit()
        ]
        return str(max(numbers, default=0) + 10)

    def _stamp(self) -> dt.datetime:
        """Now, strictly later than any earlier stamp (so every change is visible to a delta)."""
        now = dt.datetime.now(UTC)
        if now <= self._last_stamp:
            now = self._last_stamp + dt.timedelta(microseconds=1)
        self._last_stamp = now
        return now

    def _key_from_mapping(self, entity_set: EntitySet, key: dict[str, Any]) -> tuple[Any, ...]:
        if set(key) != set(entity_set.keys):
            raise ValueError(f"{entity_set.name} is keyed by {', '.join(entity_set.keys)}")
        return tuple(self._seed_value(entity_set.prop(name), key[name]) for name in entity_set.keys)

    # ---- product availability ------------------------------------------------------------------
    def _function(
        self, request: Request, method: str, service: Service, function: FunctionImport
    ) -> Response:
        if method not in ("GET", "HEAD"):
            raise _not_allowed(method)
        self._require_json(request)
        params: dict[str, Any] = {}
        for param in function.params:
            raw = request.args.get(param.name)
            if raw is None:
                raise bad_request(
                    f"Parameter '{param.name}' of function import {function.name} is missing",
                    code="/IWBEP/CM_MGW_RT/010",
                )
            tokens = tokenize(raw) if raw else []
            if len(tokens) != 1 or tokens[0].kind != "literal":
                raise bad_request(
                    f"Parameter '{param.name}' has an invalid value", code="/IWBEP/CM_MGW_RT/010"
                )
            literal = tokens[0].value
            prop = Prop(
                param.name,
                param.type,
                max_length=param.max_length,
                precision=param.precision,
                scale=param.scale,
            )
            value = literal_value(prop, literal, f"parameter {param.name}")
            if isinstance(value, str) and param.max_length and len(value) > param.max_length:
                raise bad_request(
                    f"Value of parameter '{param.name}' is too long", code="/IWBEP/CM_MGW_RT/010"
                )
            if isinstance(value, Decimal):
                try:
                    check_decimal(param, value, raw)
                except ValueError as exc:
                    raise bad_request(str(exc), code="/IWBEP/CM_MGW_RT/010") from None
            params[param.name] = value
        material = normalize_alpha(model.PRODUCT.prop("Product"), params["Material"])
        plant = params["SupplyingPlant"]
        if (material, plant) not in self.tables["A_ProductPlant"]:
            raise bad_request(
                f"Material {material} is not maintained in plant {plant}", code="ZSANDBOX/ATP_PLANT"
            )
        available, unit = self._available(material, plant)
        now = dt.datetime.now(UTC).replace(microsecond=0)
        record_type = f"{service.name}.{function.return_type}"
        complex_type = service.complex_types[function.return_type]

        def availability_record(start: dt.datetime, quantity: Decimal) -> dict[str, Any]:
            values = {
                "PeriodStartUTCDateTime": start,
                "PeriodStartTimeZone": "UTC",
                "PeriodEndUTCDateTime": END_OF_TIME,
                "PeriodEndTimeZone": "UTC",
                "AvailableQuantityInBaseUnit": quantity,
                "BaseUnit": unit,
            }
            out: dict[str, Any] = {"__metadata": {"type": record_type}}
            out.update({p.name: to_json(p, values[p.name], values) for p in complex_type.props})
            return out

        if function.name == "CalculateAvailabilityTimeseries":
            return self._json({"d": {"results": [availability_record(now, available)]}})
        if function.name == "DetermineAvailabilityAt":
            at = max(params["RequestedUTCDateTime"], now)
            return self._json({"d": {function.name: availability_record(at, available)}})
        requested: Decimal = params["RequestedQuantityInBaseUnit"]
        if requested <= available:
            return self._json({"d": {function.name: availability_record(now, requested)}})
        # Without planned receipts the shortfall never becomes available.
        return self._json({"d": {function.name: availability_record(END_OF_TIME, available)}})

    def _available(self, material: str, plant: str) -> tuple[Decimal, str]:
        """Stock less open order demand (the quantity not yet promised to other orders)."""
        stock = self.stock.get((material, plant))
        product = self.tables["A_Product"].get((material,))
        unit = (stock or {}).get("BaseUnit") or (product or {}).get("BaseUnit") or "PC"
        quantity = stock["qty"] if stock else Decimal(0)
        for item in self.tables["A_SalesOrderItem"].values():
            order = self.tables["A_SalesOrder"].get((item["SalesOrder"],))
            if (
                order is None
                or item.get("Material") != material
                or item.get("ProductionPlant") != plant
                or item.get("SalesDocumentRjcnReason")
                or (order.get("OverallSDProcessStatus") or "") not in OPEN_STATUSES
                or (item.get("SDProcessStatus") or "") not in OPEN_STATUSES
            ):
                continue
            quantity -= item.get("RequestedQuantity") or Decimal(0)
        return max(quantity, Decimal(0)), unit

    # ---- responses -----------------------------------------------------------------------------
    def _json(self, body: Any, status: int = 200) -> Response:
        return Response(
            json.dumps(body, separators=(",", ":")),
            status=status,
            content_type="application/json; charset=utf-8",
        )

    def error(self, status: int, code: str, message: str) -> Response:
        return self.sap_error(status, code, message, None, "")

    def sap_error(
        self, status: int, code: str, message: str, service: Service | None, target: str
    ) -> Response:
        """SAP Gateway's V2 JSON error body."""
        if status == 403 and code == "CSRF":
            return Response(
                "CSRF token validation failed",
                status=403,
                content_type="text/plain; charset=utf-8",
                headers={"x-csrf-token": "Required", "sap-server": "true"},
            )
        now = dt.datetime.now(UTC)
        inner: dict[str, Any] = {}
        if service is not None:
            inner["application"] = {
                "component_id": service.component,
                "service_namespace": "/SAP/",
                "service_id": service.name,
                "service_version": service.version,
            }
        inner.update(
            transactionid=uuid.uuid4().hex.upper(),
            timestamp=f"{now:%Y%m%d%H%M%S}.{now.microsecond:06d}0",
            Error_Resolution={"SAP_Transaction": "", "SAP_Note": SAP_NOTE},
            errordetails=[
                {
                    "code": code,
                    "message": message,
                    "propertyref": "",
                    "severity": "error",
                    "target": target,
                    "transition": False,
                }
            ],
        )
        body = {
            "error": {
                "code": code,
                "message": {"lang": "en", "value": message},
                "innererror": inner,
            }
        }
        return json_response(
            body,
            status,
            headers={"sap-server": "true"},
            content_type="application/json; charset=utf-8",
        )


class _CsrfRequired(ODataError):
    def __init__(self) -> None:
        super().__init__(403, "CSRF", "CSRF token validation failed")


def _not_allowed(method: str) -> ODataError:
    return ODataError(
        405, "/IWBEP/CM_MGW_RT/006", f"Method '{method}' is not allowed for this resource"
    )


def _nav_rows(raw: Any, name: str) -> list[dict[str, Any]]:
    """Deep insert and seed children: ``[...]`` or V2's ``{"results": [...]}``."""
    if isinstance(raw, dict) and isinstance(raw.get("results"), list):
        raw = raw["results"]
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise bad_request(
            f"{name} must be a list of objects", code="/IWBEP/CM_MGW_RT/021", target=name
        )
    return raw


def _same(a: Any, b: Any) -> bool:
    """Equal as V2 JSON can express it (date/times to the millisecond)."""
    if isinstance(a, dt.datetime) and isinstance(b, dt.datetime):
        return epoch_ms(a) == epoch_ms(b)
    return bool(a == b)


def _non_negative(args: Any, name: str) -> int | None:
    raw = args.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise bad_request(f"Invalid value '{raw}' for {name}: a non-negative integer is expected")
    return int(raw)


def _today() -> dt.datetime:
    return dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _raw_path(request: Request) -> str:
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        path = raw.split("?", 1)[0]
        if "://" in path:  # absolute-form request target
            path = "/" + path.split("://", 1)[1].split("/", 1)[-1]
        return path
    return quote(request.path)


def _segments(raw_path: str) -> list[str]:
    """Path segments after ``/sap/opu/odata/sap/<SERVICE>``, split on '/' outside quoted key
    literals (a key may contain an encoded '/'), then percent-decoded."""
    segments: list[str] = []
    current: list[str] = []
    quoted = False
    for char in raw_path:
        if char == "'":
            quoted = not quoted
        if char == "/" and not quoted:
            segments.append(unquote("".join(current)))
            current = []
        else:
            current.append(char)
    segments.append(unquote("".join(current)))
    # "", "sap", "opu", "odata", "sap", "<SERVICE>", then the resource path
    return [s for s in segments[6:] if s != ""]


def _split_segment(segment: str) -> tuple[str, str | None]:
    if segment.endswith(")") and "(" in segment:
        name, _, predicate = segment.partition("(")
        return name, predicate[:-1]
    return segment, None


def _split_etags(header: str) -> list[str]:
    parts: list[str] = []
    current = ""
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def chars_safe() -> str:
    # SAP percent-encodes ':' inside key literals (datetime'9999-12-31T00%3A00%3A00').
    return "()'=,"
