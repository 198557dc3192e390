"""Silver conformance and in-batch ordering (polars only; no storage)."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import polars as pl
import pytest

from shared.lake.bronze import content_hash
from shared.lake.silver import conform, latest_per_key, raw_frame, silver_schema
from shared.lake.specs import (
    CUSTOMERS,
    LEGACY_ORDER_LINES,
    LEGACY_ORDERS,
    PLANT_INVENTORY,
    Column,
    EntitySpec,
    dataverse_deletions,
    json_spec,
)
from tests.fixtures.lake import T0, legacy_customer, legacy_inventory, legacy_line, legacy_order

pytestmark = pytest.mark.unit

INGESTED = dt.datetime(2026, 5, 4, 10, 0, tzinfo=dt.UTC)


def _conform(spec, records):
    return conform(
        spec,
        raw_frame(spec, records),
        bronze_path="bronze/mainframe/x.jsonl.gz",
        run_id="run-1",
        ingested_at=INGESTED,
        content_hashes=[content_hash(r) for r in records],
    )


def test_legacy_order_is_typed_and_normalised():
    # Given a legacy order with padded ids, implied decimals, YYYYMMDD dates and a status letter
    record = legacy_order(42, status="R", cents=1_234_567, requested="00000000")
    # When it is conformed
    valid, rejected = _conform(LEGACY_ORDERS, [record])
    # Then every value has its silver type and meaning
    assert rejected.height == 0
    row = valid.row(0, named=True)
    assert row["order_no"] == "0000000042"
    assert row["customer_no"] == "C0000001"
    assert row["order_date"] == dt.date(2026, 5, 4)
    assert row["requested_date"] is None  # 00000000 is the copybook's "no date"
    assert row["status"] == "Released"
    assert row["total_amount"] == Decimal("12345.67")
    assert row["quote_ref"] is None  # 40 blanks
    assert row["sales_rep"] == "JSMITH"
    assert row["source_modified_at"] == T0
    assert row["is_deleted"] is False
    assert row["content_hash"] == content_hash(record)
    assert row["bronze_path"] == "bronze/mainframe/x.jsonl.gz"
    # and money is decimal128, never float
    assert valid.schema["total_amount"] == pl.Decimal(18, 2)


def test_every_mainframe_spec_types_its_entity():
    # Given one record of each remaining entity
    (line,) = _conform(LEGACY_ORDER_LINES, [legacy_line(1, 10, qty_milli=1_500)])[0].rows(
        named=True
    )
    (stock,) = _conform(PLANT_INVENTORY, [legacy_inventory("P200", 3, on_hand=12)])[0].rows(
        named=True
    )
    (customer,) = _conform(CUSTOMERS, [legacy_customer(7, status="H")])[0].rows(named=True)
    # Then quantities keep 3 decimals, line numbers are integers and codes are named
    assert (line["line_no"], line["quantity"], line["unit_price"]) == (
        10,
        Decimal("1.500"),
        Decimal("25.00"),
    )
    assert line["item_no"] == "SKU-00010"
    assert (stock["plant"], stock["item_no"], stock["on_hand"], stock["allocated"]) == (
        "P200",
        "SKU-00003",
        12,
        10,
    )
    assert (customer["customer_no"], customer["name"], customer["status"]) == (
        "C0000007",
        "Customer 7",
        "CreditHold",
    )


@pytest.mark.parametrize(
    ("spec", "record", "reason"),
    [
        (LEGACY_ORDERS, legacy_order(1, order_date="20261301"), "bad date ORDDT='20261301'"),
        (LEGACY_ORDERS, legacy_order(1, order_date="2026051"), "bad date ORDDT='2026051'"),
        (LEGACY_ORDERS, {**legacy_order(1), "TOTAMT": "0000012A4567"}, "bad number TOTAMT="),
        (LEGACY_ORDERS, legacy_order(1, status="Z"), "unknown STATUS='Z'"),
        (LEGACY_ORDERS, {**legacy_order(1), "ORDNO": "          "}, "missing ORDNO"),
        (
            LEGACY_ORDERS,
            {k: v for k, v in legacy_order(1).items() if k != "ORDNO"},
            "missing ORDNO",
        ),
        (LEGACY_ORDERS, {**legacy_order(1), "LSTUPD": "2026050408"}, "bad timestamp LSTUPD="),
        (LEGACY_ORDER_LINES, legacy_line(1, 10, qty_milli=0), "non-positive QTY='00000000'"),
        (LEGACY_ORDER_LINES, legacy_line(1, 10, qty_milli=-500), "non-positive QTY='-00000500'"),
        (CUSTOMERS, legacy_customer(1, status="Q"), "unknown STATUS='Q'"),
    ],
)
def test_invalid_records_are_rejected_with_a_reason_naming_the_field(spec, record, reason):
    # Given a record with one defect
    # When it is conformed
    valid, rejected = _conform(spec, [record])
    # Then it is not valid and its reason names the raw field (and value)
    assert valid.height == 0
    assert rejected.height == 1
    assert reason in rejected.item(0, "reason")
    assert rejected.item(0, "silver_table") == spec.table
    assert rejected.item(0, "content_hash") == content_hash(record)


def test_several_defects_are_all_reported_and_good_rows_pass():
    # Given a page with one good and one doubly bad order
    bad = {**legacy_order(2, status="Z", order_date="20260231")}
    # When it is conformed
    valid, rejected = _conform(LEGACY_ORDERS, [legacy_order(1), bad])
    # Then the good row is valid and the bad one lists both problems, with its key and position
    assert valid.get_column("order_no").to_list() == ["0000000001"]
    assert rejected.item(0, "reason") == "bad date ORDDT='20260231'; unknown STATUS='Z'"
    assert rejected.item(0, "business_key") == "0000000002"
    assert rejected.item(0, "__row") == 1


def test_a_nested_value_is_quarantined_not_fatal():
    # Given a record whose amount is an object (no legacy field ever is)
    record = {**legacy_order(1), "TOTAMT": {"value": 1}}
    # When it is conformed
    valid, rejected = _conform(LEGACY_ORDERS, [record, legacy_order(2)])
    # Then that record is rejected and the rest of the page survives
    assert valid.height == 1
    assert "bad number TOTAMT" in rejected.item(0, "reason")


def _versions():
    older = legacy_order(1, cents=100, updated=T0)
    newer = legacy_order(1, cents=200, updated=T0 + dt.timedelta(minutes=5))
    tie_a = legacy_order(2, cents=300, updated=T0)
    tie_b = legacy_order(2, cents=400, updated=T0)
    return [older, newer, tie_a, tie_b]


def test_within_a_batch_the_newest_version_per_key_wins_whatever_the_order():
    # Given two versions of order 1 and two same-time versions of order 2
    records = _versions()
    tie_winner = max(records[2:], key=content_hash)
    expected = {
        "0000000001": Decimal("2.00"),
        "0000000002": Decimal(int(tie_winner["TOTAMT"])) / 100,
    }
    rng = random.Random(7)
    for _ in range(5):
        # When the batch arrives in any order
        shuffled = records[:]
        rng.shuffle(shuffled)
        valid, _ = _conform(LEGACY_ORDERS, shuffled)
        latest = latest_per_key(LEGACY_ORDERS, valid)
        # Then the later LSTUPD wins, and a tie goes to the higher content hash
        got = dict(zip(latest["order_no"], latest["total_amount"], strict=True))
        assert got == expected


def test_silver_schema_is_spec_columns_then_deletion_and_lineage_columns():
    # Given the orders spec
    # When its table schema is derived
    schema = silver_schema(LEGACY_ORDERS)
    # Then it lists the conformed columns followed by the system columns
    assert schema.names[-6:] == [
        "is_deleted",
        "deleted_at",
        "bronze_path",
        "run_id",
        "content_hash",
        "ingested_at",
    ]
    assert str(schema.field("total_amount").type) == "decimal128(18, 2)"


ACCOUNTS = json_spec(
    "accounts",
    source="dataverse",
    entity="accounts",
    key=["account_id"],
    modified="modified_at",
    columns=[
        Column("account_id", "accountid", "id"),
        Column("account_number", "accountnumber", "id"),
        Column("credit_limit", "creditlimit", "decimal", scale=2),
        Column("on_hold", "creditonhold", "bool"),
        Column("modified_at", "modifiedon", "iso_timestamp"),
    ],
    soft_delete=dataverse_deletions("account_id"),
)


def test_json_spec_reads_json_values_and_normalises_offsets_to_utc():
    # Given a Dataverse-style record with a JSON number and an offset timestamp
    record = {
        "accountid": "a1",
        "accountnumber": "C0000001",
        "creditlimit": 1500.5,
        "creditonhold": False,
        "modifiedon": "2026-05-04T10:00:00+02:00",
    }
    # When it is conformed by a generic JSON spec
    valid, rejected = _conform(ACCOUNTS, [record])
    # Then values are exact and the time is in UTC
    assert rejected.height == 0
    row = valid.row(0, named=True)
    assert row["credit_limit"] == Decimal("1500.50")
    assert row["on_hold"] is False
    assert row["modified_at"] == dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)


def test_json_decimal_refuses_more_precision_than_the_column_keeps():
    # Given amounts with more significant decimals than cents, and trailing zeros
    records = [
        {"accountid": "a1", "creditlimit": "12.345", "modifiedon": "2026-05-04T10:00:00Z"},
        {"accountid": "a2", "creditlimit": "12.3400", "modifiedon": "2026-05-04T10:00:00Z"},
    ]
    # When they are conformed
    valid, rejected = _conform(ACCOUNTS, records)
    # Then money is never rounded silently: 12.345 is rejected, 12.3400 is 12.34
    assert rejected.item(0, "reason") == "bad number creditlimit='12.345'"
    assert valid.item(0, "credit_limit") == Decimal("12.34")


def test_a_dataverse_deletion_is_a_valid_tombstone_keyed_by_id():
    # Given a change-tracking deletion (only @odata.context, id and reason)
    deletion = {
        "@odata.context": "https://org/api/data/v9.2/$metadata#accounts/$deletedEntity",
        "id": "a1",
        "reason": "deleted",
    }
    # When it is conformed
    valid, rejected = _conform(ACCOUNTS, [deletion])
    # Then it is a deletion of key a1, ordered by its ingestion time
    assert rejected.height == 0
    row = valid.row(0, named=True)
    assert row["account_id"] == "a1"
    assert row["is_deleted"] is True
    assert row["deleted_at"] == INGESTED
    assert row["modified_at"] == INGESTED


def test_a_spec_must_declare_its_key_and_a_timestamp_modified_column():
    # Given specs whose key is undeclared or whose modified column is not a timestamp
    # When they are declared
    # Then they are refused at import time rather than failing a run later
    with pytest.raises(ValueError, match="not declared"):
        EntitySpec("t", "s", "e", ("k",), "m", (Column("m", "M", "legacy_timestamp"),))
    with pytest.raises(ValueError, match="timestamp"):
        EntitySpec("t", "s", "e", ("k",), "k", (Column("k", "K", "id"),))
    with pytest.raises(ValueError, match="reserved"):
        EntitySpec(
            "t",
            "s",
            "e",
            ("k",),
            "m",
            (
                Column("k", "K", "id"),
                Column("m", "M", "legacy_timestamp"),
                Column("run_id", "R", "text"),
            ),
        )


def test_silver_names_may_equal_raw_field_names_even_for_typed_keys():
    # Given a JSON spec whose columns keep the source's own names, with an integer key
    spec = json_spec(
        "items",
        source="sap",
        entity="items",
        key=["item", "line"],
        modified="changed",
        columns=[
            Column("item", "item", "id"),
            Column("line", "line", "int"),
            Column("qty", "qty", "decimal", scale=3, positive=True),
            Column("changed", "changed", "iso_timestamp"),
        ],
    )
    records = [
        {"item": "A", "line": "10", "qty": "1.5", "changed": "2026-05-04T08:00:00Z"},
        {"item": "A", "line": "20", "qty": "-1", "changed": "2026-05-04T08:00:00Z"},
    ]
    # When they are conformed
    valid, rejected = _conform(spec, records)
    # Then values are typed in place and the rejected row's key is the key as received
    assert valid.select("item", "line", "qty").rows() == [("A", 10, Decimal("1.500"))]
    assert rejected.select("business_key", "reason").rows() == [("A|20", "non-positive qty='-1'")]
