"""The OData V2 machinery the SAP peer needs: the entity model, V2 JSON value formats, URI
literals, ``$filter``, ``$orderby`` and key predicates.

Values are held in Python form while stored (``str``, ``Decimal``, aware UTC ``datetime``,
``bool``, ``None``) and converted at the edges:

- V2 JSON out: ``Edm.DateTime`` as ``"/Date(<ms>)/"``, ``Edm.DateTimeOffset`` as
  ``"/Date(<ms>+0000)/"``, ``Edm.Decimal`` as a string (amounts with the decimals of their
  currency, other decimals with the property's scale), booleans as JSON booleans.
- V2 JSON in: the same forms, plus ISO 8601 for dates (SAP Gateway accepts both).
- URI literals: ``'text'`` (a quote doubled inside), ``datetime'2026-05-19T09:30:00'``,
  ``datetimeoffset'2026-05-19T09:30:00Z'``, numbers (with an optional ``M``/``m`` suffix for
  decimals, ``L`` for longs), ``true``/``false``/``null``.

Date comparisons run on 100 ns ticks, the precision of ``Edm.DateTimeOffset`` (``Precision=7``),
so a literal with seven fractional digits compares exactly.

Properties marked ``alpha`` carry SAP's ALPHA conversion: a value of digits only is stored
zero-padded to the field length inside SAP, so ``'9' < '10'`` for sales order numbers both in
``$orderby`` and ``$filter``, and ``A_SalesOrder('0000000001')`` finds order ``1``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)

STRING = "Edm.String"
DATETIME = "Edm.DateTime"
DATETIMEOFFSET = "Edm.DateTimeOffset"
DECIMAL = "Edm.Decimal"
BOOLEAN = "Edm.Boolean"
TIME = "Edm.Time"

# ISO 4217 currencies whose amounts SAP shows with other than two decimals (table TCURX).
CURRENCY_DECIMALS = {
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
}


class ODataError(Exception):
    """A request the OData layer refuses; the peer renders it in SAP's error format."""

    def __init__(self, status: int, code: str, message: str, *, target: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target


def bad_request(message: str, *, code: str = "ZSANDBOX/400", target: str = "") -> ODataError:
    return ODataError(400, code, message, target=target)


# ---- the entity model ------------------------------------------------------------------------
@dataclass(frozen=True)
class Prop:
    """One property of an entity or complex type, with the SAP annotations that matter."""

    name: str
    type: str = STRING
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None
    creatable: bool = True
    updatable: bool = True
    nullable: bool = True
    unit: str | None = None  # sap:unit, the property holding the currency or unit
    concurrency: bool = False  # ConcurrencyMode="Fixed": the ETag source
    amount: bool = False  # a currency amount: shown with the decimals of its currency
    alpha: bool = False  # SAP ALPHA conversion (numeric ids compare zero-padded)
    label: str = ""


@dataclass(frozen=True)
class Nav:
    """A navigation property: ``link`` pairs a source property with the target's."""

    name: str
    target: str
    many: bool
    link: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class EntitySet:
    name: str
    type_name: str
    props: tuple[Prop, ...]
    keys: tuple[str, ...]
    navs: tuple[Nav, ...] = ()
    creatable: bool = False
    updatable: bool = False
    deletable: bool = False
    label: str = ""
    by_name: dict[str, Prop] = field(init=False, repr=False, compare=False)
    nav_by_name: dict[str, Nav] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.props})
        object.__setattr__(self, "nav_by_name", {n.name: n for n in self.navs})

    def prop(self, name: str) -> Prop:
        try:
            return self.by_name[name]
        except KeyError:
            raise bad_request(
                f"Property '{name}' not found in type '{self.type_name}'",
                code="/IWBEP/CM_MGW_RT/022",
            ) from None

    @property
    def etag_prop(self) -> Prop | None:
        return next((p for p in self.props if p.concurrency), None)


@dataclass(frozen=True)
class ComplexType:
    name: str
    props: tuple[Prop, ...]


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class FunctionImport:
    name: str
    return_type: str  # complex type name
    many: bool
    params: tuple[Param, ...]
    http_method: str = "GET"


@dataclass(frozen=True)
class Service:
    name: str
    component: str  # SAP application component, reported in innererror.application
    sets: dict[str, EntitySet]
    complex_types: dict[str, ComplexType] = field(default_factory=dict)
    functions: dict[str, FunctionImport] = field(default_factory=dict)
    version: str = "0001"

    def entity_set(self, name: str) -> EntitySet:
        try:
            return self.sets[name]
        except KeyError:
            raise ODataError(
                404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'"
            ) from None


# ---- time ------------------------------------------------------------------------------------
def ticks(value: dt.datetime) -> int:
    """100 ns units since the epoch (the precision of SAP's UTC long timestamps)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def epoch_ms(value: dt.datetime) -> int:
    return ticks(value) // 10_000


def from_epoch_ms(ms: int) -> dt.datetime:
    return EPOCH + dt.timedelta(milliseconds=ms)


def etag_for(value: dt.datetime) -> str:
    """SAP's weak ETag from a DateTimeOffset concurrency token: seven fractional digits, colons
    percent-encoded, e.g. ``W/"datetimeoffset'2019-01-09T08%3A41%3A03.6829150Z'"``."""
    stamp = f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z"
    return f"W/\"datetimeoffset'{quote(stamp, safe='-.TZ')}'\""


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
_JSON_DATE = re.compile(r"^/Date\((-?\d+)(?:([+-])(\d{4}))?\)/$")


@dataclass(frozen=True, order=True)
class Stamp:
    """A UTC instant with 100 ns precision (what a literal or stored value compares as)."""

    ticks: int

    @classmethod
    def of(cls, value: dt.datetime) -> Stamp:
        return cls(ticks(value))


def parse_iso(text: str, *, offset_required: bool) -> tuple[dt.datetime, int]:
    """Parse ISO 8601 into (aware UTC datetime truncated to µs, exact 100 ns ticks)."""
    match = _ISO.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a valid date/time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if offset_required and zone is None:
        raise ValueError(f"'{text}' has no time zone designator")
    if not offset_required and zone not in (None, "Z"):
        raise ValueError(f"'{text}' must not carry an offset")
    digits = (fraction or "").ljust(7, "0")
    value = dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int(digits[:6]),
        tzinfo=UTC,
    )
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        value -= sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return value, ticks(value) + int(digits[6])


# ---- V2 JSON values --------------------------------------------------------------------------
def to_json(prop: Prop, value: Any, record: dict[str, Any] | None = None) -> Any:
    """A stored value in V2 JSON form.

    ABAP fields have no null: an initial character field reads ``""``, a number ``0``, a flag
    ``false``. Only dates and time stamps are ``null`` when initial, as SAP Gateway sends them.
    """
    if value is None:
        if prop.type == STRING:
            return ""
        if prop.type == BOOLEAN:
            return False
        if prop.type == DECIMAL:
            value = Decimal(0)
        elif prop.type == TIME:
            return "PT00H00M00S"
        else:
            return None
    if prop.type == DATETIME:
        return f"/Date({epoch_ms(value)})/"
    if prop.type == DATETIMEOFFSET:
        return f"/Date({epoch_ms(value)}+0000)/"
    if prop.type == DECIMAL:
        scale = prop.scale or 0
        if (
            prop.amount
            and prop.unit
            and record is not None
            and isinstance(record.get(prop.unit), str)
        ):
            currency = record[prop.unit]
            if currency and re.fullmatch(r"[A-Z]{3}", currency):
                scale = CURRENCY_DECIMALS.get(currency, 2)
        return f"{Decimal(value):.{scale}f}"
    return value


def from_json(prop: Prop, raw: Any) -> Any:
    """A V2 JSON input value as stored; raises ValueError saying what is wrong."""
    if raw is None:
        if not prop.nullable:
            raise ValueError(f"Property '{prop.name}' must not be null")
        return None
    if prop.type == STRING:
        if not isinstance(raw, str):
            raise ValueError(f"Property '{prop.name}' expects a string")
        if prop.max_length is not None and len(raw) > prop.max_length:
            raise ValueError(
                f"Value '{raw}' of property '{prop.name}' exceeds the maximum length {prop.max_length}"
            )
        return normalize_alpha(prop, raw)
    if prop.type == BOOLEAN:
        if not isinstance(raw, bool):
            raise ValueError(f"Property '{prop.name}' expects true or false")
        return raw
    if prop.type == DECIMAL:
        # V2 JSON carries Edm.Decimal as a string; a JSON number would lose precision.
        if not isinstance(raw, str):
            raise ValueError(f"Property '{prop.name}' expects a decimal in a JSON string")
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise ValueError(f"Value '{raw}' of property '{prop.name}' is not a decimal") from None
        if not value.is_finite():
            raise ValueError(f"Value '{raw}' of property '{prop.name}' is not a decimal")
        check_decimal(prop, value, raw)
        return value
    if prop.type in (DATETIME, DATETIMEOFFSET):
        if not isinstance(raw, str):
            raise ValueError(f"Property '{prop.name}' expects a date/time string")
        match = _JSON_DATE.match(raw)
        if match:
            return from_epoch_ms(int(match.group(1)))
        try:
            value, _ = (
                parse_iso(raw, offset_required=False) if prop.type == DATETIME else _iso_offset(raw)
            )
        except ValueError as exc:
            raise ValueError(f"Property '{prop.name}': {exc}") from None
        return value
    if prop.type == TIME:
        if not isinstance(raw, str) or not re.fullmatch(r"PT\d{1,2}H\d{1,2}M\d{1,2}S", raw):
            raise ValueError(f"Property '{prop.name}' expects a duration like PT11H50M49S")
        return raw
    raise ValueError(f"Property '{prop.name}' has an unsupported type {prop.type}")


def _iso_offset(raw: str) -> tuple[dt.datetime, int]:
    # A DateTimeOffset in a payload may omit the zone; SAP reads it as UTC.
    try:
        return parse_iso(raw, offset_required=True)
    except ValueError:
        return parse_iso(raw, offset_required=False)


def check_decimal(prop: Prop | Param, value: Decimal, raw: str) -> None:
    exponent = value.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    scale = prop.scale or 0
    if decimals > scale and value != value.quantize(Decimal(1).scaleb(-scale)):
        raise ValueError(f"Value '{raw}' of '{prop.name}' has more than {scale} decimals")
    if prop.precision is not None:
        whole = len(str(abs(int(value)))) if int(value) else 0
        if whole > prop.precision - scale:
            raise ValueError(f"Value '{raw}' of '{prop.name}' is too large")


def normalize_alpha(prop: Prop, value: str) -> str:
    """External form of an ALPHA-converted id: digits without leading zeros."""
    if prop.alpha and value.isdigit():
        return value.lstrip("0") or "0"
    return value


def sort_value(prop: Prop, value: Any) -> Any:
    """The value as SAP compares it: ALPHA ids zero-padded, instants as ticks."""
    if value is None:
        return None
    if prop.alpha and isinstance(value, str) and value.isdigit():
        return value.rjust(prop.max_length or 10, "0")
    if isinstance(value, dt.datetime):
        return Stamp.of(value)
    return value


# ---- URI literals ----------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<typed>(?:datetimeoffset|datetime|guid|time|binary|X)'(?:[^']|'')*')
      | (?P<string>'(?:[^']|'')*')
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[MmLlDdFf]?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<punct>[(),=])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # literal | name | punct
    text: str
    pos: int
    value: Any = None
    literal_type: str | None = None  # Edm type of a literal, "null" for null


@dataclass(frozen=True)
class Literal:
    type: str | None  # None for null
    value: Any
    ticks: int | None = None  # exact instant for date literals


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise bad_request(f"Invalid token detected at position {pos + 1}")
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "name" and raw in ("true", "false"):
            tokens.append(Token("literal", raw, start, Literal(BOOLEAN, raw == "true")))
        elif kind == "name" and raw == "null":
            tokens.append(Token("literal", raw, start, Literal(None, None)))
        elif kind in ("typed", "string", "number"):
            tokens.append(Token("literal", raw, start, parse_literal(raw)))
        else:
            tokens.append(Token(kind, raw, start))
        pos = match.end()
    return tokens


def parse_literal(raw: str) -> Literal:
    """One URI literal."""
    if raw.startswith("'"):
        return Literal(STRING, raw[1:-1].replace("''", "'"))
    if raw[0].isdigit() or raw[0] == "-":
        body = raw.rstrip("MmLlDdFf")
        try:
            number = Decimal(body)
        except InvalidOperation:
            raise bad_request(f"Invalid numeric literal {raw}") from None
        return Literal(DECIMAL, number)
    prefix, _, quoted = raw.partition("'")
    inner = quoted[:-1].replace("''", "'")
    try:
        if prefix == "datetime":
            value, exact = parse_iso(inner, offset_required=False)
            return Literal(DATETIME, value, exact)
        if prefix == "datetimeoffset":
            value, exact = parse_iso(inner, offset_required=True)
            return Literal(DATETIMEOFFSET, value, exact)
    except ValueError as exc:
        raise bad_request(f"Invalid {prefix} literal {raw}: {exc}") from None
    if prefix == "time":
        return Literal(TIME, inner)
    raise bad_request(f"Literals of type {prefix} are not supported")


def format_literal(prop: Prop, value: Any) -> str:
    """A stored value as a URI literal (for key predicates in URIs)."""
    if prop.type == STRING:
        return "'" + str(value).replace("'", "''") + "'"
    if prop.type == DATETIME:
        return f"datetime'{value:%Y-%m-%dT%H:%M:%S}'"
    if prop.type == DATETIMEOFFSET:
        return f"datetimeoffset'{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond:06d}0Z'"
    if prop.type == DECIMAL:
        return f"{value}M"
    if prop.type == BOOLEAN:
        return "true" if value else "false"
    return str(value)


def literal_value(prop: Prop, literal: Literal, where: str) -> Any:
    """A literal used against ``prop``: type-checked and converted to the stored form."""
    if literal.type is None:
        return None
    compatible = {
        STRING: (STRING,),
        DATETIME: (DATETIME,),
        DATETIMEOFFSET: (DATETIMEOFFSET,),
        DECIMAL: (DECIMAL,),
        BOOLEAN: (BOOLEAN,),
        TIME: (TIME,),
    }[prop.type]
    if literal.type not in compatible:
        raise bad_request(
            f"Invalid {where}: property '{prop.name}' is {prop.type} and cannot be compared "
            f"with a {literal.type} literal",
            code="/IWBEP/CM_MGW_RT/004",
        )
    if prop.type == STRING:
        return normalize_alpha(prop, literal.value)
    return literal.value


# ---- key predicates --------------------------------------------------------------------------
def parse_key(entity_set: EntitySet, predicate: str) -> tuple[Any, ...]:
    """``('1')`` or ``(SalesOrder='1',SalesOrderItem='10')`` (without the parentheses)."""
    tokens = tokenize(predicate)
    values: dict[str, Any] = {}
    if len(tokens) == 1 and tokens[0].kind == "literal":
        if len(entity_set.keys) != 1:
            raise bad_request(f"The key of {entity_set.name} has {len(entity_set.keys)} properties")
        values[entity_set.keys[0]] = tokens[0].value
    else:
        index = 0
        while index < len(tokens):
            if (
                index + 2 >= len(tokens)
                or tokens[index].kind != "name"
                or tokens[index + 1].text != "="
                or tokens[index + 2].kind != "literal"
            ):
                raise bad_request(f"Invalid key predicate ({predicate})")
            values[tokens[index].text] = tokens[index + 2].value
            index += 3
            if index < len(tokens):
                if tokens[index].text != ",":
                    raise bad_request(f"Invalid key predicate ({predicate})")
                index += 1
    if set(values) != set(entity_set.keys):
        raise bad_request(
            f"Invalid key predicate ({predicate}): {entity_set.name} is keyed by "
            + ", ".join(entity_set.keys)
        )
    key: list[Any] = []
    for name in entity_set.keys:
        prop = entity_set.prop(name)
        key.append(literal_value(prop, values[name], "key predicate"))
    return tuple(key)


def key_predicate(entity_set: EntitySet, record: dict[str, Any]) -> str:
    props = [entity_set.prop(name) for name in entity_set.keys]
    if len(props) == 1:
        return "(" + format_literal(props[0], record[props[0].name]) + ")"
    return "(" + ",".join(f"{p.name}={format_literal(p, record[p.name])}" for p in props) + ")"


# ---- $filter ---------------------------------------------------------------------------------
Predicate = Callable[[dict[str, Any]], bool]
Getter = Callable[[dict[str, Any]], Any]
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"substringof": 2, "startswith": 2, "endswith": 2, "tolower": 1, "toupper": 1}


@dataclass
class _Operand:
    getter: Getter
    prop: Prop | None  # the property an operand reads, when it reads one directly
    literal: Literal | None = None
    is_string: bool = False
    is_bool: bool = False


class FilterParser:
    """Recursive descent over the V2 ``$filter`` grammar the hub and most clients use:
    ``or``, ``and``, ``not``, parentheses, the six comparisons, and the string functions
    ``substringof``, ``startswith``, ``endswith``, ``tolower``, ``toupper``."""

    def __init__(self, entity_set: EntitySet, text: str) -> None:
        self.entity_set = entity_set
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    def parse(self) -> Predicate:
        if not self.tokens:
            raise bad_request("Invalid filter expression: the expression is empty")
        predicate = self._or()
        if self.index != len(self.tokens):
            token = self.tokens[self.index]
            raise bad_request(f"Invalid token detected at position {token.pos + 1}")
        return predicate

    # grammar
    def _or(self) -> Predicate:
        left = self._and()
        while self._accept_word("or"):
            left = _any_of(left, self._and())
        return left

    def _and(self) -> Predicate:
        left = self._not()
        while self._accept_word("and"):
            left = _all_of(left, self._not())
        return left

    def _not(self) -> Predicate:
        if self._accept_word("not"):
            inner = self._not()
            return lambda r: not inner(r)
        return self._comparison()

    def _comparison(self) -> Predicate:
        if self._peek_text() == "(":
            # A parenthesised boolean expression.
            self.index += 1
            inner = self._or()
            self._expect(")")
            return inner
        left = self._operand()
        token = self._peek()
        if token is not None and token.kind == "name" and token.text in _COMPARISONS:
            self.index += 1
            right = self._operand()
            return self._compare(token.text, left, right)
        if left.is_bool:
            # A boolean-valued function call used as a predicate.
            getter = left.getter
            return lambda r: bool(getter(r))
        if left.prop is not None and left.prop.type == BOOLEAN:
            getter = left.getter
            return lambda r: getter(r) is True
        raise bad_request(f"Invalid filter expression: '{self.text}'")

    def _operand(self) -> _Operand:
        token = self._next()
        if token.kind == "literal":
            literal: Literal = token.value
            return _Operand(lambda r: literal.value, None, literal)
        if token.kind == "name" and token.text in _FUNCTIONS:
            return self._call(token.text)
        if token.kind == "name":
            if "/" in token.text:
                raise bad_request(f"Navigation paths in $filter are not supported: {token.text}")
            prop = self.entity_set.prop(token.text)
            name = prop.name
            return _Operand(lambda r: r.get(name), prop, is_string=prop.type == STRING)
        raise bad_request(f"Invalid token detected at position {token.pos + 1}")

    def _call(self, name: str) -> _Operand:
        self._expect("(")
        args = [self._operand()]
        while self._peek_text() == ",":
            self.index += 1
            args.append(self._operand())
        self._expect(")")
        if len(args) != _FUNCTIONS[name]:
            raise bad_request(f"Function {name} takes {_FUNCTIONS[name]} argument(s)")
        for arg in args:
            if not (arg.is_string or (arg.literal is not None and arg.literal.type == STRING)):
                raise bad_request(f"Function {name} takes string arguments")
        getters = [a.getter for a in args]
        if name in ("tolower", "toupper"):
            inner = getters[0]
            method = str.lower if name == "tolower" else str.upper
            return _Operand(
                lambda r: None if inner(r) is None else method(inner(r)), None, is_string=True
            )

        def both(record: dict[str, Any]) -> tuple[str, str] | None:
            first, second = getters[0](record), getters[1](record)
            if first is None or second is None:
                return None
            return str(first), str(second)

        if name == "substringof":
            test: Predicate = lambda r: (p := both(r)) is not None and p[0] in p[1]  # noqa: E731
        elif name == "startswith":
            test = lambda r: (p := both(r)) is not None and p[0].startswith(p[1])  # noqa: E731
        else:
            test = lambda r: (p := both(r)) is not None and p[0].endswith(p[1])  # noqa: E731
        return _Operand(test, None, is_bool=True)

    def _compare(self, op: str, left: _Operand, right: _Operand) -> Predicate:
        prop = left.prop or right.prop
        if prop is not None:
            for side in (left, right):
                if side.literal is not None:
                    value = literal_value(prop, side.literal, "filter expression")
                    exact = side.literal.ticks
                    side.getter = _constant(
                        Stamp(exact) if exact is not None else sort_value(prop, value)
                    )
                elif side.prop is not None:
                    side.getter = _as_sorted(side.prop, side.getter)
        get_left, get_right = left.getter, right.getter

        def compare(record: dict[str, Any]) -> bool:
            a, b = get_left(record), get_right(record)
            if op == "eq":
                return bool(a == b)
            if op == "ne":
                return bool(a != b)
            if a is None or b is None:
                return False
            try:
                if op == "gt":
                    return bool(a > b)
                if op == "ge":
                    return bool(a >= b)
                if op == "lt":
                    return bool(a < b)
                return bool(a <= b)
            except TypeError:
                return False

        return compare

    # token helpers
    def _peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _peek_text(self) -> str | None:
        token = self._peek()
        return token.text if token is not None else None

    def _next(self) -> Token:
        token = self._peek()
        if token is None:
            raise bad_request(f"Invalid filter expression: '{self.text}' ends unexpectedly")
        self.index += 1
        return token

    def _accept_word(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token.kind == "name" and token.text == word:
            self.index += 1
            return True
        return False

    def _expect(self, text: str) -> None:
        token = self._next()
        if token.text != text:
            raise bad_request(
                f"Invalid token detected at position {token.pos + 1}: expected '{text}'"
            )


def _any_of(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) or second(record)


def _all_of(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) and second(record)


def _constant(value: Any) -> Getter:
    return lambda record: value


def _as_sorted(prop: Prop, getter: Getter) -> Getter:
    return lambda record: sort_value(prop, getter(record))


def parse_filter(entity_set: EntitySet, text: str) -> Predicate:
    return FilterParser(entity_set, text).parse()


# ---- $orderby, $select, $expand --------------------------------------------------------------
def parse_orderby(entity_set: EntitySet, text: str) -> list[tuple[Prop, bool]]:
    """``Field [asc|desc], ...`` -> [(property, descending)]."""
    order: list[tuple[Prop, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
            raise bad_request(f"Invalid $orderby expression '{text}'")
        order.append((entity_set.prop(words[0]), len(words) == 2 and words[1] == "desc"))
    return order


def sort_records(
    entity_set: EntitySet, records: list[dict[str, Any]], order: Sequence[tuple[Prop, bool]]
) -> list[dict[str, Any]]:
    """Sorted by ``order``, ties in key order (so paging is stable). Nulls sort first."""
    keys = [entity_set.prop(name) for name in entity_set.keys]
    result = sorted(
        records, key=lambda r: tuple(_null_first(sort_value(p, r.get(p.name))) for p in keys)
    )
    for prop, descending in reversed(order):
        result.sort(
            key=lambda r, p=prop: _null_first(sort_value(p, r.get(p.name))), reverse=descending
        )
    return result


def _null_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def check_names(entity_set: EntitySet, names: Iterable[str]) -> None:
    for name in names:
        if name not in entity_set.by_name and name not in entity_set.nav_by_name and name != "*":
            entity_set.prop(name)
