"""Gold on real Azurite: deterministic rebuilds from silver Delta tables."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl
import pytest
from deltalake import write_deltalake

from shared.lake.bronze import BronzeWriter
from shared.lake.delta import table_version
from shared.lake.gold import GOLD_BUILDERS, GoldBuildError, _schemas, read_gold, rebuild_gold
from shared.lake.runs import RunRecord, record_runs
from shared.lake.silver import SilverStage
from shared.lake.specs import LEGACY_ORDERS
from tests.fixtures.lake import T0, legacy_order

pytestmark = pytest.mark.integration


def _ingest_orders(lake):
    records = [
        legacy_order(1, status="O", cents=10_000, plant="P100", requested="20260610"),
        legacy_order(2, status="R", cents=2_550, plant="P100", requested="20260615"),
        legacy_order(3, status="S", cents=99_999, plant="P100", requested="20260615"),
        legacy_order(4, status="O", cents=1_000, plant="P200", requested="20260702"),
        legacy_order(5, status="Z"),
    ]
    page = BronzeWriter(lake).write_page("mainframe", "orders", "run-1", 0, records)
    stage = SilverStage(lake, LEGACY_ORDERS)
    stage.add(records, page)
    counts = stage.commit()
    record_runs(
        lake,
        [
            RunRecord(
                run_id="run-1",
                source="mainframe",
                entity="orders",
                silver_table="legacy_orders",
                started_at=T0,
                finished_at=T0 + dt.timedelta(minutes=1),
                records_read=len(records),
                bronze_pages=1,
                silver_inserted=counts.inserted,
                silver_updated=counts.updated,
                silver_unchanged=counts.unchanged,
                quarantined=counts.quarantined,
                requests=1,
                max_source_modified_at=counts.max_source_modified_at,
                watermark="2026-05-04T09:00:00Z",
            )
        ],
    )


def test_rebuilding_from_the_same_silver_gives_identical_gold_and_writes_nothing(lake):
    # Given mainframe orders in silver and a run log
    _ingest_orders(lake)
    # When gold is built twice
    first = rebuild_gold(lake)
    tables_after_first = {name: read_gold(lake, name) for name in GOLD_BUILDERS}
    versions = {name: table_version(lake, "gold", name) for name in GOLD_BUILDERS}
    second = rebuild_gold(lake)
    # Then every table is identical and the second build added no table versions
    assert sorted(first.written) == sorted(GOLD_BUILDERS)
    assert second.written == []
    for name in GOLD_BUILDERS:
        assert read_gold(lake, name).equals(tables_after_first[name]), name
        assert table_version(lake, "gold", name) == versions[name], name


def test_order_backlog_and_integration_health_are_real_for_mainframe_data(lake):
    # Given mainframe orders (one shipped, one invalid) in silver
    _ingest_orders(lake)
    # When gold is built
    rebuild_gold(lake)
    # Then the backlog holds open/released orders by plant and requested month
    assert read_gold(lake, "order_backlog").rows() == [
        ("mainframe", "P100", dt.date(2026, 6, 1), "USD", 1, 1, 2, Decimal("125.50")),
        ("mainframe", "P200", dt.date(2026, 7, 1), "USD", 1, 0, 1, Decimal("10.00")),
    ]
    # and health counts what came in, what was rejected, and how fresh the newest record was
    health = read_gold(lake, "integration_health").row(0, named=True)
    assert (health["source"], health["entity"], health["silver_table"]) == (
        "mainframe",
        "orders",
        "legacy_orders",
    )
    assert (health["records_in"], health["records_rejected"], health["current_rows"]) == (5, 1, 4)
    assert health["last_success_at"] == T0 + dt.timedelta(minutes=1)
    assert health["lag_seconds"] == 60.0


def test_tables_without_inputs_are_written_empty_with_their_schema(lake):
    # Given only mainframe silver (no quotes, forecasts, goals yet)
    _ingest_orders(lake)
    # When gold is built
    rebuild_gold(lake)
    # Then the quote-based tables exist, empty, with their documented columns
    for name in ("pipeline_by_territory", "forecast_vs_goal", "quote_to_order_conversion"):
        table = read_gold(lake, name)
        assert table.height == 0
        assert table.schema == pl.Schema(_schemas()[name])


def test_a_silver_input_breaking_its_contract_fails_its_tables_only(lake):
    # Given mainframe orders and a quotes table missing its contracted columns
    _ingest_orders(lake)
    lake.ensure_container("silver")
    write_deltalake(
        lake.table_uri("silver", "quotes"),
        pl.DataFrame({"quote_id": ["Q1"]}).to_arrow(),
        storage_options=lake.storage_options(),
    )
    # When gold is built
    with pytest.raises(GoldBuildError) as raised:
        rebuild_gold(lake)
    # Then the quote tables are reported failed and the others were still built
    result = raised.value.result
    assert sorted(result.failed) == ["pipeline_by_territory", "quote_to_order_conversion"]
    assert result.rows["order_backlog"] == 2
    assert read_gold(lake, "order_backlog").height == 2
