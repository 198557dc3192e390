"""Deterministic randomness, lazy tables, the planted-problem plan and JSON encoding.

Every random choice comes from a ``random.Random`` seeded by ``(seed, stream, chunk)`` through a
hash, so any chunk of any entity can be regenerated on its own, in any order, and gives the same
records: that is what lets a million legacy orders stream without ever sitting in memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

CHUNK = 1000
"""Records per deterministic chunk of a large entity."""

_UUID_NAMESPACE = uuid.UUID("6f0c3e0e-5b1a-4c55-9a53-3c1f2d6b7a10")

Record = dict[str, Any]


def rng_for(seed: int, stream: str, chunk: int = 0) -> random.Random:
    """A generator that depends only on ``(seed, stream, chunk)``.

    Hashing (rather than ``seed * k + chunk``) keeps neighbouring seeds and chunks statistically
    unrelated, so seed 7 and seed 8 really are different worlds.
    """
    digest = hashlib.blake2b(f"{seed}|{stream}|{chunk}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


def stable_uuid(seed: int, kind: str, key: str) -> str:
    """A GUID that is the same for the same seed, kind and business key (Dataverse primary keys)."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{seed}|{kind}|{key}"))


def chunks_of(count: int) -> range:
    """Chunk indexes covering ``count`` records."""
    return range((count + CHUNK - 1) // CHUNK)


def chunk_bounds(chunk: int, count: int) -> range:
    """Record indexes of one chunk."""
    return range(chunk * CHUNK, min(count, (chunk + 1) * CHUNK))


class Table(Iterable[Record]):
    """A lazily generated, re-iterable table of records.

    Each iteration regenerates the records chunk by chunk, so a table of a million rows costs the
    memory of one chunk. ``len()`` is exact; when the count is not known up front it is computed
    by one pass and remembered.
    """

    def __init__(
        self,
        name: str,
        produce: Callable[[], Iterator[Record]],
        count: int | Callable[[], int] | None = None,
    ) -> None:
        self.name = name
        self._produce = produce
        self._count = count

    def __iter__(self) -> Iterator[Record]:
        return self._produce()

    def __len__(self) -> int:
        if isinstance(self._count, int):
            return self._count
        if self._count is not None:
            self._count = self._count()
            return self._count
        self._count = sum(1 for _ in self._produce())
        return self._count

    def batches(self, size: int = CHUNK) -> Iterator[list[Record]]:
        """The records in lists of at most ``size`` (for seeding a peer in bounded requests)."""
        if size < 1:
            raise ValueError("batch size must be at least 1")
        batch: list[Record] = []
        for record in self:
            batch.append(record)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def to_list(self) -> list[Record]:
        """Materialise the table (only sensible for small tables or small scales)."""
        return list(self)

    def __repr__(self) -> str:
        return f"<Table {self.name}>"


def planted_count(population: int, rate: float) -> int:
    """How many records of one problem kind to plant: ``rate`` of the population, at least one
    when the rate is positive (so that small test worlds still exercise every kind)."""
    if rate <= 0 or population <= 0:
        return 0
    return max(1, round(population * rate))


def choose_planted(
    seed: int, entity: str, population: int, kinds: Iterable[str], rate: float
) -> dict[int, str]:
    """Pick disjoint record indexes for each problem kind of one entity: ``{index: kind}``.

    One record carries at most one problem, so the expected view of valid records is exact.
    """
    kinds = list(kinds)
    wanted = [planted_count(population, rate) for _ in kinds]
    total = min(population, sum(wanted))
    picked = rng_for(seed, f"plant:{entity}").sample(range(population), total)
    plan: dict[int, str] = {}
    position = 0
    for kind, n in zip(kinds, wanted, strict=True):
        for index in picked[position : position + n]:
            plan[index] = kind
        position += n
    return plan


def indexes_by_kind(plan: Mapping[int, str]) -> dict[str, list[int]]:
    """Invert a plan to ``{kind: sorted indexes}``."""
    out: dict[str, list[int]] = {}
    for index, kind in plan.items():
        out.setdefault(kind, []).append(index)
    for indexes in out.values():
        indexes.sort()
    return out


PlantedKey = str | tuple[str, ...]


@dataclass
class Planted:
    """The deliberate data-quality problems in a generated world, exactly.

    ``keys[entity][kind]`` is the set of business keys (padding stripped; tuples for composite
    keys such as ``(ORDNO, LINENO)``) that carry that problem. Entities are named
    ``<system>.<table>``: ``mainframe.customers``, ``mainframe.orders``, ``mainframe.orderlines``,
    ``sap.A_Customer``, ``sap.A_SalesOrder``, ``dataverse.accounts``, ``quotingtool.quotes``.

    Duplicate customers take the form each system allows, and are keyed by the account number
    of the customer that exists twice: ``mainframe.customers`` ``duplicate_key`` (two records
    with one ``CUSTNO``: the legacy file does not enforce unique keys), ``sap.A_Customer``
    ``duplicate_customer`` (a second customer number, ``C8`` prefix, for the same company) and
    ``dataverse.accounts`` ``duplicate_account`` (a second account without an account number,
    since the alternate key keeps account numbers unique).
    """

    keys: dict[str, dict[str, frozenset[PlantedKey]]] = field(default_factory=dict)

    def add(self, entity: str, kind: str, keys: Iterable[PlantedKey]) -> None:
        """Record the keys of one problem kind (used by the generator)."""
        self.keys.setdefault(entity, {})[kind] = frozenset(keys)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{entity: {kind: count}}``."""
        return {e: {k: len(v) for k, v in kinds.items()} for e, kinds in self.keys.items()}

    def get(self, entity: str, kind: str) -> frozenset[PlantedKey]:
        """The keys of one kind (empty when none were planted)."""
        return self.keys.get(entity, {}).get(kind, frozenset())

    def all_keys(self, entity: str) -> frozenset[PlantedKey]:
        """Every key of an entity that carries any problem."""
        out: set[PlantedKey] = set()
        for keys in self.keys.get(entity, {}).values():
            out |= keys
        return frozenset(out)

    def to_json(self) -> dict[str, dict[str, list[Any]]]:
        """JSON-ready form: keys sorted, composite keys as lists."""
        return {
            entity: {
                kind: sorted(list(k) if isinstance(k, tuple) else k for k in keys)
                for kind, keys in kinds.items()
            }
            for entity, kinds in self.keys.items()
        }

    def report(self) -> str:
        """A human-readable summary, one line per entity and kind."""
        lines = ["planted data-quality problems:"]
        for entity, kinds in sorted(self.counts().items()):
            for kind, n in sorted(kinds.items()):
                lines.append(f"  {entity:<24} {kind:<26} {n:>8}")
        return "\n".join(lines)


class JsonNumber(Decimal):
    """A ``Decimal`` that JSON carries as a number rather than a string.

    Systems disagree on how a decimal travels in JSON: SAP's OData V2 writes ``Edm.Decimal`` as
    a string, while the Dataverse Web API (OData v4 JSON without ``IEEE754Compatible``) wants
    money and decimal columns as JSON numbers and refuses ``"8900.00"`` with 0x80048d19
    "Cannot convert the literal ... to the expected type 'Edm.Decimal'". A projection marks its
    number-typed values with this class; arithmetic on it gives plain ``Decimal`` values.
    """

    __slots__ = ()


def _json_number(value: JsonNumber) -> int | float:
    """The JSON number for a ``JsonNumber``, refused unless its text is exactly the value.

    The standard ``json`` encoder writes a float with the shortest text that reads back as the
    same double, which is the decimal's own text for every value up to 15 significant digits
    (money and rates here have far fewer); the check makes a longer one fail loudly instead of
    arriving rounded.
    """
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"{value} has no exact JSON number form in a binary double")
    return number


def to_jsonable(value: Any) -> Any:
    """Python values to JSON-ready ones: ``Decimal`` as a string (never a float), a
    ``JsonNumber`` as a JSON number whose text is exactly its value, ``datetime`` as RFC 3339
    UTC with ``Z``, ``date`` as ``YYYY-MM-DD``; containers recursively."""
    if isinstance(value, JsonNumber):
        return _json_number(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in generated data")
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(record: Record, *, native: bool = False) -> str:
    """One record as compact JSON (for NDJSON files). ``native=True`` skips the conversion of
    Python values for records that hold only JSON types (mainframe records, quotes): the bulk
    of a large world, where the conversion would cost more than the encoding."""
    return _encode(record if native else to_jsonable(record))
