"""The quote contract: every field rule, error pointers, exact money, and a JSON round trip.

Bodies go through the same path as a request (``shared.jsonbody.loads`` then ``validate``), so
these tests prove what a partner sees: a 422 problem whose ``errors`` point at each failing field.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.iso import COUNTRY_CODES, CURRENCY_CODES
from shared.jsonbody import BodyError, canonical_json, dumps, loads, validate
from shared.models import (
    ArchiveLine,
    ForecastBatch,
    Problem,
    Quote,
    QuoteAccepted,
    QuoteLine,
    QuoteStatus,
)
from shared.models.common import decimal_text, is_email
from shared.openapi import EXAMPLE_QUOTE

pytestmark = pytest.mark.unit

# The documented example is the base every rule test varies (one source for both).
BASE_QUOTE: dict[str, Any] = copy.deepcopy(EXAMPLE_QUOTE)

_MISSING = object()


def quote(**changes: Any) -> dict[str, Any]:
    """A valid quote with changes at JSON pointers (``"/lines/0/sku": "X"``; _MISSING deletes)."""
    body = copy.deepcopy(BASE_QUOTE)
    for pointer, value in changes.items():
        set_at(body, pointer, value)
    return body


def set_at(document: Any, pointer: str, value: Any) -> None:
    *parents, last = pointer.split("/")[1:]
    target = document
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: Any = int(last) if isinstance(target, list) else last
    if value is _MISSING:
        del target[key]
    else:
        target[key] = value


def wire(body: Any) -> bytes:
    """The body as a client sends it: JSON text (Decimals written as exact JSON numbers)."""
    return dumps(body).encode()


def parse(raw: bytes | Any) -> Quote:
    return validate(Quote, loads(raw if isinstance(raw, bytes) else wire(raw)))


def refusal(raw: bytes | Any) -> dict[str, Any]:
    with pytest.raises(BodyError) as caught:
        parse(raw)
    assert caught.value.status == 422
    return caught.value.problem


def pointers(raw: bytes | Any) -> list[str]:
    return [e["pointer"] for e in refusal(raw)["errors"]]


def p(pointer: str, value: Any) -> dict[str, Any]:
    return {pointer: value}


# --- the valid quote -----------------------------------------------------------------------------


def test_a_complete_quote_is_accepted_with_exact_values():
    # Given the documented example quote; when it is validated
    model = parse(BASE_QUOTE)
    # Then every field is typed, money is exact, and extra configuration keys are kept
    assert model.quote_id == "Q-2026-000123"
    assert model.revision == 3
    assert model.probability == Decimal("0.6")
    assert model.expected_close_date == dt.date(2026, 6, 30)
    assert model.modified_at == dt.datetime(2026, 5, 19, 9, 30, tzinfo=dt.UTC)
    assert model.lines[0].unit_price == Decimal("8450.00")
    assert model.lines[0].configuration is not None
    assert model.lines[0].configuration.model_extra == {"coilCoating": "epoxy"}
    assert model.lines[1].discount_pct == Decimal(0)


def test_a_minimal_quote_needs_no_optional_fields():
    # Given a quote without notes, county, region, country, description, discount, configuration
    body = quote(
        **{
            "/notes": _MISSING,
            "/shipTo/county": _MISSING,
            "/shipTo/region": _MISSING,
            "/shipTo/country": _MISSING,
            "/lines": [{"lineNumber": 1, "sku": "A", "quantity": 1, "unitPrice": "0"}],
        }
    )
    # Then it is accepted
    assert parse(body).notes is None


# --- field rules: each row is one rule, given a valid quote with one value changed ---------------

INVALID = [
    # quoteId: 1–40 characters from [A-Za-z0-9._-]
    ("/quoteId", ""),
    ("/quoteId", "Q" * 41),
    ("/quoteId", "Q 1"),
    ("/quoteId", "Q/1"),
    ("/quoteId", 123),
    # revision: a JSON integer >= 0
    ("/revision", "1"),
    ("/revision", Decimal("1.5")),
    ("/revision", Decimal("1.0")),
    ("/revision", True),
    ("/revision", -1),
    ("/revision", None),
    # accountNumber: 1–20 characters
    ("/accountNumber", ""),
    ("/accountNumber", "A" * 21),
    ("/accountNumber", "ACC 1"),
    # currency: active ISO 4217 tender codes, upper case
    ("/currency", "usd"),
    ("/currency", "US"),
    ("/currency", "XXX"),
    ("/currency", "XAU"),
    ("/currency", "BOV"),
    ("/currency", "ANG"),
    ("/currency", 840),
    # expectedCloseDate: YYYY-MM-DD, a real date, a string
    ("/expectedCloseDate", "2026-02-30"),
    ("/expectedCloseDate", "2026-6-1"),
    ("/expectedCloseDate", "2026/06/01"),
    ("/expectedCloseDate", "2026-06-01T00:00:00"),
    ("/expectedCloseDate", 20260601),
    ("/expectedCloseDate", ""),
    # probability: 0..1
    ("/probability", Decimal("-0.1")),
    ("/probability", Decimal("1.01")),
    ("/probability", "1.5"),
    ("/probability", "abc"),
    ("/probability", "NaN"),
    ("/probability", True),
    ("/probability", Decimal("0.12345")),
    # shipTo: street, city, postalCode required; lengths; country ISO 3166-1 alpha-2
    ("/shipTo/street", _MISSING),
    ("/shipTo/street", "   "),
    ("/shipTo/street", "S" * 201),
    ("/shipTo/city", _MISSING),
    ("/shipTo/city", "Spring\nfield"),
    ("/shipTo/city", "C" * 101),
    ("/shipTo/postalCode", _MISSING),
    ("/shipTo/postalCode", "1" * 21),
    ("/shipTo/county", "C" * 101),
    ("/shipTo/region", "R" * 101),
    ("/shipTo/country", "USA"),
    ("/shipTo/country", "us"),
    ("/shipTo/country", "XK"),
    ("/shipTo", "100 Industrial Way"),
    # lines: 1–500
    ("/lines", []),
    ("/lines", None),
    # notes: at most 4000 characters, no control characters but tab/CR/LF
    ("/notes", "n" * 4001),
    ("/notes", "bell\x07"),
    # modifiedAt: RFC 3339 with an offset
    ("/modifiedAt", "2026-05-19T09:30:00"),
    ("/modifiedAt", "2026-05-19 09:30:00Z"),
    ("/modifiedAt", "2026-05-19T25:00:00Z"),
    ("/modifiedAt", "2026-05-19"),
    ("/modifiedAt", 1747647000),
    # line: lineNumber a JSON integer >= 1
    ("/lines/0/lineNumber", 0),
    ("/lines/0/lineNumber", "1"),
    ("/lines/0/lineNumber", Decimal("1.5")),
    ("/lines/0/lineNumber", True),
    ("/lines/0/lineNumber", _MISSING),
    # sku: required, 1–40, letters digits . _ - and no leading punctuation
    ("/lines/0/sku", _MISSING),
    ("/lines/0/sku", ""),
    ("/lines/0/sku", "S" * 41),
    ("/lines/0/sku", "-RTU"),
    ("/lines/0/sku", "RTU/050"),
    ("/lines/0/sku", "RTU 050"),
    # description: at most 2000
    ("/lines/0/description", "d" * 2001),
    # quantity: > 0, <= 100000, number or decimal string, never NaN/Infinity
    ("/lines/0/quantity", 0),
    ("/lines/0/quantity", -1),
    ("/lines/0/quantity", 100001),
    ("/lines/0/quantity", Decimal("100000.0001")),
    ("/lines/0/quantity", Decimal("1.23456")),
    ("/lines/0/quantity", "abc"),
    ("/lines/0/quantity", "1e3"),
    ("/lines/0/quantity", " 1"),
    ("/lines/0/quantity", "NaN"),
    ("/lines/0/quantity", "Infinity"),
    ("/lines/0/quantity", True),
    ("/lines/0/quantity", None),
    # unitPrice: a JSON string, >= 0, at most 2 decimals
    ("/lines/0/unitPrice", Decimal("8450.5")),
    ("/lines/0/unitPrice", 8450),
    ("/lines/0/unitPrice", "-1.00"),
    ("/lines/0/unitPrice", "1.234"),
    ("/lines/0/unitPrice", "1,234.00"),
    ("/lines/0/unitPrice", "1e3"),
    ("/lines/0/unitPrice", "01.00"),
    ("/lines/0/unitPrice", "1000000000000"),
    ("/lines/0/unitPrice", ""),
    # discountPct: 0..100
    ("/lines/0/discountPct", -1),
    ("/lines/0/discountPct", Decimal("100.01")),
    ("/lines/0/discountPct", "101"),
    # configuration: typed known keys
    ("/lines/0/configuration/tonnage", "big"),
    ("/lines/0/configuration/tonnage", 0),
    ("/lines/0/configuration/tonnage", 10001),
    ("/lines/0/configuration/voltage", True),
    ("/lines/0/configuration/voltage", -460),
    ("/lines/0/configuration/voltage", ""),
    ("/lines/0/configuration/voltage", Decimal("460.5")),
    ("/lines/0/configuration/refrigerant", 454),
    ("/lines/0/configuration/options", "ECON"),
    ("/lines/0/configuration/options", ["X"] * 101),
    ("/lines/0/configuration/options/0", 7),
    ("/lines/0/configuration/options/0", "O" * 101),
    # configuration: other keys hold one scalar
    ("/lines/0/configuration/coilCoating", {"type": "epoxy"}),
    ("/lines/0/configuration/coilCoating", ["epoxy"]),
    ("/lines/0/configuration/coilCoating", None),
    ("/lines/0/configuration/coilCoating", "c" * 201),
]


@pytest.mark.parametrize(("pointer", "value"), INVALID, ids=[f"{p}={v!r:.30}" for p, v in INVALID])
def test_each_field_rule_refuses_a_bad_value_at_its_pointer(pointer, value):
    # Given a valid quote with one value broken; when it is validated
    found = pointers(quote(**p(pointer, value)))
    # Then exactly that field is reported, at its JSON pointer
    assert found == [pointer]


VALID = [
    ("/quoteId", "A.b_c-1"),
    ("/quoteId", "Q" * 40),
    ("/revision", 0),
    ("/revision", 2_147_483_647),
    ("/accountNumber", "A" * 20),
    ("/currency", "EUR"),
    ("/currency", "JPY"),
    ("/currency", "XCG"),
    ("/expectedCloseDate", "2028-02-29"),
    ("/probability", 0),
    ("/probability", 1),
    ("/probability", Decimal("0.1234")),
    ("/probability", "0.25"),
    ("/shipTo/street", "Building 4\nSuite 200"),
    ("/shipTo/country", "DE"),
    ("/notes", "n" * 4000),
    ("/notes", "line one\r\n\tline two"),
    ("/modifiedAt", "2026-05-19T11:30:00+02:00"),
    ("/modifiedAt", "2026-05-19T09:30:00.123456-05:30"),
    ("/lines/0/quantity", 100000),
    ("/lines/0/quantity", Decimal("0.0001")),
    ("/lines/0/quantity", "2.5"),
    ("/lines/0/unitPrice", "0"),
    ("/lines/0/unitPrice", "0.5"),
    ("/lines/0/unitPrice", "999999999999.99"),
    ("/lines/0/discountPct", 100),
    ("/lines/0/discountPct", "12.5"),
    ("/lines/0/configuration/voltage", 460),
    ("/lines/0/configuration/voltage", "208-230/1/60"),
    ("/lines/0/configuration/tonnage", Decimal("7.5")),
    ("/lines/0/configuration/options", []),
    ("/lines/0/configuration/coilCoating", True),
    ("/lines/0/configuration/coilCoating", -40),
    ("/lines/0/configuration/coilCoating", Decimal("0.125")),
]


@pytest.mark.parametrize(("pointer", "value"), VALID, ids=[f"{p}={v!r:.30}" for p, v in VALID])
def test_each_field_rule_accepts_its_boundary_values(pointer, value):
    # Given a valid quote with a value at the edge of its rule; then it is accepted
    parse(quote(**p(pointer, value)))


@pytest.mark.parametrize(
    "address",
    [
        "jane",
        "jane@",
        "@contoso.com",
        "jane@contoso",
        "jane@contoso.c",
        "jane@contoso.123",
        "jane..doe@contoso.com",
        ".jane@contoso.com",
        "jane.@contoso.com",
        "jane doe@contoso.com",
        '"jane"@contoso.com',
        "jane@[192.0.2.1]",
        "jäne@contoso.com",
        "jane@-contoso.com",
        "jane@contoso-.com",
        "jane@con_toso.com",
        "jane@@contoso.com",
        "a" * 65 + "@contoso.com",
        "jane@" + "d" * 64 + ".com",
        "jane@" + ".".join(["d" * 60] * 5) + ".com",
        "jane@contoso.com\n",
    ],
)
def test_sales_rep_must_be_a_plain_routable_email_address(address):
    # Given a malformed or exotic address; then salesRep is refused
    assert not is_email(address)
    assert pointers(quote(**p("/salesRep", address))) == ["/salesRep"]


@pytest.mark.parametrize(
    "address",
    [
        "jane.doe@contoso.com",
        "o'brien+quotes@sub.example.co.uk",
        "A_B-C@Example.COM",
        "x@xn--bcher-kva.example",
        "a" * 64 + "@contoso.com",
    ],
)
def test_sales_rep_accepts_ordinary_addresses(address):
    assert parse(quote(**p("/salesRep", address))).sales_rep == address


def test_every_listed_currency_and_country_is_accepted():
    # Given each code of the ISO sets; then the model takes each one
    for code in sorted(CURRENCY_CODES):
        assert parse(quote(**p("/currency", code))).currency == code
    for code in sorted(COUNTRY_CODES):
        assert parse(quote(**p("/shipTo/country", code))).ship_to.country == code


# --- collections ---------------------------------------------------------------------------------


def _line(number: int) -> dict[str, Any]:
    return {"lineNumber": number, "sku": f"SKU-{number}", "quantity": 1, "unitPrice": "1.00"}


def test_500_lines_are_accepted_and_501_refused():
    assert len(parse(quote(**p("/lines", [_line(n) for n in range(1, 501)]))).lines) == 500
    assert pointers(quote(**p("/lines", [_line(n) for n in range(1, 502)]))) == ["/lines"]


def test_a_duplicate_line_number_is_reported_at_the_duplicate_line():
    # Given four lines where the fourth reuses the number of the second
    lines = [_line(1), _line(2), _line(3), _line(2)]
    # When validated; then the pointer names the duplicate itself, not the quote or the list
    problem = refusal(quote(**p("/lines", lines)))
    assert [e["pointer"] for e in problem["errors"]] == ["/lines/3/lineNumber"]
    assert problem["errors"][0]["code"] == "line_number_duplicate"


def test_every_repeat_of_a_line_number_is_reported():
    lines = [_line(7), _line(7), _line(8), _line(7)]
    assert pointers(quote(**p("/lines", lines))) == ["/lines/1/lineNumber", "/lines/3/lineNumber"]


def test_duplicate_line_numbers_are_refused_for_lines_built_in_python_too():
    # Given QuoteLine instances (pydantic does not revalidate them) with a repeated number
    line = QuoteLine.model_validate(_line(1))
    body = {**BASE_QUOTE, "lines": [line, line]}
    # Then the quote is still refused
    with pytest.raises(ValueError, match="unique"):
        Quote.model_validate(body)


def test_configuration_allows_64_keys_and_refuses_65():
    extras = {f"opt{n}": n for n in range(60)}
    config = {"tonnage": 5, "voltage": 460, "refrigerant": "R-454B", "options": [], **extras}
    assert len(config) == 64
    parse(quote(**p("/lines/0/configuration", config)))
    config["opt60"] = 60
    assert pointers(quote(**p("/lines/0/configuration", config))) == ["/lines/0/configuration"]


@pytest.mark.parametrize("key", ["1st", "_private", "with space", "k" * 65, ""])
def test_configuration_keys_must_be_identifiers(key):
    config = {"tonnage": 5, key: "x"}
    assert pointers(quote(**p("/lines/0/configuration", config))) == ["/lines/0/configuration"]


# --- the wire contract ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pointer", "name"),
    [("/", "unexpected"), ("/shipTo/", "floor"), ("/lines/0/", "taxCode")],
)
def test_unknown_fields_are_refused_where_they_appear(pointer, name):
    body = quote(**p(pointer + name, "x"))
    problem = refusal(body)
    assert [(e["pointer"], e["code"]) for e in problem["errors"]] == [
        (pointer + name, "extra_forbidden")
    ]


def test_snake_case_names_are_refused_on_the_wire():
    # Given a quote that spells quoteId as the Python attribute name
    body = quote(**{"/quoteId": _MISSING, "/quote_id": "Q-1"})
    # Then the wire accepts camelCase only: quote_id is unknown and quoteId is missing
    found = {(e["pointer"], e["code"]) for e in refusal(body)["errors"]}
    assert found == {("/quote_id", "extra_forbidden"), ("/quoteId", "missing")}


def test_python_code_may_construct_models_by_field_name():
    line = QuoteLine(line_number=1, sku="A", quantity=1, unit_price="1.00")
    assert line.model_dump(mode="json")["unitPrice"] == "1.00"


def test_every_failing_field_is_reported_at_once_with_pointers():
    # Given a quote with six independent faults at different depths
    body = quote(
        **{
            "/revision": "3",
            "/currency": "usd",
            "/shipTo/postalCode": _MISSING,
            "/lines/0/unitPrice": Decimal("1.5"),
            "/lines/1/quantity": 0,
            "/lines/1/configuration": {"tonnage": -1},
        }
    )
    # When validated; then one 422 lists every one of them with its pointer
    problem = refusal(body)
    assert problem["status"] == 422
    assert problem["detail"] == "6 field(s) failed validation"
    assert {e["pointer"] for e in problem["errors"]} == {
        "/revision",
        "/currency",
        "/shipTo/postalCode",
        "/lines/0/unitPrice",
        "/lines/1/quantity",
        "/lines/1/configuration/tonnage",
    }
    # And the body is a valid problem document
    Problem.model_validate(problem)


def test_submitted_values_are_never_echoed_in_the_problem():
    # Given invalid values that carry a recognisable marker
    marker = "S3CR3T-MARKER"
    body = quote(
        **{
            "/quoteId": marker + " x",
            "/salesRep": marker,
            "/currency": marker,
            "/lines/0/sku": marker + "/",
            "/lines/0/unitPrice": marker,
            "/lines/0/configuration/coilCoating": marker * 20,
            "/modifiedAt": marker,
        }
    )
    # When refused; then the marker appears nowhere in the answer
    problem = refusal(body)
    assert len(problem["errors"]) == 7
    assert marker not in json.dumps(problem)


# --- money is exact ------------------------------------------------------------------------------


def test_money_adds_exactly():
    # Given unit prices of "0.10" and "0.20"
    lines = [
        {**_line(1), "unitPrice": "0.10"},
        {**_line(2), "unitPrice": "0.20"},
    ]
    model = parse(quote(**p("/lines", lines)))
    # Then their sum is exactly 0.30 (binary floats would give 0.30000000000000004)
    assert sum(line.unit_price for line in model.lines) == Decimal("0.30")


def test_json_numbers_become_exact_decimals_not_floats():
    # Given a quantity written with more digits than a float can hold
    raw = wire(BASE_QUOTE).replace(b'"quantity":2', b'"quantity":0.1000000000000000055511151')
    # Then the digits are refused or kept exactly, never rounded through a float
    assert pointers(raw) == ["/lines/0/quantity"]  # more than 4 decimal places
    raw = wire(BASE_QUOTE).replace(b'"quantity":2', b'"quantity":0.1')
    assert parse(raw).lines[0].quantity == Decimal("0.1")


def test_no_float_survives_validation():
    def walk(value: Any) -> None:
        assert not isinstance(value, float)
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(parse(BASE_QUOTE).model_dump())


@pytest.mark.parametrize(
    ("old", "new", "pointer"),
    [
        (b'"quantity":2', b'"quantity":1e309', "/lines/0/quantity"),
        (b'"quantity":2', b'"quantity":-1e309', "/lines/0/quantity"),
        (b'"quantity":2', b'"quantity":1e-400', "/lines/0/quantity"),
        (b'"revision":3', b'"revision":1e309', "/revision"),
        (b'"revision":3', b'"revision":' + b"9" * 5000, "/revision"),
        (b'"quantity":2', b'"quantity":' + b"9" * 5000, "/lines/0/quantity"),
        (b'"discountPct":5', b'"discountPct":1E+999999999', "/lines/0/discountPct"),
    ],
)
def test_numbers_beyond_float_range_are_a_422_not_a_crash(old, new, pointer):
    # Given a number no float can represent (or an integer Python will not parse)
    raw = wire(BASE_QUOTE).replace(old, new, 1)
    assert raw != wire(BASE_QUOTE)
    # Then the answer is a 422 at the field, not an exception
    assert pointers(raw) == [pointer]


def test_binary_floats_from_python_code_are_refused_not_rounded():
    # Given Python code passing a float (not JSON parsed by shared.jsonbody)
    with pytest.raises(ValueError, match="floating-point"):
        QuoteLine.model_validate({**_line(1), "quantity": 0.1})


def test_money_serialises_as_strings_and_quantities_keep_their_digits():
    model = parse(quote(**p("/lines/0/quantity", Decimal("2.50"))))
    data = json.loads(model.model_dump_json())
    assert data["lines"][0]["unitPrice"] == "8450.00"
    assert data["lines"][0]["quantity"] == "2.50"
    assert json.loads(dumps(model.model_dump()))["lines"][0]["quantity"] == 2.5


def test_the_same_quote_spelled_differently_has_one_canonical_form():
    # Given the example quote, and the same quote with other key order, number spellings,
    # the modification time in another zone and the default discount written out
    respelled = quote(
        **{
            "/lines/0/quantity": "2.0",
            "/lines/1/discountPct": Decimal("0.00"),
            "/probability": Decimal("0.60"),
            "/modifiedAt": "2026-05-19T11:30:00+02:00",
        }
    )
    respelled = dict(reversed(respelled.items()))
    first = canonical_json(parse(BASE_QUOTE).model_dump())
    # Then both canonicalise to the same bytes (an exact replay), and a changed price does not
    assert canonical_json(parse(respelled).model_dump()) == first
    changed = quote(**p("/lines/1/unitPrice", "1200.01"))
    assert canonical_json(parse(changed).model_dump()) != first


# --- round trip ----------------------------------------------------------------------------------

_NO_CONTROL = st.characters(blacklist_categories=("Cc", "Cs"))
_MULTI_LINE = st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from("\t\n\r")


def _text(min_size: int, max_size: int, alphabet: st.SearchStrategy[str] = _NO_CONTROL):
    return st.text(alphabet, min_size=min_size, max_size=max_size).filter(
        lambda s: min_size == 0 or any(c > " " for c in s)
    )


def _decimal(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(Decimal(low), Decimal(high), places=places, allow_nan=False)


def _number_or_string(low: str, high: str, places: int) -> st.SearchStrategy[Any]:
    return _decimal(low, high, places).flatmap(lambda d: st.sampled_from([d, decimal_text(d)]))


_TZ = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(dt.timedelta(hours=-5, minutes=-30))]
)
_KNOWN = {"tonnage", "voltage", "refrigerant", "options"}

configurations = st.fixed_dictionaries(
    {},
    optional={
        "tonnage": _number_or_string("0.0001", "10000", 4),
        "voltage": st.integers(1, 1_000_000) | _text(1, 40).filter(lambda s: s[0] > " "),
        "refrigerant": _text(1, 40),
        "options": st.lists(_text(1, 100), max_size=5),
    },
).flatmap(
    lambda known: st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
            lambda k: k not in _KNOWN
        ),
        st.booleans()
        | st.integers(-(10**14), 10**14)
        | _decimal("-1000000", "1000000", 3)
        | _text(0, 200),
        max_size=8,
    ).map(lambda extra: {**known, **extra})
)

lines = st.fixed_dictionaries(
    {
        "sku": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}", fullmatch=True),
        "quantity": _number_or_string("0.0001", "100000", 4),
        "unitPrice": _decimal("0", "999999999999.99", 2).map(decimal_text),
    },
    optional={
        "description": _text(0, 2000, _MULTI_LINE),
        "discountPct": _number_or_string("0", "100", 2),
        "configuration": configurations,
    },
)

quotes = st.fixed_dictionaries(
    {
        "quoteId": st.from_regex(r"[A-Za-z0-9._-]{1,40}", fullmatch=True),
        "revision": st.integers(0, 2_147_483_647),
        "accountNumber": st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
        "salesRep": st.from_regex(
            r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,20}(\.[A-Za-z0-9]{1,8}){0,2}"
            r"@[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}\.[a-z]{2,6}",
            fullmatch=True,
        ),
        "currency": st.sampled_from(sorted(CURRENCY_CODES)),
        "expectedCloseDate": st.dates(dt.date(2000, 1, 1), dt.date(2100, 12, 31)).map(
            dt.date.isoformat
        ),
        "probability": _number_or_string("0", "1", 4),
        "shipTo": st.fixed_dictionaries(
            {
                "street": _text(1, 200, _MULTI_LINE),
                "city": _text(1, 100),
                "postalCode": _text(1, 20),
            },
            optional={
                "county": _text(0, 100),
                "region": _text(0, 100),
                "country": st.sampled_from(sorted(COUNTRY_CODES)),
            },
        ),
        "lines": st.lists(lines, min_size=1, max_size=4).flatmap(
            lambda ls: st.lists(
                st.integers(1, 99_999), min_size=len(ls), max_size=len(ls), unique=True
            ).map(lambda ns: [{**line, "lineNumber": n} for line, n in zip(ls, ns, strict=True)])
        ),
        "modifiedAt": st.datetimes(timezones=_TZ).map(dt.datetime.isoformat),
    },
    optional={"notes": _text(0, 4000, _MULTI_LINE)},
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quotes)
def test_any_valid_quote_round_trips_through_json_unchanged(body):
    # Given any quote the contract allows, sent as JSON
    model = parse(body)
    # When the model is written out exactly and read back
    text = dumps(model.model_dump())
    again = parse(text.encode())
    # Then nothing changed: same model and the same JSON text
    assert again == model
    assert dumps(again.model_dump()) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quotes)
def test_pydantic_json_output_reads_back_to_the_same_values(body):
    # Given a valid quote written with pydantic's own JSON (decimals as strings)
    model = parse(body)
    again = parse(model.model_dump_json().encode())
    # Then every value reads back equal; only a fractional configuration number comes back as
    # its decimal string, because pydantic writes every Decimal as a string
    for line, line_again in zip(model.lines, again.lines, strict=True):
        if line.configuration is not None and line_again.configuration is not None:
            for key, value in (line.configuration.model_extra or {}).items():
                other = (line_again.configuration.model_extra or {})[key]
                expected = decimal_text(value) if isinstance(value, Decimal) else value
                assert other == expected
                line_again.configuration.__pydantic_extra__[key] = value  # type: ignore[index]
    assert again == model


# --- the other models ----------------------------------------------------------------------------


def test_forecast_batch_takes_numbers_or_strings_and_refuses_duplicates():
    entry = {
        "salesRep": "jane.doe@contoso.com",
        "territory": "US-Midwest",
        "month": "2026-06",
        "amount": "125000.00",
        "probability": Decimal("0.7"),
        "category": "Committed",
    }
    batch = validate(ForecastBatch, loads(wire({"submissions": [entry]})))
    assert batch.submissions[0].amount == Decimal("125000.00")
    # Given the same submission twice (the address in other case) and a bad month and category
    twin = {**entry, "salesRep": "Jane.Doe@Contoso.com", "amount": 1}
    bad = {**entry, "month": "2026-13", "category": "Maybe", "amount": Decimal("1.005")}
    with pytest.raises(BodyError) as caught:
        validate(ForecastBatch, loads(wire({"submissions": [entry, twin, bad]})))
    # Then the duplicate is reported at its own index, with the other faults
    assert {(e["pointer"], e["code"]) for e in caught.value.problem["errors"]} == {
        ("/submissions/1", "submission_duplicate"),
        ("/submissions/2/month", "string_pattern_mismatch"),
        ("/submissions/2/category", "literal_error"),
        ("/submissions/2/amount", "decimal_max_places"),
    }


def test_forecast_batch_holds_1_to_1000_submissions():
    def entry(n: int) -> dict[str, Any]:
        return {
            "salesRep": "a@contoso.com",
            "territory": f"T{n}",
            "month": "2026-01",
            "amount": 1,
            "probability": 1,
            "category": "Pipeline",
        }

    assert (
        len(validate(ForecastBatch, {"submissions": [entry(n) for n in range(1000)]}).submissions)
        == 1000
    )
    for count in (0, 1001):
        with pytest.raises(BodyError) as caught:
            validate(ForecastBatch, {"submissions": [entry(n) for n in range(count)]})
        assert [e["pointer"] for e in caught.value.problem["errors"]] == ["/submissions"]


def test_archive_line_requires_job_id_only_for_jobs_and_matching_statuses():
    base = {
        "recordType": "quote",
        "quoteId": "Q-1",
        "accountNumber": "A-1",
        "closedOn": "2019-11-30",
        "amount": "10.00",
        "currency": "USD",
        "status": "won",
    }
    assert validate(ArchiveLine, base).job_id is None
    assert validate(
        ArchiveLine, {**base, "recordType": "job", "jobId": "J-1", "status": "completed"}
    )
    cases = [
        ({"recordType": "job", "status": "completed"}, ["/jobId"]),
        ({"jobId": "J-1"}, ["/jobId"]),
        ({"status": "completed"}, ["/status"]),
        ({"recordType": "job", "jobId": "J-1", "status": "won"}, ["/status"]),
        ({"amount": 10}, ["/amount"]),
        ({"recordType": "order"}, ["/recordType"]),
    ]
    for change, expected in cases:
        with pytest.raises(BodyError) as caught:
            validate(ArchiveLine, {**base, **change})
        assert [e["pointer"] for e in caught.value.problem["errors"]] == expected, change


def test_response_models_serialise_money_as_strings():
    accepted = QuoteAccepted(quote_id="Q-1", revision=1, status="received", tracking_id="t-1")
    assert json.loads(accepted.model_dump_json()) == {
        "quoteId": "Q-1",
        "revision": 1,
        "status": "received",
        "trackingId": "t-1",
    }
    status = QuoteStatus.model_validate(
        {
            "quoteId": "Q-1",
            "currentRevision": 1,
            "status": "qualified",
            "steps": [{"step": "received", "at": "2026-05-19T09:30:00Z", "revision": 1}],
            "approvedLines": [
                {"lineNumber": 1, "approvedUnitPrice": "10.50", "approvedDiscountPct": "7.5"}
            ],
        }
    )
    line = json.loads(status.model_dump_json())["approvedLines"][0]
    assert line == {"lineNumber": 1, "approvedUnitPrice": "10.50", "approvedDiscountPct": "7.5"}
