"""The declarative silver → Dataverse mappings (flow 6): sources, conversions, lookups, and the
four mainframe mappings applied to silver rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from shared.errors import PermanentError
from shared.lake.specs import LEGACY_ORDERS
from shared.mappings import (
    CUSTOMER_ACCOUNTS,
    LEGACY_ORDER_LINE_ROWS,
    LEGACY_ORDER_ROWS,
    MAPPINGS,
    PLANT_INVENTORY_ROWS,
    Col,
    Difference,
    MappingError,
    Product,
    TableMapping,
    Template,
    convert,
    lookup,
    target,
)

pytestmark = pytest.mark.unit

STAMP = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)


def order_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "order_no": "0000000042",
        "customer_no": "C0000007",
        "order_date": dt.date(2026, 10, 1),
        "requested_date": None,
        "status": "Released",
        "currency": "USD",
        "total_amount": Decimal("12345.67"),
        "plant": "P100",
        "sales_rep": "JSMITH",
        "quote_ref": None,
        "source_modified_at": STAMP,
    }
    row.update(changes)
    return row


# --- conversions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("P100", "text", "P100"),
        (10, "text", "10"),
        (10, "int", 10),
        (Decimal("10.000"), "int", 10),
        (7, "decimal", Decimal(7)),
        (Decimal("0.125"), "decimal", Decimal("0.125")),
        (Decimal("12345.67"), "money", Decimal("12345.67")),
        (dt.date(2026, 10, 1), "date", dt.date(2026, 10, 1)),
        (STAMP, "datetime", STAMP),
        (None, "money", None),
        (None, "code", None),
    ],
)
def test_convert_turns_silver_values_into_dataverse_values(value, kind, expected):
    # Given a silver value and a conversion
    # When it is converted
    converted = convert(value, kind)
    # Then the Dataverse value is exact (money stays Decimal, never float)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "int"),
        (Decimal("1.5"), "int"),
        ("abc", "decimal"),
        (1.5, "money"),
        (STAMP, "date"),
        (dt.datetime(2026, 1, 1), "datetime"),
        ("2026-10-01", "date"),
    ],
)
def test_convert_refuses_a_value_of_the_wrong_kind_as_a_permanent_mapping_error(value, kind):
    # Given a value that cannot become this kind of Dataverse value
    # When it is converted, Then the row fails for good (it is recorded, never retried)
    with pytest.raises(MappingError) as caught:
        convert(value, kind, what="col")
    assert isinstance(caught.value, PermanentError)
    assert caught.value.code == "unmappable-value"
    assert "col" in str(caught.value)


def test_convert_maps_codes_and_refuses_an_unknown_one():
    codes = (("Open", "O"), ("Closed", "C"))
    assert convert("Open", "code", codes) == "O"
    with pytest.raises(MappingError, match="no Dataverse value for 'Pending'"):
        convert("Pending", "code", codes, what="contoso_status")


def test_datetimes_are_sent_in_utc():
    local = dt.datetime(2026, 11, 2, 10, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert convert(local, "datetime") == STAMP
    assert convert(local, "datetime").tzinfo == dt.UTC


# --- sources -------------------------------------------------------------------------------------


def test_template_formats_columns_and_is_null_when_a_part_is_missing():
    template = Template("{order_no}|{line_no}")
    assert template.columns == ("order_no", "line_no")
    assert template.value({"order_no": "0000000042", "line_no": 10}) == "0000000042|10"
    assert template.value({"order_no": "0000000042", "line_no": None}) is None


@pytest.mark.parametrize(
    ("quantity", "price", "amount"),
    [
        (Decimal("0.125"), Decimal("1.00"), Decimal("0.12")),  # half to even: down
        (Decimal("0.135"), Decimal("1.00"), Decimal("0.14")),  # half to even: up
        (Decimal("2.500"), Decimal("12500.00"), Decimal("31250.00")),
    ],
)
def test_product_is_exact_and_rounded_once_half_to_even(quantity, price, amount):
    product = Product("quantity", "unit_price", scale=2)
    assert product.value({"quantity": quantity, "unit_price": price}) == amount


def test_difference_and_null_factors():
    assert Difference("on_hand", "allocated").value({"on_hand": 196, "allocated": 142}) == 54
    assert Difference("on_hand", "allocated").value({"on_hand": 196, "allocated": None}) is None
    assert Product("a", "b").value({"a": None, "b": Decimal(1)}) is None


def test_lookup_binds_by_the_target_alternate_key_with_odata_quoting():
    # Given a lookup bound by the account number
    account = lookup("contoso_AccountId", "accounts", accountnumber="customer_no")
    # Then the bind is the documented path, quotes doubled, and a null key clears the lookup
    assert account.value({"customer_no": "C0000007"}) == "/accounts(accountnumber='C0000007')"
    assert account.value({"customer_no": "O'BRIEN"}) == "/accounts(accountnumber='O''BRIEN')"
    assert account.value({"customer_no": None}) is None


# --- mapping declarations ------------------------------------------------------------------------


def test_a_mapping_refuses_silver_columns_its_spec_does_not_have():
    with pytest.raises(ValueError, match=r"no columns \['colour'\]"):
        TableMapping(
            name="bad",
            spec=LEGACY_ORDERS,
            entity_set="contoso_legacyorders",
            logical_name="contoso_legacyorder",
            key=(("contoso_ordernumber", Col("order_no")),),
            columns=(target("contoso_name", "colour"),),
        )


def test_a_mapping_refuses_a_column_mapped_twice():
    with pytest.raises(ValueError, match="mapped twice"):
        TableMapping(
            name="bad",
            spec=LEGACY_ORDERS,
            entity_set="contoso_legacyorders",
            logical_name="contoso_legacyorder",
            key=(("contoso_ordernumber", Col("order_no")),),
            columns=(target("contoso_plant", "plant"), target("contoso_plant", "order_no")),
        )


def test_a_code_target_needs_its_codes():
    with pytest.raises(ValueError, match="codes go with"):
        target("contoso_status", "status", "code")


def test_where_columns_are_read_from_silver():
    filtered = TableMapping(
        name="open_orders",
        spec=LEGACY_ORDERS,
        entity_set="contoso_legacyorders",
        logical_name="contoso_legacyorder",
        key=(("contoso_ordernumber", Col("order_no")),),
        columns=(target("contoso_ordernumber", "order_no"),),
        where=(("status", ("Open", "Released")),),
    )
    assert filtered.silver_columns == ("order_no", "status")


def test_mappings_load_parents_before_the_children_that_look_them_up():
    # Given the order of the mappings
    loaded_before: set[str] = set()
    for mapping in MAPPINGS:
        # Then every lookup targets a table loaded earlier, or one the hub does not load
        # (products are mastered in Dataverse)
        for reference in mapping.lookups:
            assert reference.entity_set in loaded_before or reference.entity_set == "products"
        loaded_before.add(mapping.entity_set)
    assert [m.name for m in MAPPINGS] == [
        "customers",
        "legacy_orders",
        "legacy_order_lines",
        "plant_inventory",
    ]


# --- the mainframe mappings ----------------------------------------------------------------------


def test_a_legacy_order_becomes_an_upsert_by_order_number_with_its_account_bound():
    upsert = LEGACY_ORDER_ROWS.to_upsert(order_row())
    assert upsert.key == {"contoso_ordernumber": "0000000042"}
    values = upsert.values
    assert values["contoso_status"] == "R"  # the named status back to the legacy letter
    assert values["contoso_totalamount"] == Decimal("12345.67")
    assert values["contoso_orderdate"] == dt.date(2026, 10, 1)
    assert values["contoso_requestedshipdate"] is None  # blank on the mainframe: cleared
    assert values["contoso_lastchangedon"] == STAMP
    assert values["contoso_name"] == "Legacy order 0000000042"
    assert values["contoso_AccountId@odata.bind"] == "/accounts(accountnumber='C0000007')"
    assert LEGACY_ORDER_ROWS.business_key(order_row()) == "0000000042"


def test_a_line_carries_its_amount_and_binds_its_order():
    row = {
        "order_no": "0000000042",
        "line_no": 10,
        "item_no": "RTU-0100",
        "quantity": Decimal("2.500"),
        "unit_price": Decimal("12500.00"),
        "status": "Open",
        "source_modified_at": STAMP,
    }
    upsert = LEGACY_ORDER_LINE_ROWS.to_upsert(row)
    assert upsert.key == {"contoso_orderlinekey": "0000000042|10"}
    assert upsert.values["contoso_amount"] == Decimal("31250.00")
    assert upsert.values["contoso_linenumber"] == 10
    assert upsert.values["contoso_status"] == "O"
    assert (
        upsert.values["contoso_LegacyOrderId@odata.bind"]
        == "/contoso_legacyorders(contoso_ordernumber='0000000042')"
    )
    assert LEGACY_ORDER_LINE_ROWS.business_key(row) == "0000000042|10"


def test_inventory_binds_its_product_by_sku_and_computes_available_stock():
    row = {
        "plant": "P100",
        "item_no": "AHU-003-DO5",
        "on_hand": 196,
        "allocated": 142,
        "source_modified_at": STAMP,
    }
    upsert = PLANT_INVENTORY_ROWS.to_upsert(row)
    assert upsert.key == {"contoso_inventorykey": "P100|AHU-003-DO5"}
    assert upsert.values["contoso_available"] == Decimal(54)
    assert upsert.values["contoso_onhand"] == Decimal(196)
    assert upsert.values["contoso_ProductId@odata.bind"] == "/products(productnumber='AHU-003-DO5')"


@pytest.mark.parametrize(
    ("status", "state", "credit"),
    [("Active", 0, 100000000), ("CreditHold", 0, 100000001), ("Inactive", 1, 100000000)],
)
def test_a_customer_writes_only_the_columns_the_mainframe_masters(status, state, credit):
    row = {
        "customer_no": "C0000007",
        "name": "FABRIKAM",
        "city": "SEATTLE",
        "state": "WA",
        "zip": "98101",
        "country": "US",
        "status": status,
        "source_modified_at": STAMP,
    }
    upsert = CUSTOMER_ACCOUNTS.to_upsert(row)
    assert upsert.key == {"accountnumber": "C0000007"}
    assert upsert.values == {
        "accountnumber": "C0000007",
        "name": "FABRIKAM",
        "address1_city": "SEATTLE",
        "address1_stateorprovince": "WA",
        "address1_postalcode": "98101",
        "address1_country": "US",
        "statecode": state,
        "contoso_creditstatus": credit,
    }


def test_a_status_the_mapping_does_not_know_fails_that_row_only():
    with pytest.raises(MappingError, match="contoso_status"):
        LEGACY_ORDER_ROWS.to_upsert(order_row(status="OnHold"))


def test_a_row_without_its_key_cannot_be_upserted():
    with pytest.raises(MappingError, match="alternate key contoso_ordernumber has no value"):
        LEGACY_ORDER_ROWS.to_upsert(order_row(order_no=None))
