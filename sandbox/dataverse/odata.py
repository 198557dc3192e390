"""OData v4 URL grammar as the Dataverse Web API reads it.

Covers what the sandbox serves: primitive literals (string with ``''`` escaping, integer,
decimal, double, boolean, null, date, datetimeoffset, guid, ``@alias`` parameters), resource
paths with key predicates (``accounts(<guid>)``, ``accounts(accountnumber='A1')``, composite
``contacts(k1='a',k2=2)``), ``$filter`` expressions (``eq ne gt ge lt le and or not``,
parentheses, ``contains/startswith/endswith``), ``$orderby`` and ``$select``.

Sources: OData v4.01 ABNF (primitive literals, key predicates, common expressions);
powerapps-docs ``webapi/query/filter-rows.md`` (supported operators and functions) and
``use-alternate-key-reference-record.md`` (key predicate forms).

Schema knowledge stays out of this module: ``compile_filter`` takes a callable that answers the
Edm type of a property, so the peer decides which properties exist.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

EDM_STRING = "Edm.String"
EDM_INT32 = "Edm.Int32"
EDM_INT64 = "Edm.Int64"
EDM_DECIMAL = "Edm.Decimal"
EDM_DOUBLE = "Edm.Double"
EDM_BOOLEAN = "Edm.Boolean"
EDM_DATE = "Edm.Date"
EDM_DATETIMEOFFSET = "Edm.DateTimeOffset"
EDM_GUID = "Edm.Guid"
EDM_NULL = "null"

NUMERIC = frozenset({EDM_INT32, EDM_INT64, EDM_DECIMAL, EDM_DOUBLE})
TEMPORAL = frozenset({EDM_DATE, EDM_DATETIMEOFFSET})

_GUID_RE = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_DATE_RE = re.compile(r"-?\d{4}-\d{2}-\d{2}")
_DTO_RE = re.compile(
    r"-?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,12})?)?(?:Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)
_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*")
_ALIAS_RE = re.compile(r"@[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$]*")

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("contains", "startswith", "endswith")
_OPERATOR_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}


class ODataError(ValueError):
    """A URL that does not parse or does not fit the model; the message is Dataverse's wording."""


class UnknownProperty(ODataError):
    """A property name the entity type does not have (Dataverse answers it with code 0x0)."""


def unknown_property(name: str, entity_type: str) -> UnknownProperty:
    return UnknownProperty(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{entity_type}'."
    )


@dataclass(frozen=True)
class Literal:
    """A typed primitive value as written in a URL."""

    edm: str
    value: Any


# ---- literals -----------------------------------------------------------------------------------


def parse_literal(text: str) -> Literal:
    """Parse one complete primitive literal (``'O''Brien'``, ``42``, ``2024-01-31``, a guid...)."""
    scanner = _Scanner(text)
    literal = scanner.literal()
    if literal is None or scanner.pos != len(text):
        raise ODataError(f"Unrecognized literal '{text}'.")
    return literal


def format_literal(value: Any) -> str:
    """The OData literal for a Python value; the inverse of ``parse_literal``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ODataError("Decimal literals must be finite.")
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ODataError("datetimeoffset literals need a time zone.")
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise ODataError(f"No OData literal for {type(value).__name__}.")


def format_datetime(value: dt.datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ`` (fractions kept when present), as Dataverse returns them."""
    value = value.astimezone(dt.UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetimeoffset(text: str) -> dt.datetime:
    """An aware datetime from an ISO 8601 datetimeoffset (``Z`` or ``+hh:mm``)."""
    if not _DTO_RE.fullmatch(text):
        raise ODataError(f"Unrecognized 'Edm.DateTimeOffset' literal '{text}'.")
    normalized = text[:-1] + "+00:00" if text[-1] in "zZ" else text
    fraction = re.search(r"\.(\d+)", normalized)
    if fraction and len(fraction.group(1)) > 6:
        # Python keeps microseconds; OData allows up to 12 fractional digits.
        normalized = normalized.replace(fraction.group(0), "." + fraction.group(1)[:6], 1)
    try:
        value = dt.datetime.fromisoformat(normalized)
    except ValueError:
        raise ODataError(f"Unrecognized 'Edm.DateTimeOffset' literal '{text}'.") from None
    return value.astimezone(dt.UTC)


class _Scanner:
    """Character-level reader shared by literals, key predicates and expressions."""

    def __init__(self, text: str, aliases: Mapping[str, str] | None = None) -> None:
        self.text = text
        self.pos = 0
        self.aliases = aliases or {}

    def error(self, at: int | None = None) -> ODataError:
        return ODataError(
            f"Syntax error at position {self.pos if at is None else at} in '{self.text}'."
        )

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def literal(self) -> Literal | None:
        """Read a literal at the current position, or return None if none starts here."""
        text, pos = self.text, self.pos
        if pos >= len(text):
            return None
        ch = text[pos]
        if ch == "'":
            return self._string()
        if ch == "@":
            match = _ALIAS_RE.match(text, pos)
            if not match:
                return None
            name = match.group(0)
            if name not in self.aliases:
                raise ODataError(f"The parameter alias '{name}' was not found in the request.")
            self.pos = match.end()
            return parse_literal(self.aliases[name])
        guid = _GUID_RE.match(text, pos)
        if guid and not _continues_word(text, guid.end()):
            self.pos = guid.end()
            return Literal(EDM_GUID, uuid.UUID(guid.group(0)))
        dto = _DTO_RE.match(text, pos)
        if dto:
            self.pos = dto.end()
            return Literal(EDM_DATETIMEOFFSET, parse_datetimeoffset(dto.group(0)))
        date = _DATE_RE.match(text, pos)
        if date and not _continues_word(text, date.end()):
            try:
                value = dt.date.fromisoformat(date.group(0))
            except ValueError:
                raise ODataError(f"Unrecognized 'Edm.Date' literal '{date.group(0)}'.") from None
            self.pos = date.end()
            return Literal(EDM_DATE, value)
        number = _NUMBER_RE.match(text, pos)
        if number and not _continues_word(text, number.end()):
            self.pos = number.end()
            return _number(number.group(0))
        for word, literal in (
            ("true", Literal(EDM_BOOLEAN, True)),
            ("false", Literal(EDM_BOOLEAN, False)),
            ("null", Literal(EDM_NULL, None)),
        ):
            if text.startswith(word, pos) and not _continues_word(text, pos + len(word)):
                self.pos = pos + len(word)
                return literal
        return None

    def _string(self) -> Literal:
        text = self.text
        start = self.pos
        i = start + 1
        chunks: list[str] = []
        while True:
            end = text.find("'", i)
            if end < 0:
                raise ODataError(
                    f"There is an unterminated string literal at position {start} in '{text}'."
                )
            chunks.append(text[i:end])
            if text.startswith("''", end):
                chunks.append("'")
                i = end + 2
                continue
            self.pos = end + 1
            return Literal(EDM_STRING, "".join(chunks))


def _continues_word(text: str, end: int) -> bool:
    return end < len(text) and (text[end].isalnum() or text[end] in "_.-:")


def _number(text: str) -> Literal:
    if "e" in text or "E" in text:
        return Literal(EDM_DOUBLE, float(text))
    if "." in text:
        try:
            return Literal(EDM_DECIMAL, Decimal(text))
        except InvalidOperation:
            raise ODataError(f"Unrecognized 'Edm.Decimal' literal '{text}'.") from None
    value = int(text)
    return Literal(EDM_INT32 if INT32_MIN <= value <= INT32_MAX else EDM_INT64, value)


# ---- resource paths and key predicates ----------------------------------------------------------


@dataclass(frozen=True)
class KeyPredicate:
    """``(value)`` (one unnamed value: the primary key) or ``(name=value, ...)``."""

    unnamed: Literal | None
    named: tuple[tuple[str, Literal], ...]

    def as_dict(self) -> dict[str, Literal]:
        return dict(self.named)


@dataclass(frozen=True)
class ResourcePath:
    """``<segment>[(<key>)][/<rest>...]`` relative to the service root."""

    segment: str
    key: KeyPredicate | None
    rest: tuple[str, ...]


def parse_resource_path(path: str) -> ResourcePath:
    """Split a service-relative path such as ``accounts(accountnumber='A/1')/name``.

    Key literals are read with the literal grammar, so a quoted value may contain ``/``, ``(``
    or ``)`` without confusing the split.
    """
    scanner = _Scanner(path)
    match = _SEGMENT_RE.match(path)
    if not match:
        raise ODataError(f"Resource not found for the segment '{path.split('/', 1)[0]}'.")
    segment = match.group(0)
    scanner.pos = match.end()
    key: KeyPredicate | None = None
    if scanner.peek() == "(":
        scanner.pos += 1
        key = _key_predicate(scanner)
    rest: tuple[str, ...] = ()
    if not scanner.at_end():
        if scanner.peek() != "/":
            raise ODataError(f"Bad Request - Error in query syntax: '{path}'.")
        remainder = path[scanner.pos + 1 :]
        rest = tuple(part for part in remainder.split("/") if part)
    return ResourcePath(segment, key, rest)


def parse_key_predicate(text: str) -> KeyPredicate:
    """Parse ``(…)`` content including the parentheses."""
    if not text.startswith("("):
        raise ODataError(f"Bad Request - Error in query syntax: '{text}'.")
    scanner = _Scanner(text)
    scanner.pos = 1
    key = _key_predicate(scanner)
    if not scanner.at_end():
        raise scanner.error()
    return key


def _key_predicate(scanner: _Scanner) -> KeyPredicate:
    """Read after the opening ``(`` up to and including the closing ``)``."""
    scanner.skip_ws()
    named: list[tuple[str, Literal]] = []
    unnamed: Literal | None = None
    while True:
        scanner.skip_ws()
        start = scanner.pos
        ident = _IDENT_RE.match(scanner.text, scanner.pos)
        after_ident = ident.end() if ident else -1
        if ident and scanner.text[after_ident : after_ident + 1] == "=":
            name = ident.group(0)
            scanner.pos = after_ident + 1
            literal = scanner.literal()
            if literal is None:
                raise scanner.error()
            named.append((name, literal))
        else:
            scanner.pos = start
            literal = scanner.literal()
            if literal is None or named or unnamed is not None:
                raise scanner.error()
            unnamed = literal
        scanner.skip_ws()
        nxt = scanner.peek()
        if nxt == ",":
            if unnamed is not None:
                raise scanner.error()
            scanner.pos += 1
            continue
        if nxt == ")":
            scanner.pos += 1
            break
        raise scanner.error()
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ODataError("Duplicate key properties in the key predicate.")
    return KeyPredicate(unnamed, tuple(named))


# ---- $filter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    path: str
    edm: str


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Logical:
    op: str  # "and" | "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Node, ...]


Node = Literal | Prop | Compare | Logical | Not | Call
TypeOf = Callable[[str], str | None]
"""Answers the Edm type of a property path, or None when the entity type has no such property."""


class _FilterParser:
    def __init__(
        self, text: str, type_of: TypeOf, entity_type: str, aliases: Mapping[str, str]
    ) -> None:
        self.s = _Scanner(text, aliases)
        self.type_of = type_of
        self.entity_type = entity_type

    def parse(self) -> Node:
        self.s.skip_ws()
        if self.s.at_end():
            raise self.s.error()
        node = self._or()
        self.s.skip_ws()
        if not self.s.at_end():
            raise self.s.error()
        if _edm(node) != EDM_BOOLEAN:
            raise ODataError("The $filter expression must evaluate to a single boolean value.")
        return node

    def _keyword(self, word: str) -> bool:
        s = self.s
        s.skip_ws()
        if s.text.startswith(word, s.pos) and not _continues_word(s.text, s.pos + len(word)):
            # an operator keyword needs whitespace or '(' around it
            before_ok = s.pos == 0 or s.text[s.pos - 1] in " \t()"
            after = s.text[s.pos + len(word) : s.pos + len(word) + 1]
            if before_ok and (after in (" ", "\t", "(") or (word == "not" and after == "(")):
                s.pos += len(word)
                return True
        return False

    def _or(self) -> Node:
        node = self._and()
        while self._keyword("or"):
            node = Logical("or", self._boolean(node), self._boolean(self._and()))
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._keyword("and"):
            node = Logical("and", self._boolean(node), self._boolean(self._not()))
        return node

    def _not(self) -> Node:
        if self._keyword("not"):
            return Not(self._boolean(self._not()))
        return self._comparison()

    def _boolean(self, node: Node) -> Node:
        if _edm(node) != EDM_BOOLEAN:
            raise ODataError(
                "A binary operator with incompatible types was detected. Found operand "
                f"types '{_edm(node)}' and 'Edm.Boolean' for operator kind 'And'."
            )
        return node

    def _comparison(self) -> Node:
        left = self._primary()
        for op in COMPARISONS:
            if self._keyword(op):
                right = self._primary()
                _check_comparable(op, left, right)
                return Compare(op, left, right)
        return left

    def _primary(self) -> Node:
        s = self.s
        s.skip_ws()
        if s.at_end():
            raise s.error()
        if s.peek() == "(":
            s.pos += 1
            node = self._or()
            s.skip_ws()
            if s.peek() != ")":
                raise s.error()
            s.pos += 1
            return node
        start = s.pos
        literal = s.literal()
        if literal is not None:
            return literal
        ident = _IDENT_RE.match(s.text, s.pos)
        if not ident:
            raise s.error(start)
        name = ident.group(0)
        s.pos = ident.end()
        s.skip_ws()
        if s.peek() == "(" and "/" not in name:
            return self._call(name, start)
        edm = self.type_of(name)
        if edm is None:
            raise unknown_property(name.split("/")[0], self.entity_type)
        return Prop(name, edm)

    def _call(self, name: str, start: int) -> Node:
        s = self.s
        if name not in FUNCTIONS:
            raise ODataError(
                f"An unknown function with name '{name}' was found. This may also be "
                "a function import or a key lookup on a navigation property, which is "
                "not allowed."
            )
        s.pos += 1  # "("
        args: list[Node] = []
        while True:
            args.append(self._or())
            s.skip_ws()
            if s.peek() == ",":
                s.pos += 1
                continue
            if s.peek() == ")":
                s.pos += 1
                break
            raise s.error()
        if len(args) != 2:
            raise ODataError(
                f"No function signature for the function with name '{name}' matches "
                "the specified arguments."
            )
        for arg in args:
            if _edm(arg) != EDM_STRING:
                raise ODataError(
                    f"No function signature for the function with name '{name}' "
                    "matches the specified arguments. The function signatures "
                    f"considered are: {name}(Edm.String Nullable=true, Edm.String "
                    "Nullable=true)."
                )
        return Call(name, tuple(args))


def _edm(node: Node) -> str:
    if isinstance(node, Literal):
        return node.edm
    if isinstance(node, Prop):
        return node.edm
    return EDM_BOOLEAN


def _check_comparable(op: str, left: Node, right: Node) -> None:
    a, b = _edm(left), _edm(right)
    if EDM_NULL in (a, b):
        return
    if a == b or (a in NUMERIC and b in NUMERIC) or (a in TEMPORAL and b in TEMPORAL):
        return
    raise ODataError(
        "A binary operator with incompatible types was detected. Found operand types "
        f"'{a}' and '{b}' for operator kind '{_OPERATOR_KIND[op]}'."
    )


def compile_filter(
    text: str,
    type_of: TypeOf,
    entity_type: str,
    aliases: Mapping[str, str] | None = None,
) -> Callable[[Callable[[str], Any]], bool]:
    """Parse ``$filter`` text into a predicate over a row accessor ``get(path) -> value``."""
    tree = _FilterParser(text, type_of, entity_type, aliases or {}).parse()

    def predicate(get: Callable[[str], Any]) -> bool:
        return _evaluate(tree, get) is True

    return predicate


def _value(node: Node, get: Callable[[str], Any]) -> Any:
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Prop):
        return get(node.path)
    return _evaluate(node, get)


def _evaluate(node: Node, get: Callable[[str], Any]) -> bool | None:
    """Three-valued logic as SQL has it: comparisons with null are unknown (None)."""
    if isinstance(node, Logical):
        left = _evaluate(node.left, get)
        right = _evaluate(node.right, get)
        if node.op == "and":
            if left is False or right is False:
                return False
            return True if left and right else None
        if left is True or right is True:
            return True
        return False if left is False and right is False else None
    if isinstance(node, Not):
        inner = _evaluate(node.operand, get)
        return None if inner is None else not inner
    if isinstance(node, Call):
        subject, needle = (_value(arg, get) for arg in node.args)
        if subject is None or needle is None:
            return None
        s, n = str(subject).casefold(), str(needle).casefold()
        if node.name == "contains":
            return n in s
        if node.name == "startswith":
            return s.startswith(n)
        return s.endswith(n)
    if isinstance(node, Compare):
        return compare(node.op, _value(node.left, get), _value(node.right, get))
    if isinstance(node, Prop):
        value = get(node.path)
        return None if value is None else bool(value)
    if isinstance(node, Literal):
        return None if node.value is None else bool(node.value)
    raise ODataError("Unsupported expression.")


def comparable(value: Any) -> Any:
    """Normalize a stored or literal value so Python ordering matches Dataverse's SQL ordering."""
    if isinstance(value, str):
        return value.casefold()  # Dataverse's default collation is case-insensitive
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    return value


def compare(op: str, left: Any, right: Any) -> bool | None:
    """One comparison with SQL null semantics (``eq null`` / ``ne null`` are the exception)."""
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return (left is None) != (right is None)
        return None
    a, b = comparable(left), comparable(right)
    if isinstance(a, str) and not isinstance(b, str):
        b = str(b).casefold()
    try:
        if op == "eq":
            return bool(a == b)
        if op == "ne":
            return bool(a != b)
        if op == "gt":
            return bool(a > b)
        if op == "ge":
            return bool(a >= b)
        if op == "lt":
            return bool(a < b)
        return bool(a <= b)
    except TypeError:
        return None


# ---- $orderby / $select -------------------------------------------------------------------------


def parse_orderby(text: str, type_of: TypeOf, entity_type: str) -> list[tuple[str, bool]]:
    """``name asc, createdon desc`` -> [(path, descending)]."""
    items: list[tuple[str, bool]] = []
    for raw in text.split(","):
        parts = raw.split()
        if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise ODataError(f"Syntax error at position {len(raw)} in '{text}'.")
        if type_of(parts[0]) is None:
            raise unknown_property(parts[0], entity_type)
        items.append((parts[0], len(parts) == 2 and parts[1] == "desc"))
    return items


def parse_select(text: str, type_of: TypeOf, entity_type: str) -> list[str]:
    """``a,b,_c_value`` -> names, each checked against the entity type."""
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if not name or type_of(name) is None:
            raise unknown_property(name, entity_type)
    return list(dict.fromkeys(names))
