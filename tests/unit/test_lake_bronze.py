"""Bronze encoding: names, canonical JSON lines, content hashes (no storage involved)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json

import pytest

from shared.lake.bronze import (
    _encode_page,
    blob_name,
    canonical_json,
    content_hash,
    page_hash,
    parse_blob_name,
)
from tests.fixtures.lake import legacy_order

pytestmark = pytest.mark.unit

WHEN = dt.datetime(2026, 5, 4, 9, 30, 15, 123456, tzinfo=dt.UTC)


def test_blob_name_follows_source_entity_ingest_date_run_and_page():
    # Given a run's page
    # When it is named
    name = blob_name("mainframe", "orders", WHEN.date(), "20260504T093015Z-ab12cd34", 7)
    # Then the name is {source}/{entity}/ingest_date=YYYY-MM-DD/{runId}-{n}.jsonl.gz
    assert name == "mainframe/orders/ingest_date=2026-05-04/20260504T093015Z-ab12cd34-7.jsonl.gz"
    assert parse_blob_name(name) == {
        "source": "mainframe",
        "entity": "orders",
        "date": "2026-05-04",
        "run": "20260504T093015Z-ab12cd34",
        "n": "7",
    }


@pytest.mark.parametrize(
    ("source", "entity", "run_id", "n"),
    [
        ("Mainframe", "orders", "r1", 0),
        ("mainframe", "../orders", "r1", 0),
        ("mainframe", "orders", "r/1", 0),
        ("mainframe", "orders", "", 0),
        ("mainframe", "orders", "r1", -1),
    ],
)
def test_blob_name_refuses_parts_that_could_escape_the_layout(source, entity, run_id, n):
    # Given a part that is not a plain name
    # When the page is named
    # Then it is refused rather than written somewhere unexpected
    with pytest.raises(ValueError):
        blob_name(source, entity, WHEN.date(), run_id, n)


def test_canonical_json_sorts_keys_without_whitespace_and_keeps_unicode():
    # Given a record with unsorted keys and non-ASCII text
    record = {"b": "Zürich", "a": "  padded  "}
    # When it is serialised canonically
    text = canonical_json(record)
    # Then keys are sorted, separators compact, values untouched
    assert text == '{"a":"  padded  ","b":"Zürich"}'
    assert content_hash(record) == hashlib.sha256(text.encode()).hexdigest()
    assert content_hash({"a": "  padded  ", "b": "Zürich"}) == content_hash(record)


def test_canonical_json_refuses_nan():
    # Given a value JSON cannot represent
    # When it is serialised
    # Then it is refused (a hash of non-JSON would not be reproducible)
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})


def test_page_lines_are_canonical_envelopes_with_the_raw_record_and_its_hash():
    # Given two raw legacy records (padded ids, implied decimals)
    records = [legacy_order(1), legacy_order(2, status="R")]
    # When the page is encoded
    body, hashes, _ = _encode_page("mainframe", "orders", "run-1", WHEN, records)
    lines = gzip.decompress(body).decode().splitlines()
    # Then each line is exactly the canonical JSON of the lineage envelope
    assert len(lines) == 2
    for line, record, digest in zip(lines, records, hashes, strict=True):
        envelope = json.loads(line)
        assert line == canonical_json(envelope)
        assert envelope == {
            "contentHash": digest,
            "entity": "orders",
            "ingestedAt": "2026-05-04T09:30:15.123456Z",
            "record": record,
            "runId": "run-1",
            "source": "mainframe",
        }
        # and the record's values are byte-for-byte what was received
        assert envelope["record"]["CUSTNO"] == "C0000001  "
        assert digest == content_hash(record)


def test_the_same_page_always_encodes_to_the_same_bytes():
    # Given one page encoded twice
    records = [legacy_order(1)]
    # When both are compared
    first = _encode_page("mainframe", "orders", "run-1", WHEN, records)
    second = _encode_page("mainframe", "orders", "run-1", WHEN, records)
    # Then the gzip bytes are identical (no timestamp in the gzip header)
    assert first == second


def test_page_hash_depends_on_records_and_their_order():
    # Given the hashes of two records
    a, b = content_hash({"x": "1"}), content_hash({"x": "2"})
    # When pages are hashed in different orders
    # Then the page identity differs
    assert page_hash([a, b]) != page_hash([b, a])
    assert page_hash([a, b]) == page_hash([a, b])
