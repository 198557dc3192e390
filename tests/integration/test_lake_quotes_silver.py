"""``silver/quotes`` on real Azurite: the quotes the intake stored in bronze (one page per accepted
revision, ``{"quoteId", "revision", "body"}``) MERGEd by the ``lake_ingest`` job, the highest
revision winning and the first receipt kept (docs/lake.md, "Quoting Tool quotes")."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from shared import wiring
from shared.lake.bronze import BronzeWriter
from shared.lake.delta import read_frame, table_version
from shared.lake.silver import QUARANTINE_TABLE, reprocess_from_bronze
from shared.lake.specs import QUOTES
from shared.services.forecasts import ingest_quoting_tool
from shared.services.quotes import bronze_run_id
from tests.integration.test_quote_flow import quote
from tests.integration.test_sap_inbound import SKUS, reset, seed_dataverse

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def intake(lake, body: dict[str, Any], at: dt.datetime) -> None:
    """Store a quote revision in bronze as ``QuoteFlow._accept`` does: deterministic run id per
    (quoteId, revision), the request body as received, the intake time as ingestion time."""
    BronzeWriter(lake).write_page(
        "quotingtool",
        "quotes",
        bronze_run_id(body["quoteId"], body["revision"]),
        0,
        [{"quoteId": body["quoteId"], "revision": body["revision"], "body": json.dumps(body)}],
        ingested_at=at,
    )


def silver_quotes(lake) -> pl.DataFrame:
    frame = read_frame(lake, "silver", "quotes")
    assert frame is not None, "silver/quotes was never written"
    return frame.sort("quote_id")


def ingest(lake, watermarks):
    (result,) = ingest_quoting_tool(lake, watermarks, specs=[QUOTES])
    return result


def test_highest_revision_wins_and_the_first_receipt_is_kept_in_any_arrival_order(lake, watermarks):
    # Given quote A received as revision 0 and then revision 2 (a larger order)
    a0 = quote("QA", 0, probability=0.25)
    a2 = quote("QA", 2, probability=0.5, lines=[_line(1, "3", "1000.00", 10)])
    intake(lake, a0, NOW - dt.timedelta(hours=3))
    intake(lake, a2, NOW - dt.timedelta(hours=2))
    # and quote B whose revision 3 is in bronze before its revision 0 (a replayed older page)
    intake(lake, quote("QB", 3), NOW - dt.timedelta(hours=1))
    # When the lake ingest job runs
    first = ingest(lake, watermarks)
    # Then each quote is one row with its highest revision and its typed columns
    assert (first.pages, first.inserted, first.quarantined) == (3, 2, 0)
    rows = {r["quote_id"]: r for r in silver_quotes(lake).iter_rows(named=True)}
    assert rows["QA"]["revision"] == 2
    # 3 x 1000.00 less 10 % = 2700.00, the way the push computes Dataverse's totalamount
    assert rows["QA"]["amount"] == Decimal("2700.00")
    assert rows["QA"]["win_probability"] == Decimal("50.00")
    assert rows["QA"]["line_count"] == 1
    assert (rows["QA"]["region"], rows["QA"]["county"], rows["QA"]["city"], rows["QA"]["zip"]) == (
        "West",
        "King",
        "Seattle",
        "98101",
    )
    assert rows["QA"]["expected_close_date"] == dt.date(2026, 12, 15)
    assert rows["QA"]["modified_at"] == dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    # and created_at is the first receipt, received_at that of the revision shown
    assert rows["QA"]["created_at"] == NOW - dt.timedelta(hours=3)
    assert rows["QA"]["received_at"] == NOW - dt.timedelta(hours=2)

    # Given QA's revision 1 arriving late (received after revision 2) and QB's revision 0,
    # received before its revision 3, arriving now
    intake(lake, quote("QA", 1), NOW - dt.timedelta(minutes=30))
    intake(lake, quote("QB", 0, probability=0.1), NOW - dt.timedelta(hours=4))
    # When the job runs again
    second = ingest(lake, watermarks)
    # Then neither older revision replaces the newer one...
    rows = {r["quote_id"]: r for r in silver_quotes(lake).iter_rows(named=True)}
    assert (rows["QA"]["revision"], rows["QB"]["revision"]) == (2, 3)
    assert rows["QA"]["amount"] == Decimal("2700.00")
    assert rows["QB"]["win_probability"] == Decimal("60.00")
    # ...but QB's first receipt moves back to the earlier revision's, and QA's stays
    assert rows["QB"]["created_at"] == NOW - dt.timedelta(hours=4)
    assert rows["QB"]["received_at"] == NOW - dt.timedelta(hours=1)
    assert rows["QA"]["created_at"] == NOW - dt.timedelta(hours=3)
    assert (second.pages, second.inserted, second.updated) == (2, 0, 1)


def test_rerunning_the_ingest_and_reprocessing_bronze_change_nothing(lake, watermarks):
    # Given two revisions of a quote ingested into silver
    intake(lake, quote("QR", 0), NOW - dt.timedelta(minutes=20))
    intake(lake, quote("QR", 1, probability=0.9), NOW - dt.timedelta(minutes=10))
    ingest(lake, watermarks)
    before = silver_quotes(lake)
    version = table_version(lake, "silver", "quotes")
    # When the job runs again with nothing new, and bronze is reprocessed in full
    again = ingest(lake, watermarks)
    replayed = reprocess_from_bronze(lake, QUOTES)
    # Then nothing was read again, nothing changed, and no table version was added
    assert again.pages == 0
    assert (replayed.received, replayed.inserted, replayed.updated) == (2, 0, 0)
    assert table_version(lake, "silver", "quotes") == version
    assert silver_quotes(lake).equals(before)
    assert before.get_column("revision").to_list() == [1]


def test_a_bronze_quote_that_no_longer_validates_is_quarantined_with_the_reason(lake, watermarks):
    # Given a valid quote and an intake record whose body fails today's model (unknown currency)
    intake(lake, quote("QOK", 0), NOW - dt.timedelta(minutes=5))
    intake(lake, quote("QBAD", 0, currency="XXX"), NOW - dt.timedelta(minutes=5))
    # When the job runs
    result = ingest(lake, watermarks)
    # Then the valid quote reaches silver and the other is quarantined, saying why
    assert (result.inserted, result.quarantined) == (1, 1)
    assert silver_quotes(lake).get_column("quote_id").to_list() == ["QOK"]
    (bad,) = read_frame(lake, "silver", QUARANTINE_TABLE).iter_rows(named=True)
    assert (bad["silver_table"], bad["business_key"]) == ("quotes", "QBAD")
    assert bad["reason"].startswith("quote body refused")
    assert "/currency" in bad["reason"]


# --- end to end in the sandbox world ----------------------------------------------------------


def test_posted_quote_revisions_reach_silver_with_the_amount_dataverse_got(world, hub_http):
    # Given a clean Dataverse with the account and products, and a quote posted over HTTP and
    # pushed to Dataverse
    reset(world, hub_http)
    seed_dataverse(world, hub_http)
    wiring.reset()
    quote_id = f"Q-S{uuid.uuid4().hex[:8].upper()}"
    post_quote(world, hub_http, quote(quote_id, 0, skus=SKUS))
    # When the lake ingest timer runs
    world.hub.run_timer("lake_ingest")
    # Then the quote is in silver at revision 0, with the amount Dataverse holds for it
    row = _silver_row(quote_id)
    dataverse = _dataverse_quote(world, hub_http, quote_id)
    assert row["revision"] == 0
    assert row["amount"] == Decimal(str(dataverse["totalamount"])) == Decimal("47500.00")

    # Given revision 1 posted later with a higher probability
    post_quote(world, hub_http, quote(quote_id, 1, skus=SKUS, probability=0.8))
    # When the timer runs twice
    world.hub.run_timer("lake_ingest")
    version = table_version(wiring.lake(), "silver", "quotes")
    world.hub.run_timer("lake_ingest")
    # Then silver shows revision 1, first received when revision 0 was, and the idle run
    # added no table version
    updated = _silver_row(quote_id)
    assert (updated["revision"], updated["win_probability"]) == (1, Decimal("80.00"))
    assert updated["created_at"] == row["created_at"] < updated["received_at"]
    assert table_version(wiring.lake(), "silver", "quotes") == version


def _line(number: int, quantity: str, price: str, discount: int) -> dict[str, Any]:
    return {
        "lineNumber": number,
        "sku": "RTU-0100",
        "quantity": quantity,
        "unitPrice": price,
        "discountPct": discount,
    }


def post_quote(world, http, body: dict[str, Any]) -> None:
    """POST a quote to the hub over HTTP and deliver its push to Dataverse."""
    response = http.post(
        f"{world.hub.base_url}/api/quotes",
        data=json.dumps(body),
        headers={"x-functions-key": world.hub.function_key, "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text
    world.hub.dispatcher.run_until_idle()


def _silver_row(quote_id: str) -> dict[str, Any]:
    frame = read_frame(wiring.lake(), "silver", "quotes")
    assert frame is not None
    (row,) = frame.filter(pl.col("quote_id") == quote_id).iter_rows(named=True)
    return row


def _dataverse_quote(world, http, quote_id: str) -> dict[str, Any]:
    records = http.get(f"{world.endpoints()['dataverse']}/_sandbox/records/quotes").json()
    return next(q for q in records["records"] if q["contoso_quotingtoolid"] == quote_id)
