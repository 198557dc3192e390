"""The dashboard's KPI charts from gold rows (no storage): what an empty chart says, how a
conversion bar shows what its rate rests on, and that amounts in two currencies are not added."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.services.dashboard import (
    Bar,
    Chart,
    Snapshot,
    _bars,
    _conversion_bars,
    _empty_note,
    render_chart,
)

pytestmark = pytest.mark.unit


def test_an_empty_chart_names_its_gold_table_instead_of_drawing_zero():
    # Given a chart whose gold table has no rows, and one whose table was never built
    empty = Chart("pipeline", "Open pipeline by region", "amount", (), empty_note=_empty_note(
        "pipeline_by_territory", []))  # fmt: skip
    unbuilt = Chart("backlog", "Order backlog by plant", "amount", (), empty_note=_empty_note(
        "order_backlog", None))  # fmt: skip
    # When they are rendered
    # Then each says which table is empty, marked so a browser check can find it, with no bar
    for chart, note in (
        (empty, "no data yet: gold/pipeline_by_territory has no rows"),
        (unbuilt, "no data yet: gold/order_backlog has not been built"),
    ):
        svg = render_chart(chart)
        assert f'data-empty="true">{note}</text>' in svg
        assert "<rect" not in svg


def test_conversion_bars_show_the_counts_behind_each_rate_most_quotes_first():
    # Given conversion rows of two regions over two months
    rows = [
        {"region": "West", "quotes": 3, "converted_quotes": 1},
        {"region": "West", "quotes": 5, "converted_quotes": 1},
        {"region": "East", "quotes": 2, "converted_quotes": 2},
    ]
    # When the bars are built
    bars = _conversion_bars(rows)
    # Then the rate is Σ converted / Σ quotes (never an average of rates), with its counts
    assert bars == (
        Bar("West", Decimal("25.0"), detail="2 of 8 quotes"),
        Bar("East", Decimal("100.0"), detail="2 of 2 quotes"),
    )
    # and the rendered bar prints both
    svg = render_chart(Chart("conversion", "Conversion", "%", bars))
    assert "25.0% (2 of 8 quotes)" in svg and "data-empty" not in svg


def test_amounts_in_two_currencies_get_a_bar_each():
    # Given pipeline rows of one region in USD and CAD, and of another in USD only
    rows = [
        {"region": "West", "currency": "USD", "pipeline_amount": Decimal("100.00")},
        {"region": "West", "currency": "CAD", "pipeline_amount": Decimal("40.00")},
        {"region": "East", "currency": "USD", "pipeline_amount": Decimal("70.00")},
        {"region": "East", "currency": "USD", "pipeline_amount": Decimal("5.00")},
    ]
    # When the bars are built
    bars = _bars(rows, "region", "pipeline_amount")
    # Then each (region, currency) is its own bar: dollars of two kinds are never summed
    assert [(b.label, b.value) for b in bars] == [
        ("West (USD)", Decimal("100.00")),
        ("East (USD)", Decimal("75.00")),
        ("West (CAD)", Decimal("40.00")),
    ]
    # and with one currency the labels stay plain
    assert [b.label for b in _bars(rows[2:], "region", "pipeline_amount")] == ["East"]


def test_a_snapshot_keeps_the_empty_notes_and_bar_details_through_its_json():
    # Given a snapshot with an empty chart and a conversion bar
    snapshot = Snapshot(
        taken_at="2026-11-22T03:00:00+00:00",
        charts=(
            Chart("pipeline", "P", "amount", (), empty_note="no data yet: gold/x has no rows"),
            Chart("conversion", "C", "%", (Bar("West", Decimal("50.0"), detail="1 of 2 quotes"),)),
        ),
    )
    # When it is stored and read back
    again = Snapshot.from_json(snapshot.to_json())
    # Then nothing is lost
    assert again == snapshot
