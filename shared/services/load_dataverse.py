"""Flow 6: load changed silver rows into Dataverse through the declarative mappings.

For each mapping of ``shared.mappings.MAPPINGS`` (parents before children: accounts, legacy
orders, their lines, plant inventory):

1. read the mapping's load cursor from ``WatermarkStore`` (job ``dataverse-load``, entity = the
   mapping's name): the ``(ingested_at, business key)`` of the last row known to be done;
2. pin the silver table's current Delta version and page through its live rows *after* the cursor
   in ``(ingested_at, business key)`` order, ``batch_rows`` at a time (polars, lazily, with the
   filter pushed into the scan and a top-k per batch, so memory is bounded by the batch size);
3. map each row (``TableMapping.to_upsert``) and upsert the batch with
   ``DataverseClient.upsert_many`` (UpsertMultiple where the table supports it, ``$batch``
   otherwise, concurrency following ``x-ms-dop-hint`` and 429s);
4. record every row Dataverse (or the mapping) refused for good in ``RejectionStore`` (flow
   ``dataverse-load``, key ``<mapping>:<business key>``, the reason) — they do not hold up the rest;
5. advance the cursor, ETag-guarded, to the last row before the first *transient* failure of the
   batch (the whole batch when there was none).

Why ``ingested_at``: a silver row's ``ingested_at`` is the ingestion time of the bronze page its
current version came from, and the MERGE only rewrites a row for a newer version. So rows changed
since the last load are exactly those with a later ``(ingested_at, key)``; an overlap re-read or an
unchanged source changes nothing and the next load sends nothing (not even a request). One job
writes each silver table and commits pages in ingestion order, so a row can never appear behind
the cursor later. (After ``reprocess_from_bronze`` rows carry their old ingestion times: reset the
entity's cursor, ``datahub watermarks reset dataverse-load <entity>``; upserts are idempotent.)

Transient failures (throttling that outlasted the retries, 5xx, timeouts) are retried by the next
run: the cursor stops just before the first such row, so it and everything after it is sent again
(rows after it that did land are re-upserted, which changes nothing). The run then stops — a
child must never be loaded while its parent may be missing — and raises ``LoadIncomplete``
(transient) after recording rejections and advancing what is safe, so the host records the
failure. Permanent failures never block the cursor: a refused row is recorded, and is sent again
only when its silver row changes.

Soft-deleted silver rows are never sent (a deletion in the lake does not delete in Dataverse).

No heavy imports at module level: polars is imported inside the functions that read silver.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.dataverse import BulkResult, UpsertRow
from shared.errors import HubError, PermanentError, TransientError
from shared.lake.bronze import format_instant
from shared.lake.delta import open_table
from shared.lake.specs import INGESTED_AT, IS_DELETED
from shared.lake.storage import LakeStorage
from shared.mappings import MAPPINGS, TableMapping
from shared.ports import WatermarkPort
from shared.services.poll_mainframe import new_run_id

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

JOB = "dataverse-load"
FLOW = "dataverse-load"
DEFAULT_BATCH_ROWS = 5000
"""Silver rows per batch: what one ``upsert_many`` call gets and what memory is bounded by."""
_KEY = "__business_key"


class BulkUpserter(Protocol):
    """What the load needs of ``DataverseClient``."""

    def upsert_many(
        self, entity_set: str, logical_name: str, rows: Sequence[UpsertRow]
    ) -> BulkResult:
        """Upsert rows by key; one result per row (see ``DataverseClient.upsert_many``)."""
        ...


class RejectionRecorder(Protocol):
    """What the load needs of ``RejectionStore``."""

    def record(self, flow: str, key: str, code: str, reason: str, **details: Any) -> Any:
        """Record a permanent failure by flow and key."""
        ...


@dataclass(frozen=True)
class LoadCursor:
    """The position of the last row a load finished: ``(ingested_at, business key)``."""

    ingested_at: dt.datetime
    key: str

    def dumps(self) -> str:
        """The stored watermark value (JSON, UTC with microseconds)."""
        return json.dumps(
            {"ingestedAt": format_instant(self.ingested_at), "key": self.key},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str) -> LoadCursor:
        """The inverse of ``dumps``; ``ValueError`` for anything else."""
        try:
            data = json.loads(text)
            when = dt.datetime.fromisoformat(str(data["ingestedAt"]).replace("Z", "+00:00"))
            key = data["key"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a dataverse-load cursor: {text[:100]!r}") from exc
        if when.tzinfo is None or not isinstance(key, str):
            raise ValueError(f"not a dataverse-load cursor: {text[:100]!r}")
        return cls(when.astimezone(dt.UTC), key)


@dataclass
class EntityLoadResult:
    """What one load did for one mapping."""

    entity: str
    entity_set: str
    changed: int = 0
    sent: int = 0
    landed: int = 0
    rejected: int = 0
    transient: int = 0
    requests: int = 0
    bulk_requests: int = 0
    batch_requests: int = 0
    throttled: int = 0
    batches: int = 0
    silver_version: int | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None

    @property
    def requests_per_1000_rows(self) -> float:
        """HTTP requests (retries included) per 1,000 rows sent to Dataverse."""
        return 1000 * self.requests / self.sent if self.sent else 0.0


@dataclass
class LoadResult:
    """Counts per mapping of one ``load_dataverse`` run."""

    run_id: str
    entities: dict[str, EntityLoadResult] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        """Rows sent to Dataverse over all mappings."""
        return sum(e.sent for e in self.entities.values())

    @property
    def landed(self) -> int:
        """Rows Dataverse accepted."""
        return sum(e.landed for e in self.entities.values())

    @property
    def rejected(self) -> int:
        """Rows refused for good (recorded in the rejection store)."""
        return sum(e.rejected for e in self.entities.values())

    @property
    def transient(self) -> int:
        """Rows that failed for now (sent again by the next run)."""
        return sum(e.transient for e in self.entities.values())

    @property
    def requests(self) -> int:
        """HTTP requests to Dataverse, retries included."""
        return sum(e.requests for e in self.entities.values())

    def summary(self) -> str:
        """One line with the counts, for the timer's log."""
        parts = ", ".join(
            f"{e.entity}={e.landed}/{e.sent}" + (f" ({e.rejected} rejected)" if e.rejected else "")
            for e in self.entities.values()
        )
        return (
            f"dataverse-load {self.run_id}: {self.landed} of {self.sent} row(s) landed, "
            f"{self.rejected} rejected, {self.transient} transient, {self.requests} request(s)"
            + (f"; {parts}" if parts else "")
        )


class LoadIncomplete(TransientError):
    """Some rows failed transiently; the cursor stopped before them and the run stopped there."""

    def __init__(self, result: LoadResult, entity: str) -> None:
        super().__init__(
            f"{result.entities[entity].transient} {entity} row(s) failed transiently; "
            f"the next run sends them again ({result.summary()})"
        )
        self.result = result
        self.entity = entity


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_dataverse(
    client: BulkUpserter,
    watermarks: WatermarkPort,
    rejections: RejectionRecorder,
    storage: LakeStorage,
    *,
    mappings: Sequence[TableMapping] = MAPPINGS,
    entities: Sequence[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    run_id: str | None = None,
    clock: Callable[[], dt.datetime] = _now,
    after_batch: Callable[[EntityLoadResult], None] | None = None,
) -> LoadResult:
    """Send every silver row changed since the last load to Dataverse, mapping by mapping.

    ``entities`` restricts the run to some mapping names (still in ``mappings`` order).
    ``after_batch`` is called after each batch is settled and its cursor saved (progress
    reporting; tests use it to change conditions between batches). Raises ``LoadIncomplete``
    when rows failed transiently, ``WatermarkConflictError`` when an overlapping load moved a
    cursor first, and whatever stopped the run otherwise (the cursors of finished batches stay).
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be positive")
    names = [m.name for m in mappings]
    unknown = sorted(set(entities or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown mappings: {unknown}")
    selected = [m for m in mappings if entities is None or m.name in entities]
    run = run_id or new_run_id(clock())
    result = LoadResult(run_id=run)
    for mapping in selected:
        outcome = _load_mapping(
            client,
            watermarks,
            rejections,
            storage,
            mapping,
            run_id=run,
            batch_rows=batch_rows,
            after_batch=after_batch,
        )
        result.entities[mapping.name] = outcome
        if outcome.transient:
            log.warning("%s", result.summary())
            raise LoadIncomplete(result, mapping.name)
    log.info("%s", result.summary())
    return result


def _load_mapping(
    client: BulkUpserter,
    watermarks: WatermarkPort,
    rejections: RejectionRecorder,
    storage: LakeStorage,
    mapping: TableMapping,
    *,
    run_id: str,
    batch_rows: int,
    after_batch: Callable[[EntityLoadResult], None] | None,
) -> EntityLoadResult:
    result = EntityLoadResult(entity=mapping.name, entity_set=mapping.entity_set)
    stored, etag = watermarks.read(JOB, mapping.name)
    result.watermark_before = result.watermark_after = stored
    cursor = LoadCursor.loads(stored) if stored else None
    table = open_table(storage, "silver", mapping.silver_table)
    if table is None:
        log.info(
            "dataverse-load %s %s: silver/%s does not exist yet",
            run_id,
            mapping.name,
            mapping.silver_table,
        )
        return result
    # One snapshot for the whole entity: commits landing meanwhile are the next run's business.
    result.silver_version = table.version()
    while True:
        batch = changed_rows(storage, mapping, result.silver_version, cursor, batch_rows)
        if batch.height == 0:
            break
        result.batches += 1
        result.changed += batch.height
        rows = batch.to_dicts()
        done = _send_batch(client, rejections, mapping, rows, result=result, run_id=run_id)
        if done >= 0:
            last = rows[done]
            cursor = LoadCursor(last[INGESTED_AT], str(last[_KEY]))
            value = cursor.dumps()
            etag = watermarks.advance(JOB, mapping.name, value, etag, run_id=run_id)
            result.watermark_after = value
        if after_batch is not None:
            after_batch(result)
        if result.transient or batch.height < batch_rows:
            break
    log.info(
        "dataverse-load %s %s: %d changed, %d sent, %d landed, %d rejected, %d transient, "
        "%d request(s) in %d batch(es)",
        run_id,
        mapping.name,
        result.changed,
        result.sent,
        result.landed,
        result.rejected,
        result.transient,
        result.requests,
        result.batches,
    )
    return result


def changed_rows(
    storage: LakeStorage,
    mapping: TableMapping,
    version: int,
    cursor: LoadCursor | None,
    limit: int,
) -> pl.DataFrame:
    """The next ``limit`` live rows after ``cursor`` in ``(ingested_at, business key)`` order.

    Columns: the mapping's silver columns, ``ingested_at`` and the business key text. The scan
    reads only those columns, pushes ``ingested_at >= cursor`` into the Parquet scan and keeps a
    top-k of ``limit`` rows in the streaming engine, so memory follows the batch, not the table.
    """
    import polars as pl

    frame = pl.scan_delta(
        storage.table_uri("silver", mapping.silver_table),
        version=version,
        storage_options=storage.storage_options(),
    )
    frame = frame.filter(~pl.col(IS_DELETED).fill_null(False))
    for column, allowed in mapping.where:
        frame = frame.filter(pl.col(column).cast(pl.String).is_in(list(allowed)))
    if cursor is not None:
        since = pl.lit(cursor.ingested_at, dtype=pl.Datetime("us", "UTC"))
        frame = frame.filter(pl.col(INGESTED_AT) >= since)
    key = pl.concat_str(
        [pl.col(k).cast(pl.String).fill_null("") for k in mapping.spec.key], separator="|"
    )
    frame = frame.select(*mapping.silver_columns, INGESTED_AT, key.alias(_KEY))
    if cursor is not None:
        frame = frame.filter(
            (pl.col(INGESTED_AT) > since) | (pl.col(_KEY) > pl.lit(cursor.key, dtype=pl.String))
        )
    return frame.sort([INGESTED_AT, _KEY]).head(limit).collect(engine="streaming")


def _send_batch(
    client: BulkUpserter,
    rejections: RejectionRecorder,
    mapping: TableMapping,
    rows: list[dict[str, Any]],
    *,
    result: EntityLoadResult,
    run_id: str,
) -> int:
    """Map and upsert one batch; record rejections; the index of the last row that is done."""
    errors: dict[int, HubError | None] = {}
    upserts: list[UpsertRow] = []
    positions: list[int] = []
    for index, row in enumerate(rows):
        try:
            upserts.append(mapping.to_upsert(row))
            positions.append(index)
        except PermanentError as exc:
            errors[index] = exc
    if upserts:
        bulk = client.upsert_many(mapping.entity_set, mapping.logical_name, upserts)
        result.sent += len(upserts)
        result.requests += bulk.requests
        result.bulk_requests += bulk.bulk_requests
        result.batch_requests += bulk.batch_requests
        result.throttled += bulk.throttled
        for row_result in bulk.rows:
            errors[positions[row_result.index]] = row_result.error
    first_transient: int | None = None
    for index in range(len(rows)):
        error = errors.get(index)
        if error is None:
            result.landed += 1
        elif isinstance(error, TransientError):
            result.transient += 1
            if first_transient is None:
                first_transient = index
        else:
            result.rejected += 1
            _reject(rejections, mapping, rows[index], error, run_id)
    return len(rows) - 1 if first_transient is None else first_transient - 1


def _reject(
    rejections: RejectionRecorder,
    mapping: TableMapping,
    row: Mapping[str, Any],
    error: HubError,
    run_id: str,
) -> None:
    business_key = mapping.business_key(row)
    code = error.code if isinstance(error, PermanentError) else type(error).__name__
    rejections.record(
        FLOW,
        f"{mapping.name}:{business_key}",
        code,
        str(error),
        entity=mapping.name,
        table=mapping.entity_set,
        businessKey=business_key,
        runId=run_id,
    )
    log.warning(
        "dataverse-load %s: %s %s refused (%s): %s",
        run_id,
        mapping.name,
        business_key,
        code,
        error,
    )
