"""SAP S/4HANA over its OData V2 APIs (communication arrangement SAP_COM_0109 and friends).

What the hub does with SAP, and how this client keeps it safe:

- **Reads** (``changed_since``, ``read_all``) page by *keyset*, never by ``$skip``: a record that
  changes while we page moves to the end of a ``LastChangeDateTime`` ordering, and with
  ``$skip`` the record behind it would silently shift into a page already read. V2 JSON shows
  time stamps to the millisecond while SAP compares them to 100 ns, so the client drains each
  millisecond window in key order before moving past it; nothing is skipped and nothing is
  delivered twice within one run.
- **Types** come from the service's ``$metadata`` (fetched once per service): ``Edm.Decimal``
  strings become ``Decimal``, ``/Date(ms)/`` and ``/Date(ms+0000)/`` become aware UTC
  ``datetime``. Money is never a float, on the way in or out.
- **Writes** carry a CSRF token fetched with ``X-CSRF-Token: Fetch`` and the security-session
  cookie that came with it (the ``requests`` session keeps cookies). A ``403`` answered with
  ``X-CSRF-Token: Required`` (session timed out) fetches a new token and resends once.
- **Sales order create** is idempotent by ``PurchaseOrderByCustomer``, which carries the Quoting
  Tool's quote id: an existing order with that reference is returned instead of a second one,
  and when the outcome of a POST is unknown (connection lost, 5xx after the order may have
  been saved) the reference is looked up before anything is resent.
- **Updates** send ``If-Match`` with the ETag read earlier. A ``412`` raises ``EtagConflict``
  carrying the current order, so the caller applies its conflict rule and retries.
- **Errors**: ``TransientError`` for 408/429/5xx/timeouts (after ``HttpClient``'s bounded
  retries), ``PermanentError`` with SAP's own message for other 4xx.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn
from urllib.parse import quote

import requests

from shared.errors import HubError, PermanentError, TransientError
from shared.http import HttpClient, parse_retry_after
from shared.log import register_secret

log = logging.getLogger(__name__)

ODATA_ROOT = "/sap/opu/odata/sap"
SALES_ORDER_SERVICE = "API_SALES_ORDER_SRV"
PRODUCT_SERVICE = "API_PRODUCT_SRV"
AVAILABILITY_SERVICE = "API_PRODUCT_AVAILY_INFO_BASIC"
SALES_ORDERS = f"{SALES_ORDER_SERVICE}/A_SalesOrder"
SALES_ORDER_ITEMS = f"{SALES_ORDER_SERVICE}/A_SalesOrderItem"
PRODUCTS = f"{PRODUCT_SERVICE}/A_Product"
PRODUCT_PLANTS = f"{PRODUCT_SERVICE}/A_ProductPlant"
PRICE_CONDITIONS = "API_SLSPRICINGCONDITIONRECORD_SRV/A_SlsPrcgConditionRecord"
PRICE_VALIDITIES = "API_SLSPRICINGCONDITIONRECORD_SRV/A_SlsPrcgCndnRecdValidity"
EQUIPMENT = "API_EQUIPMENT/Equipment"
DEFAULT_PAGE_SIZE = 500
MAX_METADATA_BYTES = 8 * 1024 * 1024
_TRANSIENT = frozenset({408, 429})
_JSON_DATE = re.compile(r"^/Date\((-?\d+)(?:([+-])(\d{4}))?\)/$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)

Password = str | Callable[[], str]


class EtagConflict(HubError):
    """SAP refused an update because the record changed since it was read (HTTP 412).

    ``current`` is the record as it is now (with its new ETag). This is neither transient (a
    blind retry fails the same way) nor permanent (a retry with the current ETag may succeed):
    the caller applies its conflict rule to ``current`` and decides.
    """

    def __init__(self, message: str, current: SalesOrder) -> None:
        super().__init__(message)
        self.current = current


class _AmbiguousOutcome(Exception):
    """Internal: a create may have been committed but its answer was lost."""


@dataclass(frozen=True)
class SapRecord:
    """One entity: its properties with Python values, and its ETag when it has one."""

    data: dict[str, Any]
    etag: str | None
    entity_type: str

    def __getitem__(self, name: str) -> Any:
        return self.data[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)


@dataclass(frozen=True)
class SalesOrder:
    """A sales order header with its items; ``created`` says this call created it."""

    number: str
    etag: str | None
    header: dict[str, Any]
    items: list[dict[str, Any]]
    partners: list[dict[str, Any]] = field(default_factory=list)
    created: bool = False


@dataclass(frozen=True)
class ChangePage:
    """One page of changed records.

    ``high_watermark`` is the latest change stamp seen so far in this run (to the
    millisecond); saved after the page is durably processed, it is the next run's ``since``.
    ``total`` is how many records matched when the run started (``$inlinecount``).
    """

    records: list[SapRecord]
    high_watermark: dt.datetime | None
    total: int | None


@dataclass(frozen=True)
class Availability:
    """Available-to-promise quantity of a material at a plant."""

    material: str
    plant: str
    quantity: Decimal
    unit: str
    available_from: dt.datetime


@dataclass(frozen=True)
class _Type:
    name: str
    properties: dict[str, str]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class _Schema:
    types: dict[str, _Type]  # qualified name -> type (entity and complex types)
    sets: dict[str, str]  # entity set -> qualified type name

    def entity_type(self, entity_set: str) -> _Type:
        try:
            return self.types[self.sets[entity_set]]
        except KeyError:
            raise PermanentError(
                f"SAP service has no entity set {entity_set}", code="404"
            ) from None


class SapClient:
    """The hub's SAP S/4HANA client on top of ``HttpClient``.

    Authenticate either as a communication user (``username`` with ``password``: the secret's
    value, or a callable returning it, such as ``lambda: secrets.get(name)``) or with a bearer
    token (``HttpClient`` built with ``token=``). ``on_unauthorized`` runs when SAP refuses the
    password (typically ``SecretProvider.invalidate``) before one retry with a freshly read one.
    ``sap_client`` adds ``sap-client=<n>`` to every request for systems with several clients.
    """

    def __init__(
        self,
        http: HttpClient,
        base_url: str,
        *,
        username: str | None = None,
        password: Password | None = None,
        on_unauthorized: Callable[[], None] | None = None,
        sap_client: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if http.token is None and (not username or password is None):
            raise ValueError(
                "SapClient needs username and password, or an HttpClient with a token source"
            )
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._http = http
        self._base = base_url.rstrip("/")
        self._username = username
        self._password = password
        self._on_unauthorized = on_unauthorized
        self._sap_client = sap_client
        self.page_size = page_size
        self._lock = threading.Lock()
        self._schemas: dict[str, _Schema] = {}
        self._csrf: dict[str, str] = {}

    # ---- reading -------------------------------------------------------------------------------
    def changed_since(
        self,
        path: str,
        since: dt.datetime,
        *,
        page_size: int | None = None,
        field_name: str = "LastChangeDateTime",
        filter_expr: str | None = None,
        expand: Sequence[str] = (),
        select: Sequence[str] = (),
    ) -> Iterator[ChangePage]:
        """Pages of records of ``path`` (``"<SERVICE>/<EntitySet>"``) changed after ``since``.

        Records come in ascending change order. ``since`` is exclusive; records stamped in the
        same millisecond as ``since`` but later may be delivered again (at least once). Save
        ``page.high_watermark`` only after the page is committed; start the next run a little
        earlier (an overlap) if SAP transactions can commit out of stamp order.
        """
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        size = page_size or self.page_size
        service, entity_set = _split_path(path)
        schema = self._schema(service)
        etype = schema.entity_type(entity_set)
        field_type = etype.properties.get(field_name)
        if field_type not in ("Edm.DateTimeOffset", "Edm.DateTime"):
            raise PermanentError(f"{path} has no change stamp {field_name}", code="400")
        base = f"({filter_expr})" if filter_expr else None
        select = _selecting(select, (*etype.keys, field_name))
        after = f"{field_name} gt {literal(field_type, since.astimezone(dt.UTC))}"
        order_by = ",".join([f"{field_name} asc", *(f"{k} asc" for k in etype.keys)])
        key_order = ",".join(f"{k} asc" for k in etype.keys)
        high: dt.datetime | None = None
        total: int | None = None
        first = True
        while True:
            body = self._query(
                service,
                entity_set,
                filter_expr=_and(base, after),
                order_by=order_by,
                top=size,
                expand=expand,
                select=select,
                count=first,
            )
            if first:
                total = _count(body)
                first = False
            records = [self._record(schema, row, etype) for row in body["results"]]
            if not records:
                return
            high = _latest(high, records, field_name)
            yield ChangePage(records, high, total)
            if len(records) < size and "__next" not in body:
                return
            window = _ms_floor(records[-1].data[field_name])
            seen = {_key(r, etype) for r in records if _ms_floor(r.data[field_name]) == window}
            window_filter = (
                f"{field_name} ge {literal(field_type, window)} and "
                f"{field_name} lt {literal(field_type, window + _ONE_MS)}"
            )
            cursor: tuple[Any, ...] | None = None
            while True:
                clauses = _and(base, window_filter)
                if cursor is not None:
                    clauses = _and(clauses, _after_key(etype, cursor))
                body = self._query(
                    service,
                    entity_set,
                    filter_expr=clauses,
                    order_by=key_order,
                    top=size,
                    expand=expand,
                    select=select,
                )
                rows = [self._record(schema, row, etype) for row in body["results"]]
                fresh = [r for r in rows if _key(r, etype) not in seen]
                if fresh:
                    high = _latest(high, fresh, field_name)
                    yield ChangePage(fresh, high, total)
                if len(rows) < size and "__next" not in body:
                    break
                if not rows:
                    break
                cursor = _key(rows[-1], etype)
            after = f"{field_name} ge {literal(field_type, window + _ONE_MS)}"

    def read_all(
        self,
        path: str,
        *,
        filter_expr: str | None = None,
        page_size: int | None = None,
        expand: Sequence[str] = (),
        select: Sequence[str] = (),
    ) -> Iterator[list[SapRecord]]:
        """Every record of ``path`` matching ``filter_expr``, in key order, page by page.

        For data without a change stamp (pricing conditions) and for full resynchronisation.
        """
        size = page_size or self.page_size
        service, entity_set = _split_path(path)
        schema = self._schema(service)
        etype = schema.entity_type(entity_set)
        base = f"({filter_expr})" if filter_expr else None
        select = _selecting(select, etype.keys)
        order_by = ",".join(f"{k} asc" for k in etype.keys)
        cursor: tuple[Any, ...] | None = None
        while True:
            clauses = base if cursor is None else _and(base, _after_key(etype, cursor))
            body = self._query(
                service,
                entity_set,
                filter_expr=clauses,
                order_by=order_by,
                top=size,
                expand=expand,
                select=select,
            )
            records = [self._record(schema, row, etype) for row in body["results"]]
            if records:
                yield records
            if not records or (len(records) < size and "__next" not in body):
                return
            cursor = _key(records[-1], etype)

    def get_sales_order(self, number: str, *, expand_items: bool = True) -> SalesOrder:
        """One sales order with its ETag (and its items and partners unless told otherwise)."""
        schema = self._schema(SALES_ORDER_SERVICE)
        etype = schema.entity_type("A_SalesOrder")
        params = {"$expand": "to_Item,to_Partner"} if expand_items else {}
        path = "A_SalesOrder" + _key_predicate(etype, (number,))
        response = self._call("GET", self._url(SALES_ORDER_SERVICE, path), params=params)
        if response.status_code != 200:
            self._fail(response, f"read sales order {number}")
        return self._sales_order(schema, _d(response), etype, created=False)

    def find_sales_order(self, reference: str) -> SalesOrder | None:
        """The order whose ``PurchaseOrderByCustomer`` is ``reference`` (our quote id), if any."""
        schema = self._schema(SALES_ORDER_SERVICE)
        etype = schema.entity_type("A_SalesOrder")
        params = {
            "$filter": f"PurchaseOrderByCustomer eq {literal('Edm.String', reference)}",
            "$orderby": "SalesOrder asc",
            "$expand": "to_Item,to_Partner",
            "$top": "2",
        }
        response = self._call("GET", self._url(SALES_ORDER_SERVICE, "A_SalesOrder"), params=params)
        if response.status_code != 200:
            self._fail(response, "find sales order by reference")
        rows = _d(response).get("results")
        if not isinstance(rows, list) or not rows:
            return None
        if len(rows) > 1:
            log.warning(
                "SAP holds more than one sales order with reference %s; using the first", reference
            )
        return self._sales_order(schema, rows[0], etype, created=False)

    def availability(
        self,
        material: str,
        plant: str | None = None,
        *,
        at: dt.datetime | None = None,
        checking_rule: str = "A",
    ) -> list[Availability]:
        """ATP quantity of ``material`` at ``plant``, or at every plant it is extended to."""
        plants = [plant] if plant else self._plants_of(material)
        when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        schema = self._schema(AVAILABILITY_SERVICE)
        result: list[Availability] = []
        for each in plants:
            params = {
                "SupplyingPlant": literal("Edm.String", each),
                "Material": literal("Edm.String", material),
                "ATPCheckingRule": literal("Edm.String", checking_rule),
                "RequestedUTCDateTime": literal("Edm.DateTimeOffset", when),
            }
            response = self._call(
                "GET", self._url(AVAILABILITY_SERVICE, "DetermineAvailabilityAt"), params=params
            )
            if response.status_code != 200:
                self._fail(response, f"availability of {material} at {each}")
            body = _d(response)
            row = body.get("DetermineAvailabilityAt", body)
            if not isinstance(row, dict):
                raise PermanentError(
                    "SAP availability answer has no AvailabilityRecord", code="502"
                )
            record = self._record(schema, row, None)
            quantity = record.get("AvailableQuantityInBaseUnit")
            start = record.get("PeriodStartUTCDateTime")
            if not isinstance(quantity, Decimal) or not isinstance(start, dt.datetime):
                raise PermanentError("SAP availability answer lacks quantity or period", code="502")
            result.append(
                Availability(material, each, quantity, str(record.get("BaseUnit") or ""), start)
            )
        return result

    # ---- writing -------------------------------------------------------------------------------
    def create_sales_order(
        self,
        header: Mapping[str, Any],
        items: Sequence[Mapping[str, Any]],
        partners: Sequence[Mapping[str, Any]] = (),
    ) -> SalesOrder:
        """Create an order with its items in one deep insert; SAP assigns the number.

        Idempotent by ``header["PurchaseOrderByCustomer"]``: an order with that reference is
        returned (``created=False``) rather than created twice. Without a reference, a create
        whose outcome is unknown raises ``TransientError`` instead of risking a duplicate.
        """
        schema = self._schema(SALES_ORDER_SERVICE)
        etype = schema.entity_type("A_SalesOrder")
        item_type = schema.entity_type("A_SalesOrderItem")
        partner_type = schema.entity_type("A_SalesOrderHeaderPartner")
        body = _to_wire(etype, header)
        body["to_Item"] = [_to_wire(item_type, item) for item in items]
        if partners:
            body["to_Partner"] = [_to_wire(partner_type, p) for p in partners]
        reference = header.get("PurchaseOrderByCustomer") or None
        if reference is not None:
            existing = self.find_sales_order(str(reference))
            if existing is not None:
                log.info("SAP already holds order %s for reference %s", existing.number, reference)
                return existing
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._modify(
                    "POST",
                    SALES_ORDER_SERVICE,
                    "A_SalesOrder",
                    body=body,
                    on_retry=_abort_if_ambiguous,
                )
            except (_AmbiguousOutcome, TransientError) as exc:
                if reference is None:
                    raise TransientError(
                        "SAP may or may not have created the sales order (its answer was lost) and "
                        "without PurchaseOrderByCustomer the hub cannot check; not resending"
                    ) from exc
                found = self.find_sales_order(str(reference))
                if found is not None:
                    log.info(
                        "SAP created order %s for %s although its answer was lost",
                        found.number,
                        reference,
                    )
                    return replace(found, created=True)
                if isinstance(exc, TransientError) or attempt >= self._http.policy.max_attempts:
                    raise TransientError(
                        f"SAP did not create the sales order for {reference}"
                    ) from exc
                self._http.sleep(self._http.policy.delay(attempt, None, self._http.rng))
                continue
            if response.status_code != 201:
                self._fail(response, "create sales order")
            return self._sales_order(schema, _d(response), etype, created=True)

    def update_sales_order(self, number: str, changes: Mapping[str, Any], etag: str) -> str:
        """Change header fields of an order read with ``etag``; returns the new ETag.

        Raises ``EtagConflict`` (with the current order) when SAP's copy changed meanwhile. A
        lost answer to an applied update also surfaces as a conflict, whose ``current`` then
        already holds the change.
        """
        schema = self._schema(SALES_ORDER_SERVICE)
        etype = schema.entity_type("A_SalesOrder")
        path = "A_SalesOrder" + _key_predicate(etype, (number,))
        return self._update(number, path, _to_wire(etype, changes), etag)

    def update_sales_order_item(
        self, number: str, item: str, changes: Mapping[str, Any], etag: str
    ) -> str:
        """Change an item of an order; ``etag`` is the order's (items are locked with it)."""
        schema = self._schema(SALES_ORDER_SERVICE)
        etype = schema.entity_type("A_SalesOrderItem")
        path = "A_SalesOrderItem" + _key_predicate(etype, (number, item))
        return self._update(number, path, _to_wire(etype, changes), etag)

    def _update(self, number: str, path: str, body: dict[str, Any], etag: str) -> str:
        response = self._modify(
            "PATCH", SALES_ORDER_SERVICE, path, body=body, headers={"If-Match": etag}
        )
        if response.status_code == 412:
            current = self.get_sales_order(number)
            raise EtagConflict(f"SAP sales order {number} changed since it was read", current)
        if response.status_code not in (200, 204):
            self._fail(response, f"update sales order {number}")
        new_etag = response.headers.get("ETag")
        if new_etag:
            return new_etag
        current_etag = self.get_sales_order(number, expand_items=False).etag
        if current_etag is None:
            raise PermanentError(f"SAP sales order {number} has no ETag", code="502")
        return current_etag

    # ---- protocol ------------------------------------------------------------------------------
    def _url(self, service: str, path: str = "") -> str:
        return f"{self._base}{ODATA_ROOT}/{service}/{path}"

    def _basic(self) -> tuple[str, str] | None:
        if self._username is None or self._password is None:
            return None
        password = self._password() if callable(self._password) else self._password
        register_secret(password)
        return self._username, password

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[requests.Response | None], None] | None = None,
    ) -> requests.Response:
        sent = {"Accept": "application/json", **(headers or {})}
        query = dict(params or {})
        if self._sap_client:
            query["sap-client"] = self._sap_client
        kwargs: dict[str, Any] = {"params": query}
        if body is not None:
            sent["Content-Type"] = "application/json"
            kwargs["data"] = json.dumps(body, separators=(",", ":")).encode("utf-8")
        for attempt in (1, 2):
            auth = self._basic()
            if auth is not None:
                kwargs["auth"] = auth
            response = self._http.request(method, url, headers=sent, on_retry=on_retry, **kwargs)
            if (
                response.status_code == 401
                and auth is not None
                and attempt == 1
                and self._on_unauthorized
            ):
                # The password may have been rotated: read it again once.
                self._on_unauthorized()
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _modify(
        self,
        method: str,
        service: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        on_retry: Callable[[requests.Response | None], None] | None = None,
    ) -> requests.Response:
        for attempt in (1, 2):
            token = self._csrf_token(service, refresh=attempt == 2)
            response = self._call(
                method,
                self._url(service, path),
                body=body,
                headers={**(headers or {}), "X-CSRF-Token": token},
                on_retry=on_retry,
            )
            if (
                response.status_code == 403
                and response.headers.get("x-csrf-token", "").lower() == "required"
                and attempt == 1
            ):
                log.info(
                    "SAP CSRF token of %s was refused (session ended); fetching a new one", service
                )
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _csrf_token(self, service: str, *, refresh: bool) -> str:
        with self._lock:
            token = self._csrf.get(service)
            if token is not None and not refresh:
                return token
        response = self._call("GET", self._url(service), headers={"X-CSRF-Token": "Fetch"})
        if response.status_code != 200:
            self._fail(response, "fetch CSRF token")
        token = response.headers.get("x-csrf-token", "")
        if not token or token.lower() == "required":
            raise PermanentError(f"SAP sent no CSRF token for {service}", code="403")
        register_secret(token)
        with self._lock:
            self._csrf[service] = token
        return token

    def _query(
        self,
        service: str,
        entity_set: str,
        *,
        filter_expr: str | None,
        order_by: str,
        top: int,
        expand: Sequence[str],
        select: Sequence[str],
        count: bool = False,
    ) -> dict[str, Any]:
        params = {"$orderby": order_by, "$top": str(top)}
        if filter_expr:
            params["$filter"] = filter_expr
        if count:
            params["$inlinecount"] = "allpages"
        if expand:
            params["$expand"] = ",".join(expand)
        if select:
            params["$select"] = ",".join(select)
        response = self._call("GET", self._url(service, entity_set), params=params)
        if response.status_code != 200:
            self._fail(response, f"read {service}/{entity_set}")
        body = _d(response)
        if not isinstance(body.get("results"), list):
            raise PermanentError(f"SAP answer for {entity_set} has no results", code="502")
        return body

    def _schema(self, service: str) -> _Schema:
        with self._lock:
            cached = self._schemas.get(service)
        if cached is not None:
            return cached
        response = self._call(
            "GET", self._url(service, "$metadata"), headers={"Accept": "application/xml"}
        )
        if response.status_code != 200:
            self._fail(response, f"read $metadata of {service}")
        schema = _parse_metadata(response.content, service)
        with self._lock:
            self._schemas[service] = schema
        return schema

    def _plants_of(self, material: str) -> list[str]:
        plants: list[str] = []
        for page in self.read_all(
            PRODUCT_PLANTS,
            filter_expr=f"Product eq {literal('Edm.String', material)}",
            select=("Product", "Plant"),
        ):
            plants.extend(str(r["Plant"]) for r in page)
        if not plants:
            raise PermanentError(
                f"Material {material} is not extended to any plant in SAP", code="404"
            )
        return plants

    def _record(self, schema: _Schema, row: Mapping[str, Any], etype: _Type | None) -> SapRecord:
        metadata = row.get("__metadata")
        type_name = metadata.get("type") if isinstance(metadata, dict) else None
        rtype = schema.types.get(str(type_name)) if type_name else None
        rtype = rtype or etype
        if rtype is None:
            raise PermanentError(f"SAP record of unknown type {type_name}", code="502")
        data: dict[str, Any] = {}
        for name, value in row.items():
            if name == "__metadata":
                continue
            if isinstance(value, dict) and "__deferred" in value:
                continue
            if isinstance(value, dict) and isinstance(value.get("results"), list):
                data[name] = [self._record(schema, child, None).data for child in value["results"]]
                continue
            if isinstance(value, dict) and "__metadata" in value:
                data[name] = self._record(schema, value, None).data
                continue
            data[name] = _from_wire(rtype.properties.get(name, "Edm.String"), value, name)
        etag = metadata.get("etag") if isinstance(metadata, dict) else None
        return SapRecord(data, str(etag) if etag else None, rtype.name)

    def _sales_order(
        self, schema: _Schema, row: Mapping[str, Any], etype: _Type, *, created: bool
    ) -> SalesOrder:
        record = self._record(schema, row, etype)
        header = {k: v for k, v in record.data.items() if k not in ("to_Item", "to_Partner")}
        items = record.data.get("to_Item")
        partners = record.data.get("to_Partner")
        return SalesOrder(
            number=str(header["SalesOrder"]),
            etag=record.etag,
            header=header,
            items=items if isinstance(items, list) else [],
            partners=partners if isinstance(partners, list) else [],
            created=created,
        )

    def _fail(self, response: requests.Response, what: str) -> NoReturn:
        status = response.status_code
        message = _sap_message(response)
        if status >= 500 or status in _TRANSIENT:
            raise TransientError(
                f"SAP {what}: HTTP {status}: {message}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status == 401:
            message = "the communication user's credentials (or the token) were refused"
        raise PermanentError(f"SAP {what}: HTTP {status}: {message}", code=str(status))


# ---- OData V2 helpers --------------------------------------------------------------------------
def literal(edm_type: str, value: Any) -> str:
    """``value`` as an OData V2 URI literal of ``edm_type`` (quotes in strings doubled)."""
    if value is None:
        return "null"
    if edm_type == "Edm.String":
        return "'" + str(value).replace("'", "''") + "'"
    if edm_type in ("Edm.DateTime", "Edm.DateTimeOffset"):
        instant = _as_datetime(value)
        text = f"{instant:%Y-%m-%dT%H:%M:%S}"
        if instant.microsecond:
            text += f".{instant.microsecond:06d}"
        return f"datetime'{text}'" if edm_type == "Edm.DateTime" else f"datetimeoffset'{text}Z'"
    if edm_type == "Edm.Decimal":
        return f"{_as_decimal(value)}M"
    if edm_type == "Edm.Boolean":
        return "true" if value else "false"
    return str(value)


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("date/times sent to SAP must be timezone-aware")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    raise TypeError(f"expected a date or datetime, got {type(value).__name__}")


def _as_decimal(value: Any) -> Decimal:
    if isinstance(value, bool | float):
        # Binary floats cannot hold money exactly; the hub uses Decimal end to end.
        raise TypeError("decimal values sent to SAP must be Decimal, int or str, not float")
    if isinstance(value, Decimal | int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise TypeError(f"'{value}' is not a decimal") from None
    raise TypeError(f"expected a decimal, got {type(value).__name__}")


def _to_wire(etype: _Type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values as V2 JSON for the properties of ``etype``."""
    body: dict[str, Any] = {}
    for name, value in values.items():
        edm_type = etype.properties.get(name)
        if edm_type is None:
            raise PermanentError(f"{etype.name} has no property {name}", code="400")
        if value is None:
            body[name] = None
        elif edm_type == "Edm.Decimal":
            body[name] = str(_as_decimal(value))
        elif edm_type == "Edm.DateTime":
            body[name] = f"/Date({_epoch_ms(_as_datetime(value))})/"
        elif edm_type == "Edm.DateTimeOffset":
            body[name] = f"/Date({_epoch_ms(_as_datetime(value))}+0000)/"
        else:
            body[name] = value
    return body


def _from_wire(edm_type: str, value: Any, name: str) -> Any:
    if value is None:
        return None
    try:
        if edm_type == "Edm.Decimal":
            return Decimal(str(value))
        if edm_type in ("Edm.DateTime", "Edm.DateTimeOffset"):
            return _parse_date(str(value))
        if edm_type in ("Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte", "Edm.SByte"):
            return int(value)
        if edm_type in ("Edm.Double", "Edm.Single"):
            return float(value)
    except (InvalidOperation, ValueError) as exc:
        raise PermanentError(
            f"SAP sent {name}={value!r}, which is not a valid {edm_type}", code="502"
        ) from exc
    return value


def _parse_date(text: str) -> dt.datetime:
    match = _JSON_DATE.match(text)
    if match:
        # The milliseconds are UTC; the offset (minutes) only says where the writer was.
        return _EPOCH + dt.timedelta(milliseconds=int(match.group(1)))
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _epoch_ms(value: dt.datetime) -> int:
    return (value - _EPOCH) // _ONE_MS


def _ms_floor(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise PermanentError(f"SAP change stamp {value!r} is not a date/time", code="502")
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _latest(
    current: dt.datetime | None, records: Sequence[SapRecord], field_name: str
) -> dt.datetime | None:
    stamps = [
        r.data[field_name] for r in records if isinstance(r.data.get(field_name), dt.datetime)
    ]
    candidates = [s for s in (current, *stamps) if s is not None]
    return max(candidates) if candidates else None


def _key(record: SapRecord, etype: _Type) -> tuple[Any, ...]:
    return tuple(record.data.get(k) for k in etype.keys)


def _after_key(etype: _Type, cursor: tuple[Any, ...]) -> str:
    """Records whose key sorts after ``cursor``: (k1 gt a) or (k1 eq a and k2 gt b) ..."""
    alternatives = []
    for index, name in enumerate(etype.keys):
        equal = [
            f"{k} eq {literal(etype.properties[k], cursor[i])}"
            for i, k in enumerate(etype.keys[:index])
        ]
        alternatives.append(
            " and ".join([*equal, f"{name} gt {literal(etype.properties[name], cursor[index])}"])
        )
    return "(" + " or ".join(f"({a})" for a in alternatives) + ")"


def _selecting(select: Sequence[str], needed: Sequence[str]) -> tuple[str, ...]:
    """``select`` plus the properties keyset paging reads (none when everything is selected)."""
    if not select:
        return ()
    return (*select, *(name for name in needed if name not in select))


def _and(left: str | None, right: str) -> str:
    return right if left is None else f"{left} and ({right})"


def _key_predicate(etype: _Type, values: tuple[Any, ...]) -> str:
    literals = [literal(etype.properties[k], v) for k, v in zip(etype.keys, values, strict=True)]
    if len(literals) == 1:
        text = f"({literals[0]})"
    else:
        text = "(" + ",".join(f"{k}={v}" for k, v in zip(etype.keys, literals, strict=True)) + ")"
    # Keys come from business data: '/', '?', '#' or '%' in them must not change the request.
    return quote(text, safe="'(),=")


def _split_path(path: str) -> tuple[str, str]:
    service, _, entity_set = path.strip("/").partition("/")
    if not service or not entity_set or "/" in entity_set:
        raise ValueError(f"expected '<SERVICE>/<EntitySet>', got {path!r}")
    return service, entity_set


def _d(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PermanentError(
            f"SAP answered HTTP {response.status_code} without JSON", code="502"
        ) from None
    payload = body.get("d") if isinstance(body, dict) else None
    if not isinstance(payload, dict):
        raise PermanentError("SAP answer lacks the V2 'd' envelope", code="502")
    return payload


def _count(body: Mapping[str, Any]) -> int | None:
    raw = body.get("__count")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _sap_message(response: requests.Response) -> str:
    """SAP's error text: message.value plus distinct errordetails, or the body's text."""
    try:
        body = response.json()
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", response.text)
        return " ".join(text.split())[:300] or response.reason
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return str(body)[:300]
    message = error.get("message")
    text = str(message.get("value", "")) if isinstance(message, dict) else str(message or "")
    code = error.get("code")
    details = []
    inner = error.get("innererror")
    if isinstance(inner, dict) and isinstance(inner.get("errordetails"), list):
        for detail in inner["errordetails"]:
            if isinstance(detail, dict) and detail.get("message") and detail["message"] != text:
                details.append(str(detail["message"]))
    parts = [f"{text} ({code})" if code else text, *details]
    return "; ".join(p for p in parts if p)[:500]


def _abort_if_ambiguous(response: requests.Response | None) -> None:
    """``on_retry`` for creates: a 429 was not processed and may be resent; anything else may
    have been (a lost connection or a 5xx after the commit), so resending could duplicate."""
    if response is not None and response.status_code == 429:
        return
    raise _AmbiguousOutcome


def _parse_metadata(content: bytes, service: str) -> _Schema:
    if len(content) > MAX_METADATA_BYTES:
        raise PermanentError(f"$metadata of {service} is implausibly large", code="502")
    head = content[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in content.lower():
        # EDMX never needs a DTD; refusing one rules out entity-expansion attacks.
        raise PermanentError(f"$metadata of {service} carries a DTD; refused", code="502")
    try:
        root = ET.fromstring(content)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise PermanentError(f"$metadata of {service} is not XML: {exc}", code="502") from None
    types: dict[str, _Type] = {}
    sets: dict[str, str] = {}
    for schema in root.iter():
        if _local(schema.tag) != "Schema":
            continue
        namespace = schema.get("Namespace", "")
        for element in schema:
            kind = _local(element.tag)
            if kind in ("EntityType", "ComplexType"):
                name = f"{namespace}.{element.get('Name')}"
                properties = {
                    str(p.get("Name")): str(p.get("Type"))
                    for p in element
                    if _local(p.tag) == "Property"
                }
                keys = tuple(
                    str(ref.get("Name"))
                    for key in element
                    if _local(key.tag) == "Key"
                    for ref in key
                    if _local(ref.tag) == "PropertyRef"
                )
                types[name] = _Type(name, properties, keys)
            elif kind == "EntityContainer":
                for entity_set in element:
                    if _local(entity_set.tag) == "EntitySet":
                        sets[str(entity_set.get("Name"))] = str(entity_set.get("EntityType"))
    return _Schema(types, sets)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
