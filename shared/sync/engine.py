"""Apply a change under the sync rules: direction, conflicts and dependency deferral.

- **Direction.** ``SyncEngine.permit`` refuses a write the entity's rule does not allow (prices
  from Sales to SAP, say) and records it in ``RejectionStore`` under flow ``sync-direction`` with
  both values; it is never applied.
- **Conflicts.** ``SyncEngine.resolve`` decides between two versions of one record by the rule:
  ``source-of-truth`` (the rule's master wins) or ``last-writer`` (the later modified time wins;
  a tie goes to the source of truth). The losing version is logged with both versions in the
  Azure Table ``hubconflicts`` (``ConflictLog``): partition = entity, row = key + time.
- **Dependency order.** A record whose parent is not coupled yet goes to the Azure Table
  ``hubdeferred`` (``DeferredStore``): partition = entity, row = key, with the record and the
  parent it waits for. Every batch run first takes its deferred records and tries them again;
  a record stays deferred (its attempts counted) until its parent arrives. It is never failed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.adapters.records import table_key
from shared.sync.rules import SyncRule, System

log = logging.getLogger(__name__)

DIRECTION_FLOW = "sync-direction"
CONFLICTS_TABLE = "hubconflicts"
DEFERRED_TABLE = "hubdeferred"


class Recorder(Protocol):
    """What the engine needs of ``RejectionStore``."""

    def record(self, flow: str, key: str, code: str, reason: str, **details: Any) -> Any:
        """Record a refusal by flow and key."""
        ...


class TableLike(Protocol):
    """The part of ``azure.data.tables.TableClient`` the stores use."""

    def upsert_entity(self, entity: Mapping[str, Any], **kwargs: Any) -> Mapping[str, Any]:
        """Insert or replace."""
        ...

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> Any:
        """One entity; ``ResourceNotFoundError`` when absent."""
        ...

    def query_entities(self, query_filter: str, **kwargs: Any) -> Any:
        """Entities matching an OData filter."""
        ...

    def delete_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> None:
        """Delete (no error when absent)."""
        ...


@dataclass(frozen=True)
class Version:
    """One side's version of a record: its system, values and modified time."""

    system: System
    values: dict[str, Any]
    modified_at: dt.datetime | None


@dataclass(frozen=True)
class Conflict:
    """A logged conflict: who won, who lost, both versions."""

    entity: str
    key: str
    rule: str
    winner: Version
    loser: Version
    at: dt.datetime


def _jsonable(version: Version) -> dict[str, Any]:
    return {
        "system": version.system,
        "modifiedAt": version.modified_at.isoformat() if version.modified_at else None,
        "values": version.values,
    }


class ConflictLog:
    """Every change that lost a conflict, with both versions (table ``hubconflicts``)."""

    def __init__(self, table: TableLike) -> None:
        self.table = table

    def log(self, conflict: Conflict) -> None:
        """Store ``conflict`` (one row per entity, key and time; nothing is overwritten)."""
        from azure.data.tables import UpdateMode

        stamp = conflict.at.strftime("%Y%m%dT%H%M%S%fZ")
        self.table.upsert_entity(
            {
                "PartitionKey": table_key(conflict.entity),
                "RowKey": table_key(f"{conflict.key}|{stamp}"),
                "Key": conflict.key,
                "Rule": conflict.rule,
                "Winner": conflict.winner.system,
                "Loser": conflict.loser.system,
                "Versions": json.dumps(
                    {"winner": _jsonable(conflict.winner), "loser": _jsonable(conflict.loser)},
                    default=str,
                    sort_keys=True,
                )[:30000],
                "At": conflict.at,
            },
            mode=UpdateMode.REPLACE,
        )

    def list(self, entity: str) -> list[dict[str, Any]]:
        """The logged conflicts of ``entity``, oldest first, versions decoded."""
        rows = self.table.query_entities("PartitionKey eq @p", parameters={"p": table_key(entity)})
        found = [
            {
                "key": str(r["Key"]),
                "rule": str(r["Rule"]),
                "winner": str(r["Winner"]),
                "loser": str(r["Loser"]),
                "versions": json.loads(r["Versions"]),
                "at": r["At"],
            }
            for r in rows
        ]
        return sorted(found, key=lambda c: (c["at"], c["key"]))


@dataclass(frozen=True)
class Deferred:
    """A record waiting for its parent."""

    entity: str
    key: str
    parent_entity: str
    parent_key: str
    record: dict[str, Any]
    attempts: int
    first_at: dt.datetime


class DeferredStore:
    """Records whose parent is not coupled yet (table ``hubdeferred``), retried each run."""

    def __init__(self, table: TableLike) -> None:
        self.table = table

    def defer(
        self,
        entity: str,
        key: str,
        record: Mapping[str, Any],
        *,
        parent_entity: str,
        parent_key: str,
    ) -> Deferred:
        """Park ``record`` until ``parent_entity`` ``parent_key`` exists; counts attempts."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.data.tables import UpdateMode

        pk, rk = table_key(entity), table_key(key)
        now = dt.datetime.now(dt.UTC)
        attempts, first = 1, now
        try:
            old = self.table.get_entity(pk, rk)
            attempts, first = int(old.get("Attempts", 0)) + 1, old.get("FirstAt") or now
        except ResourceNotFoundError:
            pass
        self.table.upsert_entity(
            {
                "PartitionKey": pk,
                "RowKey": rk,
                "Key": key,
                "ParentEntity": parent_entity,
                "ParentKey": parent_key,
                "Record": json.dumps(record, default=str, sort_keys=True),
                "Attempts": attempts,
                "FirstAt": first,
                "LastAt": now,
            },
            mode=UpdateMode.REPLACE,
        )
        log.info(
            "%s %s deferred until %s %s exists (attempt %d)",
            entity,
            key,
            parent_entity,
            parent_key,
            attempts,
        )
        return Deferred(entity, key, parent_entity, parent_key, dict(record), attempts, first)

    def pending(self, entity: str) -> list[Deferred]:
        """Every deferred record of ``entity``, in key order."""
        rows = self.table.query_entities("PartitionKey eq @p", parameters={"p": table_key(entity)})
        found = [
            Deferred(
                entity,
                str(r["Key"]),
                str(r["ParentEntity"]),
                str(r["ParentKey"]),
                json.loads(r["Record"]),
                int(r.get("Attempts", 0)),
                r["FirstAt"],
            )
            for r in rows
        ]
        return sorted(found, key=lambda d: d.key)

    def resolve(self, entity: str, key: str) -> None:
        """The record landed: forget it (no error if it was never deferred)."""
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self.table.delete_entity(table_key(entity), table_key(key))


class ConflictSink(Protocol):
    """What the engine needs of ``ConflictLog``."""

    def log(self, conflict: Conflict) -> None:
        """Store a conflict."""
        ...


class SyncEngine:
    """Direction checks and conflict decisions under the rules, with their records."""

    def __init__(self, rejections: Recorder, conflicts: ConflictSink) -> None:
        self.rejections = rejections
        self.conflicts = conflicts

    def permit(
        self,
        rule: SyncRule,
        source: System,
        target: System,
        key: str,
        *,
        attempted: Mapping[str, Any],
        current: Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether a write of ``rule.entity`` may flow ``source`` → ``target``.

        A refused write is recorded (flow ``sync-direction``, key ``<entity>:<key>``) with the
        value that was attempted and the value of the source of truth, and is not applied.
        """
        if rule.allows(source, target):
            return True
        reason = (
            f"{rule.entity} flow {rule.source_of_truth} → others only; a change made in "
            f"{source} is not written to {target}"
        )
        self.rejections.record(
            DIRECTION_FLOW,
            f"{rule.entity}:{key}",
            "wrong-direction",
            reason,
            entity=rule.entity,
            source=source,
            target=target,
            attempted=dict(attempted),
            sourceOfTruth=rule.source_of_truth,
            sourceOfTruthValue=None if current is None else dict(current),
        )
        log.warning("refused %s %s: %s", rule.entity, key, reason)
        return False

    def resolve(self, rule: SyncRule, key: str, incoming: Version, current: Version) -> Version:
        """The winning version of ``key``; the loser is logged with both versions."""
        if rule.conflict == "source-of-truth":
            winner = incoming if incoming.system == rule.source_of_truth else current
        else:
            a, b = incoming.modified_at, current.modified_at
            if a is not None and b is not None and a != b:
                winner = incoming if a > b else current
            elif a is not None and b is None:
                winner = incoming
            elif b is not None and a is None:
                winner = current
            else:
                winner = incoming if incoming.system == rule.source_of_truth else current
        loser = current if winner is incoming else incoming
        self.conflicts.log(
            Conflict(rule.entity, key, rule.conflict, winner, loser, dt.datetime.now(dt.UTC))
        )
        log.info(
            "conflict on %s %s (%s): %s wins over %s",
            rule.entity,
            key,
            rule.conflict,
            winner.system,
            loser.system,
        )
        return winner
