"""Gold ``pipeline_by_territory`` and ``quote_to_order_conversion`` on real Azurite, from quotes
in ``silver/quotes`` (the intake's bronze, MERGEd by the lake ingest job), their Dynamics 365
state in ``dataverse_quotes`` (flow 7) and the orders that carry their id (SAP's
PurchaseOrderByCustomer, the mainframe's QTREF). Definitions: docs/lake.md, "Gold"."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from shared import wiring
from shared.lake.bronze import BronzeWriter
from shared.lake.delta import table_version
from shared.lake.gold import read_gold, rebuild_gold
from shared.lake.silver import SilverStage
from shared.lake.specs import LEGACY_ORDERS, QUOTES, SAP_ORDERS
from shared.services.dataverse_to_lake import EXPORT_TABLES_BY_SET
from shared.services.forecasts import ingest_quoting_tool
from tests.fixtures.lake import legacy_order
from tests.integration.test_lake_quotes_silver import intake, post_quote
from tests.integration.test_quote_flow import qualify_in_dataverse, quote
from tests.integration.test_sap_inbound import (
    SKUS,
    quote_status,
    reset,
    sap_order,
    seed_dataverse,
    seed_sap,
)

pytestmark = pytest.mark.integration

WEST = ("West", "King", "Seattle", "98101")
EAST = ("East", "Suffolk", "Boston", "02108")


def _ship_to(territory: tuple[str, str, str, str]) -> dict[str, str]:
    region, county, city, postal = territory
    return {
        "street": "1 Main St",
        "city": city,
        "county": county,
        "region": region,
        "postalCode": postal,
        "country": "US",
    }


def _quote(
    quote_id: str,
    revision: int,
    amount: str,
    probability: str,
    close: str,
    *,
    territory=WEST,
    currency: str = "USD",
) -> dict[str, Any]:
    # One line of one unit at ``amount`` and no discount: the quote's amount is ``amount``.
    line = {"lineNumber": 1, "sku": "RTU-0100", "quantity": 1, "unitPrice": amount}
    return quote(
        quote_id,
        revision,
        lines=[line],
        probability=probability,
        expectedCloseDate=close,
        currency=currency,
        shipTo=_ship_to(territory),
    )


def _at(day: int, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, 15, 0, tzinfo=dt.UTC)


def _dataverse_quote(row_id: str, quote_id: str, state: int, modified: str) -> dict[str, Any]:
    # A row as Dataverse change tracking returns it (flow 7 writes these to bronze as read).
    return {
        "quoteid": row_id,
        "contoso_quotingtoolid": quote_id,
        "statecode": state,
        "statuscode": state + 1,
        "modifiedon": modified,
        "versionnumber": 1,
    }


def _sap_order(number: str, reference: str, status: str, amount: str) -> dict[str, Any]:
    # A header as the SAP inbound batch writes it to bronze (shared.services.sap_inbound.to_raw).
    return {
        "SalesOrder": number,
        "SoldToParty": "C0001001",
        "SalesOrderDate": "2026-11-20",
        "RequestedDeliveryDate": "2027-02-01",
        "OverallSDProcessStatus": status,
        "TransactionCurrency": "USD",
        "TotalNetAmount": amount,
        "PurchaseOrderByCustomer": reference,
        "LastChangeDateTime": "2026-11-20T08:00:00.000000Z",
    }


def _stage(lake, spec, source: str, entity: str, records: list[dict[str, Any]]) -> None:
    page = BronzeWriter(lake).write_page(source, entity, f"t-{uuid.uuid4().hex[:8]}", 0, records)
    stage = SilverStage(lake, spec)
    stage.add(records, page)
    stage.commit()


@pytest.fixture
def quote_lake(lake, watermarks):
    """Silver quotes, Dynamics 365 states and orders of a small, known world."""
    # QA: received, not in Sales yet (1000.00 at 25 %)
    intake(lake, _quote("QA", 0, "1000.00", "0.25", "2026-12-15"), _at(2))
    # QB: ordered in SAP (open order of 480.00)
    intake(lake, _quote("QB", 0, "500.00", "0.5", "2026-12-20"), _at(5))
    # QC: won in Sales, no order seen yet: neither open pipeline nor converted
    intake(lake, _quote("QC", 0, "200.00", "0.9", "2027-01-10"), _at(7))
    # QD: a Draft in Sales, in Canadian dollars, in another territory, received in October
    intake(
        lake,
        _quote("QD", 0, "300.00", "0.1", "2026-12-01", territory=EAST, currency="CAD"),
        _at(30, 10),
    )
    # QE: revision 0 then 1 (the amount changed), qualified in Sales; its only order was
    # cancelled in the mainframe
    intake(lake, _quote("QE", 0, "90.00", "0.5", "2026-12-31"), _at(8))
    intake(lake, _quote("QE", 1, "120.50", "0.75", "2026-12-31"), _at(9))
    ingest_quoting_tool(lake, watermarks, specs=[QUOTES])
    # QA's Sales row was qualified and then deleted; a deleted row does not count
    dataverse = EXPORT_TABLES_BY_SET["quotes"].spec
    _stage(
        lake,
        dataverse,
        "dataverse",
        "quotes",
        [
            _dataverse_quote(
                "00000000-0000-0000-0000-0000000000c1", "QC", 2, "2026-11-10T10:00:00Z"
            ),
            _dataverse_quote(
                "00000000-0000-0000-0000-0000000000d1", "QD", 0, "2026-11-01T10:00:00Z"
            ),
            _dataverse_quote(
                "00000000-0000-0000-0000-0000000000e1", "QE", 1, "2026-11-10T10:00:00Z"
            ),
            _dataverse_quote(
                "00000000-0000-0000-0000-0000000000a1", "QA", 1, "2026-11-03T10:00:00Z"
            ),
            {
                "@odata.context": "https://org.example/api/data/v9.2/$metadata#quotes/$deletedEntity",
                "id": "00000000-0000-0000-0000-0000000000a1",
                "reason": "deleted",
            },
        ],
    )
    _stage(lake, SAP_ORDERS, "sap", "sales_orders", [_sap_order("4800001", "QB", "A", "480.00")])
    _stage(lake, LEGACY_ORDERS, "mainframe", "orders", [legacy_order(77, status="X", quote="QE")])
    return lake


def test_pipeline_holds_open_quotes_by_territory_with_the_part_sales_qualified(quote_lake):
    # Given the known world above
    # When gold is rebuilt
    rebuild_gold(quote_lake)
    # Then the pipeline holds QA (received) and QE (qualified, latest revision) in the West for
    # December, and QD in the East in CAD; the ordered QB and the won QC are not pipeline
    #   West: 1000.00 + 120.50 = 1120.50; weighted 250.00 + 90.375 = 340.375 -> 340.38 (once,
    #   half to even); qualified: QE, 120.50.  East: 300.00 at 10 % = 30.00.
    assert read_gold(quote_lake, "pipeline_by_territory").rows() == [
        (
            *EAST,
            dt.date(2026, 12, 1),
            "CAD",
            1,
            Decimal("300.00"),
            Decimal("30.00"),
            0,
            Decimal("0.00"),
        ),
        (
            *WEST,
            dt.date(2026, 12, 1),
            "USD",
            2,
            Decimal("1120.50"),
            Decimal("340.38"),
            1,
            Decimal("120.50"),
        ),
    ]


def test_conversion_counts_quotes_that_a_live_order_carries_by_month_first_received(quote_lake):
    # Given the known world above
    # When gold is rebuilt, twice
    rebuild_gold(quote_lake)
    version = table_version(quote_lake, "gold", "quote_to_order_conversion")
    again = rebuild_gold(quote_lake)
    # Then the West's November cohort has four quotes of which QB converted (480.00 ordered;
    # QE's only order was cancelled), and the East's October cohort one, not converted
    conversion = read_gold(quote_lake, "quote_to_order_conversion").select(
        "region",
        "month",
        "currency",
        "quotes",
        "converted_quotes",
        "conversion_rate",
        "quoted_amount",
        "ordered_amount",
    )
    assert conversion.rows() == [
        ("East", dt.date(2026, 10, 1), "CAD", 1, 0, 0.0, Decimal("300.00"), Decimal("0.00")),
        ("West", dt.date(2026, 11, 1), "USD", 4, 1, 0.25, Decimal("1820.50"), Decimal("480.00")),
    ]
    # and the same silver rebuilds the same gold without a new table version
    assert again.written == []
    assert table_version(quote_lake, "gold", "quote_to_order_conversion") == version


# --- end to end in the sandbox world ----------------------------------------------------------


def test_quotes_qualified_and_ordered_through_the_flows_show_in_both_kpis(world, hub_http):
    # Given two quotes of a region of this test's own, posted through the hub into Dataverse
    reset(world, hub_http)
    seed_dataverse(world, hub_http)
    wiring.reset()
    tag = uuid.uuid4().hex[:6].upper()
    region = f"KPI {tag}"
    open_id, ordered_id = f"Q-O{tag}", f"Q-B{tag}"
    for quote_id in (open_id, ordered_id):
        body = quote(quote_id, skus=SKUS)
        body["shipTo"]["region"] = region
        post_quote(world, hub_http, body)
    # and the first qualified in Sales, the second ordered in SAP
    opened = quote_status(world, hub_http, open_id)
    qualify_in_dataverse(world, hub_http, opened["dataverseId"])
    number = str(random.randrange(10**9, 2 * 10**9))
    seed_sap(world, hub_http, {"A_SalesOrder": [sap_order(number, ordered_id)]})
    # When the timers run as production schedules them: flow 7, SAP inbound, lake ingest, gold
    for timer in ("dataverse_to_lake", "sap_inbound", "lake_ingest", "gold_rebuild"):
        world.hub.run_timer(timer)
    # Then the region's pipeline is the qualified quote only (2 lines x 2 x 12500.00 less 5 %)
    lake = wiring.lake()
    pipeline = read_gold(lake, "pipeline_by_territory").filter(pl.col("region") == region)
    assert pipeline.select(
        "open_quotes", "pipeline_amount", "qualified_quotes", "qualified_amount"
    ).rows() == [(1, Decimal("47500.00"), 1, Decimal("47500.00"))]
    # and its conversion is one of two quotes
    conversion = read_gold(lake, "quote_to_order_conversion").filter(pl.col("region") == region)
    assert conversion.select("quotes", "converted_quotes", "conversion_rate").rows() == [
        (2, 1, 0.5)
    ]
