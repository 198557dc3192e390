"""Quote lifecycle and idempotency on Azure Tables (table ``hubquotes``).

Per quote (PartitionKey = quoteId):

- ``rev-{revision:010d}``: one row per accepted revision, created exactly once (create-only),
  holding the content hash and tracking id. This is the idempotency record for
  ``(quoteId, revision)``.
- ``current``: the latest accepted revision and its lifecycle, updated under its ETag so two
  concurrent writers can't both win.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from shared.adapters.tables import Tables
from shared.errors import TransientError

TABLE = "hubquotes"
CURRENT = "current"


class StaleWrite(Exception):
    """Another writer changed the record since it was read; re-read and decide again."""


@dataclass
class Revision:
    quote_id: str
    revision: int
    content_hash: str
    tracking_id: str
    accepted_at: dt.datetime
    bronze_path: str


@dataclass
class QuoteRecord:
    """The ``current`` row: latest accepted revision and its lifecycle."""

    quote_id: str
    revision: int
    content_hash: str
    tracking_id: str
    status: str
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    territory: dict[str, Any] = field(default_factory=dict)
    dataverse_id: str | None = None
    reject_reason: str | None = None
    approved: dict[str, Any] = field(default_factory=dict)
    sap_order_number: str | None = None
    attempts: int = 0
    last_error: str | None = None
    pushed_revision: int | None = None
    callbacks: list[str] = field(default_factory=list)
    etag: str | None = None

    def step(self, name: str, at: dt.datetime, **details: Any) -> None:
        """Append a lifecycle step (once per step name and revision)."""
        if any(s["step"] == name and s.get("revision") == self.revision for s in self.lifecycle):
            return
        entry = {"step": name, "at": at.isoformat(), "revision": self.revision}
        entry.update({k: v for k, v in details.items() if v is not None})
        self.lifecycle.append(entry)
        self.status = name


def _to_entity(record: QuoteRecord) -> dict[str, Any]:
    return {
        "PartitionKey": record.quote_id,
        "RowKey": CURRENT,
        "Revision": record.revision,
        "ContentHash": record.content_hash,
        "TrackingId": record.tracking_id,
        "Status": record.status,
        "Lifecycle": json.dumps(record.lifecycle),
        "Territory": json.dumps(record.territory),
        "DataverseId": record.dataverse_id or "",
        "RejectReason": record.reject_reason or "",
        "Approved": json.dumps(record.approved),
        "SapOrderNumber": record.sap_order_number or "",
        "Attempts": record.attempts,
        "LastError": record.last_error or "",
        "PushedRevision": -1 if record.pushed_revision is None else record.pushed_revision,
        "Callbacks": json.dumps(record.callbacks),
    }


def _from_entity(entity: Any) -> QuoteRecord:
    pushed = int(entity.get("PushedRevision", -1))
    return QuoteRecord(
        quote_id=str(entity["PartitionKey"]),
        revision=int(entity["Revision"]),
        content_hash=str(entity["ContentHash"]),
        tracking_id=str(entity["TrackingId"]),
        status=str(entity["Status"]),
        lifecycle=json.loads(entity.get("Lifecycle") or "[]"),
        territory=json.loads(entity.get("Territory") or "{}"),
        dataverse_id=entity.get("DataverseId") or None,
        reject_reason=entity.get("RejectReason") or None,
        approved=json.loads(entity.get("Approved") or "{}"),
        sap_order_number=entity.get("SapOrderNumber") or None,
        attempts=int(entity.get("Attempts", 0)),
        last_error=entity.get("LastError") or None,
        pushed_revision=None if pushed < 0 else pushed,
        callbacks=json.loads(entity.get("Callbacks") or "[]"),
        etag=entity.metadata.get("etag"),
    )


class QuoteStore:
    """Idempotency records and lifecycle of quotes."""

    def __init__(self, tables: Tables) -> None:
        self.table = tables.table(TABLE)

    def get(self, quote_id: str) -> QuoteRecord | None:
        try:
            return _from_entity(self.table.get_entity(quote_id, CURRENT))
        except ResourceNotFoundError:
            return None

    def get_revision(self, quote_id: str, revision: int) -> Revision | None:
        try:
            e = self.table.get_entity(quote_id, f"rev-{revision:010d}")
        except ResourceNotFoundError:
            return None
        return Revision(
            quote_id,
            revision,
            str(e["ContentHash"]),
            str(e["TrackingId"]),
            dt.datetime.fromisoformat(str(e["AcceptedAt"])),
            str(e["BronzePath"]),
        )

    def add_revision(self, rev: Revision) -> bool:
        """Create the idempotency row; False if (quoteId, revision) already exists."""
        try:
            self.table.create_entity(
                {
                    "PartitionKey": rev.quote_id,
                    "RowKey": f"rev-{rev.revision:010d}",
                    "ContentHash": rev.content_hash,
                    "TrackingId": rev.tracking_id,
                    "AcceptedAt": rev.accepted_at.isoformat(),
                    "BronzePath": rev.bronze_path,
                }
            )
        except ResourceExistsError:
            return False
        return True

    def save(self, record: QuoteRecord) -> QuoteRecord:
        """Create (no etag) or update (under the record's etag) the ``current`` row."""
        entity = _to_entity(record)
        try:
            if record.etag is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(
                    entity, etag=record.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise StaleWrite(f"quote {record.quote_id} changed concurrently") from exc
        if not meta.get("etag"):
            raise TransientError(f"quote {record.quote_id}: table write returned no etag")
        record.etag = str(meta["etag"])
        return record
