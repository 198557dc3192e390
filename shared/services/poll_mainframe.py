"""Flows 5a–5c: poll the legacy mainframe for changed records into bronze and silver.

For each entity, in dependency order (customers, orders, orderlines, inventory):

1. read the entity's watermark (the ``ASOF`` of the last successful listing) and its ETag;
2. list changes since the watermark less an overlap (``MAINFRAME_OVERLAP_SECONDS``), page by page;
   every non-empty page is written to bronze as it arrives and conformed into a silver stage
   (only typed columns are kept, so memory stays bounded);
3. MERGE the stage into silver (and the quarantine), once; records re-read in the overlap are the
   same versions, which the MERGE leaves untouched;
4. only then advance the watermark to the listing's first ``ASOF``, guarded by the ETag read in
   step 1, so of two overlapping runs only one moves it.

An unchanged source costs one listing request per entity and no blob or Delta write. A run that
dies between bronze and silver leaves the watermark where it was: the next run (a new run id, so
new bronze names) re-reads the same changes and the idempotent MERGE converges on the silver an
uninterrupted run would have produced. Gold is rebuilt by a separate job
(``shared.lake.gold.rebuild_gold``).

No heavy imports at module level: the lake jobs import deltalake/polars inside their functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from shared.lake.bronze import BronzePage, BronzeWriter
from shared.lake.runs import RunRecord, record_runs
from shared.lake.silver import DEFAULT_MAX_STAGED_ROWS, SilverStage
from shared.lake.specs import MAINFRAME, MAINFRAME_SPECS
from shared.lake.storage import LakeStorage
from shared.ports import MainframeChangeSource, WatermarkPort

log = logging.getLogger(__name__)

JOB = "poll_mainframe"
ENTITIES: tuple[str, ...] = tuple(MAINFRAME_SPECS)
"""customers, orders, orderlines, inventory: parents before children."""
DEFAULT_PAGE_SIZE = 1000
BRONZE_WORKERS = 2
MAX_PAGES_IN_FLIGHT = 3
"""Bronze pages being written while the listing goes on: bounds memory to a few pages."""


@dataclass
class EntityPollResult:
    """What one poll did for one mainframe entity."""

    entity: str
    silver_table: str
    requests: int = 0
    read: int = 0
    bronze_pages: int = 0
    bronze_records: int = 0
    silver_inserted: int = 0
    silver_updated: int = 0
    silver_unchanged: int = 0
    quarantined: int = 0
    quarantined_new: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None


@dataclass
class PollResult:
    """Counts per entity of one ``poll_mainframe`` run."""

    run_id: str
    entities: dict[str, EntityPollResult] = field(default_factory=dict)

    @property
    def read(self) -> int:
        """Records received over all entities."""
        return sum(e.read for e in self.entities.values())

    @property
    def requests(self) -> int:
        """Listing requests over all entities."""
        return sum(e.requests for e in self.entities.values())


def new_run_id(now: dt.datetime) -> str:
    """A sortable, unique run id: ``YYYYMMDDTHHMMSSZ-<8 hex>``."""
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def format_watermark(value: dt.datetime) -> str:
    """ISO 8601 UTC with ``Z`` (seconds: the mainframe's resolution)."""
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_watermark(value: str) -> dt.datetime:
    """The inverse of ``format_watermark``."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"watermark without a timezone: {value!r}")
    return parsed.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def poll_mainframe(
    client: MainframeChangeSource,
    watermarks: WatermarkPort,
    storage: LakeStorage,
    *,
    overlap: dt.timedelta,
    page_size: int = DEFAULT_PAGE_SIZE,
    entities: Sequence[str] = ENTITIES,
    run_id: str | None = None,
    clock: Callable[[], dt.datetime] = _now,
    before_silver: Callable[[str], None] | None = None,
    max_staged_rows: int = DEFAULT_MAX_STAGED_ROWS,
) -> PollResult:
    """Poll each mainframe entity's changes into bronze and silver, then advance its watermark.

    ``overlap`` is subtracted from the stored watermark before listing (clock skew and
    in-flight transactions on the mainframe). ``before_silver(entity)`` is called after an
    entity's bronze pages are written and before its silver commit (operational hooks; tests use
    it to simulate a crash there). Entities run in the given order and a failure stops the run:
    children never get ahead of their parents. Raises ``WatermarkConflictError`` when an
    overlapping run advanced a watermark first (its data is in silver either way).
    """
    unknown = [e for e in entities if e not in MAINFRAME_SPECS]
    if unknown:
        raise ValueError(f"unknown mainframe entities: {unknown}")
    run = run_id or new_run_id(clock())
    result = PollResult(run_id=run)
    writer = BronzeWriter(storage, clock=clock)
    runs: list[RunRecord] = []
    pool = ThreadPoolExecutor(max_workers=BRONZE_WORKERS, thread_name_prefix="bronze")
    try:
        for entity in entities:
            started = clock()
            outcome = _poll_entity(
                client,
                watermarks,
                storage,
                writer,
                pool,
                entity=entity,
                run_id=run,
                overlap=overlap,
                page_size=page_size,
                before_silver=before_silver,
                max_staged_rows=max_staged_rows,
            )
            result.entities[entity] = outcome.result
            if outcome.result.read:
                runs.append(
                    RunRecord(
                        run_id=run,
                        source=MAINFRAME,
                        entity=entity,
                        silver_table=outcome.result.silver_table,
                        started_at=started,
                        finished_at=outcome.committed_at or clock(),
                        records_read=outcome.result.read,
                        bronze_pages=outcome.result.bronze_pages,
                        silver_inserted=outcome.result.silver_inserted,
                        silver_updated=outcome.result.silver_updated,
                        silver_unchanged=outcome.result.silver_unchanged,
                        quarantined=outcome.result.quarantined,
                        requests=outcome.result.requests,
                        max_source_modified_at=outcome.max_source_modified_at,
                        watermark=outcome.result.watermark_after,
                    )
                )
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        # Entities that finished keep their run record even when a later one failed; a failure
        # to record it must not hide the error that stopped the run.
        try:
            record_runs(storage, runs)
        except Exception:
            log.exception("poll_mainframe %s: could not record the run log", run)
        raise
    pool.shutdown(wait=True)
    record_runs(storage, runs)
    log.info(
        "poll_mainframe %s: %d records in %d requests (%s)",
        run,
        result.read,
        result.requests,
        ", ".join(f"{e.entity}={e.read}" for e in result.entities.values()),
    )
    return result


@dataclass
class _EntityOutcome:
    result: EntityPollResult
    committed_at: dt.datetime | None = None
    max_source_modified_at: dt.datetime | None = None


def _poll_entity(
    client: MainframeChangeSource,
    watermarks: WatermarkPort,
    storage: LakeStorage,
    writer: BronzeWriter,
    pool: ThreadPoolExecutor,
    *,
    entity: str,
    run_id: str,
    overlap: dt.timedelta,
    page_size: int,
    before_silver: Callable[[str], None] | None,
    max_staged_rows: int,
) -> _EntityOutcome:
    spec = MAINFRAME_SPECS[entity]
    result = EntityPollResult(entity=entity, silver_table=spec.table)
    outcome = _EntityOutcome(result)
    stored, etag = watermarks.read(JOB, entity)
    result.watermark_before = stored
    previous = parse_watermark(stored) if stored else None
    since = previous - overlap if previous is not None else None

    stage = SilverStage(storage, spec, max_rows=max_staged_rows)
    asof: dt.datetime | None = None
    # Bronze uploads run beside the listing (and beside each other), at most a few pages ahead:
    # the next page is fetched while the previous ones are gzipped and uploaded. Pages reach the
    # silver stage in order, once their blob exists.
    in_flight: deque[tuple[Future[BronzePage], Sequence[Mapping[str, Any]]]] = deque()

    def settle_oldest() -> None:
        future, records = in_flight.popleft()
        bronze = future.result()
        result.bronze_records += bronze.count
        stage.add(records, bronze)

    try:
        for page in client.list_changes(entity, since=since, page_size=page_size):
            result.requests += 1
            if asof is None:
                asof = page.asof
            records = page.records
            if not records:
                continue
            result.read += len(records)
            n = result.bronze_pages
            result.bronze_pages += 1
            future = pool.submit(writer.write_page, MAINFRAME, entity, run_id, n, records)
            in_flight.append((future, records))
            while len(in_flight) > MAX_PAGES_IN_FLIGHT:
                settle_oldest()
        while in_flight:
            settle_oldest()
    finally:
        # On failure, nothing queued may start after we leave (the caller's pool waits for the
        # uploads already running).
        for future, _ in in_flight:
            future.cancel()

    if result.read:
        if before_silver is not None:
            before_silver(entity)
        counts = stage.commit()
        outcome.committed_at = writer.clock()
        outcome.max_source_modified_at = counts.max_source_modified_at
        result.silver_inserted = counts.inserted
        result.silver_updated = counts.updated
        result.silver_unchanged = counts.unchanged
        result.quarantined = counts.quarantined
        result.quarantined_new = counts.quarantine_new

    if asof is not None:
        # Never move backwards, even if the mainframe's clock did.
        target = asof if previous is None or asof > previous else previous
        value = format_watermark(target)
        if value != stored:
            watermarks.advance(JOB, entity, value, etag, run_id=run_id)
        result.watermark_after = value
    else:
        result.watermark_after = stored
    log.info(
        "poll_mainframe %s %s: read %d in %d request(s); silver +%d ~%d =%d; quarantined %d",
        run_id,
        entity,
        result.read,
        result.requests,
        result.silver_inserted,
        result.silver_updated,
        result.silver_unchanged,
        result.quarantined,
    )
    return outcome
