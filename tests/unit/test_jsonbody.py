"""shared.jsonbody: what a malformed request body is answered with.

RFC 8259 (JSON) is the reference: §8.1 "Implementations MUST NOT add a byte order mark (U+FEFF)
to the beginning of a networked-transmitted JSON text"; §4 "The names within an object SHOULD be
unique"; §6 numeric values that cannot be represented as sequences of digits (Infinity, NaN) are
not permitted; §7 control characters must be escaped in strings; §8.2 unpaired surrogates.
RFC 9110 §15.5.14 (413 Content Too Large) and §15.5.16 (415 Unsupported Media Type).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.jsonbody import (
    MAX_REPORTED_ERRORS,
    BodyError,
    bounded_validation_problem,
    canonical_json,
    dumps,
    is_json_media_type,
    loads,
    media_type,
    parse_json_body,
    validate,
)
from shared.models import MAX_JSON_DEPTH, Health, Problem, QuoteLine
from shared.problem import PROBLEM_CONTENT_TYPE

pytestmark = pytest.mark.unit

JSON = "application/json"
LIMIT = 1024


def refused(raw: bytes, content_type: str | None = JSON, max_bytes: int = LIMIT) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse_json_body(raw, content_type, max_bytes=max_bytes)
    error = caught.value
    # Every refusal is a well-formed problem body with a kind under the hub's problem URI space
    Problem.model_validate(error.problem)
    assert error.problem["status"] == error.status
    assert error.problem["type"].startswith("https://contoso.example/problems/")
    assert PROBLEM_CONTENT_TYPE == "application/problem+json"
    return error


# --- media type (415) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
        "application/vnd.contoso.quote+json",
        "application/merge-patch+json; charset=utf-8",
    ],
)
def test_json_media_types_are_accepted(content_type):
    assert parse_json_body(b"{}", content_type, max_bytes=LIMIT) == {}


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "application/x-ndjson",
        "application/jsonp",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf-16",
        "multipart/form-data; boundary=x",
    ],
)
def test_other_media_types_are_refused_with_415(content_type):
    # Given a body that would parse, sent with a non-JSON content type
    error = refused(b"{}", content_type)
    # Then the answer is 415, naming the media type wanted
    assert error.status == 415
    assert "application/json" in error.problem["detail"]


def test_media_type_parsing_lower_cases_and_unquotes():
    assert media_type(' Application/Json ; Charset="UTF-8" ; q') == (
        "application/json",
        {"charset": "UTF-8"},
    )
    assert media_type(None) == ("", {})
    assert not is_json_media_type("application/")


def test_the_media_type_is_checked_before_the_size():
    # Given an oversized body with the wrong content type; then 415 (fix that first)
    assert refused(b"x" * (LIMIT + 1), "text/plain").status == 415


# --- size (413) ----------------------------------------------------------------------------------


def test_a_body_at_the_limit_is_read_and_one_byte_more_is_refused_with_413():
    body = b'{"k":"' + b"a" * (LIMIT - 8) + b'"}'
    assert len(body) == LIMIT
    assert parse_json_body(body, JSON, max_bytes=LIMIT) == {"k": "a" * (LIMIT - 8)}
    error = refused(body + b" ")
    assert error.status == 413
    assert error.problem["maxBytes"] == LIMIT


# --- malformed JSON (400) ------------------------------------------------------------------------

MALFORMED = {
    "byte order mark": (b'\xef\xbb\xbf{"a":1}', "byte order mark"),
    "utf-16 text": ('{"a":1}'.encode("utf-16"), "UTF-8"),
    "invalid utf-8": (b'{"a":"\xc3\x28"}', "UTF-8"),
    "overlong utf-8": (b'{"a":"\xc0\xaf"}', "UTF-8"),
    "utf-8 encoded surrogate": (b'{"a":"\xed\xa0\x80"}', "UTF-8"),
    "empty body": (b"", "empty"),
    "only whitespace": (b" \r\n\t", "empty"),
    "trailing garbage": (b'{"a":1} x', "Extra data"),
    "two documents": (b"{}{}", "Extra data"),
    "duplicate key": (b'{"a":1,"a":1}', 'duplicate object key "a"'),
    "nested duplicate key": (b'{"a":[{"b":1,"c":2,"b":3}]}', 'duplicate object key "b"'),
    "NaN": (b'{"a":NaN}', "NaN"),
    "Infinity": (b'{"a":Infinity}', "Infinity"),
    "-Infinity": (b"[-Infinity]", "Infinity"),
    "raw control character in a string": (b'{"a":"x\x01y"}', "control character"),
    "raw newline in a string": (b'{"a":"x\ny"}', "control character"),
    "NUL outside strings": (b'{"a":1}\x00', "Extra data"),
    "NUL before the document": (b'\x00{"a":1}', "Expecting value"),
    "single quotes": (b"{'a':1}", "double quotes"),
    "trailing comma": (b'{"a":1,}', "trailing comma"),
    "unterminated string": (b'{"a":"x', "Unterminated string"),
    "lone high surrogate escape": (b'{"a":"\\ud800"}', "surrogate"),
    "lone low surrogate escape in a key": (b'{"\\udc00":1}', "surrogate"),
    "leading zero": (b'{"a":01}', "Expecting"),
    "hex number": (b'{"a":0x10}', "Expecting"),
}


@pytest.mark.parametrize(("raw", "fragment"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_json_is_refused_with_400_and_a_clear_reason(raw, fragment):
    # Given a body that is not one strict JSON text; when parsed
    error = refused(raw)
    # Then 400 Malformed JSON, and the detail says what is wrong
    assert error.status == 400
    assert error.problem["title"] == "Malformed JSON"
    assert fragment in error.problem["detail"]


def test_the_reason_gives_the_position_but_not_the_content():
    error = refused(b'{"secret-value": tru}')
    assert "line 1 column" in error.problem["detail"]
    assert "secret-value" not in json.dumps(error.problem)


def test_a_paired_surrogate_escape_is_one_character():
    assert loads(b'{"a":"\\ud83d\\ude00"}') == {"a": "\U0001f600"}


def test_an_escaped_backslash_before_u_is_not_a_surrogate():
    assert loads(b'{"a":"\\\\ud800"}') == {"a": "\\ud800"}


# --- nesting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 10_000, 100_000])
def test_deep_nesting_is_a_400_not_a_recursion_error(depth):
    # Given arrays nested far deeper than allowed (json.loads alone would hit RecursionError)
    raw = b"[" * depth + b"]" * depth
    # Then the answer is a 400 naming the limit
    error = refused(raw, max_bytes=len(raw))
    assert error.status == 400
    assert f"deeper than {MAX_JSON_DEPTH}" in error.problem["detail"]


def test_unclosed_deep_nesting_is_a_400_too():
    raw = b'{"a":' * 50_000
    assert refused(raw, max_bytes=len(raw)).status == 400


def test_nesting_at_the_limit_is_accepted_for_arrays_and_objects():
    assert loads(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    nested = b'{"a":' * (MAX_JSON_DEPTH - 1) + b"[]" + b"}" * (MAX_JSON_DEPTH - 1)
    assert loads(nested) is not None
    deeper = b'{"a":' * MAX_JSON_DEPTH + b"[]" + b"}" * MAX_JSON_DEPTH
    with pytest.raises(BodyError):
        loads(deeper)


def test_brackets_inside_strings_do_not_count_as_nesting():
    # Given a shallow document whose strings hold many brackets and escaped quotes
    text = '["' + "[" * 500 + '\\"' + "{" * 500 + '"]'
    # Then it is accepted unchanged
    assert loads(text.encode()) == ["[" * 500 + '"' + "{" * 500]


_MANY_BRACKETS = b"[" + b"[]," * 100  # enough brackets that the depth scan must read strings


@pytest.mark.parametrize(
    "raw",
    [
        _MANY_BRACKETS + b'"' + b'\\"' * 500_000,
        _MANY_BRACKETS + b'"' + b'\\"' * 500_000 + b"\\",
        _MANY_BRACKETS + b'"a' + b'\\"[{' * 250_000,
    ],
    ids=["escaped quotes, unterminated", "ending in a lone backslash", "brackets in the string"],
)
def test_a_megabyte_of_adversarial_string_escapes_is_a_prompt_400(raw):
    # Given an unterminated string full of escaped quotes (a string scanner that can fail at
    # the end and retries from each later quote would take quadratic time on this)
    # Then it is refused as malformed (this test would run for hours if the scan were quadratic)
    assert refused(raw, max_bytes=len(raw)).status == 400


# --- numbers -------------------------------------------------------------------------------------


def _floats(value: Any) -> list[Any]:
    found: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            found.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def test_numbers_are_int_or_exact_decimal_never_float():
    value = loads(b'{"i":12,"d":0.10,"e":1e309,"n":-0.0,"x":[1.5E-400,123456789.123456789]}')
    assert _floats(value) == []
    assert value == {
        "i": 12,
        "d": Decimal("0.10"),
        "e": Decimal("1e309"),
        "n": Decimal("-0.0"),
        "x": [Decimal("1.5E-400"), Decimal("123456789.123456789")],
    }
    assert str(value["d"]) == "0.10"  # the digits as sent, trailing zero included


def test_very_long_integers_become_decimals_instead_of_failing():
    # Python refuses int() of more than 4300 digits; the hub keeps them for the model to refuse
    value = loads(b"[" + b"9" * 10_000 + b"]")
    assert isinstance(value, list)
    assert value[0] == Decimal("9" * 10_000)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_any_decimal_survives_dumps_and_loads_exactly(number):
    # Given any finite decimal; when written with dumps and read with loads
    again = loads(dumps({"n": number}).encode())
    # Then the value is identical (Decimal equality compares values exactly)
    assert isinstance(again, dict)
    assert again["n"] == number


def test_dumps_writes_plain_json_and_refuses_non_finite_numbers():
    assert dumps({"a": Decimal("1E+2"), "b": [True, None, 7, "é\n"]}) == (
        '{"a":100,"b":[true,null,7,"é\\n"]}'
    )
    for bad in (Decimal("NaN"), Decimal("Infinity"), float("nan"), float("inf")):
        with pytest.raises(ValueError, match="non-finite"):
            dumps([bad])
    with pytest.raises(TypeError):
        dumps({1: "x"})
    with pytest.raises(TypeError):
        dumps(object())


def test_canonical_json_ignores_spelling_but_not_values():
    # Given the same health report spelled three ways (key order, whitespace, number forms,
    # time zone of the same instant)
    spellings = [
        b'{"status":"ready","time":"2026-05-19T09:30:00Z","checks":{"a":{"ok":true}}}',
        b'{ "checks": {"a": {"ok": true}}, "time": "2026-05-19T11:30:00+02:00", "status": "ready" }',
        b'{"time":"2026-05-19T09:30:00.000000+00:00","checks":{"a":{"ok":true,"detail":null}},'
        b'"status":"ready"}',
    ]
    forms = {canonical_json(validate(Health, loads(raw)).model_dump()) for raw in spellings}
    # Then one canonical form; a different value gives another
    assert len(forms) == 1
    other = validate(Health, loads(spellings[0].replace(b"true", b"false")))
    assert canonical_json(other.model_dump()) not in forms


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        ([Decimal("2"), Decimal("2.0"), Decimal("2.00"), 2], b"2"),
        ([Decimal("0.10"), Decimal("0.1"), Decimal("1E-1")], b"1e-1"),
        ([Decimal("-0.0"), Decimal("0E+5"), 0], b"0"),
        ([Decimal("1200"), Decimal("1.2E+3"), 1200], b"12e2"),
        (
            [Decimal("0.1000000000000000055511151231257827")],
            b"1000000000000000055511151231257827e-34",
        ),
    ],
)
def test_canonical_numbers_drop_trailing_zeros_and_never_round(numbers, text):
    assert {canonical_json(n) for n in numbers} == {text}
    assert Decimal(text.decode()) == numbers[0]


# --- validation (422) ----------------------------------------------------------------------------


def test_validate_returns_the_model():
    health = validate(Health, {"status": "alive", "time": "2026-05-19T09:30:00Z"})
    assert health.status == "alive"


def test_validate_reports_a_422_with_every_pointer():
    # Given a line with three faults; when validated
    with pytest.raises(BodyError) as caught:
        validate(QuoteLine, {"lineNumber": 0, "sku": "", "unitPrice": "x"})
    problem = caught.value.problem
    # Then 422 lists each failing field (and the missing one) by pointer
    assert caught.value.status == 422
    assert problem["title"] == "Validation failed"
    assert {(e["pointer"], e["code"]) for e in problem["errors"]} == {
        ("/lineNumber", "greater_than_equal"),
        ("/sku", "string_too_short"),
        ("/quantity", "missing"),
        ("/unitPrice", "decimal_string"),
    }
    Problem.model_validate(problem)


def test_a_422_lists_at_most_a_bounded_number_of_errors():
    # Given a document with far more failing fields than the cap
    with pytest.raises(ValidationError) as caught:
        Health.model_validate(
            {"status": "alive", "time": "2026-05-19T09:30:00Z", "checks": {}}
            | {f"x{n}": 1 for n in range(MAX_REPORTED_ERRORS + 5)}
        )
    # When turned into a problem; then the list is capped and the rest counted
    problem = bounded_validation_problem(caught.value)
    assert len(problem["errors"]) == MAX_REPORTED_ERRORS
    assert problem["errorsOmitted"] == 5
    Problem.model_validate(problem)


def test_a_full_request_body_goes_from_bytes_to_model():
    raw = b'{"status":"ready","time":"2026-05-19T11:30:00+02:00","checks":{"x":{"ok":true}}}'
    health = validate(
        Health, parse_json_body(raw, "application/json; charset=utf-8", max_bytes=LIMIT)
    )
    assert health.checks is not None
    assert health.checks["x"].ok is True
