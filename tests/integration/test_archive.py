"""POST /api/quotes/archive end to end: NDJSON validated line by line over real HTTP, valid lines
in bronze pages (Azurite), and the ``lake_ingest`` timer MERGEing them into
``silver/quote_archive``.

NDJSON as the API guide defines it (docs/api.md, after ndjson-spec 1.0: one JSON text per line,
LF or CRLF line ends); each line follows the strict JSON rules of RFC 8259 that request bodies do.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import polars as pl
import pytest

import blueprints.archive
from shared import wiring
from shared.lake.bronze import BronzeReader
from shared.lake.delta import read_frame

pytestmark = pytest.mark.integration

NDJSON = "application/x-ndjson"


def _quote_id() -> str:
    return f"Q-{uuid.uuid4().hex[:12]}"


def _quote(quote_id: str, **changes: Any) -> dict[str, Any]:
    line = {
        "recordType": "quote",
        "quoteId": quote_id,
        "accountNumber": "ACC-10042",
        "closedOn": "2019-11-30",
        "amount": "18250.00",
        "currency": "USD",
        "status": "won",
        "sourceSystem": "legacy-quoting",
    }
    return line | changes


def _job(quote_id: str, job_id: str | None, **changes: Any) -> dict[str, Any]:
    line = {
        "recordType": "job",
        "quoteId": quote_id,
        "accountNumber": "ACC-10042",
        "closedOn": "2020-02-14",
        "amount": "18250.00",
        "currency": "USD",
        "status": "completed",
    }
    if job_id is not None:
        line["jobId"] = job_id
    return line | changes


def _post(world, http, body: bytes, content_type: str = NDJSON):
    return http.post(
        f"{world.hub.base_url}/api/quotes/archive",
        data=body,
        headers={"x-functions-key": world.hub.function_key, "Content-Type": content_type},
    )


def _lines(*items: dict[str, Any] | str) -> list[bytes]:
    return [(i if isinstance(i, str) else json.dumps(i)).encode() for i in items]


def _bronze_pages(upload: bytes) -> list[str]:
    import hashlib

    run = f"ar-{hashlib.sha256(upload).hexdigest()[:40]}"
    lake = wiring.lake()
    container = lake.blob_service.get_container_client(lake.container("bronze"))
    return sorted(
        b.name
        for b in container.list_blobs(name_starts_with="quotingtool/archive/")
        if f"/{run}-" in b.name
    )


def test_mixed_upload_stores_valid_lines_and_reports_invalid_ones_by_line(world, hub_http):
    # Given an upload with valid lines, a blank line, CRLF ends and four bad lines
    q1, q2, q3 = _quote_id(), _quote_id(), _quote_id()
    lines = _lines(
        _quote(q1),  # 1
        "",  # 2: blank, skipped
        _job(q1, "J-88120"),  # 3 (CRLF below)
        _job(q2, None),  # 4: a job without jobId
        '{"recordType": "quote",',  # 5: not JSON
        _quote(q2, amount=18250),  # 6: money as a number
        _quote(q1, status="lost"),  # 7: the record of line 1 again
        "   ",  # 8: whitespace only, skipped
        _quote(q3, description="Multi\nline"),  # 9: last line, no newline after it
    )
    body = b"\n".join(lines[:2]) + b"\n" + lines[2] + b"\r\n" + b"\n".join(lines[3:])
    # When it is uploaded
    response = _post(world, hub_http, body)
    # Then the counts and the rejected line numbers with their field errors come back
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["received"], result["accepted"], result["rejected"]) == (7, 3, 4)
    assert result["errorsTruncated"] is False
    by_line = {e["line"]: e["errors"] for e in result["errors"]}
    assert sorted(by_line) == [4, 5, 6, 7]
    assert [(e["pointer"], e["code"]) for e in by_line[4]] == [("/jobId", "missing")]
    assert by_line[5][0]["code"] == "malformed_json"
    assert [(e["pointer"], e["code"]) for e in by_line[6]] == [("/amount", "decimal_string_type")]
    assert by_line[7][0]["code"] == "duplicate_record"
    # When the lake job runs
    world.hub.run_timer("lake_ingest")
    # Then silver holds the three valid records, keyed by (recordType, quoteId, jobId)
    frame = read_frame(wiring.lake(), "silver", "quote_archive")
    assert frame is not None
    mine = frame.filter(pl.col("quote_id").is_in([q1, q2, q3])).sort("line_no")
    assert mine.get_column("record_key").to_list() == [
        f"quote|{q1}|",
        f"job|{q1}|J-88120",
        f"quote|{q3}|",
    ]
    assert mine.get_column("line_no").to_list() == [1, 3, 9]
    assert str(mine.item(0, "amount")) == "18250.00"
    assert mine.item(2, "description") == "Multi\nline"


def test_repeated_upload_gets_the_same_answer_and_writes_nothing_new(world, hub_http):
    # Given an upload that was stored
    body = b"\n".join(_lines(_quote(_quote_id()), _job(_quote_id(), None))) + b"\n"
    first = _post(world, hub_http, body)
    pages = _bronze_pages(body)
    assert len(pages) == 1
    # When it is uploaded again
    again = _post(world, hub_http, body)
    # Then the answer is identical and bronze holds the same single page
    assert again.status_code == 200
    assert again.json() == first.json()
    assert _bronze_pages(body) == pages


def test_valid_lines_go_to_bronze_in_pages_of_at_most_5000(world, hub_http):
    # Given 5001 valid lines
    prefix = uuid.uuid4().hex[:8]
    body = b"\n".join(json.dumps(_quote(f"Q-{prefix}-{i}")).encode() for i in range(5001))
    # When they are uploaded
    response = _post(world, hub_http, body)
    # Then all are accepted and bronze holds two pages of 5000 and 1
    assert response.json()["accepted"] == 5001
    reader = BronzeReader(wiring.lake())
    sizes = [len(reader.read_page(name).records) for name in _bronze_pages(body)]
    assert sorted(sizes) == [1, 5000]


def test_more_than_1000_rejected_lines_are_listed_up_to_1000(world, hub_http):
    # Given 1100 lines that are JSON objects but not archive records
    body = b"{}\n" * 1100
    # When they are uploaded
    result = _post(world, hub_http, body).json()
    # Then all count as rejected, the first 1000 are listed, and the list says it is truncated
    assert (result["received"], result["rejected"]) == (1100, 1100)
    assert len(result["errors"]) == 1000
    assert result["errors"][-1]["line"] == 1000
    assert result["errorsTruncated"] is True


def test_oversized_upload_is_413_problem(world, hub_http, monkeypatch):
    # Given the hub's archive limit (100 MiB, which the Functions host also enforces before the
    # hub runs) lowered in the running app, so the hub's own check is what answers
    monkeypatch.setattr(blueprints.archive, "MAX_ARCHIVE_BYTES", 1000)
    # When an upload one byte over it arrives
    response = _post(world, hub_http, b"{}\n" * 333 + b"{}")
    # Then it is refused with 413 content-too-large, naming the limit
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/content-too-large")
    assert response.json()["maxBytes"] == 1000


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("application/json", 415), ("text/plain", 415), (f"{NDJSON}; charset=latin-1", 415)],
)
def test_other_media_types_are_415(world, hub_http, content_type, status):
    # When an upload is not declared as UTF-8 NDJSON
    response = _post(world, hub_http, json.dumps(_quote(_quote_id())).encode(), content_type)
    # Then it is refused with 415 problem+json
    assert response.status_code == status
    assert response.json()["type"].endswith("/unsupported-media-type")


@pytest.mark.parametrize(
    "body",
    [b"", b"\n \r\n\t\n", b'{"recordType": "quote"}\n\xff\xfe\n'],
    ids=["empty", "blank", "latin"],
)
def test_empty_or_non_utf8_upload_is_400_and_nothing_is_stored(world, hub_http, body):
    # When the upload is empty, blank, or not UTF-8 somewhere
    response = _post(world, hub_http, body)
    # Then it is refused as a whole before any line is stored
    assert response.status_code == 400
    assert response.json()["type"].endswith("/bad-request")
    assert _bronze_pages(body) == []
