"""Gold table formulas on hand-made silver frames (no storage: inputs are held in memory)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from shared.lake.errors import LakeSchemaError
from shared.lake.gold import (
    GOLD_BUILDERS,
    TERRITORY,
    SilverInputs,
    _schemas,
    build_forecast_accuracy,
    build_forecast_vs_goal,
    build_integration_health,
    build_order_backlog,
    build_pipeline_by_territory,
    build_quote_to_order_conversion,
)

pytestmark = pytest.mark.unit

MONEY = pl.Decimal(18, 2)
UTC = dt.UTC


class InMemoryInputs(SilverInputs):
    """SilverInputs over frames in memory (the real one reads Delta tables)."""

    def __init__(self, **tables: pl.DataFrame) -> None:
        self.frames = dict(tables)

    def columns_of(self, table):
        frame = self.frames.get(table)
        return None if frame is None else frame.columns

    def load(self, table, columns):
        return self.frames[table].select(columns)

    def row_count(self, table):
        frame = self.frames.get(table)
        return None if frame is None else frame.height


def _orders(*rows):
    columns = [
        "order_no",
        "customer_no",
        "order_date",
        "requested_date",
        "status",
        "currency",
        "total_amount",
        "plant",
        "quote_ref",
        "is_deleted",
    ]
    return pl.DataFrame(
        [dict(zip(columns, r, strict=True)) for r in rows],
        schema={
            "order_no": pl.String,
            "customer_no": pl.String,
            "order_date": pl.Date,
            "requested_date": pl.Date,
            "status": pl.String,
            "currency": pl.String,
            "total_amount": MONEY,
            "plant": pl.String,
            "quote_ref": pl.String,
            "is_deleted": pl.Boolean,
        },
    )


D = dt.date
ORDERS = _orders(
    (
        "1",
        "C1",
        D(2026, 5, 2),
        D(2026, 6, 10),
        "Open",
        "USD",
        Decimal("100.10"),
        "P100",
        "Q1",
        False,
    ),
    (
        "2",
        "C1",
        D(2026, 5, 3),
        D(2026, 6, 30),
        "Released",
        "USD",
        Decimal("50.05"),
        "P100",
        None,
        False,
    ),
    ("3", "C2", D(2026, 5, 3), None, "Open", "USD", Decimal("10.00"), "P200", "Q2", False),
    (
        "4",
        "C2",
        D(2026, 5, 4),
        D(2026, 6, 1),
        "Shipped",
        "USD",
        Decimal("999.00"),
        "P100",
        None,
        False,
    ),
    (
        "5",
        "C2",
        D(2026, 5, 4),
        D(2026, 6, 1),
        "Cancelled",
        "USD",
        Decimal("999.00"),
        "P100",
        "Q3",
        False,
    ),
    ("6", "C2", D(2026, 5, 4), D(2026, 6, 1), "Open", "USD", Decimal("999.00"), "P100", None, True),
    ("7", "C1", D(2026, 5, 5), D(2026, 6, 5), "Open", "EUR", Decimal("7.00"), "P100", None, False),
)


def test_order_backlog_sums_open_and_released_orders_by_plant_month_and_currency():
    # Given open, released, shipped, cancelled and deleted orders
    inputs = InMemoryInputs(legacy_orders=ORDERS)
    # When the backlog is built
    backlog = build_order_backlog(inputs)
    # Then only open/released live orders count, by requested month (order month if none)
    assert backlog.rows() == [
        ("mainframe", "P100", D(2026, 6, 1), "EUR", 1, 0, 1, Decimal("7.00")),
        ("mainframe", "P100", D(2026, 6, 1), "USD", 1, 1, 2, Decimal("150.15")),
        ("mainframe", "P200", D(2026, 5, 1), "USD", 1, 0, 1, Decimal("10.00")),
    ]
    assert backlog.schema == pl.Schema(_schemas()["order_backlog"])


def test_every_gold_table_is_empty_with_its_schema_when_its_inputs_do_not_exist():
    # Given no silver at all
    inputs = InMemoryInputs()
    for name, build in GOLD_BUILDERS.items():
        # When each gold table is built
        frame = build(inputs)
        # Then it is empty but typed
        assert frame.height == 0, name
        assert frame.schema == pl.Schema(_schemas()[name]), name


def _quotes(*rows):
    columns = [
        "quote_id",
        "created_at",
        "amount",
        "currency",
        "win_probability",
        "expected_close_date",
        "region",
        "county",
        "city",
        "zip",
    ]
    return pl.DataFrame(
        [dict(zip(columns, r, strict=True)) for r in rows],
        schema={
            "quote_id": pl.String,
            "created_at": pl.Datetime("us", "UTC"),
            "amount": MONEY,
            "currency": pl.String,
            "win_probability": pl.Decimal(5, 2),
            "expected_close_date": pl.Date,
            "region": pl.String,
            "county": pl.String,
            "city": pl.String,
            "zip": pl.String,
        },
    )


def _dataverse_quotes(*rows):
    columns = ["quoteid", "contoso_quotingtoolid", "statecode", "source_modified_at", "is_deleted"]
    return pl.DataFrame(
        [dict(zip(columns, r, strict=True)) for r in rows],
        schema={
            "quoteid": pl.String,
            "contoso_quotingtoolid": pl.String,
            "statecode": pl.Int64,
            "source_modified_at": pl.Datetime("us", "UTC"),
            "is_deleted": pl.Boolean,
        },
    )


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(23, 30), tzinfo=UTC)


TERR = ("Midwest", "Sangamon", "Springfield", "62701")
QUOTES = _quotes(
    ("Q1", _at(D(2026, 4, 2)), Decimal("100.05"), "USD", Decimal("33.33"), D(2026, 6, 9), *TERR),
    ("Q2", _at(D(2026, 4, 9)), Decimal("0.25"), "USD", Decimal("50"), D(2026, 6, 20), *TERR),
    ("Q3", _at(D(2026, 4, 20)), Decimal("500.00"), "USD", Decimal("100"), D(2026, 6, 1), *TERR),
    ("Q4", _at(D(2026, 5, 1)), Decimal("80.00"), "USD", Decimal("0"), D(2026, 6, 1), *TERR),
)
# Sales qualified Q1 (Active), Q2 is still a Draft, Q3 was won and Q4 closed; an older,
# deleted row for Q1 must not count.
STATES = _dataverse_quotes(
    ("d1", "Q1", 1, _at(D(2026, 4, 3)), False),
    ("d0", "Q1", 3, _at(D(2026, 4, 4)), True),
    ("d2", "Q2", 0, _at(D(2026, 4, 9)), False),
    ("d3", "Q3", 2, _at(D(2026, 4, 21)), False),
    ("d4", "Q4", 3, _at(D(2026, 5, 2)), False),
)


def test_pipeline_weights_open_quotes_by_probability_rounding_once_half_even():
    # Given two open quotes, one of them qualified in Sales (and won/closed ones that are not
    # pipeline)
    inputs = InMemoryInputs(quotes=QUOTES, dataverse_quotes=STATES)
    # When the pipeline is built
    pipeline = build_pipeline_by_territory(inputs)
    # Then pipeline = 100.05 + 0.25, weighted = round(100.05*0.3333 + 0.25*0.5, 2)
    #      = round(33.346665 + 0.125, 2) = round(33.471665, 2) = 33.47; Q1 is the qualified part
    assert pipeline.rows() == [
        (*TERR, D(2026, 6, 1), "USD", 2, Decimal("100.30"), Decimal("33.47"), 1, Decimal("100.05")),
    ]


def test_pipeline_counts_quotes_not_yet_in_sales_and_drops_ordered_ones():
    # Given the quotes without any Dynamics 365 state, open orders referencing Q1 and Q2 and a
    # cancelled one referencing Q3
    inputs = InMemoryInputs(quotes=QUOTES, legacy_orders=ORDERS)
    # When the pipeline is built
    pipeline = build_pipeline_by_territory(inputs)
    # Then Q3 and Q4 are open (received, not in Sales yet: 500.00 at 100 %, 80.00 at 0 %) and
    # the ordered Q1 and Q2 are not pipeline any more
    assert pipeline.rows() == [
        (*TERR, D(2026, 6, 1), "USD", 2, Decimal("580.00"), Decimal("500.00"), 0, Decimal("0")),
    ]


def test_quote_conversion_counts_quotes_with_a_non_cancelled_order():
    # Given quotes Q1..Q4 and orders referencing Q1 (open), Q2 (open) and Q3 (cancelled)
    inputs = InMemoryInputs(quotes=QUOTES, legacy_orders=ORDERS, dataverse_quotes=STATES)
    # When conversion is built
    conversion = build_quote_to_order_conversion(inputs)
    # Then April has 3 quotes of which Q1 and Q2 converted; May has Q4, not converted
    assert conversion.select(
        "month", "quotes", "converted_quotes", "conversion_rate", "quoted_amount", "ordered_amount"
    ).rows() == [
        (D(2026, 4, 1), 3, 2, 2 / 3, Decimal("600.30"), Decimal("110.10")),
        (D(2026, 5, 1), 1, 0, 0.0, Decimal("80.00"), Decimal("0.00")),
    ]


def _forecasts(*rows):
    return pl.DataFrame(
        [
            {
                "forecast_id": f"forecasts-{i}",
                "month": month,
                "amount": amount,
                "currency": "USD",
                "region": region,
                "county": county,
                "city": city,
                "zip": zip_code,
            }
            for i, (month, amount, region, county, city, zip_code) in enumerate(rows)
        ],
        schema={
            "forecast_id": pl.String,
            "month": pl.Date,
            "amount": MONEY,
            "currency": pl.String,
            "region": pl.String,
            "county": pl.String,
            "city": pl.String,
            "zip": pl.String,
        },
    )


def _territories(*rows):
    """``dataverse_territories`` rows: (id, code, name, level, parent id)."""
    columns = ["territoryid", "contoso_territorycode", "name", "contoso_level"]
    columns += ["contoso_parentterritoryid", "is_deleted"]
    return pl.DataFrame(
        [dict(zip(columns, (*r, False), strict=True)) for r in rows],
        schema={
            "territoryid": pl.String,
            "contoso_territorycode": pl.String,
            "name": pl.String,
            "contoso_level": pl.Int64,
            "contoso_parentterritoryid": pl.String,
            "is_deleted": pl.Boolean,
        },
    )


def _goals(*rows):
    """``dataverse_goals`` rows: (goal key, territory id, month text, start date, target,
    deleted)."""
    return pl.DataFrame(
        [
            {
                "goalid": f"g{i}",
                "contoso_goalkey": key,
                "contoso_territoryid": territory,
                "contoso_month": month,
                "goalstartdate": start,
                "targetmoney": target,
                "is_deleted": deleted,
            }
            for i, (key, territory, month, start, target, deleted) in enumerate(rows)
        ],
        schema={
            "goalid": pl.String,
            "contoso_goalkey": pl.String,
            "contoso_territoryid": pl.String,
            "contoso_month": pl.String,
            "goalstartdate": pl.Date,
            "targetmoney": MONEY,
            "is_deleted": pl.Boolean,
        },
    )


# Midwest (R1) > Sangamon (R1-C1) > Springfield (R1-C1-T1), and West (R2) with nothing under it.
HIERARCHY = _territories(
    ("t-r1", "R1", "Midwest", 1, None),
    ("t-c1", "R1-C1", "Sangamon", 2, "t-r1"),
    ("t-t1", "R1-C1-T1", "Springfield", 3, "t-c1"),
    ("t-r2", "R2", "West", 1, None),
)
SPRINGFIELD = ("Midwest", "Sangamon", "Springfield", None)
JUNE = ("2026-06", D(2026, 6, 1))
# Goals add up the hierarchy: Sangamon's and Midwest's June goals are Springfield's 100.
GOALS = _goals(
    ("R1-C1-T1|2026-06", "t-t1", *JUNE, Decimal("100.00"), False),
    ("R1-C1|2026-06", "t-c1", *JUNE, Decimal("100.00"), False),
    ("R1|2026-06", "t-r1", *JUNE, Decimal("100.00"), False),
    ("R2|2026-06", "t-r2", *JUNE, Decimal("400.00"), False),
    ("R2|2026-06", "t-r2", *JUNE, Decimal("999.00"), True),
    ("R1-C1-T1|2026-07", "t-t1", "2026-07", D(2026, 7, 1), Decimal("120.00"), False),
)


def test_forecast_vs_goal_compares_each_forecast_with_its_territorys_goal_only():
    # Given two city-level forecasts for Springfield in June (80 in all), Dynamics 365 goals
    # of every level that add up the hierarchy, a deleted goal, and a July goal nobody forecast
    forecasts = _forecasts(
        (D(2026, 6, 1), Decimal("50.00"), *SPRINGFIELD),
        (D(2026, 6, 1), Decimal("30.00"), *SPRINGFIELD),
    )
    inputs = InMemoryInputs(
        forecasts=forecasts, dataverse_goals=GOALS, dataverse_territories=HIERARCHY
    )
    # When forecast vs goal is built
    table = build_forecast_vs_goal(inputs)
    # Then Springfield's goal lands on the forecasts' row (attainment 80 / 100); Sangamon's and
    # Midwest's goals, which restate it, are not added; West, which nobody forecasts, shows
    # its region goal against nothing; the deleted goal and July (no forecast) are out
    assert table.rows() == [
        (*SPRINGFIELD, D(2026, 6, 1), "USD", *map(Decimal, ("80.00", "100.00", "-20.00")), 0.8),
        ("West", None, None, None, D(2026, 6, 1), "USD", *map(Decimal, ("0", "400", "-400")), 0.0),
    ]
    assert table.schema == pl.Schema(_schemas()["forecast_vs_goal"])


def test_forecast_vs_goal_compares_region_forecasts_with_the_region_goal():
    # Given a region-level forecast for Midwest (county and city null, as intake resolves a
    # region code) and the same goals
    forecasts = _forecasts((D(2026, 6, 1), Decimal("150.00"), "Midwest", None, None, None))
    inputs = InMemoryInputs(
        forecasts=forecasts, dataverse_goals=GOALS, dataverse_territories=HIERARCHY
    )
    # When forecast vs goal is built
    table = build_forecast_vs_goal(inputs)
    # Then Midwest's forecast meets Midwest's goal only (not its county's and city's restated)
    assert table.select(
        "region", "county", "forecast_amount", "goal_amount", "attainment"
    ).rows() == [
        ("Midwest", None, Decimal("150.00"), Decimal("100.00"), 1.5),
        ("West", None, Decimal("0.00"), Decimal("400.00"), 0.0),
    ]


def test_forecast_vs_goal_places_a_goal_by_its_key_or_start_date_when_fields_are_empty():
    # Given goals without a territory lookup (placed by the code of their key), one without
    # contoso_month (placed by its start date) and one of a territory Dynamics 365 no longer has
    goals = _goals(
        ("R2|2026-06", None, "2026-06", D(2026, 6, 1), Decimal("10.00"), False),
        ("R2|2026-06", None, None, D(2026, 6, 1), Decimal("5.00"), False),
        ("GONE|2026-06", "t-gone", "2026-06", D(2026, 6, 1), Decimal("70.00"), False),
    )
    forecasts = _forecasts((D(2026, 6, 1), Decimal("12.00"), "West", None, None, None))
    inputs = InMemoryInputs(
        forecasts=forecasts, dataverse_goals=goals, dataverse_territories=HIERARCHY
    )
    # When forecast vs goal is built
    table = build_forecast_vs_goal(inputs)
    # Then both West goals count, and the unplaceable one is left out
    assert table.select("region", "forecast_amount", "goal_amount").rows() == [
        ("West", Decimal("12.00"), Decimal("15.00")),
    ]


def test_forecast_vs_goal_without_goals_or_forecasts():
    forecasts = _forecasts((D(2026, 6, 1), Decimal("12.00"), "West", None, None, None))
    # Given forecasts and no goals (or goals without the territory hierarchy)
    for inputs in (
        InMemoryInputs(forecasts=forecasts),
        InMemoryInputs(forecasts=forecasts, dataverse_goals=GOALS),
    ):
        # When forecast vs goal is built
        table = build_forecast_vs_goal(inputs)
        # Then the forecast stands against a zero goal, attainment undefined
        assert table.select("forecast_amount", "goal_amount", "attainment").rows() == [
            (Decimal("12.00"), Decimal("0.00"), None)
        ]
    # Given goals and no forecasts, When built, Then there is no forecast horizon: no rows
    goals_only = InMemoryInputs(dataverse_goals=GOALS, dataverse_territories=HIERARCHY)
    assert build_forecast_vs_goal(goals_only).height == 0


def _customers(*rows):
    """``customers`` rows: (customer number, ZIP code)."""
    return pl.DataFrame(
        [{"customer_no": c, "zip": z, "is_deleted": False} for c, z in rows],
        schema={"customer_no": pl.String, "zip": pl.String, "is_deleted": pl.Boolean},
    )


def _postal_codes(*rows):
    """``dataverse_contoso_postalcodes`` rows: (ZIP code, territory id)."""
    return pl.DataFrame(
        [
            {
                "contoso_postalcodeid": f"pc-{z}",
                "contoso_name": z,
                "contoso_territoryid": t,
                "is_deleted": False,
            }
            for z, t in rows
        ],
        schema={
            "contoso_postalcodeid": pl.String,
            "contoso_name": pl.String,
            "contoso_territoryid": pl.String,
            "is_deleted": pl.Boolean,
        },
    )


# Springfield and Peoria (two cities of Sangamon, Midwest), and their ZIP codes.
CITIES = pl.concat([HIERARCHY, _territories(("t-t2", "R1-C1-T2", "Peoria", 3, "t-c1"))])
ZIPS = _postal_codes(("62701", "t-t1"), ("61602", "t-t2"))
CUSTOMERS = _customers(("C1", "62701-1234"), ("C2", "61602"), ("C3", "99999"), ("C4", None))


def _order(number, customer, day, status, amount, *, deleted=False):
    return (number, customer, day, None, status, "USD", Decimal(amount), "P1", None, deleted)


def _accuracy(forecasts, orders, **tables):
    inputs = InMemoryInputs(
        forecasts=forecasts,
        legacy_orders=orders,
        customers=CUSTOMERS,
        dataverse_territories=CITIES,
        dataverse_contoso_postalcodes=ZIPS,
    )
    inputs.frames.update(tables)
    return build_forecast_accuracy(inputs)


def test_forecast_accuracy_places_orders_by_their_customers_zip_on_the_forecasts_row():
    # Given a June forecast of 200 for Springfield (city level, as intake resolves its code) and
    # June orders of a customer whose ZIP+4 folds to Springfield's ZIP (a cancelled and a
    # deleted one among them)
    forecasts = _forecasts((D(2026, 6, 1), Decimal("200.00"), *SPRINGFIELD))
    orders = _orders(
        _order("1", "C1", D(2026, 6, 2), "Shipped", "150.00"),
        _order("2", "C1", D(2026, 6, 3), "Open", "100.00"),
        _order("3", "C1", D(2026, 6, 3), "Cancelled", "900.00"),
        _order("4", "C1", D(2026, 6, 4), "Open", "800.00", deleted=True),
    )
    # When accuracy is built
    table = _accuracy(forecasts, orders)
    # Then the orders land on the forecast's row: ordered = 250, error = -50,
    # |error| / ordered = 0.2, accuracy = 0.8
    assert table.select(
        *TERRITORY,
        "forecast_amount",
        "ordered_amount",
        "error_amount",
        "abs_pct_error",
        "accuracy",
    ).rows() == [(*SPRINGFIELD, Decimal("200.00"), Decimal("250.00"), Decimal("-50.00"), 0.2, 0.8)]


def test_forecast_accuracy_counts_each_order_at_the_level_its_territory_is_forecast():
    # Given June orders in Springfield (C1: 100) and Peoria (C2: 60)
    orders = _orders(
        _order("1", "C1", D(2026, 6, 2), "Open", "100.00"),
        _order("2", "C2", D(2026, 6, 9), "Open", "60.00"),
    )
    # When the reps forecast the Midwest region (region code: county and city null)
    region = _accuracy(
        _forecasts((D(2026, 6, 1), Decimal("200.00"), "Midwest", None, None, None)), orders
    )
    # Then both cities' orders count on the region's row
    assert region.select(
        "region", "county", "city", "forecast_amount", "ordered_amount"
    ).rows() == [("Midwest", None, None, Decimal("200.00"), Decimal("160.00"))]
    # When only Springfield is forecast
    city = _accuracy(_forecasts((D(2026, 6, 1), Decimal("90.00"), *SPRINGFIELD)), orders)
    # Then Springfield's orders meet its forecast, and Peoria's, which nobody forecast, show on
    # Peoria's own row against nothing (each order counted once)
    assert city.select("city", "forecast_amount", "ordered_amount", "accuracy").rows() == [
        ("Peoria", Decimal("0.00"), Decimal("60.00"), 0.0),
        ("Springfield", Decimal("90.00"), Decimal("100.00"), 0.9),
    ]


def test_forecast_accuracy_leaves_out_orders_it_cannot_place_and_months_nobody_forecast(caplog):
    # Given a June forecast for Springfield and June orders of a customer whose ZIP no postal
    # code maps (C3), of a customer without a ZIP (C4) and of an unknown customer, and a
    # Springfield order in July, a month nobody forecast
    forecasts = _forecasts((D(2026, 6, 1), Decimal("100.00"), *SPRINGFIELD))
    orders = _orders(
        _order("1", "C1", D(2026, 6, 2), "Open", "80.00"),
        _order("2", "C3", D(2026, 6, 2), "Open", "1.00"),
        _order("3", "C4", D(2026, 6, 2), "Open", "2.00"),
        _order("4", "C9", D(2026, 6, 2), "Open", "3.00"),
        _order("5", "C1", D(2026, 7, 2), "Open", "4.00"),
    )
    # When accuracy is built
    with caplog.at_level("WARNING", logger="shared.lake.gold"):
        table = _accuracy(forecasts, orders)
    # Then only the placeable June order counts, and the three left out are counted in the log
    assert table.select("month", "city", "forecast_amount", "ordered_amount").rows() == [
        (D(2026, 6, 1), "Springfield", Decimal("100.00"), Decimal("80.00"))
    ]
    assert "3 order(s) in forecast months left out: 2 without a customer ZIP" in caplog.text
    assert "1 whose ZIP code" in caplog.text


def test_forecast_accuracy_without_the_zip_code_map_has_no_ordered_amounts():
    # Given forecasts and orders, and the hierarchy exported but not the postal codes yet
    forecasts = _forecasts((D(2026, 6, 1), Decimal("100.00"), *SPRINGFIELD))
    orders = _orders(_order("1", "C1", D(2026, 6, 2), "Open", "80.00"))
    inputs = InMemoryInputs(
        forecasts=forecasts, legacy_orders=orders, customers=CUSTOMERS, dataverse_territories=CITIES
    )
    # When accuracy is built
    table = build_forecast_accuracy(inputs)
    # Then the forecast stands with the ordered amount unknown (null), not zero
    assert table.select("forecast_amount", "ordered_amount", "accuracy").rows() == [
        (Decimal("100.00"), None, None)
    ]


def test_integration_health_combines_the_run_log_and_the_quarantine():
    # Given two runs of orders and one quarantined record
    ts = pl.Datetime("us", "UTC")
    runs = pl.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "source": ["mainframe", "mainframe"],
            "entity": ["orders", "orders"],
            "silver_table": ["legacy_orders", "legacy_orders"],
            "finished_at": [
                dt.datetime(2026, 5, 4, 8, 5, tzinfo=UTC),
                dt.datetime(2026, 5, 4, 9, 5, tzinfo=UTC),
            ],
            "records_read": [10, 5],
            "quarantined": [1, 0],
            "max_source_modified_at": [
                dt.datetime(2026, 5, 4, 8, 0, tzinfo=UTC),
                dt.datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
            ],
        },
        schema_overrides={"finished_at": ts, "max_source_modified_at": ts},
    )
    quarantine = pl.DataFrame(
        {"source": ["mainframe"], "entity": ["orders"], "silver_table": ["legacy_orders"]}
    )
    silver = pl.DataFrame({"order_no": [str(i) for i in range(14)]})
    inputs = InMemoryInputs(ingestion_runs=runs, quarantine=quarantine, legacy_orders=silver)
    # When health is built
    health = build_integration_health(inputs)
    # Then counts add up, the last success is the newest run and lag is measured on it
    assert health.row(0, named=True) == {
        "source": "mainframe",
        "entity": "orders",
        "silver_table": "legacy_orders",
        "runs": 2,
        "records_in": 15,
        "records_rejected": 1,
        "quarantined_distinct": 1,
        "current_rows": 14,
        "rejection_rate": 1 / 15,
        "last_success_at": dt.datetime(2026, 5, 4, 9, 5, tzinfo=UTC),
        "last_source_modified_at": dt.datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
        "lag_seconds": 300.0,
    }


def test_an_input_breaking_its_contract_fails_loudly():
    # Given a quotes table without the win probability column
    inputs = InMemoryInputs(quotes=QUOTES.drop("win_probability"))
    # When the pipeline is built
    # Then the contract breach is named rather than producing wrong numbers
    with pytest.raises(LakeSchemaError, match="win_probability"):
        build_pipeline_by_territory(inputs)


def test_the_same_silver_builds_the_same_gold():
    # Given the same inputs twice
    # When every table is built twice
    for build in GOLD_BUILDERS.values():
        tables = {
            "legacy_orders": ORDERS,
            "quotes": QUOTES,
            "dataverse_quotes": STATES,
            "forecasts": _forecasts(
                (D(2026, 6, 1), Decimal("50.00"), *SPRINGFIELD),
                (D(2026, 6, 1), Decimal("7.00"), "West", None, None, None),
            ),
            "dataverse_goals": GOALS,
            "dataverse_territories": CITIES,
            "dataverse_contoso_postalcodes": ZIPS,
            "customers": _customers(("C1", "62701"), ("C2", "61602")),
        }
        first = build(InMemoryInputs(**tables))
        second = build(InMemoryInputs(**{name: f.reverse() for name, f in tables.items()}))
        # Then the results are identical, even when silver rows come in another order
        assert first.equals(second)
