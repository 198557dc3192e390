"""The sandbox's OData URL grammar: literals, key predicates, $filter, $orderby, $select.

Source: OData v4.01 ABNF (primitive literals, key predicates, common expressions) and
powerapps-docs ``webapi/query/filter-rows.md``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.dataverse import odata
from shared.adapters.dataverse import key_segment, odata_literal

pytestmark = pytest.mark.unit

aware_datetimes = st.datetimes(
    min_value=dt.datetime(1753, 1, 1),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.just(dt.UTC),
)
decimals = st.decimals(
    allow_nan=False,
    allow_infinity=False,
    places=4,
    min_value=Decimal("-1e15"),
    max_value=Decimal("1e15"),
)
values = st.one_of(
    st.text(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.uuids(),
    st.dates(min_value=dt.date(1, 1, 1)),
    aware_datetimes,
    decimals.filter(lambda d: d != d.to_integral_value()),
)


@given(values)
def test_every_literal_round_trips_through_format_and_parse(value):
    # Given any primitive value, When written as an OData literal and read back
    literal = odata.parse_literal(odata.format_literal(value))
    # Then the same value comes back (strings keep quotes; decimals keep every digit)
    assert literal.value == value


@given(values)
def test_the_clients_literals_are_what_the_sandbox_reads(value):
    # the hub's escaping (shared.adapters.dataverse.odata_literal) against the sandbox's grammar
    assert odata.parse_literal(odata_literal(value)).value == value


@given(
    st.dictionaries(
        st.sampled_from(["k1", "k_2", "contoso_key"]),
        st.one_of(st.text(), st.integers()),
        min_size=1,
    )
)
def test_composite_keys_built_by_the_client_parse_back_to_the_same_values(key):
    predicate = odata.parse_key_predicate(key_segment(key))
    assert {name: lit.value for name, lit in predicate.named} == key


def test_a_quote_in_a_string_literal_is_doubled():
    assert odata.format_literal("O'Brien") == "'O''Brien'"
    assert odata.parse_literal("'O''Brien'") == odata.Literal(odata.EDM_STRING, "O'Brien")
    assert odata.parse_literal("''''") == odata.Literal(odata.EDM_STRING, "'")


@pytest.mark.parametrize(
    ("text", "edm", "value"),
    [
        ("42", odata.EDM_INT32, 42),
        ("4294967296", odata.EDM_INT64, 4294967296),
        ("-1.50", odata.EDM_DECIMAL, Decimal("-1.50")),
        ("1e3", odata.EDM_DOUBLE, 1000.0),
        ("true", odata.EDM_BOOLEAN, True),
        ("null", odata.EDM_NULL, None),
        ("2024-02-29", odata.EDM_DATE, dt.date(2024, 2, 29)),
        (
            "2024-02-29T10:00:00+02:00",
            odata.EDM_DATETIMEOFFSET,
            dt.datetime(2024, 2, 29, 8, tzinfo=dt.UTC),
        ),
        ("00000000-0000-0000-0000-000000000001", odata.EDM_GUID, uuid.UUID(int=1)),
    ],
)
def test_literal_kinds_are_typed(text, edm, value):
    assert odata.parse_literal(text) == odata.Literal(edm, value)


@pytest.mark.parametrize("text", ["'open", "2024-02-30", "tru", "12ab", "'a''"])
def test_malformed_literals_are_refused(text):
    with pytest.raises(odata.ODataError):
        odata.parse_literal(text)


def test_key_predicates_in_all_documented_forms():
    # use-alternate-key-reference-record.md
    guid = "00000000-0000-0000-0000-000000000001"
    assert odata.parse_key_predicate(f"({guid})").unnamed == odata.Literal(
        odata.EDM_GUID, uuid.UUID(guid)
    )
    named = odata.parse_key_predicate(f"(accountid={guid})")
    assert named.as_dict() == {"accountid": odata.Literal(odata.EDM_GUID, uuid.UUID(guid))}
    composite = odata.parse_key_predicate("(firstname='Joe',emailaddress1='abc@example.com')")
    assert [n for n, _ in composite.named] == ["firstname", "emailaddress1"]


def test_resource_paths_keep_slashes_and_parentheses_inside_quoted_keys():
    path = odata.parse_resource_path("accounts(accountnumber='A/1 (x), y')/name")
    assert path.segment == "accounts"
    assert path.key is not None and path.key.as_dict()["accountnumber"].value == "A/1 (x), y"
    assert path.rest == ("name",)
    assert odata.parse_resource_path("quotes/Microsoft.Dynamics.CRM.UpsertMultiple").rest == (
        "Microsoft.Dynamics.CRM.UpsertMultiple",
    )


@pytest.mark.parametrize("text", ["(a='x',a='y')", "(a='x' b='y')", "('x','y')", "(a=)", "(a='x'"])
def test_bad_key_predicates_are_refused(text):
    with pytest.raises(odata.ODataError):
        odata.parse_key_predicate(text)


TYPES = {
    "name": odata.EDM_STRING,
    "city": odata.EDM_STRING,
    "count": odata.EDM_INT32,
    "amount": odata.EDM_DECIMAL,
    "active": odata.EDM_BOOLEAN,
    "day": odata.EDM_DATE,
    "createdon": odata.EDM_DATETIMEOFFSET,
    "_owner_value": odata.EDM_GUID,
}
ROW = {
    "name": "Contoso",
    "city": None,
    "count": 5,
    "amount": Decimal("10.50"),
    "active": True,
    "day": dt.date(2024, 5, 1),
    "createdon": dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC),
    "_owner_value": "00000000-0000-0000-0000-000000000001",
}


def matches(text: str, row: dict | None = None, aliases: dict[str, str] | None = None) -> bool:
    predicate = odata.compile_filter(text, TYPES.get, "account", aliases)
    return predicate((row or ROW).get)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name eq 'contoso'", True),  # case-insensitive like Dataverse's collation
        ("name ne 'Contoso'", False),
        ("count gt 4 and count lt 6", True),
        ("count ge 6 or amount le 10.5", True),
        ("not (count eq 5)", False),
        ("count eq 1 or count eq 5 and active eq false", False),  # and binds tighter than or
        ("(count eq 1 or count eq 5) and active eq true", True),
        ("city eq null", True),
        ("city ne null", False),
        ("city gt 'a'", False),  # comparisons with null are unknown, never true
        ("not (city gt 'a')", False),
        ("day eq 2024-05-01 and createdon gt 2024-05-01T11:59:59Z", True),
        ("createdon lt 2024-05-01", False),
        ("_owner_value eq 00000000-0000-0000-0000-000000000001", True),
        ("contains(name,'TOS') and startswith(name,'con') and endswith(name,'SO')", True),
        ("amount eq 10.5", True),
    ],
)
def test_filter_semantics(text, expected):
    assert matches(text) is expected


def test_parameter_aliases_are_resolved_from_the_query():
    assert matches("name eq @n", aliases={"@n": "'Contoso'"})
    with pytest.raises(odata.ODataError, match="parameter alias '@m'"):
        matches("name eq @m", aliases={})


@pytest.mark.parametrize(
    "text",
    [
        "name eq",
        "= 'x'",
        "(name eq 'x'",
        "name eq 'x')",
        "name eq 'x' and",
        "name xx 'x'",
        "name eq 'x' 'y'",
    ],
)
def test_syntax_errors_name_the_position(text):
    with pytest.raises(odata.ODataError, match=r"^Syntax error at position \d+ in "):
        odata.compile_filter(text, TYPES.get, "account")


def test_unknown_properties_and_incompatible_types_are_refused():
    with pytest.raises(odata.UnknownProperty, match="Could not find a property named 'Name'"):
        odata.compile_filter("Name eq 'x'", TYPES.get, "account")
    with pytest.raises(odata.ODataError, match="incompatible types"):
        odata.compile_filter("name eq 5", TYPES.get, "account")
    with pytest.raises(odata.ODataError, match="incompatible types"):
        odata.compile_filter(
            "_owner_value eq '00000000-0000-0000-0000-000000000001'", TYPES.get, "account"
        )
    with pytest.raises(odata.ODataError, match="unknown function"):
        odata.compile_filter("tolower(name) eq 'x'", TYPES.get, "account")


def test_orderby_and_select_are_checked_against_the_entity_type():
    assert odata.parse_orderby("name desc, count", TYPES.get, "account") == [
        ("name", True),
        ("count", False),
    ]
    assert odata.parse_select("name,count,name", TYPES.get, "account") == ["name", "count"]
    with pytest.raises(odata.UnknownProperty):
        odata.parse_select("name,bogus", TYPES.get, "account")
    with pytest.raises(odata.ODataError):
        odata.parse_orderby("name sideways", TYPES.get, "account")


def test_compare_orders_nulls_and_mixed_numbers_like_sql():
    assert odata.compare("lt", Decimal("1.5"), 2) is True
    assert odata.compare("eq", "ABC", "abc") is True
    assert odata.compare("gt", None, 1) is None
    assert odata.compare("eq", None, None) is True
