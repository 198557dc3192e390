"""Hub state on Azure Tables: ETag-guarded watermarks.

One entity per (job, source entity): ``PartitionKey`` = job, ``RowKey`` = entity, with the value
(an opaque string: an ISO timestamp for the mainframe, a delta link for Dataverse), who advanced
it and when. Advancing is optimistic concurrency on the entity's ETag: an update carries
``If-Match: <etag>`` (``match_condition=IfNotModified``) and the first advance is create-only, so
of two overlapping runs that read the same watermark only one can move it; the other gets
``WatermarkConflictError`` (Azure Tables answers 412 Precondition Failed, or 409 Conflict for a
second create: learn.microsoft.com/rest/api/storageservices/update-entity2).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from shared.errors import TransientError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

    from shared.config import Settings

log = logging.getLogger(__name__)

DEFAULT_TABLE = "hubwatermarks"
# Azure Tables forbids / \ # ? and control characters in keys; keep names plain.
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}$")


class WatermarkConflictError(TransientError):
    """Another run advanced (or created) this watermark since it was read."""


class Watermark(NamedTuple):
    """A watermark as read: its value and the ETag to advance it with (both None if absent)."""

    value: str | None
    etag: str | None


@dataclass(frozen=True)
class WatermarkRecord:
    """A stored watermark with its metadata (for the operator CLI)."""

    job: str
    entity: str
    value: str
    etag: str
    updated_at: dt.datetime | None
    run_id: str | None


def _check_key(kind: str, value: str) -> None:
    if not _KEY.match(value):
        raise ValueError(f"{kind} must be letters, digits, '_', '.', ':' or '-'")


class WatermarkStore:
    """Watermarks in one Azure Table, advanced only by whoever holds the current ETag."""

    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._created = False

    @classmethod
    def connect(
        cls,
        table_url: str,
        *,
        use_emulator: bool = False,
        credential: TokenCredential | None = None,
        table_name: str = DEFAULT_TABLE,
    ) -> WatermarkStore:
        """A store on ``table_url`` (the account's Table endpoint)."""
        from shared.adapters.tables import Tables

        tables = Tables(table_url, use_emulator=use_emulator, credential=credential)
        return cls(tables.table(table_name))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        credential: TokenCredential | None = None,
        *,
        table_name: str = DEFAULT_TABLE,
    ) -> WatermarkStore:
        """The store of ``LAKE_TABLE_URL``/``LAKE_USE_EMULATOR``."""
        return cls.connect(
            str(settings.lake_table_url).rstrip("/"),
            use_emulator=settings.lake_use_emulator,
            credential=credential,
            table_name=table_name,
        )

    def _ensure_table(self) -> None:
        if not self._created:
            from azure.core.exceptions import ResourceExistsError

            with contextlib.suppress(ResourceExistsError):
                self.table.create_table()
            self._created = True

    def read(self, job: str, entity: str) -> Watermark:
        """The watermark's value and ETag, or ``(None, None)`` when it was never set."""
        from azure.core.exceptions import ResourceNotFoundError

        _check_key("job", job)
        _check_key("entity", entity)
        self._ensure_table()
        try:
            stored = self.table.get_entity(job, entity)
        except ResourceNotFoundError:
            return Watermark(None, None)
        return Watermark(str(stored["Value"]), str(stored.metadata["etag"]))

    def advance(
        self,
        job: str,
        entity: str,
        new_value: str,
        etag: str | None,
        *,
        run_id: str | None = None,
    ) -> str:
        """Set the watermark if it is unchanged since read (``etag``); returns the new ETag.

        ``etag=None`` means "it did not exist when I read it": the write is create-only. Raises
        ``WatermarkConflictError`` when another run got there first.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
        from azure.data.tables import UpdateMode

        _check_key("job", job)
        _check_key("entity", entity)
        self._ensure_table()
        entity_body: dict[str, Any] = {
            "PartitionKey": job,
            "RowKey": entity,
            "Value": new_value,
            "UpdatedAt": dt.datetime.now(dt.UTC),
            "RunId": run_id or "",
        }
        try:
            if etag is None:
                meta = self.table.create_entity(entity_body)
            else:
                meta = self.table.update_entity(
                    entity_body,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            raise WatermarkConflictError(
                f"watermark {job}/{entity} was advanced by another run since it was read"
            ) from None
        log.info("watermark %s/%s advanced to %s", job, entity, new_value)
        return str(meta["etag"])

    def list(self, job: str | None = None) -> list[WatermarkRecord]:
        """Every watermark (of one job, if given), ordered by job then entity."""
        self._ensure_table()
        if job is None:
            rows = self.table.list_entities()
        else:
            _check_key("job", job)
            rows = self.table.query_entities("PartitionKey eq @job", parameters={"job": job})
        found = [
            WatermarkRecord(
                job=str(row["PartitionKey"]),
                entity=str(row["RowKey"]),
                value=str(row["Value"]),
                etag=str(row.metadata["etag"]),
                updated_at=row.get("UpdatedAt"),
                run_id=row.get("RunId") or None,
            )
            for row in rows
        ]
        return sorted(found, key=lambda r: (r.job, r.entity))

    def reset(self, job: str, entity: str, value: str | None = None) -> None:
        """Operator override: forget the watermark (next run reads everything) or set ``value``.

        Unconditional on purpose: it is the way out when a watermark is known to be wrong.
        """
        from azure.data.tables import UpdateMode

        _check_key("job", job)
        _check_key("entity", entity)
        self._ensure_table()
        if value is None:
            self.table.delete_entity(job, entity)
            log.warning("watermark %s/%s reset (next run reads everything)", job, entity)
            return
        self.table.upsert_entity(
            {
                "PartitionKey": job,
                "RowKey": entity,
                "Value": value,
                "UpdatedAt": dt.datetime.now(dt.UTC),
                "RunId": "operator-reset",
            },
            mode=UpdateMode.REPLACE,
        )
        log.warning("watermark %s/%s reset to %s", job, entity, value)
