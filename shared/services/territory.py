"""Sales territory assignment through the Region > County > City/ZIP hierarchy.

The hierarchy lives in Dataverse (``territories`` with ``contoso_level`` and
``contoso_parentterritoryid``; ``contoso_postalcodes`` mapping a ZIP to its City/ZIP territory).
The most specific rule that matches wins, and the assignment records which rule it was, so a
sales manager can see why a quote landed where it did.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LEVEL_REGION, LEVEL_COUNTY, LEVEL_CITY = 1, 2, 3
_ZIP5 = re.compile(r"^(\d{5})(?:-\d{4})?$")


@dataclass(frozen=True)
class Territory:
    territory_id: str
    code: str
    name: str
    level: int
    parent_id: str | None


@dataclass(frozen=True)
class Assignment:
    """Where a ship-to address falls, and by which rule (``zip``, ``county``, ``region`` or
    ``unassigned``)."""

    rule: str
    territory_code: str | None = None
    region: str | None = None
    county: str | None = None
    city: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "territoryCode": self.territory_code,
            "region": self.region,
            "county": self.county,
            "city": self.city,
        }


def normalise_postal_code(value: str) -> str:
    """US ZIP+4 folds to its ZIP; other formats are compared upper-cased without spaces."""
    compact = value.strip().upper().replace(" ", "")
    match = _ZIP5.match(compact)
    return match.group(1) if match else compact


def _key(value: str | None) -> str:
    return " ".join((value or "").lower().split())


class TerritoryMap:
    """An immutable snapshot of the hierarchy, indexed for the three rules."""

    def __init__(self, territories: Iterable[Territory], postal_codes: Mapping[str, str]) -> None:
        self.by_id = {t.territory_id: t for t in territories}
        self.by_zip = {normalise_postal_code(z): tid for z, tid in postal_codes.items()}
        self.counties: dict[tuple[str, str], Territory] = {}
        self.regions: dict[str, Territory] = {}
        for t in self.by_id.values():
            if t.level == LEVEL_REGION:
                self.regions[_key(t.name)] = t
            elif t.level == LEVEL_COUNTY:
                parent = self.by_id.get(t.parent_id or "")
                self.counties[(_key(parent.name if parent else ""), _key(t.name))] = t

    @classmethod
    def from_dataverse(
        cls, territories: Iterable[Mapping[str, Any]], postal_codes: Iterable[Mapping[str, Any]]
    ) -> TerritoryMap:
        """Build from Dataverse rows (``territories`` and ``contoso_postalcodes``)."""
        items = [
            Territory(
                territory_id=str(row["territoryid"]),
                code=str(row.get("contoso_territorycode") or ""),
                name=str(row.get("name") or ""),
                level=int(row.get("contoso_level") or 0),
                parent_id=row.get("_contoso_parentterritoryid_value"),
            )
            for row in territories
        ]
        zips = {
            str(row["contoso_name"]): str(row["_contoso_territoryid_value"])
            for row in postal_codes
            if row.get("_contoso_territoryid_value")
        }
        return cls(items, zips)

    def _lineage(self, territory: Territory) -> dict[int, Territory]:
        chain: dict[int, Territory] = {}
        node: Territory | None = territory
        for _ in range(8):  # the hierarchy is three levels; the bound guards a cyclic parent
            if node is None:
                break
            chain[node.level] = node
            node = self.by_id.get(node.parent_id or "")
        return chain

    def _assignment(self, rule: str, territory: Territory) -> Assignment:
        chain = self._lineage(territory)
        return Assignment(
            rule=rule,
            territory_code=territory.code,
            region=chain[LEVEL_REGION].name if LEVEL_REGION in chain else None,
            county=chain[LEVEL_COUNTY].name if LEVEL_COUNTY in chain else None,
            city=chain[LEVEL_CITY].name if LEVEL_CITY in chain else None,
        )

    def assign(self, postal_code: str, county: str | None, region: str | None) -> Assignment:
        """The most specific territory for a ship-to address."""
        tid = self.by_zip.get(normalise_postal_code(postal_code))
        if tid and tid in self.by_id:
            return self._assignment("zip", self.by_id[tid])
        found = self.counties.get((_key(region), _key(county)))
        if found is not None:
            return self._assignment("county", found)
        region_t = self.regions.get(_key(region))
        if region_t is not None:
            return self._assignment("region", region_t)
        return Assignment(rule="unassigned")


class TerritoryDirectory:
    """A TerritoryMap loaded on demand and kept for ``ttl`` seconds.

    When a reload fails, the last good map keeps serving (territories change rarely); with no
    map at all the loader's error propagates and the caller decides.
    """

    def __init__(
        self,
        load: Callable[[], TerritoryMap],
        ttl: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._map: TerritoryMap | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def current(self) -> TerritoryMap:
        with self._lock:
            fresh = self._map is not None and self._clock() - self._loaded_at < self._ttl
            if fresh:
                assert self._map is not None
                return self._map
            try:
                self._map = self._load()
                self._loaded_at = self._clock()
            except Exception:
                if self._map is None:
                    raise
            return self._map
