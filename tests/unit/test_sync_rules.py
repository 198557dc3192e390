"""The sync rules as data: directions, dependency order, field mappings and conversions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared.sync.rules import (
    CONFIRMATION_BLOCK,
    DATAVERSE,
    RULES,
    SAP,
    FieldMap,
    SyncRule,
    dependency_order,
    rule,
)

pytestmark = pytest.mark.unit


def test_prices_and_products_flow_from_sap_to_sales_only():
    for entity in ("prices", "products"):
        assert rule(entity).allows(SAP, DATAVERSE)
        assert not rule(entity).allows(DATAVERSE, SAP)
        assert rule(entity).source_of_truth == SAP


def test_dependency_order_puts_every_parent_before_its_children():
    order = dependency_order()
    assert set(order) == set(RULES)
    for name, each in RULES.items():
        for parent in each.depends_on:
            assert order.index(parent) < order.index(name), (parent, name)
    # the chain the issue names: units, products → price lists → accounts → quotes → orders → invoices
    chain = ["units", "products", "price_lists", "quotes", "sales_orders", "invoices"]
    assert [e for e in order if e in chain] == chain


def test_dependency_cycle_and_unknown_parent_are_refused():
    a = SyncRule("a", SAP, frozenset(), {SAP: "k"}, depends_on=("b",))
    b = SyncRule("b", SAP, frozenset(), {SAP: "k"}, depends_on=("a",))
    with pytest.raises(ValueError, match="cycle"):
        dependency_order({"a": a, "b": b})
    with pytest.raises(ValueError, match="unknown parent"):
        dependency_order({"a": a})


def test_sales_order_maps_to_dataverse_with_status_date_and_confirmation_conversions():
    # Given a SAP order as read (typed values)
    order = {
        "SalesOrder": "4711",
        "TotalNetAmount": Decimal("25000.000"),
        "OverallSDProcessStatus": "B",
        "RequestedDeliveryDate": dt.datetime(2027, 1, 15, tzinfo=dt.UTC),
        "DeliveryBlockReason": CONFIRMATION_BLOCK,
    }
    # When it is mapped for Dataverse
    values = rule("sales_orders").to_dataverse(order)
    # Then codes, dates and money are converted
    assert values == {
        "name": "4711",
        "ordernumber": "4711",
        "totalamount": Decimal("25000.000"),
        "contoso_sapstatus": "Released",
        "requestdeliveryby": "2027-01-15",
        "contoso_confirmed": False,
    }


def test_only_two_way_fields_map_back_to_sap():
    back = rule("sales_orders").outbound_to_sap(
        {"contoso_confirmed": True, "requestdeliveryby": "2027-02-01", "totalamount": 1}
    )
    assert back == {
        "DeliveryBlockReason": "",
        "RequestedDeliveryDate": dt.datetime(2027, 2, 1, tzinfo=dt.UTC),
    }


def test_unknown_conversion_is_refused_when_the_rule_is_declared():
    with pytest.raises(ValueError, match="unknown conversion"):
        FieldMap("A", "b", to_dataverse="nope")
