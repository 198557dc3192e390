"""Echo suppression: the hub does not sync back a change it wrote itself.

Two signals, either is enough:

1. **The write ledger** (Azure Table ``hubwrites``): every write the hub makes records, per
   (system, entity, key), the hash of the values it wrote, over the fields that can flow back.
   A change read later whose values hash the same is the hub's own write coming round again.
   This holds even when someone else touched other columns of the row since.
2. **The integration identity**: a change whose modifier is the hub itself (Dataverse's
   ``_modifiedby_value`` = the hub application user's ``systemuserid``, which ``WhoAmI`` returns;
   the flow 7 silver tables carry it as ``modified_by``) and that the ledger knows nothing
   different about.

A change whose values differ from what the hub last wrote is a real change even when the hub's
identity made it last (a user edited the row, then the hub's inbound batch wrote other columns
before the outbound batch ran): the ledger outranks the identity.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.adapters.records import table_key

log = logging.getLogger(__name__)

TABLE = "hubwrites"


def values_hash(values: Mapping[str, Any]) -> str:
    """sha256 of the values' canonical JSON (sorted keys; dates, decimals as text)."""
    text = json.dumps(
        {k: _plain(v) for k, v in values.items()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    return str(value)


class TableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` the ledger uses."""

    def upsert_entity(self, entity: Mapping[str, Any], **kwargs: Any) -> Mapping[str, Any]:
        """Insert or replace an entity."""
        ...

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any:
        """One entity; ``ResourceNotFoundError`` when absent."""
        ...


@dataclass(frozen=True)
class HubWrite:
    """What the hub last wrote to one record."""

    system: str
    entity: str
    key: str
    hash: str
    values: dict[str, Any]
    at: dt.datetime


class WriteLedger:
    """The hub's own writes, per (system, entity, key), in table ``hubwrites``."""

    def __init__(self, table: TableLike) -> None:
        self.table = table

    def record(self, system: str, entity: str, key: str, values: Mapping[str, Any]) -> HubWrite:
        """Remember that the hub wrote ``values`` (the fields that can flow back) to ``key``."""
        from azure.data.tables import UpdateMode

        digest = values_hash(values)
        at = dt.datetime.now(dt.UTC)
        plain = {k: _plain(v) for k, v in values.items()}
        self.table.upsert_entity(
            {
                "PartitionKey": table_key(f"{system}|{entity}"),
                "RowKey": table_key(key),
                "Key": key,
                "Hash": digest,
                "Values": json.dumps(plain, sort_keys=True)[:30000],
                "At": at,
            },
            mode=UpdateMode.REPLACE,
        )
        return HubWrite(system, entity, key, digest, plain, at)

    def last(self, system: str, entity: str, key: str) -> HubWrite | None:
        """The hub's last write to ``key``, if it made one."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            row = self.table.get_entity(table_key(f"{system}|{entity}"), table_key(key))
        except ResourceNotFoundError:
            return None
        return HubWrite(
            system,
            entity,
            key,
            str(row["Hash"]),
            json.loads(row.get("Values") or "{}"),
            row["At"],
        )


class WriteLookup(Protocol):
    """What ``EchoFilter`` needs of the ledger."""

    def last(self, system: str, entity: str, key: str) -> HubWrite | None:
        """The hub's last write to ``key``."""
        ...


class EchoFilter:
    """Decides whether a change read from a system is the hub's own write.

    ``identities`` returns the ids under which the hub writes to that system (called once, on
    first use: resolving them may take a request, e.g. Dataverse ``WhoAmI``).
    """

    def __init__(
        self, ledger: WriteLookup, identities: Callable[[], Iterable[str]] | None = None
    ) -> None:
        self.ledger = ledger
        self._identities = identities
        self._resolved: frozenset[str] | None = None

    def own_identities(self) -> frozenset[str]:
        """The hub's integration identities (lower-cased)."""
        if self._resolved is None:
            found = self._identities() if self._identities else ()
            self._resolved = frozenset(str(i).lower() for i in found if i)
        return self._resolved

    def is_echo(
        self,
        system: str,
        entity: str,
        key: str,
        values: Mapping[str, Any],
        *,
        modified_by: str | None = None,
    ) -> bool:
        """True when ``values`` (the fields that can flow back) are what the hub wrote, or the
        hub's identity made the change and the ledger holds nothing that says otherwise."""
        last = self.ledger.last(system, entity, key)
        if last is not None:
            echo = last.hash == values_hash(values)
        else:
            echo = modified_by is not None and modified_by.lower() in self.own_identities()
        if echo:
            log.debug("echo of the hub's own write suppressed: %s %s %s", system, entity, key)
        return echo
