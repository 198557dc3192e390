"""Sync rules as data: one declarative map per entity.

Each ``SyncRule`` says which system is the source of truth, which directions a write may flow,
how keys and fields map between SAP and Dataverse (with named value conversions), which records
are in scope (filter), how often the batch runs (frequency: the setting holding its NCRONTAB),
which entities must be coupled first (dependency order) and how a conflict is decided.

The engine (``shared.sync.engine``) and the SAP batches (``shared.services.sap_inbound`` and
``sap_outbound``) read these maps; nothing about directions or conflicts is hard-coded there.
``docs/sync-rules.md`` renders the same facts for people.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

System = Literal["quotingtool", "dataverse", "sap", "mainframe"]
ConflictRule = Literal["source-of-truth", "last-writer"]

SAP: System = "sap"
DATAVERSE: System = "dataverse"

CONFIRMATION_BLOCK = "ZC"
"""SAP delivery block "awaiting customer confirmation in Sales": an order carrying it is not
confirmed; confirming it in Dataverse (``contoso_confirmed``) lifts the block in SAP."""

SAP_STATUS = {"A": "Open", "B": "Released", "C": "Closed"}
"""SAP ``OverallSDProcessStatus`` → the hub's order status (gold's backlog statuses)."""


def _sap_status(value: Any) -> Any:
    return SAP_STATUS.get(str(value or ""), "Open")


def _date(value: Any) -> Any:
    """A SAP ``Edm.DateTime`` (midnight UTC) as a Dataverse date-only ``YYYY-MM-DD``."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return None if value in (None, "") else str(value)[:10]


def _sap_date(value: Any) -> Any:
    """A Dataverse date-only value as the ``datetime`` SAP's ``Edm.DateTime`` wants."""
    if value in (None, ""):
        return None
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _confirmed(value: Any) -> Any:
    return str(value or "") != CONFIRMATION_BLOCK


def _block(value: Any) -> Any:
    return "" if value else CONFIRMATION_BLOCK


def _money(value: Any) -> Any:
    return None if value in (None, "") else Decimal(str(value))


def _text(value: Any) -> Any:
    return None if value is None else str(value)


CONVERSIONS: dict[str, Callable[[Any], Any]] = {
    "sap_status": _sap_status,
    "date": _date,
    "sap_date": _sap_date,
    "confirmed_from_block": _confirmed,
    "block_from_confirmed": _block,
    "money": _money,
    "text": _text,
}
"""Named value conversions (units, currencies, status codes, dates) a ``FieldMap`` refers to."""


@dataclass(frozen=True)
class FieldMap:
    """One field: its SAP name, its Dataverse column and the conversion each way.

    ``to_dataverse``/``to_sap`` name entries of ``CONVERSIONS`` (``None`` copies the value).
    ``both_ways`` says the field may also flow Dataverse → SAP; otherwise it is SAP → Sales only.
    """

    sap: str
    dataverse: str
    to_dataverse: str | None = None
    to_sap: str | None = None
    both_ways: bool = False

    def __post_init__(self) -> None:
        for name in (self.to_dataverse, self.to_sap):
            if name is not None and name not in CONVERSIONS:
                raise ValueError(f"field {self.sap}: unknown conversion {name!r}")

    def dataverse_value(self, sap_value: Any) -> Any:
        """The SAP value converted for Dataverse."""
        return CONVERSIONS[self.to_dataverse](sap_value) if self.to_dataverse else sap_value

    def sap_value(self, dataverse_value: Any) -> Any:
        """The Dataverse value converted for SAP."""
        return CONVERSIONS[self.to_sap](dataverse_value) if self.to_sap else dataverse_value


@dataclass(frozen=True)
class SyncRule:
    """The declarative map of one entity across systems."""

    entity: str
    source_of_truth: System
    directions: frozenset[tuple[System, System]]
    keys: Mapping[System, str]
    fields: tuple[FieldMap, ...] = ()
    depends_on: tuple[str, ...] = ()
    conflict: ConflictRule = "source-of-truth"
    filter: str | None = None
    frequency: str | None = None
    dataverse_set: str | None = None
    sap_path: str | None = None
    notes: str = ""
    parents: Mapping[str, str] = field(default_factory=dict)
    """SAP field → parent entity whose coupling must exist before this record may land."""

    def allows(self, source: System, target: System) -> bool:
        """Whether a write may flow from ``source`` to ``target``."""
        return (source, target) in self.directions

    def outbound_fields(self) -> tuple[FieldMap, ...]:
        """The fields that may flow Dataverse → SAP."""
        return tuple(f for f in self.fields if f.both_ways)

    def to_dataverse(self, sap_record: Mapping[str, Any]) -> dict[str, Any]:
        """The mapped Dataverse columns of a SAP record (fields it lacks are left out)."""
        return {
            f.dataverse: f.dataverse_value(sap_record[f.sap])
            for f in self.fields
            if f.sap in sap_record
        }

    def outbound_to_sap(self, dataverse_row: Mapping[str, Any]) -> dict[str, Any]:
        """The SAP values of a Dataverse row's outbound fields."""
        return {
            f.sap: f.sap_value(dataverse_row.get(f.dataverse))
            for f in self.outbound_fields()
            if f.dataverse in dataverse_row
        }


def _one_way(source: System, target: System) -> frozenset[tuple[System, System]]:
    return frozenset({(source, target)})


_SAP_TO_SALES = _one_way(SAP, DATAVERSE)
_BOTH = frozenset({(SAP, DATAVERSE), (DATAVERSE, SAP)})

RULES: dict[str, SyncRule] = {
    rule.entity: rule
    for rule in (
        SyncRule(
            "units",
            SAP,
            _SAP_TO_SALES,
            {SAP: "UnitOfMeasure", DATAVERSE: "name"},
            dataverse_set="uoms",
            notes="Units of measure are mastered in SAP.",
        ),
        SyncRule(
            "products",
            SAP,
            _SAP_TO_SALES,
            {SAP: "Product", DATAVERSE: "productnumber"},
            depends_on=("units",),
            dataverse_set="products",
            sap_path="API_PRODUCT_SRV/A_Product",
            notes="Products go SAP → Sales only; a product change made in Sales is refused.",
        ),
        SyncRule(
            "price_lists",
            SAP,
            _SAP_TO_SALES,
            {SAP: "ConditionRateValueUnit", DATAVERSE: "name"},
            depends_on=("units", "products"),
            dataverse_set="pricelevels",
        ),
        SyncRule(
            "prices",
            SAP,
            _SAP_TO_SALES,
            {SAP: "ConditionRecord", DATAVERSE: "contoso_pricekey"},
            fields=(FieldMap("ConditionRateValue", "amount", to_dataverse="money"),),
            depends_on=("products", "price_lists"),
            dataverse_set="productpricelevels",
            sap_path="API_SLSPRICINGCONDITIONRECORD_SRV/A_SlsPrcgConditionRecord",
            notes="Prices go SAP → Sales only: a price changed in Sales is refused and reported "
            "(rejection flow sync-direction), never sent to SAP.",
        ),
        SyncRule(
            "accounts",
            SAP,
            _SAP_TO_SALES,
            {SAP: "Customer", DATAVERSE: "accountnumber", "mainframe": "CUSTNO"},
            dataverse_set="accounts",
        ),
        SyncRule(
            "quotes",
            "quotingtool",
            frozenset({("quotingtool", DATAVERSE), (DATAVERSE, SAP)}),
            {
                "quotingtool": "quoteId",
                DATAVERSE: "contoso_quotingtoolid",
                SAP: "PurchaseOrderByCustomer",
            },
            depends_on=("accounts", "products", "prices"),
            dataverse_set="quotes",
        ),
        SyncRule(
            "sales_orders",
            SAP,
            _BOTH,
            {SAP: "SalesOrder", DATAVERSE: "contoso_sapsalesorder"},
            fields=(
                FieldMap("SalesOrder", "name"),
                FieldMap("SalesOrder", "ordernumber"),
                FieldMap("TotalNetAmount", "totalamount", to_dataverse="money"),
                FieldMap("OverallSDProcessStatus", "contoso_sapstatus", to_dataverse="sap_status"),
                FieldMap(
                    "RequestedDeliveryDate",
                    "requestdeliveryby",
                    to_dataverse="date",
                    to_sap="sap_date",
                    both_ways=True,
                ),
                FieldMap(
                    "DeliveryBlockReason",
                    "contoso_confirmed",
                    to_dataverse="confirmed_from_block",
                    to_sap="block_from_confirmed",
                    both_ways=True,
                ),
            ),
            depends_on=("accounts", "quotes"),
            conflict="last-writer",
            filter="LastChangeDateTime gt <watermark>",
            frequency="SAP_INBOUND_SCHEDULE / SAP_OUTBOUND_SCHEDULE",
            dataverse_set="salesorders",
            sap_path="API_SALES_ORDER_SRV/A_SalesOrder",
            parents={"SoldToParty": "accounts"},
            notes="Orders are SAP's; the requested delivery date and the customer's confirmation "
            "may be changed in Sales and go back to SAP. Last writer by modified time wins.",
        ),
        SyncRule(
            "sales_order_items",
            SAP,
            _SAP_TO_SALES,
            {SAP: "SalesOrder|SalesOrderItem", DATAVERSE: "contoso_saporderitemkey"},
            fields=(
                FieldMap("RequestedQuantity", "quantity", to_dataverse="money"),
                FieldMap("SalesOrderItemText", "productdescription", to_dataverse="text"),
            ),
            depends_on=("sales_orders", "products"),
            dataverse_set="salesorderdetails",
            sap_path="API_SALES_ORDER_SRV/A_SalesOrderItem",
            parents={"Material": "products"},
        ),
        SyncRule(
            "partners",
            SAP,
            _SAP_TO_SALES,
            {SAP: "SalesOrder|PartnerFunction", DATAVERSE: "contoso_partnerkey"},
            fields=(
                FieldMap("PartnerFunction", "contoso_partnerfunction"),
                FieldMap("SalesOrder", "contoso_sapsalesorder"),
            ),
            depends_on=("sales_orders",),
            dataverse_set="contoso_partners",
        ),
        SyncRule(
            "customer_assets",
            SAP,
            _SAP_TO_SALES,
            {SAP: "Equipment", DATAVERSE: "contoso_equipmentnumber"},
            fields=(
                FieldMap("EquipmentName", "contoso_name", to_dataverse="text"),
                FieldMap("Equipment", "contoso_equipmentnumber"),
                FieldMap("ManufacturerSerialNumber", "contoso_serialnumber", to_dataverse="text"),
                FieldMap("Material", "contoso_sku", to_dataverse="text"),
                FieldMap("FunctionalLocation", "contoso_functionallocation", to_dataverse="text"),
            ),
            depends_on=("accounts", "products"),
            filter="LastChangeDateTime gt <watermark>",
            frequency="SAP_INBOUND_SCHEDULE",
            dataverse_set="contoso_customerassets",
            sap_path="API_EQUIPMENT/Equipment",
        ),
        SyncRule(
            "invoices",
            SAP,
            _SAP_TO_SALES,
            {SAP: "BillingDocument", DATAVERSE: "invoicenumber"},
            depends_on=("sales_orders",),
            dataverse_set="invoices",
            notes="Declared for the dependency order; no batch moves invoices yet.",
        ),
    )
}


def rule(entity: str) -> SyncRule:
    """The rule of ``entity``; ``KeyError`` names the unknown entity."""
    try:
        return RULES[entity]
    except KeyError:
        raise KeyError(f"no sync rule for entity {entity!r}") from None


def dependency_order(rules: Mapping[str, SyncRule] | None = None) -> list[str]:
    """Entities with every parent before its children (stable: declaration order breaks ties).

    Raises ``ValueError`` for an unknown parent or a cycle.
    """
    table = RULES if rules is None else rules
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ValueError(f"dependency cycle: {' -> '.join((*path, name))}")
        if name not in table:
            raise ValueError(f"unknown parent entity {name!r} (needed by {path[-1]})")
        state[name] = 1
        for parent in table[name].depends_on:
            visit(parent, (*path, name))
        state[name] = 2
        order.append(name)

    for name in table:
        visit(name, ())
    return order
