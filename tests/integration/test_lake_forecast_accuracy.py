"""Gold ``forecast_accuracy`` on real Azurite: the territory hierarchy and the ZIP code map seeded
in the Dataverse peer and exported by flow 7 (``dataverse_territories`` and
``dataverse_contoso_postalcodes`` snapshots), customers and orders polled from the mainframe peer
(flow 5), an SAP sales order header as the SAP inbound batch lands it, and forecasts accepted by
the real intake (territory resolved against the same hierarchy) and MERGEd by the lake ingest job.
An order is placed by its customer's ZIP code as quote intake assigns territories (the ZIP's
City/ZIP territory, docs/dataverse-schema.md ``contoso_postalcodes``), on the row of the
forecasts of that territory. Definitions: docs/lake.md, "forecast_accuracy"."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Any

import pytest

from shared.adapters.mainframe import MainframeClient
from shared.adapters.tables import Tables
from shared.http import RetryPolicy, make_session
from shared.lake.bronze import BronzeWriter
from shared.lake.gold import read_gold, rebuild_gold
from shared.lake.silver import SilverStage
from shared.lake.specs import FORECASTS, SAP_ORDERS
from shared.models.forecast import ForecastBatch
from shared.services.dataverse_to_lake import export_dataverse
from shared.services.forecasts import ForecastIntake, IntakeMarkers, ingest_quoting_tool
from shared.services.poll_mainframe import poll_mainframe
from tests.fixtures.lake import T0, legacy_customer, legacy_order
from tests.integration.test_lake_forecast_vs_goal import _hierarchy, _money, _submission

pytestmark = pytest.mark.integration

SNAPSHOTS = ["territories", "contoso_postalcodes"]
JUNE = dt.date(2026, 6, 1)


@pytest.fixture
def markers(azurite):
    """The ``hubintake`` table on a prefix of its own, dropped after the test."""
    tables = Tables(azurite.table_url, use_emulator=True, prefix=f"t{uuid.uuid4().hex[:10]}")
    yield IntakeMarkers(tables.table("hubintake"))
    tables.service.delete_table(f"{tables.prefix}hubintake")


@pytest.fixture
def mainframe_client(mainframe, mainframe_api_client, tls) -> MainframeClient:
    return MainframeClient(
        mainframe.base_url,
        mainframe_api_client["clientId"],
        lambda: mainframe_api_client["clientSecret"],
        session=make_session(tls.ca_path),
        policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    )


class Territories:
    """Midwest (Sangamon county: Springfield, Peoria) and West (King county: Seattle) in
    Dynamics 365, with the ZIP codes of each city (two for Springfield)."""

    def __init__(self, dv) -> None:
        self.dv = dv
        self.tag = uuid.uuid4().hex[:6].upper()
        self.midwest, self.west = f"Midwest {self.tag}", f"West {self.tag}"
        self.ids = {c: str(uuid.uuid4()) for c in ("R1", "C1", "Z1", "Z2", "R2", "C2", "Z3")}
        territories = [
            self._territory("R1", self.midwest, 1, None),
            self._territory("C1", "Sangamon", 2, "R1"),
            self._territory("Z1", "Springfield", 3, "C1"),
            self._territory("Z2", "Peoria", 3, "C1"),
            self._territory("R2", self.west, 1, None),
            self._territory("C2", "King", 2, "R2"),
            self._territory("Z3", "Seattle", 3, "C2"),
        ]
        zips = {"62701": "Z1", "62702": "Z1", "61602": "Z2", "98101": "Z3"}
        dv.seed(
            {
                "territories": territories,
                "contoso_postalcodes": [self.postal_code(z, c) for z, c in zips.items()],
            }
        )

    def code(self, short: str) -> str:
        return f"{short}-{self.tag}"

    def _territory(self, short: str, name: str, level: int, parent: str | None) -> dict[str, Any]:
        row: dict[str, Any] = {
            "territoryid": self.ids[short],
            "contoso_territorycode": self.code(short),
            "name": name,
            "contoso_level": level,
        }
        if parent is not None:
            row["contoso_ParentTerritoryId@odata.bind"] = f"/territories({self.ids[parent]})"
        return row

    def postal_code(self, zip_code: str, short: str) -> dict[str, Any]:
        # As sandbox/datagen seeds them: the ZIP as contoso_name, bound to its City/ZIP territory.
        return {
            "contoso_name": zip_code,
            "contoso_TerritoryId@odata.bind": f"/territories({self.ids[short]})",
        }


def _customer(number: int, zip_code: str) -> dict[str, str]:
    return {**legacy_customer(number), "ZIP": zip_code}


def _order(number: int, customer: int, day: str, status: str, dollars: int) -> dict[str, str]:
    return legacy_order(
        number, customer=f"C{customer:07d}", order_date=day, status=status, cents=dollars * 100
    )


def _sap_order(number: str, customer: int, day: str, amount: str) -> dict[str, Any]:
    # A header as the SAP inbound batch writes it to bronze (shared.services.sap_inbound.to_raw).
    return {
        "SalesOrder": number,
        "SoldToParty": f"C{customer:07d}",
        "SalesOrderDate": day,
        "RequestedDeliveryDate": "2026-08-01",
        "OverallSDProcessStatus": "A",
        "TransactionCurrency": "USD",
        "TotalNetAmount": amount,
        "PurchaseOrderByCustomer": f"PO-{number}",
        "LastChangeDateTime": "2026-06-20T08:00:00.000000Z",
    }


def _land_sap_orders(lake, records: list[dict[str, Any]]) -> None:
    page = BronzeWriter(lake).write_page("sap", "sales_orders", "sap-run-1", 0, records)
    stage = SilverStage(lake, SAP_ORDERS)
    stage.add(records, page)
    stage.commit()


def _row(
    region: str, county: str | None, city: str | None, *, forecast: int, ordered: int, ape: float
) -> tuple[Any, ...]:
    """An expected June row: error = forecast - ordered, accuracy = 1 - |error| / ordered."""
    error = forecast - ordered
    money = _money(forecast, ordered, error, abs(error))
    return (region, county, city, None, JUNE, "USD", *money, ape, max(0.0, 1.0 - ape))


def _forecast_accuracy(lake) -> list[tuple[Any, ...]]:
    rebuild_gold(lake, tables=["forecast_accuracy"])
    table = read_gold(lake, "forecast_accuracy")
    assert table is not None
    return table.select(
        "region",
        "county",
        "city",
        "zip",
        "month",
        "currency",
        "forecast_amount",
        "ordered_amount",
        "error_amount",
        "abs_error_amount",
        "abs_pct_error",
        "accuracy",
    ).rows()


def test_orders_land_on_the_forecast_rows_of_their_customers_territory(
    dv, dataverse_client, mainframe, mainframe_client, lake, watermarks, markers, caplog
):
    # Given the hierarchy and its ZIP codes in Dynamics 365, exported to the lake by flow 7
    world = Territories(dv)
    export_dataverse(dataverse_client, watermarks, lake, entity_sets=SNAPSHOTS)
    # and June forecasts accepted by intake: two reps for Springfield's code (54,000 in all) and
    # one for the West region by name (200,000); nobody forecasts Peoria
    batch = ForecastBatch.model_validate(
        {
            "submissions": [
                _submission("ann@contoso.example", world.code("Z1"), "30000.00", "Committed"),
                _submission("bob@contoso.example", world.code("Z1"), "24000", "BestCase"),
                _submission("cy@contoso.example", world.west, "200000", "Pipeline"),
            ]
        }
    )
    ForecastIntake(BronzeWriter(lake), markers, lambda: _hierarchy(dataverse_client)).accept(batch)
    ingest_quoting_tool(lake, watermarks, specs=[FORECASTS])
    # and the mainframe's customers and orders, polled into the lake: Springfield customers in
    # both of its ZIP codes (one written ZIP+4), a Peoria and a Seattle customer, and one in a
    # ZIP code Dynamics 365 does not map; a cancelled order and a May order among them
    mainframe.seed(
        {
            "customers": [
                _customer(1, "62701"),
                _customer(2, "62702-0417"),
                _customer(3, "61602"),
                _customer(4, "98101"),
                _customer(5, "99501"),
            ],
            "orders": [
                _order(1, 1, "20260603", "S", 30000),
                _order(2, 1, "20260615", "O", 20000),
                _order(3, 1, "20260616", "X", 99999),
                _order(4, 1, "20260528", "O", 5000),
                _order(5, 3, "20260610", "R", 8000),
                _order(6, 4, "20260611", "O", 160000),
                _order(7, 5, "20260612", "O", 40000),
            ],
        }
    )
    mainframe.seed({"settings": [{"now": (T0 + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M%S")}]})
    poll_mainframe(
        mainframe_client,
        watermarks,
        lake,
        overlap=dt.timedelta(seconds=120),
        entities=["customers", "orders"],
    )
    # and an open SAP order of the second Springfield customer (10,000)
    _land_sap_orders(lake, [_sap_order("4800001", 2, "2026-06-20", "10000.00")])

    # When gold forecast_accuracy is built
    with caplog.at_level(logging.WARNING, logger="shared.lake.gold"):
        rows = _forecast_accuracy(lake)
    # Then Springfield's forecast meets its orders from both sources and ZIP codes
    # (30,000 + 20,000 + 10,000; the cancelled and the May order do not count): error -6,000,
    # 10 % off, accuracy 0.9. Seattle's order counts on the West region forecast it rolls up
    # to (40,000 under: 25 % off). Peoria's order, which nobody forecast, shows on Peoria's own
    # row against a zero forecast. The order of the unmapped ZIP code is left out, and counted
    assert rows == [
        _row(world.midwest, "Sangamon", "Peoria", forecast=0, ordered=8000, ape=1.0),
        _row(world.midwest, "Sangamon", "Springfield", forecast=54000, ordered=60000, ape=0.1),
        _row(world.west, None, None, forecast=200000, ordered=160000, ape=0.25),
    ]
    assert "1 order(s) in forecast months left out" in caplog.text
    assert sum(r[7] for r in rows) == Decimal("228000.00")

    # When Sales maps the missing ZIP code to Seattle in Dynamics 365 and flow 7 and gold run
    dv.seed({"contoso_postalcodes": [world.postal_code("99501", "Z3")]})
    export_dataverse(dataverse_client, watermarks, lake, entity_sets=SNAPSHOTS)
    rows = _forecast_accuracy(lake)
    # Then that order lands on the West row too: 200,000 ordered against 200,000 forecast
    assert rows[2] == _row(world.west, None, None, forecast=200000, ordered=200000, ape=0.0)
