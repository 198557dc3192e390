"""Gold table formulas on hand-made silver frames (no storage: inputs are held in memory)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest

from shared.lake.errors import LakeSchemaError
from shared.lake.gold import (
    GOLD_BUILDERS,
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
    return pl.DataFrame(
        [
            dict(
                zip(
                    [
                        "quote_id",
                        "quote_date",
                        "status",
                        "amount",
                        "currency",
                        "win_probability",
                        "expected_close_date",
                        "region",
                        "county",
                        "city",
                        "zip",
                    ],
                    r,
                    strict=True,
                )
            )
            for r in rows
        ],
        schema={
            "quote_id": pl.String,
            "quote_date": pl.Date,
            "status": pl.String,
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


TERR = ("Midwest", "Sangamon", "Springfield", "62701")
QUOTES = _quotes(
    (
        "Q1",
        D(2026, 4, 2),
        "Active",
        Decimal("100.05"),
        "USD",
        Decimal("33.33"),
        D(2026, 6, 9),
        *TERR,
    ),
    ("Q2", D(2026, 4, 9), "Draft", Decimal("0.25"), "USD", Decimal("50"), D(2026, 6, 20), *TERR),
    ("Q3", D(2026, 4, 20), "Won", Decimal("500.00"), "USD", Decimal("100"), D(2026, 6, 1), *TERR),
    ("Q4", D(2026, 5, 1), "Lost", Decimal("80.00"), "USD", Decimal("0"), D(2026, 6, 1), *TERR),
)


def test_pipeline_weights_open_quotes_by_probability_rounding_once_half_even():
    # Given two open quotes (and won/lost ones that are not pipeline)
    inputs = InMemoryInputs(quotes=QUOTES)
    # When the pipeline is built
    pipeline = build_pipeline_by_territory(inputs)
    # Then pipeline = 100.05 + 0.25, weighted = round(100.05*0.3333 + 0.25*0.5, 2)
    #      = round(33.346665 + 0.125, 2) = round(33.471665, 2) = 33.47
    assert pipeline.rows() == [
        (*TERR, D(2026, 6, 1), "USD", 2, Decimal("100.30"), Decimal("33.47")),
    ]


def test_quote_conversion_counts_quotes_with_a_non_cancelled_order():
    # Given quotes Q1..Q4 and orders referencing Q1 (open), Q2 (open) and Q3 (cancelled)
    inputs = InMemoryInputs(quotes=QUOTES, legacy_orders=ORDERS)
    # When conversion is built
    conversion = build_quote_to_order_conversion(inputs)
    # Then April has 3 quotes of which Q1 and Q2 converted; May has Q4, not converted
    assert conversion.select(
        "month", "quotes", "converted_quotes", "conversion_rate", "quoted_amount", "ordered_amount"
    ).rows() == [
        (D(2026, 4, 1), 3, 2, 2 / 3, Decimal("600.30"), Decimal("110.10")),
        (D(2026, 5, 1), 1, 0, 0.0, Decimal("80.00"), Decimal("0.00")),
    ]


def _by_territory(kind, amount_column, *rows):
    id_column = "forecast_id" if kind == "forecasts" else "goal_id"
    return pl.DataFrame(
        [
            {
                id_column: f"{kind}-{i}",
                "month": month,
                amount_column: amount,
                "currency": "USD",
                "region": region,
                "county": county,
                "city": city,
                "zip": zip_code,
            }
            for i, (month, amount, region, county, city, zip_code) in enumerate(rows)
        ],
        schema={
            id_column: pl.String,
            "month": pl.Date,
            amount_column: MONEY,
            "currency": pl.String,
            "region": pl.String,
            "county": pl.String,
            "city": pl.String,
            "zip": pl.String,
        },
    )


def test_forecast_vs_goal_joins_on_territory_including_region_level_goals():
    # Given a zip-level forecast, and a region-level goal (county/city/zip null)
    forecasts = _by_territory("forecasts", "amount", (D(2026, 6, 15), Decimal("80.00"), *TERR))
    goals = _by_territory(
        "goals",
        "target_amount",
        (D(2026, 6, 1), Decimal("100.00"), *TERR),
        (D(2026, 6, 1), Decimal("400.00"), "Midwest", None, None, None),
    )
    # When forecast vs goal is built
    table = build_forecast_vs_goal(InMemoryInputs(forecasts=forecasts, goals=goals))
    # Then matching territories pair up and the null-level goal stands on its own (nulls last)
    assert table.select(
        "county", "forecast_amount", "goal_amount", "variance_amount", "attainment"
    ).rows() == [
        ("Sangamon", Decimal("80.00"), Decimal("100.00"), Decimal("-20.00"), 0.8),
        (None, Decimal("0.00"), Decimal("400.00"), Decimal("-400.00"), 0.0),
    ]


def test_forecast_accuracy_compares_forecast_with_orders_in_the_customers_territory():
    # Given a June forecast of 200 and June orders of customers in that zip (not cancelled)
    forecasts = _by_territory("forecasts", "amount", (D(2026, 6, 1), Decimal("200.00"), *TERR))
    orders = _orders(
        ("1", "C1", D(2026, 6, 2), None, "Shipped", "USD", Decimal("150.00"), "P1", None, False),
        ("2", "C1", D(2026, 6, 3), None, "Open", "USD", Decimal("100.00"), "P1", None, False),
        ("3", "C1", D(2026, 6, 3), None, "Cancelled", "USD", Decimal("900.00"), "P1", None, False),
    )
    customers = pl.DataFrame({"customer_no": ["C1"], "zip": ["62701"], "is_deleted": [False]})
    territories = pl.DataFrame(
        {"region": ["Midwest"], "county": ["Sangamon"], "city": ["Springfield"], "zip": ["62701"]}
    )
    inputs = InMemoryInputs(
        forecasts=forecasts, legacy_orders=orders, customers=customers, territories=territories
    )
    # When accuracy is built
    table = build_forecast_accuracy(inputs)
    # Then ordered = 250, error = -50, |error|/ordered = 0.2, accuracy = 0.8
    assert table.select(
        "forecast_amount", "ordered_amount", "error_amount", "abs_pct_error", "accuracy"
    ).rows() == [(Decimal("200.00"), Decimal("250.00"), Decimal("-50.00"), 0.2, 0.8)]


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
        first = build(InMemoryInputs(legacy_orders=ORDERS, quotes=QUOTES))
        second = build(InMemoryInputs(legacy_orders=ORDERS.reverse(), quotes=QUOTES.reverse()))
        # Then the results are identical, even when silver rows come in another order
        assert first.equals(second)
