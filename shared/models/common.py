"""Wire building blocks shared by the hub's HTTP models: the base model, typed field kinds,
limits, and the problem and health bodies.

Conventions every model here follows:

- camelCase on the wire (``alias_generator=to_camel``); Python code may construct models by
  field name, but request bodies are validated by alias only (``shared.jsonbody.validate``);
- unknown fields are refused (``extra="forbid"``);
- money and quantities are ``Decimal`` and never pass through ``float``: request bodies are parsed
  by ``shared.jsonbody.loads`` (JSON numbers become ``Decimal``), the validators here refuse
  ``float`` outright, and money travels as a JSON string such as ``"1234.50"``;
- strict where the JSON type carries meaning: an integer field refuses ``"1"``, ``1.5`` and
  ``true``; a date or timestamp must be a string, never a number;
- validators never put the input value into an error message (``shared.problem`` leaves inputs
  out of problem bodies, and messages must not smuggle them back in).
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Callable, Hashable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from shared.iso import COUNTRY_CODES, CURRENCY_CODES

# --- limits (the API documentation in docs/api.md quotes these) ----------------------------------

MAX_BODY_BYTES: Final = 1024 * 1024
"""Largest JSON request body (quotes, forecasts)."""
MAX_ARCHIVE_BYTES: Final = 100 * 1024 * 1024
"""Largest NDJSON archive upload."""
MAX_JSON_DEPTH: Final = 64
"""Deepest nesting of arrays and objects accepted in a JSON document."""
MAX_QUOTE_LINES: Final = 500
MAX_CONFIGURATION_KEYS: Final = 64
MAX_CONFIGURATION_OPTIONS: Final = 100
MAX_NOTES_CHARS: Final = 4000
MAX_DESCRIPTION_CHARS: Final = 2000
MAX_FORECAST_SUBMISSIONS: Final = 1000
MAX_QUANTITY: Final = Decimal(100_000)


def _field_title(name: str, _info: object) -> str:
    # pydantic's default title-cases the alias ("Linenumber"); say it in words instead.
    return name.replace("_", " ").capitalize()


class WireModel(BaseModel):
    """Base of every model on the hub's HTTP wire: camelCase aliases, unknown fields refused.

    ``validate_by_name`` and ``validate_by_alias`` together are pydantic's current spelling of
    ``populate_by_name``: Python code may write ``Quote(quote_id=...)``, while request bodies are
    validated with ``by_name=False`` so that only the camelCase names are accepted on the wire.
    Field docstrings become the descriptions in the OpenAPI document.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        use_attribute_docstrings=True,
        field_title_generator=_field_title,
    )


# --- uniqueness within one collection -----------------------------------------------------------
# A model validator that finds a duplicate can only report it at the model's own location; the
# contract wants the pointer of the duplicate itself (``/lines/3/lineNumber``). So the collection's
# validator opens a scope, and each item claims its key while it is validated: a duplicate fails
# in the item's own field validator, at its own location, next to every other error.

_claims: contextvars.ContextVar[dict[str, set[Hashable]] | None] = contextvars.ContextVar(
    "wire_unique_claims", default=None
)


@contextlib.contextmanager
def unique_scope(name: str) -> Iterator[None]:
    """Open a fresh set of claimed keys called ``name`` for the validation run inside."""
    scopes = dict(_claims.get() or {})
    scopes[name] = set()
    token = _claims.set(scopes)
    try:
        yield
    finally:
        _claims.reset(token)


def claim_unique(name: str, key: Hashable) -> bool:
    """Claim ``key`` in the open scope ``name``; False if it was already claimed.

    Outside any scope (an item validated on its own) every key is unique.
    """
    scopes = _claims.get()
    if scopes is None or name not in scopes:
        return True
    seen = scopes[name]
    if key in seen:
        return False
    seen.add(key)
    return True


# --- exact decimals -----------------------------------------------------------------------------


def decimal_text(value: Decimal) -> str:
    """Plain positional text of a finite decimal (``Decimal("1E+2")`` gives ``"100"``)."""
    return format(value, "f")


def _decimal_pattern(places: int, int_digits: int | None) -> str:
    whole = "0|[1-9][0-9]*" if int_digits is None else f"0|[1-9][0-9]{{0,{int_digits - 1}}}"
    return f"^({whole})(\\.[0-9]{{1,{places}}})?$"


def _refuse_inexact(value: object) -> None:
    if isinstance(value, bool):
        raise PydanticCustomError("decimal_type", "Input should be a number, not a boolean")
    if isinstance(value, float):
        raise PydanticCustomError(
            "decimal_float",
            "Input should be an exact decimal; binary floating-point values are refused",
        )


def string_decimal(places: int, int_digits: int | None) -> Callable[[object], object]:
    """Before-validator for a non-negative decimal that must arrive as a JSON string, with at
    most ``places`` decimals and ``int_digits`` integer digits (unbounded if None)."""
    pattern = re.compile(_decimal_pattern(places, int_digits))
    digits = f"at most {int_digits} integer digits and " if int_digits else "at most "
    message = (
        f"Input should be a non-negative decimal string with {digits}{places} decimal places, "
        'such as "1234.50" (no sign, exponent, spaces or grouping)'
    )

    def parse(value: object) -> object:
        if not isinstance(value, str):
            _refuse_inexact(value)
            raise PydanticCustomError(
                "decimal_string_type",
                'Input should be a JSON string holding a decimal, such as "1234.50"',
            )
        if pattern.fullmatch(value) is None:
            raise PydanticCustomError("decimal_string", message)
        return Decimal(value)

    return parse


def number_decimal(places: int) -> Callable[[object], object]:
    """Before-validator for a decimal sent as a JSON number or as a non-negative decimal string
    with at most ``places`` decimals. Bounds and places of numbers are checked by ``Field``."""
    pattern = re.compile(_decimal_pattern(places, None))

    def parse(value: object) -> object:
        _refuse_inexact(value)
        if isinstance(value, Decimal):
            return value
        if isinstance(value, int):
            return Decimal(value)
        if isinstance(value, str):
            if pattern.fullmatch(value) is None:
                raise PydanticCustomError(
                    "decimal_string",
                    "Input should be a JSON number or a non-negative decimal string with at "
                    f"most {places} decimal places (no sign, exponent, spaces or grouping)",
                )
            return Decimal(value)
        raise PydanticCustomError(
            "decimal_type", "Input should be a JSON number or a decimal string"
        )

    return parse


def string_decimal_schema(places: int, int_digits: int | None, example: str) -> dict[str, Any]:
    """JSON Schema of a decimal string accepted by ``string_decimal``."""
    return {
        "type": "string",
        "pattern": _decimal_pattern(places, int_digits),
        "examples": [example],
    }


def number_decimal_schema(
    places: int,
    *,
    minimum: Decimal | None = None,
    exclusive_minimum: Decimal | None = None,
    maximum: Decimal | None = None,
    exclusive_maximum: Decimal | None = None,
) -> dict[str, Any]:
    """JSON Schema of a value accepted by ``number_decimal`` with the given bounds."""
    number: dict[str, Any] = {"type": "number", "multipleOf": float(Decimal(1).scaleb(-places))}
    # JSON Schema bounds are JSON numbers; these are small exact literals, so int/float is safe.
    for key, bound in (
        ("minimum", minimum),
        ("exclusiveMinimum", exclusive_minimum),
        ("maximum", maximum),
        ("exclusiveMaximum", exclusive_maximum),
    ):
        if bound is not None:
            number[key] = int(bound) if bound == bound.to_integral_value() else float(bound)
    return {"anyOf": [number, {"type": "string", "pattern": _decimal_pattern(places, None)}]}


_json_text = PlainSerializer(decimal_text, return_type=str, when_used="json")
_always_text = PlainSerializer(decimal_text, return_type=str, when_used="always")

Money = Annotated[
    Decimal,
    BeforeValidator(string_decimal(2, 12)),
    Field(ge=0, lt=10**12, decimal_places=2),
    _always_text,
    WithJsonSchema(string_decimal_schema(2, 12, "1234.50")),
]
"""A non-negative amount below 10^12 with at most 2 decimals, as a JSON string (``"1234.50"``).
The attribute is a ``Decimal``; every serialisation, ``model_dump()`` included, gives the string."""

PriceAmount = Annotated[
    Decimal,
    BeforeValidator(string_decimal(4, 12)),
    Field(ge=0, lt=10**12, decimal_places=4),
    _always_text,
    WithJsonSchema(string_decimal_schema(4, 12, "1234.5000")),
]
"""A price-list amount: up to 4 decimals (Dataverse money precision), as a JSON string."""

StockQuantity = Annotated[
    Decimal,
    BeforeValidator(string_decimal(3, 13)),
    Field(ge=0, lt=10**13, decimal_places=3),
    _always_text,
    WithJsonSchema(string_decimal_schema(3, 13, "42.000")),
]
"""A stock quantity with up to 3 decimals (SAP quantity precision), as a JSON string."""

Quantity = Annotated[
    Decimal,
    BeforeValidator(number_decimal(4)),
    Field(gt=0, le=MAX_QUANTITY, decimal_places=4),
    _json_text,
    WithJsonSchema(number_decimal_schema(4, exclusive_minimum=Decimal(0), maximum=MAX_QUANTITY)),
]
"""A quantity > 0 and <= 100000 with up to 4 decimals: a JSON number or a decimal string."""

Probability = Annotated[
    Decimal,
    BeforeValidator(number_decimal(4)),
    Field(ge=0, le=1, decimal_places=4),
    _json_text,
    WithJsonSchema(number_decimal_schema(4, minimum=Decimal(0), maximum=Decimal(1))),
]
"""A probability from 0 to 1 with up to 4 decimals: a JSON number or a decimal string."""

Percent = Annotated[
    Decimal,
    BeforeValidator(number_decimal(2)),
    Field(ge=0, le=100, decimal_places=2),
    _json_text,
    WithJsonSchema(number_decimal_schema(2, minimum=Decimal(0), maximum=Decimal(100))),
]
"""A percentage from 0 to 100 with up to 2 decimals: a JSON number or a decimal string."""

Amount = Annotated[
    Decimal,
    BeforeValidator(number_decimal(2)),
    Field(ge=0, lt=10**13, decimal_places=2),
    _json_text,
    WithJsonSchema(number_decimal_schema(2, minimum=Decimal(0), exclusive_maximum=Decimal(10**13))),
]
"""A non-negative amount with at most 2 decimals: a JSON number or a decimal string."""


# --- integers -----------------------------------------------------------------------------------

Revision = Annotated[int, Strict(), Field(ge=0, le=2_147_483_647)]
"""A JSON integer >= 0 (``"1"``, ``1.5`` and ``true`` are refused)."""

LineNumber = Annotated[int, Strict(), Field(ge=1, le=99_999)]
"""A JSON integer from 1 to 99999."""

Count = Annotated[int, Strict(), Field(ge=0)]


# --- text ---------------------------------------------------------------------------------------
# Control characters in names and addresses are never legitimate and break CSV exports, logs
# and downstream systems; multi-line fields keep tab, line feed and carriage return.

SINGLE_LINE_PATTERN: Final = r"^[^\x00-\x1F\x7F]*$"
NON_BLANK_LINE_PATTERN: Final = r"^[^\x00-\x1F\x7F]*[^\x00-\x20\x7F][^\x00-\x1F\x7F]*$"
MULTI_LINE_PATTERN: Final = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F]*$"
IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9._-]+$"
SKU_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"

TextLine = Annotated[str, Strict(), Field(pattern=NON_BLANK_LINE_PATTERN)]
"""One line of text with at least one visible character and no control characters."""

OptionalTextLine = Annotated[str, Strict(), Field(pattern=SINGLE_LINE_PATTERN)]
"""One line of text (may be empty), no control characters."""

MultiLineText = Annotated[str, Strict(), Field(pattern=MULTI_LINE_PATTERN)]
"""Text that may span lines (tab, CR and LF allowed; other control characters refused)."""

QuoteId = Annotated[str, Strict(), Field(min_length=1, max_length=40, pattern=IDENTIFIER_PATTERN)]
"""1–40 characters from ``A-Z a-z 0-9 . _ -``."""

AccountNumber = Annotated[
    str, Strict(), Field(min_length=1, max_length=20, pattern=IDENTIFIER_PATTERN)
]
"""1–20 characters from ``A-Z a-z 0-9 . _ -``."""

Sku = Annotated[str, Strict(), Field(min_length=1, max_length=40, pattern=SKU_PATTERN)]
"""1–40 characters from ``A-Z a-z 0-9 . _ -``, starting with a letter or digit (it appears in
URL paths, so ``/`` is not allowed)."""


# --- e-mail -------------------------------------------------------------------------------------
# RFC 5322 dot-atom local part (no quoted strings or comments) at an RFC 1035 host name with a
# letter TLD or an IDNA A-label, within the RFC 5321 length limits (64 local, 254 overall).
# Address literals (user@[192.0.2.1]) and non-ASCII addresses are refused: a sales rep's address
# must be routable by any mail system the hub hands it to.

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LOCAL_PART = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOP_LEVEL = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")


def is_email(value: str) -> bool:
    """True if ``value`` is a plain ASCII mailbox ``local@host.tld`` (see the module rules)."""
    if len(value) > 254 or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    if len(local) > 64 or _LOCAL_PART.fullmatch(local) is None:
        return False
    labels = domain.split(".")
    return (
        len(domain) <= 253
        and len(labels) >= 2
        and all(_DOMAIN_LABEL.fullmatch(label) for label in labels)
        and _TOP_LEVEL.fullmatch(labels[-1]) is not None
    )


def _check_email(value: str) -> str:
    if not is_email(value):
        raise PydanticCustomError(
            "email",
            "Input should be an e-mail address such as name@example.com "
            "(ASCII, no quoted local part or address literal, at most 254 characters)",
        )
    return value


Email = Annotated[
    str,
    Strict(),
    AfterValidator(_check_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]


# --- ISO codes ----------------------------------------------------------------------------------


def _check_currency(value: str) -> str:
    if value not in CURRENCY_CODES:
        raise PydanticCustomError(
            "currency_code",
            "Input should be an active ISO 4217 currency code in upper case, such as USD",
        )
    return value


def _check_country(value: str) -> str:
    if value not in COUNTRY_CODES:
        raise PydanticCustomError(
            "country_code",
            "Input should be an ISO 3166-1 alpha-2 country code in upper case, such as US",
        )
    return value


CurrencyCode = Annotated[
    str,
    Strict(),
    AfterValidator(_check_currency),
    WithJsonSchema({"type": "string", "enum": sorted(CURRENCY_CODES)}),
]
"""An active ISO 4217 tender currency (``shared.iso.CURRENCY_CODES``)."""

CountryCode = Annotated[
    str,
    Strict(),
    AfterValidator(_check_country),
    WithJsonSchema({"type": "string", "enum": sorted(COUNTRY_CODES)}),
]
"""An officially assigned ISO 3166-1 alpha-2 code (``shared.iso.COUNTRY_CODES``)."""


# --- dates and times ----------------------------------------------------------------------------
# pydantic's lax date and datetime parsing also takes numbers (Unix time) and a date-time for a
# date; on this wire a date is exactly YYYY-MM-DD and a timestamp is an RFC 3339 date-time string.

_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_MONTH_PATTERN: Final = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


def _date_string(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _DATE_TEXT.fullmatch(value) is None:
        raise PydanticCustomError("date_format", "Input should be a date string YYYY-MM-DD")
    return value


def _timestamp_string(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise PydanticCustomError(
            "datetime_format",
            "Input should be an RFC 3339 date-time with an offset, "
            "such as 2026-05-19T09:30:00Z or 2026-05-19T11:30:00+02:00",
        )
    return value


IsoDate = Annotated[date, BeforeValidator(_date_string)]
"""A calendar date, ``YYYY-MM-DD``."""

Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp_string)]
"""An RFC 3339 date-time that carries an offset (``Z`` or ``±hh:mm``); naive times are refused."""

Month = Annotated[str, Strict(), Field(pattern=_MONTH_PATTERN)]
"""A calendar month, ``YYYY-MM``."""


# --- problem details (RFC 9457) and health ------------------------------------------------------


class FieldError(WireModel):
    """One failing field of a request: where, why, and a stable code (see ``shared.problem``)."""

    pointer: str
    """JSON Pointer (RFC 6901) to the failing value in the request body, e.g. ``/lines/3/sku``."""
    detail: str
    """What is wrong, in words. Never repeats the submitted value."""
    code: str
    """A stable machine-readable error code, e.g. ``missing`` or ``string_too_long``."""


class Problem(WireModel):
    """An RFC 9457 problem details body (``application/problem+json``).

    Extension members other than those listed may be added in future; clients must ignore them.
    """

    model_config = ConfigDict(extra="allow")

    type: Annotated[str, Field(json_schema_extra={"format": "uri"})]
    """A URI naming the kind of problem; stable, use it to branch on."""
    title: str
    """A short summary of the kind of problem."""
    status: Annotated[int, Field(ge=100, le=599)]
    """The HTTP status code."""
    detail: str | None = None
    """An explanation specific to this occurrence."""
    instance: str | None = None
    """A URI reference naming this occurrence, where there is one."""
    errors: list[FieldError] | None = None
    """Every failing field, for 422 responses."""
    errors_omitted: Count | None = None
    """How many further failing fields were left out of ``errors`` to bound the response size."""
    correlation_id: str | None = None
    """The id to quote to support (also in the ``x-correlation-id`` response header)."""
    current_revision: Revision | None = None
    """For 409 on a quote: the revision the hub has accepted for that quote."""


class HealthCheck(WireModel):
    """The result of one readiness check."""

    ok: bool
    detail: str | None = None
    """Why the check failed. Names the problem, never a secret or setting value."""


class Health(WireModel):
    """Liveness (``alive``) or, with ``?ready=1``, readiness of the hub."""

    status: Literal["alive", "ready", "not-ready"]
    time: Timestamp
    """The hub's clock when it answered."""
    checks: dict[str, HealthCheck] | None = None
    """Per-dependency readiness, present only for a readiness request."""
