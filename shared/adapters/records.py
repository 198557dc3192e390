"""Couplings and rejections on Azure Tables.

- ``hubcouplings``: ids of one business record across the Quoting Tool, Dataverse, SAP and the
  mainframe, per entity. One row per (entity, system, id), each holding every known id, so a
  lookup works from any side with a single point read.
- ``hubrejections``: every permanent failure, by flow and key, with its reason — the queryable
  answer to "what did the hub refuse, and why".
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.adapters.tables import Tables

# Azure Table keys may not contain / \ # ? or control characters.
_UNSAFE = re.compile(r"[/\\#?\x00-\x1f\x7f]")


def table_key(value: str) -> str:
    """A reversible, Table-safe key: unsafe characters become %XX."""
    return _UNSAFE.sub(lambda m: f"%{ord(m.group(0)):02X}", value.replace("%", "%25"))


class CouplingStore:
    """Cross-system id couplings, looked up from any side."""

    def __init__(self, tables: Tables) -> None:
        self.table = tables.table("hubcouplings")

    def link(self, entity: str, ids: dict[str, str]) -> dict[str, str]:
        """Record that ``ids`` ({system: id}) are one record; merges with what is known."""
        known: dict[str, str] = {}
        for system, value in ids.items():
            known.update(self.lookup(entity, system, value) or {})
        known.update(ids)
        now = dt.datetime.now(dt.UTC)
        for system, value in known.items():
            self.table.upsert_entity(
                {
                    "PartitionKey": table_key(f"{entity}|{system}"),
                    "RowKey": table_key(value),
                    "Ids": json.dumps(known, sort_keys=True),
                    "UpdatedAt": now,
                },
                mode=UpdateMode.REPLACE,
            )
        return known

    def lookup(self, entity: str, system: str, value: str) -> dict[str, str] | None:
        """Every known id of the record that has ``value`` in ``system``."""
        try:
            row = self.table.get_entity(table_key(f"{entity}|{system}"), table_key(value))
        except ResourceNotFoundError:
            return None
        ids: dict[str, str] = json.loads(row["Ids"])
        return ids


@dataclass(frozen=True)
class Rejection:
    flow: str
    key: str
    code: str
    reason: str
    at: dt.datetime
    details: dict[str, Any]


class RejectionStore:
    """Permanent failures by flow and key; the latest rejection of a key replaces older ones."""

    def __init__(self, tables: Tables) -> None:
        self.table = tables.table("hubrejections")

    def record(self, flow: str, key: str, code: str, reason: str, **details: Any) -> Rejection:
        at = dt.datetime.now(dt.UTC)
        self.table.upsert_entity(
            {
                "PartitionKey": table_key(flow),
                "RowKey": table_key(key),
                "Key": key,
                "Code": code,
                "Reason": reason[:4000],
                "At": at,
                "Details": json.dumps(details, default=str)[:30000],
            },
            mode=UpdateMode.REPLACE,
        )
        return Rejection(flow, key, code, reason, at, details)

    def list(self, flow: str | None = None) -> list[Rejection]:
        rows = (
            self.table.query_entities("PartitionKey eq @f", parameters={"f": table_key(flow)})
            if flow
            else self.table.list_entities()
        )
        found = [
            Rejection(
                flow=str(r["PartitionKey"]),
                key=str(r.get("Key") or r["RowKey"]),
                code=str(r["Code"]),
                reason=str(r["Reason"]),
                at=r["At"],
                details=json.loads(r.get("Details") or "{}"),
            )
            for r in rows
        ]
        return sorted(found, key=lambda r: (r.flow, r.key))

    def count(self, flow: str | None = None) -> int:
        return len(self.list(flow))
