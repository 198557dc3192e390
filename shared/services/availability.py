"""Flow 1b, availability: real-time stock per plant from SAP for the Quoting Tool
(``GET /api/products/{sku}/availability``).

Virtual-entity style: SAP is asked at request time (``API_PRODUCT_AVAILY_INFO_BASIC``, one call per
plant the material is extended to); nothing is copied into the lake. Two memories sit in front of
SAP, for different reasons:

- a short in-process cache (``AVAILABILITY_CACHE_SECONDS``, 30 s by default) absorbs bursts, such
  as a rep's quote screen asking for the same product again and again;
- the last good answer per SKU is also kept in the Azure Table ``hubavailability``, so that when
  SAP is unreachable (``TransientError``: 5xx, 429, timeouts, resets) the hub can still answer with
  the last known figures, marked ``stale: true`` with their ``asOf``, even after a restart or on
  another instance. With no earlier figures at all the answer is 503 with ``Retry-After``.

A SKU SAP does not know is "not found"; a SKU SAP knows but has not extended to any plant has no
stock anywhere, which is an empty list of plants, not an error.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from shared.adapters.sap import PRODUCTS, literal
from shared.errors import PermanentError, TransientError
from shared.models.pricing import Availability, PlantAvailability

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = logging.getLogger(__name__)

TABLE: Final = "hubavailability"
DEFAULT_RETRY_AFTER_SECONDS: Final = 30
MAX_CACHED_SKUS: Final = 10_000
"""In-process cache bound; the least recently stored SKU is dropped first."""
_ROW_KEY: Final = "sap"
_STOCK_PLACES: Final = Decimal("0.001")


class PlantFigure(Protocol):
    """One plant's ATP figure as ``shared.adapters.sap.SapClient.availability`` returns it."""

    @property
    def plant(self) -> str: ...

    @property
    def quantity(self) -> Decimal: ...

    @property
    def unit(self) -> str: ...


class SapRecordLike(Protocol):
    """A record from ``SapClient.read_all`` (only its presence matters here)."""

    def get(self, name: str, default: Any = None) -> Any: ...


class AvailabilitySource(Protocol):
    """The part of ``SapClient`` the availability service uses."""

    def availability(self, material: str, plant: str | None = None) -> Sequence[PlantFigure]:
        """ATP per plant; ``PermanentError(code="404")`` when the material has no plant."""
        ...

    def read_all(
        self, path: str, *, filter_expr: str | None = None, select: Sequence[str] = ()
    ) -> Iterator[Sequence[SapRecordLike]]:
        """Pages of records matching ``filter_expr``."""
        ...


class LastKnownAvailability:
    """The last good SAP answer per SKU in an Azure Table (``PartitionKey`` = SKU).

    SKUs match ``[A-Za-z0-9][A-Za-z0-9._-]*``, which Table keys allow as they are.
    """

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def save(self, answer: Availability) -> None:
        """Replace the stored answer of ``answer.sku``."""
        from azure.data.tables import UpdateMode

        self.table.upsert_entity(
            {
                "PartitionKey": answer.sku,
                "RowKey": _ROW_KEY,
                "Body": answer.model_dump_json(by_alias=True),
                "AsOf": answer.as_of,
            },
            mode=UpdateMode.REPLACE,
        )

    def load(self, sku: str) -> Availability | None:
        """The stored answer of ``sku``, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            row = self.table.get_entity(sku, _ROW_KEY)
        except ResourceNotFoundError:
            return None
        return Availability.model_validate(json.loads(str(row["Body"])))


@dataclass(frozen=True)
class AvailabilityAnswer:
    """What the HTTP layer answers: figures (fresh or stale), not found, or unavailable."""

    outcome: Literal["ok", "not-found", "unavailable"]
    availability: Availability | None = None
    retry_after: int | None = None


@dataclass
class AvailabilityService:
    """Real-time availability with an in-process cache and a durable last-known value."""

    sap: AvailabilitySource
    last_known: LastKnownAvailability
    ttl_seconds: float = 30.0
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    monotonic: Callable[[], float] = time.monotonic
    _cache: OrderedDict[str, tuple[float, Availability]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def lookup(self, sku: str) -> AvailabilityAnswer:
        """Availability of ``sku`` (already validated against the SKU pattern)."""
        cached = self._cached(sku)
        if cached is not None:
            return AvailabilityAnswer("ok", cached)
        try:
            fresh = self._read_sap(sku)
        except TransientError as exc:
            log.warning("availability of %s: SAP unreachable (%s)", sku, exc)
            return self._fallback(sku, exc)
        if fresh is None:
            return AvailabilityAnswer("not-found")
        self._remember(fresh)
        return AvailabilityAnswer("ok", fresh)

    def _read_sap(self, sku: str) -> Availability | None:
        try:
            figures = list(self.sap.availability(sku))
        except PermanentError as exc:
            if exc.code != "404":
                raise
            # No plant carries the material: either SAP does not know it at all, or it is a
            # product without stock anywhere. Only the product master can tell them apart.
            if not self._product_exists(sku):
                return None
            figures = []
        plants = [
            PlantAvailability(plant=f.plant, available=_stock_text(f.quantity), unit=f.unit)
            for f in sorted(figures, key=lambda f: f.plant)
        ]
        return Availability(
            sku=sku, plants=plants, as_of=self.clock().replace(microsecond=0), stale=False
        )

    def _product_exists(self, sku: str) -> bool:
        pages = self.sap.read_all(
            PRODUCTS, filter_expr=f"Product eq {literal('Edm.String', sku)}", select=("Product",)
        )
        return any(len(page) > 0 for page in pages)

    def _fallback(self, sku: str, failure: TransientError) -> AvailabilityAnswer:
        with self._lock:
            entry = self._cache.get(sku)
        last = entry[1] if entry is not None else None
        if last is None:
            try:
                last = self.last_known.load(sku)
            except Exception:  # storage down too: the 503 below is the honest answer
                log.warning("availability of %s: last known value unreadable", sku, exc_info=True)
        if last is None:
            wait = failure.retry_after
            seconds = max(1, math.ceil(wait)) if wait is not None else DEFAULT_RETRY_AFTER_SECONDS
            return AvailabilityAnswer("unavailable", retry_after=seconds)
        return AvailabilityAnswer("ok", last.model_copy(update={"stale": True}))

    def _cached(self, sku: str) -> Availability | None:
        if self.ttl_seconds <= 0:
            return None
        with self._lock:
            entry = self._cache.get(sku)
        if entry is None or entry[0] <= self.monotonic():
            return None
        return entry[1]

    def _remember(self, answer: Availability) -> None:
        with self._lock:
            self._cache[answer.sku] = (self.monotonic() + self.ttl_seconds, answer)
            self._cache.move_to_end(answer.sku)
            while len(self._cache) > MAX_CACHED_SKUS:
                self._cache.popitem(last=False)
        try:
            self.last_known.save(answer)
        except Exception:
            # The fresh answer is still right; only the fallback for a later SAP outage is older.
            log.warning("availability of %s: last known value not saved", answer.sku, exc_info=True)


def _stock_text(quantity: Decimal) -> str:
    """SAP's quantity (3 decimals in ``AvailableQuantityInBaseUnit``) as a 3-decimal string."""
    exact = quantity.quantize(_STOCK_PLACES)
    if exact != quantity:
        raise PermanentError(f"SAP reported a quantity with more than 3 decimals: {quantity}")
    return format(exact, "f")
