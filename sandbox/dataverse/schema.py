"""Table definitions (``schema.json``) and the typed column rules Dataverse applies to payloads.

Every table gets Dataverse's system columns on top of what ``schema.json`` declares: the primary
key, ``createdon``/``modifiedon``, the ``createdby``/``modifiedby``/``ownerid`` lookups to
``systemuser`` and ``versionnumber`` (the row version behind ``@odata.etag``).

Error wording follows the documented Web API answers (powerapps-docs
``webapi/compose-http-requests-handle-errors.md``, SupportArticles-docs
``web-api-client-errors.md``): wrong property names are 400 ``0x0`` "Invalid property ...";
values that do not convert are 400 ``0x80048d19`` "Error identified in Payload ..."; too-long
strings are 400 ``0x80044331`` "A validation error occurred. The length of ...".
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sandbox.dataverse import odata
from sandbox.peer import PeerError

DEFAULT_SCHEMA = Path(__file__).with_name("schema.json")

BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
SYSTEM_READONLY = ("createdon", "modifiedon", "createdby", "modifiedby", "ownerid", "versionnumber")

_EDM = {
    "string": odata.EDM_STRING,
    "memo": odata.EDM_STRING,
    "int": odata.EDM_INT32,
    "bigint": odata.EDM_INT64,
    "decimal": odata.EDM_DECIMAL,
    "money": odata.EDM_DECIMAL,
    "bool": odata.EDM_BOOLEAN,
    "datetime": odata.EDM_DATETIMEOFFSET,
    "date": odata.EDM_DATE,
    "guid": odata.EDM_GUID,
    "choice": odata.EDM_INT32,
    "state": odata.EDM_INT32,
    "status": odata.EDM_INT32,
    "lookup": odata.EDM_GUID,
}
_RANGES = {
    "int": (Decimal(odata.INT32_MIN), Decimal(odata.INT32_MAX)),
    "bigint": (Decimal(-(2**63)), Decimal(2**63 - 1)),
    "decimal": (Decimal("-100000000000"), Decimal("100000000000")),
    "money": (Decimal("-922337203685477"), Decimal("922337203685477")),
}
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?", re.IGNORECASE
)
HELP_LINK = "https://go.microsoft.com/fwlink/?linkid=2195293"


@dataclass(frozen=True)
class Column:
    """One attribute. Lookups are written through navigation properties and read as ``_x_value``."""

    name: str
    type: str
    max_length: int | None = None
    options: frozenset[int] | None = None
    navigation: dict[str, str] = field(default_factory=dict)  # nav property -> target logical name
    read_only: bool = False
    cascade_delete: bool = False

    @property
    def edm(self) -> str:
        return _EDM[self.type]

    @property
    def read_name(self) -> str:
        return f"_{self.name}_value" if self.type == "lookup" else self.name


@dataclass(frozen=True)
class Key:
    """An alternate key: its schema name, display name and the columns it is made of."""

    name: str
    display_name: str
    columns: tuple[str, ...]


@dataclass
class Table:
    """One table as ``schema.json`` declares it, plus the system columns every table has."""

    logical_name: str
    entity_set: str
    primary_key: str
    display_name: str
    primary_name: str | None
    columns: dict[str, Column]
    keys: list[Key]
    bulk: frozenset[str]
    change_tracking: bool
    states: dict[int, tuple[int, ...]]
    state_names: dict[int, str]
    editable_states: frozenset[int] | None
    locked_by_parent: str | None
    by_read_name: dict[str, Column] = field(default_factory=dict)
    by_navigation: dict[str, tuple[Column, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_read_name = {c.read_name: c for c in self.columns.values()}
        self.by_navigation = {
            nav: (c, target) for c in self.columns.values() for nav, target in c.navigation.items()
        }

    @property
    def entity_type(self) -> str:
        return f"Microsoft.Dynamics.CRM.{self.logical_name}"

    def type_of(self, path: str) -> str | None:
        column = self.by_read_name.get(path)
        return column.edm if column else None

    def key_named(self, columns: set[str]) -> Key | None:
        """The alternate key made of exactly these (read-name) columns, if one is defined."""
        for key in self.keys:
            if {self.columns[c].read_name for c in key.columns} == columns:
                return key
        return None

    def default_status(self, state: int) -> int:
        return self.states[state][0]

    def state_label(self, state: int) -> str:
        name = self.state_names.get(state, str(state))
        return f"{self.display_name.replace(' ', '')}State.{name}"


class Schema:
    """All tables, reachable by logical name and by entity set name."""

    def __init__(self, tables: list[Table]) -> None:
        self.tables = {t.logical_name: t for t in tables}
        self.by_set = {t.entity_set: t for t in tables}
        for table in tables:
            for column in table.columns.values():
                for target in column.navigation.values():
                    if target not in self.tables:
                        raise ValueError(
                            f"{table.logical_name}.{column.name}: unknown target {target}"
                        )

    @classmethod
    def load(cls, path: Path | None = None) -> Schema:
        raw = json.loads((path or DEFAULT_SCHEMA).read_text(encoding="utf-8"))
        return cls([_table(spec) for spec in raw["tables"]])


def _table(spec: dict[str, Any]) -> Table:
    logical = spec["logicalName"]
    pk = spec["primaryKey"]
    columns: dict[str, Column] = {pk: Column(pk, "guid")}
    for name, col in spec["columns"].items():
        columns[name] = Column(
            name,
            col["type"],
            max_length=col.get("maxLength"),
            options=frozenset(col["options"]) if "options" in col else None,
            navigation=dict(
                col.get("navigation", {name: col["target"]} if "target" in col else {})
            ),
            cascade_delete=bool(col.get("cascadeDelete", False)),
        )
    states = {int(k): tuple(v) for k, v in spec.get("states", {}).items()}
    if states:
        columns["statecode"] = Column("statecode", "state", options=frozenset(states))
        columns["statuscode"] = Column(
            "statuscode", "status", options=frozenset(s for v in states.values() for s in v)
        )
    columns["createdon"] = Column("createdon", "datetime", read_only=True)
    columns["modifiedon"] = Column("modifiedon", "datetime", read_only=True)
    for name in ("createdby", "modifiedby", "ownerid"):
        columns[name] = Column(name, "lookup", navigation={name: "systemuser"}, read_only=True)
    columns["versionnumber"] = Column("versionnumber", "bigint", read_only=True)
    for column in columns.values():
        if column.type in ("string", "memo") and column.max_length is None:
            raise ValueError(f"{logical}.{column.name}: strings need a maxLength")
        if column.type == "lookup" and not column.navigation:
            raise ValueError(f"{logical}.{column.name}: lookups need a target or navigation")
    bulk = frozenset(spec.get("bulk", []))
    if not bulk <= set(BULK_MESSAGES):
        raise ValueError(f"{logical}: unknown bulk messages {sorted(bulk - set(BULK_MESSAGES))}")
    return Table(
        logical_name=logical,
        entity_set=spec["entitySet"],
        primary_key=pk,
        display_name=spec.get("displayName", logical),
        primary_name=spec.get("primaryName"),
        columns=columns,
        keys=[Key(k["name"], k["displayName"], tuple(k["columns"])) for k in spec.get("keys", [])],
        bulk=bulk,
        change_tracking=bool(spec.get("changeTracking", False)),
        states=states,
        state_names={int(k): v for k, v in spec.get("stateNames", {}).items()},
        editable_states=frozenset(spec["editableStates"]) if "editableStates" in spec else None,
        locked_by_parent=spec.get("lockedByParent"),
    )


# ---- payload values -----------------------------------------------------------------------------


def payload_error(entity_set: str, inner: str) -> PeerError:
    """The 0x80048d19 answer for a payload the OData reader cannot deserialize."""
    return PeerError(
        400,
        "0x80048d19",
        f"Error identified in Payload provided by the user for Entity :'{entity_set}', For more "
        f"information on this error please follow this help link {HELP_LINK}  ---->  "
        f"InnerException : Microsoft.OData.ODataException: {inner}",
    )


def invalid_property(table: Table, name: str) -> PeerError:
    return PeerError(
        400,
        "0x0",
        "An error occurred while validating input parameters: Microsoft.Crm.CrmException: "
        f"Invalid property '{name}' was found in entity '{table.entity_type}'. ---> "
        "Microsoft.OData.ODataException: Does not support untyped value in non-open type.",
    )


def _cannot_convert(table: Table, column: Column, value: Any) -> PeerError:
    shown = json.dumps(value, default=str) if not isinstance(value, str) else value
    return payload_error(
        table.entity_set,
        f"Cannot convert the literal '{shown}' to the expected type '{column.edm}'.",
    )


def _out_of_range(table: Table, column: Column, value: Any) -> PeerError:
    return PeerError(
        400,
        "0x80044331",
        f"A validation error occurred. The value {value} of '{column.name}' on record of type "
        f"'{table.logical_name}' is outside the valid range.",
    )


def coerce(table: Table, column: Column, value: Any) -> Any:
    """Validate a JSON payload value for a column and return its stored form."""
    if value is None:
        return None
    kind = column.type
    if kind in ("string", "memo"):
        if not isinstance(value, str):
            raise _cannot_convert(table, column, value)
        if column.max_length is not None and len(value) > column.max_length:
            raise PeerError(
                400,
                "0x80044331",
                f"A validation error occurred.  The length of the '{column.name}' attribute of "
                f"the '{table.logical_name}' entity exceeded the maximum allowed length of "
                f"'{column.max_length}'.",
            )
        return value
    if kind in ("int", "bigint", "choice", "state", "status"):
        if isinstance(value, bool) or not isinstance(value, int | Decimal) or value != int(value):
            raise _cannot_convert(table, column, value)
        number = int(value)
        low, high = _RANGES["bigint" if kind == "bigint" else "int"]
        if not low <= number <= high:
            raise _out_of_range(table, column, number)
        if column.options is not None and number not in column.options:
            allowed = ",".join(str(o) for o in sorted(column.options))
            raise PeerError(
                400,
                "0x80044331",
                f"A validation error occurred. The value {number} of '{column.name}' on record "
                f"of type '{table.logical_name}' is outside the valid range. Accepted Values: "
                f"{allowed}",
            )
        return number
    if kind in ("decimal", "money"):
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise _cannot_convert(table, column, value)
        number = Decimal(value)
        low, high = _RANGES[kind]
        if not number.is_finite() or not low <= number <= high:
            raise _out_of_range(table, column, value)
        return number
    if kind == "bool":
        if not isinstance(value, bool):
            raise _cannot_convert(table, column, value)
        return value
    if kind == "datetime":
        match = _DATETIME_RE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _cannot_convert(table, column, value)
        # Dataverse reads a value without an offset as UTC and keeps whole seconds.
        text = match.group(1) + (match.group(2) or ":00") + (match.group(3) or "Z")
        try:
            return odata.parse_datetimeoffset(text).replace(microsecond=0)
        except odata.ODataError:
            raise _cannot_convert(table, column, value) from None
    if kind == "date":
        if not isinstance(value, str) or not _DATE_RE.fullmatch(value):
            raise _cannot_convert(table, column, value)
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise _cannot_convert(table, column, value) from None
    if kind == "guid":
        if not isinstance(value, str):
            raise _cannot_convert(table, column, value)
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise _cannot_convert(table, column, value) from None
    raise invalid_property(table, column.name)


def to_json(value: Any) -> Any:
    """A stored value in the Web API's JSON form."""
    if isinstance(value, Decimal):
        integral = value == value.to_integral_value()
        return int(value) if integral and abs(value) < 2**53 else float(value)
    if isinstance(value, dt.datetime):
        return odata.format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def key_value(table: Table, column: Column, literal: odata.Literal) -> Any:
    """A key-predicate literal checked against the column type, in stored form."""
    edm, value = literal.edm, literal.value
    if edm == odata.EDM_NULL:
        raise PeerError(
            400, "0x80060888", f"The key value for '{column.read_name}' cannot be null."
        )
    ok = (
        edm == column.edm
        or (column.edm in odata.NUMERIC and edm in odata.NUMERIC)
        or (column.edm in odata.TEMPORAL and edm in odata.TEMPORAL)
    )
    if not ok:
        raise PeerError(
            400,
            "0x80060888",
            f"The key value for '{column.read_name}' of type '{edm}' does not match the "
            f"property type '{column.edm}' on '{table.entity_type}'.",
        )
    if column.edm == odata.EDM_GUID:
        return str(value)
    if column.edm in odata.NUMERIC and not isinstance(value, bool):
        try:
            return Decimal(str(value)) if column.edm == odata.EDM_DECIMAL else int(value)
        except (InvalidOperation, ValueError):
            raise PeerError(400, "0x80060888", f"Bad key value '{value}'.") from None
    return value
