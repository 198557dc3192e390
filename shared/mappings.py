"""Declarative silver → Dataverse mappings (flow 6).

A ``TableMapping`` says how rows of one silver table become rows of one Dataverse table:

- ``spec``: the silver entity (its table and business key, ``shared.lake.specs``);
- ``entity_set``/``logical_name``: the Dataverse table (``docs/dataverse-schema.md``);
- ``key``: the alternate key the rows are upserted by, built from silver values;
- ``columns``: one ``Target`` per Dataverse column, with its value source and conversion;
- ``lookups``: ``<navigation>@odata.bind`` references to other tables, bound by *their*
  alternate keys (``/accounts(accountnumber='C0000001')``), so no id has to be looked up first;
- ``where``: optional filter on silver values (soft-deleted rows are never sent);
- ``direction``: who masters the mapped columns. Only ``lake_to_dataverse`` exists: the lake's
  source system masters them and the load overwrites edits made in Dataverse. The reverse
  direction (flow 7) is declared by ``shared.services.dataverse_to_lake``.

Value sources are small declarative forms (``Col``, ``Template``, ``Product``, ``Difference``);
conversions turn silver values (``Decimal``, ``date``, aware ``datetime``, named codes) into what
the Dataverse column takes. Money stays ``Decimal`` end to end (``DataverseClient`` writes it as
an exact JSON number). A value that cannot be converted (say a code the mapping does not know)
raises ``MappingError``, a permanent failure of that row only.

Nothing here imports polars: the load (``shared.services.load_dataverse``) reads silver and hands
each row to ``TableMapping.to_upsert`` as a plain mapping.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal

from shared.adapters.dataverse import KeyValue, UpsertRow, bind
from shared.errors import PermanentError
from shared.lake.specs import (
    CUSTOMER_STATUS,
    CUSTOMERS,
    LEGACY_ORDER_LINES,
    LEGACY_ORDERS,
    ORDER_STATUS,
    PLANT_INVENTORY,
    EntitySpec,
)

Convert = Literal["text", "int", "decimal", "money", "date", "datetime", "code"]
Direction = Literal["lake_to_dataverse"]


class MappingError(PermanentError):
    """A silver value that the mapping cannot turn into a Dataverse value (that row is rejected)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unmappable-value")


# ---- value sources ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """The value of one silver column."""

    name: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Silver columns read."""
        return (self.name,)

    def value(self, row: Mapping[str, Any]) -> Any:
        """The column's value (None stays None)."""
        return row.get(self.name)


@dataclass(frozen=True)
class Template:
    """Silver columns formatted into text, e.g. ``Template("{order_no}|{line_no}")``.

    None when any referenced column is null: a composite key with a hole is no key.
    """

    text: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Silver columns read (the template's replacement fields, in order)."""
        names = [name for _, name, _, _ in string.Formatter().parse(self.text) if name]
        return tuple(dict.fromkeys(names))

    def value(self, row: Mapping[str, Any]) -> str | None:
        """The formatted text, or None when a referenced value is null."""
        values = {name: row.get(name) for name in self.columns}
        if any(v is None for v in values.values()):
            return None
        return self.text.format_map(values)


@dataclass(frozen=True)
class _Binary:
    """An exact arithmetic of two silver columns; None when either is null."""

    left: str
    right: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Silver columns read."""
        return (self.left, self.right)

    def value(self, row: Mapping[str, Any]) -> Decimal | None:
        left, right = row.get(self.left), row.get(self.right)
        if left is None or right is None:
            return None
        return self.combine(_decimal(left, self.left), _decimal(right, self.right))

    def combine(self, left: Decimal, right: Decimal) -> Decimal:
        raise NotImplementedError


@dataclass(frozen=True)
class Product(_Binary):
    """``left × right`` rounded half-to-even to ``scale`` decimals (a line amount)."""

    scale: int = 2

    def combine(self, left: Decimal, right: Decimal) -> Decimal:
        """The exact product, rounded once."""
        return (left * right).quantize(Decimal(1).scaleb(-self.scale), rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Difference(_Binary):
    """``left − right`` (e.g. stock available = on hand − allocated)."""

    def combine(self, left: Decimal, right: Decimal) -> Decimal:
        """The exact difference."""
        return left - right


Source = Col | Template | Product | Difference


def _source(value: Source | str) -> Source:
    return Col(value) if isinstance(value, str) else value


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise MappingError(f"{what}: {value!r} is not a number")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise MappingError(f"{what}: {value!r} is not a number") from None
    if not number.is_finite():
        raise MappingError(f"{what}: {value!r} is not a finite number")
    return number


# ---- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One Dataverse column: where its value comes from and how it is converted.

    ``convert``: ``text`` (str), ``int``, ``decimal`` and ``money`` (exact ``Decimal``; money
    columns are never floats), ``date`` (a ``date``, sent ``YYYY-MM-DD``), ``datetime`` (an aware
    ``datetime``, sent as UTC ``Z``) and ``code`` (looked up in ``codes``; an unknown value is a
    ``MappingError``). A null source value is sent as null, which clears the Dataverse column:
    the load mirrors the master, blanks included.
    """

    column: str
    source: Source
    convert: Convert = "text"
    codes: tuple[tuple[str, KeyValue], ...] = ()

    def __post_init__(self) -> None:
        if (self.convert == "code") != bool(self.codes):
            raise ValueError(f"{self.column}: codes go with convert='code' and only with it")

    def value(self, row: Mapping[str, Any]) -> Any:
        """The converted value for this row."""
        return convert(self.source.value(row), self.convert, self.codes, self.column)


def target(
    column: str,
    source: Source | str,
    convert: Convert = "text",
    codes: Sequence[tuple[str, KeyValue]] = (),
) -> Target:
    """A ``Target``; a plain string source names a silver column."""
    return Target(column, _source(source), convert, tuple(codes))


def convert(
    value: Any, kind: Convert, codes: Sequence[tuple[str, KeyValue]] = (), what: str = "value"
) -> Any:
    """Convert one silver value for a Dataverse column (see ``Target``)."""
    if value is None:
        return None
    if kind == "text":
        return value if isinstance(value, str) else str(value)
    if kind == "int":
        if isinstance(value, bool):
            raise MappingError(f"{what}: {value!r} is not an integer")
        number = _decimal(value, what)
        if number != number.to_integral_value():
            raise MappingError(f"{what}: {value!r} is not an integer")
        return int(number)
    if kind in ("decimal", "money"):
        return _decimal(value, what)
    if kind == "date":
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            raise MappingError(f"{what}: {value!r} is not a date")
        return value
    if kind == "datetime":
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise MappingError(f"{what}: {value!r} is not a time-zone-aware datetime")
        return value.astimezone(dt.UTC)
    if kind == "code":
        table = dict(codes)
        if str(value) not in table:
            raise MappingError(f"{what}: no Dataverse value for {value!r}")
        return table[str(value)]
    raise ValueError(f"unknown conversion {kind!r}")


@dataclass(frozen=True)
class Lookup:
    """A lookup written as ``<navigation>@odata.bind: /<entity_set>(<alternate key>)``.

    ``navigation`` is the case-sensitive navigation property (``contoso_AccountId``, not the
    column ``contoso_accountid``: binding through the column name fails with 0x80048d19). A null
    key value clears the lookup. A reference to a row that does not exist is refused by Dataverse
    for that row alone, which the load records as a rejection.
    """

    navigation: str
    entity_set: str
    key: tuple[tuple[str, Source], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Silver columns read."""
        return tuple(dict.fromkeys(c for _, s in self.key for c in s.columns))

    def value(self, row: Mapping[str, Any]) -> str | None:
        """The bind path, or None (clear the lookup) when a key value is null."""
        values: dict[str, KeyValue] = {}
        for column, source in self.key:
            value = source.value(row)
            if value is None:
                return None
            values[column] = value
        return bind(self.entity_set, values)


def lookup(navigation: str, entity_set: str, **key: Source | str) -> Lookup:
    """A ``Lookup`` bound by the target's alternate key columns (``accountnumber="customer_no"``)."""
    return Lookup(navigation, entity_set, tuple((k, _source(v)) for k, v in key.items()))


# ---- table mappings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableMapping:
    """How one silver entity becomes one Dataverse table (see the module docstring)."""

    name: str
    spec: EntitySpec
    entity_set: str
    logical_name: str
    key: tuple[tuple[str, Source], ...]
    columns: tuple[Target, ...]
    lookups: tuple[Lookup, ...] = ()
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    direction: Direction = "lake_to_dataverse"

    def __post_init__(self) -> None:
        if self.direction != "lake_to_dataverse":
            raise ValueError(f"{self.name}: unsupported direction {self.direction!r}")
        if not self.key:
            raise ValueError(f"{self.name}: a mapping needs the alternate key it upserts by")
        names = [t.column for t in self.columns]
        names += [f"{lk.navigation}@odata.bind" for lk in self.lookups]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a Dataverse column is mapped twice")
        spec_columns = {c.name for c in self.spec.columns}
        unknown = sorted(set(self.silver_columns) - spec_columns)
        if unknown:
            raise ValueError(f"{self.name}: silver/{self.spec.table} has no columns {unknown}")

    @property
    def silver_table(self) -> str:
        """The silver table read."""
        return self.spec.table

    @property
    def silver_columns(self) -> tuple[str, ...]:
        """Every silver column the mapping reads (business key first)."""
        needed: list[str] = list(self.spec.key)
        for _, source in self.key:
            needed += source.columns
        for column in self.columns:
            needed += column.source.columns
        for lk in self.lookups:
            needed += lk.columns
        needed += [column for column, _ in self.where]
        return tuple(dict.fromkeys(needed))

    def business_key(self, row: Mapping[str, Any]) -> str:
        """The silver business key as text (``|``-joined), as in the quarantine and rejections."""
        return "|".join("" if row.get(k) is None else str(row.get(k)) for k in self.spec.key)

    def to_upsert(self, row: Mapping[str, Any]) -> UpsertRow:
        """The Dataverse upsert for one silver row; ``MappingError`` when a value cannot be mapped."""
        key: dict[str, KeyValue] = {}
        for column, source in self.key:
            value = source.value(row)
            if value is None:
                raise MappingError(f"{self.name}: alternate key {column} has no value")
            key[column] = value
        values: dict[str, Any] = {t.column: t.value(row) for t in self.columns}
        for lk in self.lookups:
            values[f"{lk.navigation}@odata.bind"] = lk.value(row)
        return UpsertRow(key=key, values=values)


def _codes_to_letters(codes: Sequence[tuple[str, str]]) -> tuple[tuple[str, KeyValue], ...]:
    """Silver's named statuses back to the legacy letters Dataverse stores (``Open`` → ``O``)."""
    return tuple((name, letter) for letter, name in codes)


# Account credit status choice (docs/dataverse-schema.md): 100000000 OK, 100000001 On hold.
CREDIT_OK, CREDIT_ON_HOLD = 100000000, 100000001
_CUSTOMER_STATE = {"Active": 0, "CreditHold": 0, "Inactive": 1}
_CUSTOMER_CREDIT = {"Active": CREDIT_OK, "CreditHold": CREDIT_ON_HOLD, "Inactive": CREDIT_OK}
if set(_CUSTOMER_STATE) != {name for _, name in CUSTOMER_STATUS}:  # pragma: no cover
    raise ImportError("the account mapping must cover every legacy customer status")

CUSTOMER_ACCOUNTS = TableMapping(
    name="customers",
    spec=CUSTOMERS,
    entity_set="accounts",
    logical_name="account",
    key=(("accountnumber", Col("customer_no")),),
    # Only what the mainframe masters; county, phone, contacts etc. stay Dataverse's own.
    columns=(
        target("accountnumber", "customer_no"),
        target("name", "name"),
        target("address1_city", "city"),
        target("address1_stateorprovince", "state"),
        target("address1_postalcode", "zip"),
        target("address1_country", "country"),
        target("statecode", "status", "code", tuple(_CUSTOMER_STATE.items())),
        target("contoso_creditstatus", "status", "code", tuple(_CUSTOMER_CREDIT.items())),
    ),
)

LEGACY_ORDER_ROWS = TableMapping(
    name="legacy_orders",
    spec=LEGACY_ORDERS,
    entity_set="contoso_legacyorders",
    logical_name="contoso_legacyorder",
    key=(("contoso_ordernumber", Col("order_no")),),
    columns=(
        target("contoso_name", Template("Legacy order {order_no}")),
        target("contoso_ordernumber", "order_no"),
        target("contoso_customernumber", "customer_no"),
        target("contoso_orderdate", "order_date", "date"),
        target("contoso_requestedshipdate", "requested_date", "date"),
        target("contoso_status", "status", "code", _codes_to_letters(ORDER_STATUS)),
        target("contoso_currency", "currency"),
        target("contoso_totalamount", "total_amount", "money"),
        target("contoso_plant", "plant"),
        target("contoso_salesrep", "sales_rep"),
        target("contoso_quotingtoolid", "quote_ref"),
        target("contoso_lastchangedon", "source_modified_at", "datetime"),
    ),
    lookups=(lookup("contoso_AccountId", "accounts", accountnumber="customer_no"),),
)

LEGACY_ORDER_LINE_ROWS = TableMapping(
    name="legacy_order_lines",
    spec=LEGACY_ORDER_LINES,
    entity_set="contoso_legacyorderlines",
    logical_name="contoso_legacyorderline",
    key=(("contoso_orderlinekey", Template("{order_no}|{line_no}")),),
    columns=(
        target("contoso_name", Template("Legacy order {order_no} line {line_no}")),
        target("contoso_orderlinekey", Template("{order_no}|{line_no}")),
        target("contoso_ordernumber", "order_no"),
        target("contoso_linenumber", "line_no", "int"),
        target("contoso_sku", "item_no"),
        target("contoso_quantity", "quantity", "decimal"),
        target("contoso_unitprice", "unit_price", "money"),
        target("contoso_amount", Product("quantity", "unit_price", scale=2), "money"),
        target("contoso_status", "status", "code", _codes_to_letters(ORDER_STATUS)),
        target("contoso_lastchangedon", "source_modified_at", "datetime"),
    ),
    lookups=(
        lookup("contoso_LegacyOrderId", "contoso_legacyorders", contoso_ordernumber="order_no"),
    ),
)

PLANT_INVENTORY_ROWS = TableMapping(
    name="plant_inventory",
    spec=PLANT_INVENTORY,
    entity_set="contoso_plantinventories",
    logical_name="contoso_plantinventory",
    key=(("contoso_inventorykey", Template("{plant}|{item_no}")),),
    columns=(
        target("contoso_name", Template("{item_no} at {plant}")),
        target("contoso_inventorykey", Template("{plant}|{item_no}")),
        target("contoso_plant", "plant"),
        target("contoso_sku", "item_no"),
        target("contoso_onhand", "on_hand", "decimal"),
        target("contoso_allocated", "allocated", "decimal"),
        target("contoso_available", Difference("on_hand", "allocated"), "decimal"),
        target("contoso_asof", "source_modified_at", "datetime"),
    ),
    lookups=(lookup("contoso_ProductId", "products", productnumber="item_no"),),
)

MAPPINGS: tuple[TableMapping, ...] = (
    CUSTOMER_ACCOUNTS,
    LEGACY_ORDER_ROWS,
    LEGACY_ORDER_LINE_ROWS,
    PLANT_INVENTORY_ROWS,
)
"""Every flow-6 mapping, parents before children: accounts before the orders that look them up,
orders before their lines."""
MAPPINGS_BY_NAME: dict[str, TableMapping] = {m.name: m for m in MAPPINGS}
