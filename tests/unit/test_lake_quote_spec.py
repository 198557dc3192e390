"""The silver ``quotes`` spec without storage: reading the intake's bronze record, the amount the
push sends Dataverse, and the spec options it relies on (version ordering, ingestion-time
columns, earliest-kept values)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.jsonbody import loads, validate
from shared.lake.silver import conform, latest_per_key, raw_frame
from shared.lake.specs import PREPARE_ERROR, QUOTES, Column, json_spec, quote_fields
from shared.models.quote import Quote
from shared.services.quotes import _line_net
from tests.integration.test_quote_flow import quote

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def _record(body: dict) -> dict:
    return {"quoteId": body["quoteId"], "revision": body["revision"], "body": json.dumps(body)}


def _line(number: int, quantity: str, price: str, discount: str) -> dict:
    return {
        "lineNumber": number,
        "sku": "RTU-0100",
        "quantity": quantity,
        "unitPrice": price,
        "discountPct": discount,
    }


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value="0.0001", max_value="500", places=4),
            st.decimals(min_value="0.01", max_value="99999", places=2),
            st.decimals(min_value="0", max_value="100", places=2),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_amount_is_the_total_the_push_sends_dataverse(lines):
    # Given a quote with arbitrary quantities, prices and discounts
    body = quote(
        "Q-AMT",
        lines=[_line(i + 1, str(q), str(p), str(d)) for i, (q, p, d) in enumerate(lines)],
    )
    # When its intake record is read for silver
    fields = quote_fields(_record(body))
    # Then the amount is the sum of the line nets as QuoteFlow computes totalamount
    parsed = validate(Quote, loads(json.dumps(body).encode()))
    assert Decimal(fields["amount"]) == sum(_line_net(line) for line in parsed.lines)


def test_fields_are_read_from_the_body_with_the_zip_folded_and_probability_in_percent():
    # Given a quote shipping to a ZIP+4 with probability 0.1234
    body = quote("Q-F", 3, probability="0.1234")
    body["shipTo"]["postalCode"] = "98101-2345"
    # When its intake record is read
    fields = quote_fields(_record(body))
    # Then the values are the body's, normalised the way the hub reads them
    assert fields["winProbability"] == "12.3400"
    assert fields["shipTo.postalCode"] == "98101"
    assert fields["modifiedAt"] == "2026-11-20T09:00:00.000000+00:00"
    assert (fields["quoteId"], fields["revision"], fields["lineCount"]) == ("Q-F", "3", "3")


def test_a_body_that_disagrees_with_its_envelope_is_unreadable():
    # Given an intake record whose envelope names another revision than its body
    record = _record(quote("Q-E", 2)) | {"revision": 1}
    # When it is read
    fields = quote_fields(record)
    # Then it is marked unreadable, keeping the envelope's key for the quarantine
    assert fields == {
        "quoteId": "Q-E",
        "revision": "1",
        PREPARE_ERROR: "quote body disagrees with its intake envelope",
    }


def test_the_highest_revision_wins_within_a_batch_and_the_first_receipt_is_kept():
    # Given revision 2 received before revision 1 of one quote, in one batch
    frames = [
        conform(
            QUOTES,
            raw_frame(QUOTES, [_record(quote("Q-B", revision))]),
            bronze_path=f"p{revision}",
            run_id="r",
            ingested_at=at,
            content_hashes=[f"h{revision}"],
        )[0]
        for revision, at in ((2, T0), (1, T0 + dt.timedelta(hours=1)))
    ]
    # When the batch is reduced to one version per key
    (row,) = latest_per_key(QUOTES, pl.concat(frames)).iter_rows(named=True)
    # Then revision 2 wins although received earlier, and created_at is the earliest receipt
    assert (row["revision"], row["received_at"], row["created_at"]) == (2, T0, T0)


def test_spec_options_are_checked_when_declared():
    columns = [
        Column("id", "id", "id"),
        Column("at", "at", "iso_timestamp"),
        Column("name", "name", "text"),
    ]
    # A version column must be a declared int
    with pytest.raises(ValueError, match="version"):
        json_spec("t", source="s", entity="e", key=["id"], modified="at", columns=columns,
                  version="name")  # fmt: skip
    # an ordering column cannot also keep its earliest value
    with pytest.raises(ValueError, match="earliest"):
        json_spec("t", source="s", entity="e", key=["id"], modified="at", columns=columns,
                  earliest=["at"])  # fmt: skip
    # and only an ingestion-time column reads no raw field
    with pytest.raises(ValueError, match="ingested"):
        Column("x", "", "text")
    with pytest.raises(ValueError, match="ingested"):
        Column("x", "raw", "ingested")
