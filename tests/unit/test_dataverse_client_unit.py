"""DataverseClient's pure parts: key escaping, JSON encoding, batch parsing, error mapping, AIMD."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal

import pytest

from shared.adapters.dataverse import (
    BulkResult,
    DataverseError,
    DeltaTokenExpired,
    PreconditionFailed,
    RowResult,
    WriteOptions,
    _dumps,
    _error_from,
    _parse_multipart,
    _Width,
    addressable,
    bind,
    entity_path,
    key_segment,
    odata_literal,
)
from shared.errors import PermanentError, TransientError

pytestmark = pytest.mark.unit


def test_key_segments_escape_quotes_and_paths_percent_encode_the_rest():
    # protocols.md: OData string literals double a single quote; keys built from user input
    # must be escaped or a value can rewrite the request
    key = {"accountnumber": "O'Brien#1?x=&y"}
    assert key_segment(key) == "(accountnumber='O''Brien#1?x=&y')"
    path = entity_path("accounts", key)
    assert path == "accounts(accountnumber='O''Brien%231%3Fx=%26y')"
    assert "#" not in path and "?" not in path
    assert key_segment({"k1": "a", "k2": 2}) == "(k1='a',k2=2)"
    guid = uuid.UUID(int=7)
    assert key_segment(guid) == f"({guid})"
    assert bind("accounts", {"accountnumber": "A 1"}) == "/accounts(accountnumber='A%201')"


@pytest.mark.parametrize("bad", [{"a)/x": "v"}, {"": "v"}, {}])
def test_column_names_in_keys_are_validated(bad):
    with pytest.raises(ValueError):
        key_segment(bad)


def test_entity_set_names_are_validated():
    with pytest.raises(ValueError):
        entity_path("accounts?$top=1", {"accountnumber": "x"})


def test_keys_with_characters_dataverse_refuses_in_urls_are_not_addressable():
    # define-alternate-keys-portal.md: / # < > * % & : \ ? +
    assert addressable({"accountnumber": "plain-1"})
    assert addressable(uuid.uuid4())
    for char in "/#<>*%&:\\?+":
        assert not addressable({"accountnumber": f"a{char}b"})


def test_literals_for_every_key_type():
    assert odata_literal(None) == "null"
    assert odata_literal(True) == "true"
    assert odata_literal(Decimal("1.2300")) == "1.2300"
    assert odata_literal(dt.date(2024, 1, 2)) == "2024-01-02"
    assert (
        odata_literal(dt.datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=dt.UTC))
        == "2024-01-02T03:04:05.12Z"
    )
    with pytest.raises(ValueError):
        odata_literal(dt.datetime(2024, 1, 2))
    with pytest.raises(ValueError):
        odata_literal(Decimal("NaN"))


def test_json_bodies_keep_money_exact_and_refuse_naive_datetimes():
    body = _dumps(
        {
            "amount": Decimal("123456789012345.6789"),
            "on": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
            "day": dt.date(2024, 1, 1),
            "id": uuid.UUID(int=1),
            "text": "Décimal",
        }
    )
    assert '"amount":123456789012345.6789' in body
    assert json.loads(body, parse_float=Decimal)["amount"] == Decimal("123456789012345.6789")
    assert '"on":"2024-01-01T00:00:00Z"' in body
    assert '"text":"Décimal"' in body
    with pytest.raises(ValueError):
        _dumps({"on": dt.datetime(2024, 1, 1)})


# The documented batch response shape (execute-batch-operations-using-web-api.md), a change set
# followed by a failed request.
BATCH_RESPONSE = (
    "--batchresponse_1\r\n"
    "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n"
    "\r\n"
    "--changesetresponse_2\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "Content-ID: 1\r\n"
    "\r\n"
    "HTTP/1.1 204 No Content\r\n"
    "OData-Version: 4.0\r\n"
    "OData-EntityId: https://org/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)\r\n"
    "\r\n"
    "\r\n"
    "--changesetresponse_2--\r\n"
    "--batchresponse_1\r\n"
    "Content-Type: application/http\r\n"
    "Content-Transfer-Encoding: binary\r\n"
    "\r\n"
    "HTTP/1.1 400 Bad Request\r\n"
    "Content-Type: application/json; odata.metadata=minimal\r\n"
    "OData-Version: 4.0\r\n"
    "\r\n"
    '{"error":{"code":"0x80044331","message":"A validation error occurred."}}\r\n'
    "--batchresponse_1--\r\n"
)


def test_batch_responses_are_flattened_in_order_with_statuses_headers_and_bodies():
    parts = _parse_multipart(BATCH_RESPONSE.encode(), "multipart/mixed; boundary=batchresponse_1")
    assert [p.status for p in parts] == [204, 400]
    assert parts[0].headers["odata-entityid"].endswith("(e73ffc82-e292-ed11-aad1-000d3a9933c9)")
    assert json.loads(parts[1].body)["error"]["code"] == "0x80044331"


def test_error_bodies_map_to_typed_permanent_errors():
    body = json.dumps(
        {
            "error": {
                "code": "0x80040237",
                "message": "A record with matching key values already exists.",
            }
        }
    )
    duplicate = _error_from(412, body.encode(), "dataverse PATCH accounts")
    assert isinstance(duplicate, PreconditionFailed) and isinstance(duplicate, PermanentError)
    assert duplicate.code == "0x80040237"
    assert str(duplicate) == (
        "dataverse PATCH accounts: HTTP 412 0x80040237: A record with matching key values already exists."
    )
    expired = _error_from(400, b'{"error":{"code":"0x80044352","message":"Version stamp..."}}', "x")
    assert isinstance(expired, DeltaTokenExpired)
    html = _error_from(400, b"<html>A potentially dangerous Request.Path value</html>", "x")
    assert isinstance(html, DataverseError) and html.code == "400"


def test_parallelism_halves_on_throttling_and_grows_one_step_per_success():
    width = _Width(ceiling=8, start=8)
    width.throttled()
    width.throttled()
    assert width.width == 2
    width.succeeded(ceiling=8)
    assert width.width == 3
    for _ in range(3):
        width.throttled()
    assert width.width == 1
    width.succeeded(ceiling=2)
    width.succeeded(ceiling=2)
    assert width.width == 2  # never above the dop-hint ceiling


def test_write_options_become_the_documented_headers():
    # bypass-custom-business-logic.md
    headers = WriteOptions(
        bypass_business_logic="CustomSync,CustomAsync", suppress_duplicate_detection=True
    ).headers()
    assert headers == {
        "MSCRM.BypassBusinessLogicExecution": "CustomSync,CustomAsync",
        "MSCRM.SuppressDuplicateDetection": "true",
    }
    assert WriteOptions().headers() == {}


def test_bulk_results_separate_rejections_from_transient_failures_and_report_request_rate():
    rows = [
        RowResult(0, {"k": "a"}),
        RowResult(1, {"k": "b"}, PermanentError("bad")),
        RowResult(2, {"k": "c"}, TransientError("later")),
        RowResult(3, {"k": "d"}),
    ]
    result = BulkResult(rows, requests=2)
    assert result.landed == 2
    assert [r.index for r in result.rejected] == [1]
    assert [r.index for r in result.transient] == [2]
    assert result.requests_per_1000_rows == 500
