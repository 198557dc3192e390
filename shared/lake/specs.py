"""Declarative silver entity specs: what a source record becomes in its conformed table.

A spec names the silver table, the bronze source/entity it reads, the business key, the source's
modified-time column and one ``Column`` per conformed value (raw field, kind, checks). The silver
job (``shared.lake.silver``) turns a spec into vectorised polars expressions; nothing here imports
polars, so specs can be declared anywhere.

Kinds:

=================== ==================================================== =========================
kind                raw value                                            silver type
=================== ==================================================== =========================
``id``              string, trimmed of padding; blank is null            string
``text``            string, trimmed; blank is null                       string
``int``             digits with optional sign (``"0010"`` is 10)         int64
``legacy_date``     ``YYYYMMDD``; blank or ``00000000`` is null          date
``legacy_timestamp`` ``YYYYMMDDHHMMSS`` in UTC                           timestamp (UTC, µs)
``implied_decimal`` digits with ``scale`` implied decimals               decimal(precision, scale)
``decimal``         decimal string or JSON number, at most ``scale``     decimal(precision, scale)
                    significant decimals
``code``            a letter/code looked up in ``codes``                 string (the named value)
``iso_date``        ``YYYY-MM-DD``                                       date
``iso_timestamp``   ISO 8601 with ``Z`` or an offset (naive means UTC)   timestamp (UTC, µs)
``bool``            ``true``/``false`` (any case)                        boolean
``ingested``        none: the bronze page's ingestion time (``field``    timestamp (UTC, µs)
                    empty), for records whose receipt by the hub is
                    the event (the hub's own intake)
=================== ==================================================== =========================

A value that does not parse, a missing required value (key columns and the modified column are
always required), a non-positive value where ``positive`` is set and an unknown code send the
record to quarantine with a reason naming the raw field.

Sources whose records nest what silver needs (the Quoting Tool's quotes keep the request body as
received) declare ``prepare``: a deterministic function from the bronze record to the flat raw
fields the columns read. It runs per record, in Python, before the vectorised conformance; a
record it cannot read comes back with ``PREPARE_ERROR`` set, which quarantines it with that reason.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl

Kind = Literal[
    "id",
    "text",
    "int",
    "legacy_date",
    "legacy_timestamp",
    "implied_decimal",
    "decimal",
    "code",
    "iso_date",
    "iso_timestamp",
    "bool",
    "ingested",
]
TIMESTAMP_KINDS = ("legacy_timestamp", "iso_timestamp", "ingested")
MONEY_PRECISION = 18
"""Money is decimal(18, 2) in every silver table: wide enough for any order, never a float."""


@dataclass(frozen=True)
class Column:
    """One conformed column: its silver name, the raw field it comes from and how to read it."""

    name: str
    field: str
    kind: Kind = "text"
    scale: int = 0
    precision: int = MONEY_PRECISION
    codes: tuple[tuple[str, str], ...] = ()
    required: bool = False
    positive: bool = False

    def __post_init__(self) -> None:
        if self.kind == "code" and not self.codes:
            raise ValueError(f"column {self.name}: a code column needs its codes")
        if self.kind in ("implied_decimal", "decimal") and not 0 <= self.scale <= self.precision:
            raise ValueError(f"column {self.name}: scale must be between 0 and precision")
        if (self.kind == "ingested") != (self.field == ""):
            raise ValueError(f"column {self.name}: only an 'ingested' column reads no raw field")


@dataclass(frozen=True)
class SoftDelete:
    """How a source marks a deletion, for sources that send them (e.g. Dataverse).

    A record is a deletion when raw ``field`` equals ``equals`` or ends with ``endswith``.
    Deletion records often carry the key under another name (Dataverse: ``id``): ``key_fields``
    maps key columns to those raw fields. ``deleted_at_field`` holds the deletion time if the
    source sends one; otherwise the ingestion time is used, which also orders the deletion after
    every version seen before it.
    """

    field: str
    equals: str | None = None
    endswith: str | None = None
    key_fields: tuple[tuple[str, str], ...] = ()
    deleted_at_field: str | None = None

    def __post_init__(self) -> None:
        if (self.equals is None) == (self.endswith is None):
            raise ValueError("a soft delete matches by exactly one of equals or endswith")


PREPARE_ERROR = "__unreadable"
"""The field a ``prepare`` function sets, instead of the record's fields, when it cannot read
the record; its text becomes the quarantine reason."""


@dataclass(frozen=True)
class EntitySpec:
    """A conformed silver entity.

    ``key`` and ``modified`` name silver columns among ``columns``; ``modified`` must be a
    timestamp kind. Versions of a key are ordered by (``version``, ``modified``, content hash):
    ``version`` (optional) is an ``int`` column the source increments with every change (a
    revision number), for sources whose change times may not follow their revisions.

    ``transform`` (optional) derives extra columns from the typed, valid rows; it receives and
    returns a polars DataFrame and must be deterministic. ``earliest`` names columns (declared or
    derived) that keep the smallest value any version of the key carried instead of the winning
    version's, such as a first-receipt time; they must never be null. ``prepare`` (optional)
    flattens each bronze record into the raw fields the columns read (see the module docstring).
    """

    table: str
    source: str
    entity: str
    key: tuple[str, ...]
    modified: str
    columns: tuple[Column, ...]
    soft_delete: SoftDelete | None = None
    transform: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    version: str | None = None
    earliest: tuple[str, ...] = ()
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"spec {self.table}: duplicate column names")
        missing = [k for k in (*self.key, self.modified) if k not in names]
        if missing:
            raise ValueError(f"spec {self.table}: key/modified columns not declared: {missing}")
        if self.column(self.modified).kind not in TIMESTAMP_KINDS:
            raise ValueError(f"spec {self.table}: the modified column must be a timestamp")
        if self.version is not None and (
            self.version not in names or self.column(self.version).kind != "int"
        ):
            raise ValueError(f"spec {self.table}: the version column must be a declared int")
        ordering = {*self.key, self.modified, self.version}
        if ordering & set(self.earliest):
            raise ValueError(f"spec {self.table}: key/ordering columns cannot be 'earliest'")
        reserved = (set(names) | set(self.raw_fields) | set(self.earliest)) & set(SYSTEM_COLUMNS)
        if reserved:
            raise ValueError(f"spec {self.table}: reserved names {sorted(reserved)}")

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def is_required(self, column: Column) -> bool:
        """Key, modified and version columns are always required."""
        return column.required or column.name in (*self.key, self.modified, self.version)

    @property
    def ordering(self) -> tuple[str, ...]:
        """The columns that order versions of a key, most significant first (then the hash)."""
        return (self.version, self.modified) if self.version else (self.modified,)

    @property
    def raw_fields(self) -> tuple[str, ...]:
        """Every raw field the spec reads (columns, soft-delete marker and its key fields)."""
        fields = [c.field for c in self.columns if c.kind != "ingested"]
        if self.soft_delete is not None:
            fields.append(self.soft_delete.field)
            fields += [raw for _, raw in self.soft_delete.key_fields]
            if self.soft_delete.deleted_at_field:
                fields.append(self.soft_delete.deleted_at_field)
        if self.prepare is not None:
            fields.append(PREPARE_ERROR)
        return tuple(dict.fromkeys(fields))


IS_DELETED = "is_deleted"
DELETED_AT = "deleted_at"
BRONZE_PATH = "bronze_path"
RUN_ID = "run_id"
CONTENT_HASH = "content_hash"
INGESTED_AT = "ingested_at"
LINEAGE_COLUMNS = (BRONZE_PATH, RUN_ID, CONTENT_HASH, INGESTED_AT)
SYSTEM_COLUMNS = (IS_DELETED, DELETED_AT, *LINEAGE_COLUMNS)
"""Columns every silver table has after its spec's columns, in this order."""


def json_spec(
    table: str,
    *,
    source: str,
    entity: str,
    key: Sequence[str],
    modified: str,
    columns: Sequence[Column],
    soft_delete: SoftDelete | None = None,
    transform: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    version: str | None = None,
    earliest: Sequence[str] = (),
    prepare: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> EntitySpec:
    """A spec for a JSON source (Quoting Tool, SAP OData, Dataverse).

    Key, modified and version columns are marked required; the modified column must be declared
    as ``iso_timestamp`` (or ``legacy_timestamp``, or ``ingested``). Money columns use ``kind="decimal"``, which
    refuses values with more significant decimals than the column's scale instead of rounding.
    """
    marked = tuple(
        Column(
            name=c.name,
            field=c.field,
            kind=c.kind,
            scale=c.scale,
            precision=c.precision,
            codes=c.codes,
            required=c.required or c.name in (*key, modified, version),
            positive=c.positive,
        )
        for c in columns
    )
    return EntitySpec(
        table=table,
        source=source,
        entity=entity,
        key=tuple(key),
        modified=modified,
        columns=marked,
        soft_delete=soft_delete,
        transform=transform,
        version=version,
        earliest=tuple(earliest),
        prepare=prepare,
    )


def dataverse_deletions(key_column: str) -> SoftDelete:
    """Dataverse change tracking's deletion marker.

    Deleted rows come back as ``{"@odata.context": ".../$metadata#<set>/$deletedEntity",
    "id": "<guid>", "reason": "deleted"}`` (use-change-tracking-synchronize-data-external-systems).
    """
    return SoftDelete(
        field="@odata.context", endswith="/$deletedEntity", key_fields=((key_column, "id"),)
    )


# --- The legacy mainframe (docs/mainframe-api.md) ---------------------------------------------

ORDER_STATUS = (
    ("O", "Open"),
    ("R", "Released"),
    ("S", "Shipped"),
    ("I", "Invoiced"),
    ("C", "Closed"),
    ("X", "Cancelled"),
)
CUSTOMER_STATUS = (("A", "Active"), ("I", "Inactive"), ("H", "CreditHold"))
MAINFRAME = "mainframe"
_LSTUPD = Column("source_modified_at", "LSTUPD", "legacy_timestamp", required=True)

LEGACY_ORDERS = EntitySpec(
    table="legacy_orders",
    source=MAINFRAME,
    entity="orders",
    key=("order_no",),
    modified="source_modified_at",
    columns=(
        Column("order_no", "ORDNO", "id", required=True),
        Column("customer_no", "CUSTNO", "id", required=True),
        Column("order_date", "ORDDT", "legacy_date", required=True),
        Column("requested_date", "REQDT", "legacy_date"),
        Column("status", "STATUS", "code", codes=ORDER_STATUS, required=True),
        Column("currency", "CURR", "id"),
        Column("total_amount", "TOTAMT", "implied_decimal", scale=2, required=True),
        Column("plant", "PLANT", "id"),
        Column("sales_rep", "SLSREP", "id"),
        Column("quote_ref", "QTREF", "id"),
        _LSTUPD,
    ),
)
LEGACY_ORDER_LINES = EntitySpec(
    table="legacy_order_lines",
    source=MAINFRAME,
    entity="orderlines",
    key=("order_no", "line_no"),
    modified="source_modified_at",
    columns=(
        Column("order_no", "ORDNO", "id", required=True),
        Column("line_no", "LINENO", "int", required=True),
        Column("item_no", "ITEMNO", "id", required=True),
        Column("quantity", "QTY", "implied_decimal", scale=3, required=True, positive=True),
        Column("unit_price", "UPRICE", "implied_decimal", scale=2, required=True),
        Column("status", "STATUS", "code", codes=ORDER_STATUS, required=True),
        _LSTUPD,
    ),
)
PLANT_INVENTORY = EntitySpec(
    table="plant_inventory",
    source=MAINFRAME,
    entity="inventory",
    key=("plant", "item_no"),
    modified="source_modified_at",
    columns=(
        Column("plant", "PLANT", "id", required=True),
        Column("item_no", "ITEMNO", "id", required=True),
        Column("on_hand", "ONHAND", "int", required=True),
        Column("allocated", "ALLOC", "int", required=True),
        _LSTUPD,
    ),
)
CUSTOMERS = EntitySpec(
    table="customers",
    source=MAINFRAME,
    entity="customers",
    key=("customer_no",),
    modified="source_modified_at",
    columns=(
        Column("customer_no", "CUSTNO", "id", required=True),
        Column("name", "CUSTNM", "text"),
        Column("city", "CITY", "text"),
        Column("state", "STATE", "text"),
        Column("zip", "ZIP", "text"),
        Column("country", "CNTRY", "id"),
        Column("status", "STATUS", "code", codes=CUSTOMER_STATUS, required=True),
        _LSTUPD,
    ),
)
MAINFRAME_SPECS: dict[str, EntitySpec] = {
    spec.entity: spec for spec in (CUSTOMERS, LEGACY_ORDERS, LEGACY_ORDER_LINES, PLANT_INVENTORY)
}
"""Mainframe listing name -> spec, in dependency order (customers before their orders)."""


# --- The Quoting Tool (flows 1b, 3 and 4; docs/api.md) ------------------------------------------
# Bronze records of these entities are written by the hub's own intake (shared/services/forecasts.py
# and archive.py): the fields as the partner sent them, plus ``hub*`` fields the hub derived at
# intake (the business key, the receipt time, the resolved territory). Every column below reads a
# bronze field directly, so ``reprocess_from_bronze`` rebuilds the same silver.

QUOTING_TOOL = "quotingtool"

FORECASTS = json_spec(
    "forecasts",
    source=QUOTING_TOOL,
    entity="forecasts",
    # hubForecastId is a digest of (salesRep in lower case, territory, month, category): the
    # submission's identity, so a later submission of the same four replaces the earlier one.
    key=("forecast_id",),
    modified="submitted_at",
    columns=(
        Column("forecast_id", "hubForecastId", "id"),
        Column("sales_rep", "salesRep", "text", required=True),
        Column("territory", "territory", "text", required=True),
        Column("month", "hubMonthStart", "iso_date", required=True),
        Column("category", "category", "text", required=True),
        Column("amount", "amount", "decimal", scale=2, required=True),
        Column("probability", "probability", "decimal", scale=4, required=True),
        Column("currency", "hubCurrency", "id", required=True),
        Column("region", "hubRegion", "text"),
        Column("county", "hubCounty", "text"),
        Column("city", "hubCity", "text"),
        Column("zip", "hubZip", "text"),
        Column("territory_rule", "hubTerritoryRule", "text"),
        Column("batch_id", "hubBatchId", "id", required=True),
        Column("submitted_at", "hubReceivedAt", "iso_timestamp"),
    ),
)
"""``silver/forecasts``: the latest submission per (salesRep, territory, month, category), with
the columns gold's forecast tables read (forecast_id, month, amount, currency, territory)."""

QUOTE_ARCHIVE = json_spec(
    "quote_archive",
    source=QUOTING_TOOL,
    entity="archive",
    # hubRecordKey is "recordType|quoteId|jobId" (jobId empty for a quote); '|' cannot occur in
    # the identifiers, so the key is unambiguous.
    key=("record_key",),
    modified="received_at",
    columns=(
        Column("record_key", "hubRecordKey", "id"),
        Column("record_type", "recordType", "text", required=True),
        Column("quote_id", "quoteId", "id", required=True),
        Column("job_id", "jobId", "id"),
        Column("account_number", "accountNumber", "id", required=True),
        Column("closed_on", "closedOn", "iso_date", required=True),
        Column("amount", "amount", "decimal", scale=2, required=True),
        Column("currency", "currency", "id", required=True),
        Column("status", "status", "text", required=True),
        Column("sales_rep", "salesRep", "text"),
        Column("description", "description", "text"),
        Column("source_system", "sourceSystem", "text"),
        Column("upload_id", "hubUploadId", "id", required=True),
        Column("line_no", "hubLine", "int", required=True),
        Column("received_at", "hubReceivedAt", "iso_timestamp"),
    ),
)
"""``silver/quote_archive``: closed quotes and finished jobs, the latest upload of each record."""

CENT = Decimal("0.01")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def quote_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The flat fields of a quote intake record (``shared.services.quotes``: bronze
    ``{"quoteId", "revision", "body"}`` with the request body as the partner sent it).

    The body is read with the model the intake validated it with, so silver sees exactly the
    quote the hub accepted; ``amount`` is the sum of the line nets computed as the push to
    Dataverse computes ``totalamount`` (gross less the discount rounded to cents, half to even).
    The ZIP is folded as territory assignment folds it (ZIP+4 to ZIP). A body that no longer
    validates, or that disagrees with its envelope, comes back as ``PREPARE_ERROR``.
    """
    from shared.jsonbody import BodyError, loads, validate
    from shared.models.quote import Quote
    from shared.services.territory import normalise_postal_code

    envelope = {"quoteId": _text(record.get("quoteId")), "revision": _text(record.get("revision"))}
    body = record.get("body")
    if not isinstance(body, str):
        return {**envelope, PREPARE_ERROR: "the intake record has no quote body"}
    try:
        quote = validate(Quote, loads(body.encode("utf-8")))
    except BodyError as exc:
        pointers = "; ".join(
            f"{e.get('pointer')}: {e.get('detail')}" for e in exc.problem.get("errors", [])[:3]
        )
        return {**envelope, PREPARE_ERROR: f"quote body refused ({exc}) {pointers}".strip()}
    if (quote.quote_id, str(quote.revision)) != (envelope["quoteId"], envelope["revision"]):
        return {**envelope, PREPARE_ERROR: "quote body disagrees with its intake envelope"}
    amount = Decimal(0)
    for line in quote.lines:
        gross = Decimal(line.quantity) * Decimal(line.unit_price)
        discount = (gross * Decimal(line.discount_pct) / 100).quantize(CENT)
        amount += (gross - discount).quantize(CENT)
    ship = quote.ship_to
    return {
        **envelope,
        "accountNumber": quote.account_number,
        "salesRep": quote.sales_rep,
        "currency": quote.currency,
        "amount": format(amount, "f"),
        "lineCount": str(len(quote.lines)),
        "winProbability": format(quote.probability * 100, "f"),
        "expectedCloseDate": quote.expected_close_date.isoformat(),
        "shipTo.region": ship.region,
        "shipTo.county": ship.county,
        "shipTo.city": ship.city,
        "shipTo.postalCode": normalise_postal_code(ship.postal_code),
        "shipTo.country": ship.country,
        "modifiedAt": quote.modified_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
    }


QUOTES = json_spec(
    "quotes",
    source=QUOTING_TOOL,
    entity="quotes",
    key=("quote_id",),
    # The hub accepts a quote's revisions only in increasing order, and the Quoting Tool's own
    # change time need not follow them: the revision decides which version is the quote. The
    # "modified" stamp is the hub's receipt, so the run log's lag measures the lake's delay,
    # not how long ago a partner last edited a quote.
    version="revision",
    modified="received_at",
    columns=(
        Column("quote_id", "quoteId", "id"),
        Column("revision", "revision", "int"),
        Column("account_number", "accountNumber", "id", required=True),
        Column("sales_rep", "salesRep", "text"),
        Column("currency", "currency", "id", required=True),
        Column("amount", "amount", "decimal", scale=2, required=True),
        Column("line_count", "lineCount", "int", required=True),
        Column("win_probability", "winProbability", "decimal", scale=2, required=True),
        Column("expected_close_date", "expectedCloseDate", "iso_date", required=True),
        Column("region", "shipTo.region", "text"),
        Column("county", "shipTo.county", "text"),
        Column("city", "shipTo.city", "text", required=True),
        Column("zip", "shipTo.postalCode", "text", required=True),
        Column("country", "shipTo.country", "id"),
        Column("modified_at", "modifiedAt", "iso_timestamp", required=True),
        # When the hub accepted this revision, and (kept as the earliest over revisions by the
        # MERGE) when it first received the quote: the intake's bronze ingestion time.
        Column("received_at", "", "ingested"),
        Column("created_at", "", "ingested"),
    ),
    prepare=quote_fields,
    earliest=("created_at",),
)
"""``silver/quotes``: the latest accepted revision of every quote the Quoting Tool sent the hub
(flow 1a), with its territory levels (the ship-to's region, county, city and ZIP), amount and
first receipt (``created_at``). Its Dynamics 365 state is not here: gold joins
``dataverse_quotes`` (flow 7) for that."""

QUOTING_TOOL_SPECS: dict[str, EntitySpec] = {
    spec.entity: spec for spec in (FORECASTS, QUOTE_ARCHIVE, QUOTES)
}
"""Quoting Tool bronze entity -> spec, for the lake ingestion job (``lake_ingest``)."""


# --- SAP S/4HANA (flow 10; docs/sap-api.md, docs/sync-rules.md) ---------------------------------
# Bronze records of these entities are written by the SAP inbound batch
# (shared/services/sap_inbound.py): SAP's properties in JSON form (Edm.DateTime ``…Date`` fields
# as ``YYYY-MM-DD``, other time stamps ISO 8601 UTC, decimals as text) plus ``hub*`` fields the
# batch derived (flattened item keys, the order's change stamp on its items, the asset's owner).

SAP_SOURCE = "sap"
SAP_ORDER_STATUS = (("A", "Open"), ("B", "Released"), ("C", "Closed"))

SAP_ORDERS = json_spec(
    "sap_orders",
    source=SAP_SOURCE,
    entity="sales_orders",
    key=("order_no",),
    modified="source_modified_at",
    columns=(
        Column("order_no", "SalesOrder", "id"),
        Column("customer_no", "SoldToParty", "id", required=True),
        Column("order_date", "SalesOrderDate", "iso_date"),
        Column("requested_date", "RequestedDeliveryDate", "iso_date"),
        Column("status", "OverallSDProcessStatus", "code", codes=SAP_ORDER_STATUS),
        Column("currency", "TransactionCurrency", "id", required=True),
        Column("total_amount", "TotalNetAmount", "decimal", scale=3),
        Column("plant", "hubPlant", "id"),
        Column("quote_ref", "PurchaseOrderByCustomer", "id"),
        Column("delivery_block", "DeliveryBlockReason", "id"),
        Column("source_modified_at", "LastChangeDateTime", "iso_timestamp"),
    ),
)
"""``silver/sap_orders``: SAP sales order headers, conformed to gold's order columns."""

SAP_ORDER_ITEMS = json_spec(
    "sap_order_items",
    source=SAP_SOURCE,
    entity="sales_order_items",
    key=("item_key",),
    modified="source_modified_at",
    columns=(
        Column("item_key", "hubItemKey", "id"),
        Column("order_no", "SalesOrder", "id", required=True),
        Column("item_no", "SalesOrderItem", "id", required=True),
        Column("material", "Material", "id", required=True),
        Column("quantity", "RequestedQuantity", "decimal", scale=3, required=True),
        Column("unit", "RequestedQuantityUnit", "id"),
        Column("plant", "ProductionPlant", "id"),
        Column("net_amount", "NetAmount", "decimal", scale=3),
        Column("currency", "TransactionCurrency", "id"),
        Column("source_modified_at", "hubOrderChangedAt", "iso_timestamp"),
    ),
)
"""``silver/sap_order_items``: items of SAP sales orders, ``SalesOrder|SalesOrderItem`` keyed."""

SAP_EQUIPMENT = json_spec(
    "sap_equipment",
    source=SAP_SOURCE,
    entity="equipment",
    key=("equipment_no",),
    modified="source_modified_at",
    columns=(
        Column("equipment_no", "Equipment", "id"),
        Column("name", "EquipmentName", "text"),
        Column("material", "Material", "id"),
        Column("serial_no", "ManufacturerSerialNumber", "id"),
        Column("functional_location", "FunctionalLocation", "id"),
        Column("customer_no", "hubCustomer", "id"),
        Column("source_modified_at", "LastChangeDateTime", "iso_timestamp"),
    ),
)
"""``silver/sap_equipment``: installed equipment (customer assets) with its owning customer."""
