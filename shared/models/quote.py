"""The quote a partner's Quoting Tool posts to ``POST /api/quotes`` and the answers about it."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.models.common import (
    MAX_CONFIGURATION_KEYS,
    MAX_CONFIGURATION_OPTIONS,
    MAX_DESCRIPTION_CHARS,
    MAX_NOTES_CHARS,
    MAX_QUOTE_LINES,
    AccountNumber,
    CountryCode,
    CurrencyCode,
    Email,
    IsoDate,
    LineNumber,
    Money,
    MultiLineText,
    OptionalTextLine,
    Percent,
    Probability,
    Quantity,
    QuoteId,
    Revision,
    Sku,
    TextLine,
    Timestamp,
    WireModel,
    claim_unique,
    decimal_text,
    number_decimal,
    number_decimal_schema,
    unique_scope,
)

QuoteState = Literal["received", "inDataverse", "qualified", "ordered", "rejected"]
"""Where a quote is in the hub: received → inDataverse → qualified → ordered, or rejected."""

# --- build-to-order configuration ---------------------------------------------------------------

CONFIGURATION_KEY_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
_CONFIGURATION_KEY = re.compile(CONFIGURATION_KEY_PATTERN)
_CONFIG_TEXT_PATTERN: Final = r"^[^\x00-\x1F\x7F]{0,200}$"
_VOLTAGE_TEXT_PATTERN: Final = r"^[^\x00-\x20\x7F][^\x00-\x1F\x7F]{0,39}$"
_CONFIG_TEXT = re.compile(_CONFIG_TEXT_PATTERN)
_VOLTAGE_TEXT = re.compile(_VOLTAGE_TEXT_PATTERN)
_MAX_CONFIG_NUMBER = Decimal(10) ** 15
_MAX_VOLTS = 1_000_000


def _serialize_scalar(value: object) -> object:
    return decimal_text(value) if isinstance(value, Decimal) else value


def _exact_number(value: object, *, label: str) -> Decimal | None:
    """``value`` as a Decimal if it is an exact JSON number; None if it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        raise PydanticCustomError(
            "decimal_float",
            "Input should be an exact decimal; binary floating-point values are refused",
        )
    if isinstance(value, int):
        value = Decimal(value)
    if not isinstance(value, Decimal):
        return None
    if not value.is_finite() or abs(value) >= _MAX_CONFIG_NUMBER:
        raise PydanticCustomError(
            "configuration_number", f"{label} numbers must be finite and below 10^15 in size"
        )
    return value


def _voltage(value: object) -> int | str:
    number = _exact_number(value, label="voltage")
    if number is not None:
        # Whole volts: kept as an int, the value is a JSON number in every serialiser (a
        # Decimal would come back from pydantic's JSON output as a string label).
        if number != number.to_integral_value() or not 0 < number <= _MAX_VOLTS:
            raise PydanticCustomError(
                "voltage_number", "voltage as a number should be a whole number from 1 to 1000000"
            )
        return int(number)
    if isinstance(value, str) and _VOLTAGE_TEXT.fullmatch(value):
        return value
    raise PydanticCustomError(
        "voltage",
        'voltage should be a whole number of volts or a 1–40 character label such as "460V"',
    )


def _configuration_scalar(value: object) -> bool | int | Decimal | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) < _MAX_CONFIG_NUMBER:
        return value
    number = _exact_number(value, label="configuration")
    if number is not None:
        return number
    if isinstance(value, str):
        if _CONFIG_TEXT.fullmatch(value):
            return value
        raise PydanticCustomError(
            "configuration_string",
            "configuration strings have at most 200 characters and no control characters",
        )
    raise PydanticCustomError(
        "configuration_scalar",
        "configuration values other than options must be a string, number or boolean",
    )


Voltage = Annotated[
    int | str,
    PlainValidator(_voltage),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": _MAX_VOLTS},
                {"type": "string", "pattern": _VOLTAGE_TEXT_PATTERN},
            ],
            "examples": [460, "208-230/1/60"],
        }
    ),
]

ConfigurationValue = Annotated[
    bool | int | Decimal | str,
    PlainValidator(_configuration_scalar),
    PlainSerializer(_serialize_scalar, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _CONFIG_TEXT_PATTERN},
                {"type": "number"},
                {"type": "boolean"},
            ]
        }
    ),
]

Tonnage = Annotated[
    Decimal,
    BeforeValidator(number_decimal(4)),
    Field(gt=0, le=10_000, decimal_places=4),
    PlainSerializer(decimal_text, return_type=str, when_used="json"),
    WithJsonSchema(number_decimal_schema(4, exclusive_minimum=Decimal(0), maximum=Decimal(10_000))),
]


class Configuration(WireModel):
    """Build-to-order options of a configured product: at most 64 keys in all.

    ``tonnage``, ``voltage``, ``refrigerant`` and ``options`` are typed; any other key (a letter,
    then letters, digits, ``_``, ``.`` or ``-``; at most 64 characters) may carry one string,
    number or boolean. Numbers stay exact decimals.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "maxProperties": MAX_CONFIGURATION_KEYS,
            "propertyNames": {"pattern": CONFIGURATION_KEY_PATTERN},
        },
    )

    __pydantic_extra__: dict[str, ConfigurationValue] = Field(init=False)

    tonnage: Tonnage | None = None
    """Nominal cooling capacity in tons (> 0, at most 10000, up to 4 decimals)."""
    voltage: Voltage | None = None
    """Supply voltage: whole volts (``460``) or a label (``"208-230/1/60"``)."""
    refrigerant: Annotated[TextLine, Field(max_length=40)] | None = None
    """Refrigerant designation, e.g. ``R-454B``."""
    options: (
        Annotated[
            list[Annotated[TextLine, Field(max_length=100)]],
            Field(max_length=MAX_CONFIGURATION_OPTIONS),
        ]
        | None
    ) = None
    """Option codes (at most 100, each at most 100 characters)."""

    @model_validator(mode="before")
    @classmethod
    def _bounded_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if len(data) > MAX_CONFIGURATION_KEYS:
                raise PydanticCustomError(
                    "too_many_keys",
                    "configuration has more than {limit} keys",
                    {"limit": MAX_CONFIGURATION_KEYS},
                )
            if not all(isinstance(k, str) and _CONFIGURATION_KEY.fullmatch(k) for k in data):
                raise PydanticCustomError(
                    "configuration_key",
                    "configuration keys are 1–64 characters: a letter, then letters, digits, "
                    "'_', '.' or '-'",
                )
        return data


# --- the quote ----------------------------------------------------------------------------------


class Address(WireModel):
    """A delivery address."""

    street: Annotated[MultiLineText, Field(min_length=1, max_length=200)]
    """Street and house number; may span lines (building, suite)."""
    city: Annotated[TextLine, Field(max_length=100)]
    county: Annotated[OptionalTextLine, Field(max_length=100)] | None = None
    region: Annotated[OptionalTextLine, Field(max_length=100)] | None = None
    """State, province or region."""
    postal_code: Annotated[TextLine, Field(max_length=20)]
    country: CountryCode | None = None
    """ISO 3166-1 alpha-2 code, e.g. ``US``."""

    @field_validator("street")
    @classmethod
    def _street_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("blank", "street should not be blank")
        return value


class QuoteLine(WireModel):
    """One product line of a quote."""

    line_number: LineNumber
    """Unique within the quote."""
    sku: Sku
    description: Annotated[MultiLineText, Field(max_length=MAX_DESCRIPTION_CHARS)] | None = None
    quantity: Quantity
    unit_price: Money
    """Price per unit in the quote's currency, as a string: ``"1234.50"``."""
    discount_pct: Percent = Decimal(0)
    """Line discount in percent, 0 to 100."""
    configuration: Configuration | None = None

    @field_validator("line_number")
    @classmethod
    def _line_number_unique(cls, value: int) -> int:
        if not claim_unique("lineNumber", value):
            raise PydanticCustomError(
                "line_number_duplicate",
                "lineNumber should be unique within the quote; an earlier line uses it",
            )
        return value


class Quote(WireModel):
    """A quote as the Quoting Tool sends it. Replays are idempotent by ``(quoteId, revision)``."""

    quote_id: QuoteId
    """The Quoting Tool's id of the quote."""
    revision: Revision
    """Increases with every change of the quote; the hub keeps the highest it has accepted."""
    account_number: AccountNumber
    """The customer's account number."""
    sales_rep: Email
    """The sales representative's e-mail address."""
    currency: CurrencyCode
    """ISO 4217 code of every amount in the quote."""
    expected_close_date: IsoDate
    probability: Probability
    """Chance of winning, 0 to 1."""
    ship_to: Address
    lines: Annotated[list[QuoteLine], Field(min_length=1, max_length=MAX_QUOTE_LINES)]
    notes: Annotated[MultiLineText, Field(max_length=MAX_NOTES_CHARS)] | None = None
    modified_at: Timestamp
    """When the quote was last changed in the Quoting Tool (RFC 3339 with offset)."""

    @field_validator("lines", mode="wrap")
    @classmethod
    def _unique_line_numbers(cls, value: Any, handler: Callable[[Any], Any]) -> Any:
        with unique_scope("lineNumber"):
            lines = handler(value)
        # Lines passed in as QuoteLine instances are not revalidated, so they never claimed
        # their numbers above; check the finished list as well.
        numbers = [line.line_number for line in lines]
        if len(set(numbers)) != len(numbers):
            raise PydanticCustomError(
                "line_number_duplicate", "lineNumber should be unique within the quote"
            )
        return lines


class QuoteAccepted(WireModel):
    """The 202 answer to ``POST /api/quotes``; an exact replay gets the same answer."""

    quote_id: QuoteId
    revision: Revision
    status: QuoteState
    tracking_id: Annotated[str, Field(min_length=1, max_length=64)]
    """The hub's id for this accepted revision; quote it to support."""


class LifecycleStep(WireModel):
    """One step the quote has reached."""

    step: QuoteState
    at: Timestamp
    revision: Revision
    """The quote revision the step applies to."""


class Rejection(WireModel):
    """Why the hub or a downstream system refused the quote. Nothing will retry it."""

    code: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    at: Timestamp


class ApprovedLine(WireModel):
    """The price and discount approved in Dynamics 365 Sales for one line."""

    line_number: LineNumber
    approved_unit_price: Money
    approved_discount_pct: Percent


class QuoteStatus(WireModel):
    """The answer to ``GET /api/quotes/{quoteId}``: where the quote is and what was approved."""

    quote_id: QuoteId
    current_revision: Revision
    """The highest revision the hub has accepted."""
    status: QuoteState
    """The latest step reached."""
    steps: Annotated[list[LifecycleStep], Field(min_length=1)]
    """Every step reached, oldest first."""
    dataverse_id: UUID | None = None
    """The quote's id in Dynamics 365 Sales, once it is there."""
    approved_lines: list[ApprovedLine] = Field(default_factory=list)
    """Approved prices and discounts per line, once the quote is qualified."""
    sap_order_number: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,10}$")] | None = None
    """The SAP sales order number, once ordered."""
    rejection: Rejection | None = None
    """Present when ``status`` is ``rejected``."""
