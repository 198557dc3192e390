"""The expected view of a generated world, computed from the generator's own values.

Tests compare what the hub produced against this, not against anything the hub computes: the
values here never went through the mainframe's copybook format or the hub's parsers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from sandbox.datagen._legacy import order_number
from sandbox.datagen._master import account_number
from sandbox.datagen._quotes import quote_id

if TYPE_CHECKING:
    from sandbox.datagen._world import ContosoData

_THOUSAND = Decimal(1000)
_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class LegacyOrder:
    """A valid legacy order with normalised values (padding stripped, real types)."""

    order_number: str
    customer_number: str
    order_date: dt.date
    requested_date: dt.date
    status: str
    currency: str
    total: Decimal
    plant: str
    sales_rep: str
    quote_ref: str | None
    last_update: dt.datetime


@dataclass(frozen=True, slots=True)
class LegacyOrderLine:
    """A valid legacy order line. ``order_valid`` says whether its order is valid too."""

    order_number: str
    line_number: int
    sku: str
    quantity: Decimal
    unit_price: Decimal
    status: str
    last_update: dt.datetime
    order_valid: bool


@dataclass
class LegacySummary:
    """Aggregates over the valid legacy orders and lines, for lake tests."""

    orders: int = 0
    lines: int = 0
    total_by_currency: dict[str, Decimal] = field(default_factory=dict)
    orders_by_status: dict[str, int] = field(default_factory=dict)
    orders_by_month: dict[str, int] = field(default_factory=dict)
    total_by_customer: dict[str, Decimal] = field(default_factory=dict)
    quantity_by_sku: dict[str, Decimal] = field(default_factory=dict)


class Truth:
    """Independent expected views of one world (see the module docstring).

    Definitions: a legacy order is *valid* when no problem was planted on it (its dates and
    amount parse and its customer exists). A legacy line is *valid* when no problem was planted
    on it and its order exists; its order may still be invalid (``order_valid``).
    """

    def __init__(self, data: ContosoData) -> None:
        self._data = data

    def legacy_orders(self) -> Iterator[LegacyOrder]:
        """Valid legacy orders, in order-number order."""
        legacy = self._data.legacy
        for raw in legacy.raw_orders():
            if raw.problem is not None:
                continue
            yield LegacyOrder(
                order_number=order_number(raw.index),
                customer_number=raw.custno,
                order_date=dt.date.fromordinal(raw.order_day),
                requested_date=dt.date.fromordinal(raw.requested_day),
                status=raw.status,
                currency=raw.currency,
                total=Decimal(raw.total_cents) / _HUNDRED,
                plant=raw.plant,
                sales_rep=raw.rep.strip(),
                quote_ref=raw.qtref,
                last_update=dt.datetime.fromtimestamp(raw.last_update, dt.UTC),
            )

    def legacy_order_lines(self) -> Iterator[LegacyOrderLine]:
        """Valid legacy order lines, in key order."""
        legacy = self._data.legacy
        for raw in legacy.raw_orders():
            for line in raw.lines:
                if line.problem is not None:
                    continue
                yield LegacyOrderLine(
                    order_number=order_number(raw.index),
                    line_number=line.line_no,
                    sku=legacy.products[line.product].sku,
                    quantity=Decimal(line.qty_milli) / _THOUSAND,
                    unit_price=Decimal(line.price_cents) / _HUNDRED,
                    status=line.status,
                    last_update=dt.datetime.fromtimestamp(raw.last_update, dt.UTC),
                    order_valid=raw.problem is None,
                )

    def legacy_summary(self) -> LegacySummary:
        """Counts and sums over valid orders and valid lines (one streaming pass)."""
        summary = LegacySummary()
        legacy = self._data.legacy
        for raw in legacy.raw_orders():
            for line in raw.lines:
                if line.problem is None:
                    summary.lines += 1
                    sku = legacy.products[line.product].sku
                    summary.quantity_by_sku[sku] = summary.quantity_by_sku.get(sku, Decimal(0)) + (
                        Decimal(line.qty_milli) / _THOUSAND
                    )
            if raw.problem is not None:
                continue
            total = Decimal(raw.total_cents) / _HUNDRED
            summary.orders += 1
            summary.total_by_currency[raw.currency] = (
                summary.total_by_currency.get(raw.currency, Decimal("0.00")) + total
            )
            summary.orders_by_status[raw.status] = summary.orders_by_status.get(raw.status, 0) + 1
            month = dt.date.fromordinal(raw.order_day).strftime("%Y-%m")
            summary.orders_by_month[month] = summary.orders_by_month.get(month, 0) + 1
            summary.total_by_customer[raw.custno] = (
                summary.total_by_customer.get(raw.custno, Decimal("0.00")) + total
            )
        return summary

    def account_numbers(self) -> frozenset[str]:
        """Every account number that exists (shared by all systems)."""
        return frozenset(account_number(i) for i in range(self._data.accounts.count))

    def skus(self) -> frozenset[str]:
        """Every SKU in the product master."""
        return frozenset(p.sku for p in self._data.products)

    def valid_quote_ids(self) -> frozenset[str]:
        """Quote ids without a planted problem."""
        year = self._data.as_of.year
        bad = self._data.quotes.plan
        return frozenset(quote_id(year, i) for i in range(self._data.quotes.count) if i not in bad)

    def sap_orders_from_quotes(self) -> dict[str, str]:
        """``SalesOrder`` -> quote id, for the SAP orders created from a Quoting Tool quote."""
        prefix = f"QT-{self._data.as_of.year}-"
        return {
            order["SalesOrder"]: order["PurchaseOrderByCustomer"]
            for order in self._data.sap.sales_orders()
            if order["PurchaseOrderByCustomer"].startswith(prefix)
        }
