"""The ingestion run log: one silver row per (run, source entity) that received records.

Gold's ``integration_health`` is derived from it, so every ingestion job (mainframe poll, the
Quoting Tool intake, SAP and Dataverse jobs) appends its counts here after its silver commit. A
run that received nothing writes nothing, keeping an idle poll free of lake writes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.lake.delta import with_commit_retry
from shared.lake.storage import LakeStorage

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

RUNS_TABLE = "ingestion_runs"


@dataclass(frozen=True)
class RunRecord:
    """What one run did for one source entity."""

    run_id: str
    source: str
    entity: str
    silver_table: str
    started_at: dt.datetime
    finished_at: dt.datetime
    records_read: int
    bronze_pages: int
    silver_inserted: int
    silver_updated: int
    silver_unchanged: int
    quarantined: int
    requests: int
    max_source_modified_at: dt.datetime | None
    watermark: str | None


def runs_schema() -> pa.Schema:
    """The ``ingestion_runs`` table's schema (field order as in ``RunRecord``)."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            ("run_id", pa.string()),
            ("source", pa.string()),
            ("entity", pa.string()),
            ("silver_table", pa.string()),
            ("started_at", ts),
            ("finished_at", ts),
            ("records_read", pa.int64()),
            ("bronze_pages", pa.int64()),
            ("silver_inserted", pa.int64()),
            ("silver_updated", pa.int64()),
            ("silver_unchanged", pa.int64()),
            ("quarantined", pa.int64()),
            ("requests", pa.int64()),
            ("max_source_modified_at", ts),
            ("watermark", pa.string()),
        ]
    )


def record_runs(storage: LakeStorage, records: Sequence[RunRecord]) -> None:
    """Append run records (nothing at all when ``records`` is empty)."""
    if not records:
        return
    import pyarrow as pa
    from deltalake import write_deltalake

    schema = runs_schema()
    columns = {name: [getattr(r, name) for r in records] for name in schema.names}
    data = pa.Table.from_pydict(columns, schema=schema)
    storage.ensure_container("silver")
    uri = storage.table_uri("silver", RUNS_TABLE)

    def append() -> None:
        write_deltalake(uri, data, mode="append", storage_options=storage.storage_options())

    with_commit_retry(append, f"append silver/{RUNS_TABLE}")
    log.info("silver/%s: recorded %d entity run(s)", RUNS_TABLE, len(records))
