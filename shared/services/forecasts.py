"""Flow 1b, forecasts: rep forecast batches from the Quoting Tool into bronze, and the lake job
that conforms the Quoting Tool's bronze entities into silver.

Intake (``POST /api/forecasts``) is light: it validates, resolves each submission's territory
against the Dataverse hierarchy the hub already caches, writes **one bronze page per batch** and
answers 202. It never imports deltalake, polars or pyarrow (cold starts of the HTTP worker stay
fast); the MERGE into ``silver/forecasts`` happens in the ``lake_ingest`` timer job
(``ingest_quoting_tool``), which also handles the archive uploads (``quotingtool/archive``) and
the quotes the quote intake stored (``quotingtool/quotes``, one page per accepted revision, MERGEd
into ``silver/quotes`` by quote id, the highest revision winning).

Idempotency. A batch is identified by the sha256 of its canonical content (submissions in key
order, numbers compared by value): the bronze run id and the answer's ``batchId`` derive from it.
The first request for a batch records it in the ``hubintake`` table (create-only, so of two
concurrent requests one wins) with its receipt time; every later request for the same batch
reuses that time, so the bronze records it would write are byte-identical and the create-only
bronze write is a no-op. Once a batch is recorded as complete, a replay writes nothing at all.

Silver (``shared.lake.specs.FORECASTS``) keeps the latest submission per (salesRep in lower case,
territory, month, category), ordered by receipt time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from shared.adapters.state import WatermarkConflictError
from shared.errors import HubError
from shared.jsonbody import canonical_json
from shared.lake.bronze import BronzeReader, BronzeWriter, format_instant, parse_blob_name
from shared.lake.errors import BronzeConflictError
from shared.lake.runs import RunRecord, record_runs
from shared.lake.silver import SilverStage
from shared.lake.specs import QUOTING_TOOL, QUOTING_TOOL_SPECS, EntitySpec
from shared.lake.storage import LakeStorage
from shared.models.forecast import ForecastAccepted, ForecastBatch, ForecastSubmission
from shared.ports import WatermarkPort
from shared.services.territory import LEVEL_CITY, LEVEL_COUNTY, LEVEL_REGION, TerritoryMap

if TYPE_CHECKING:
    from azure.data.tables import TableClient

log = logging.getLogger(__name__)

FORECAST_ENTITY: Final = "forecasts"
FORECAST_CURRENCY: Final = "USD"
"""Forecasts are in the organisation's base currency (USD in Contoso's Dynamics 365 Sales),
as Dynamics 365 forecasts are; a submission carries no currency of its own."""
INTAKE_TABLE: Final = "hubintake"
LAKE_JOB: Final = "lake-ingest"
LISTING_SKEW: Final = dt.timedelta(minutes=2)
"""How far a bronze blob's storage timestamp may lag the job's clock (storage front ends and
instances disagree by seconds); pages this close to the last listing are checked again."""
HORIZON_REFRESH: Final = dt.timedelta(hours=1)
"""An idle job moves its watermark at most this often (to keep listings to a few partitions)."""
READ_THREADS: Final = 4
"""Bronze pages read at once by ``lake_ingest`` (Blob reads are I/O bound)."""
MAX_REMEMBERED_PAGES: Final = 400
"""Pages remembered in the watermark as already ingested (bounded: the value must stay well
under Azure Tables' 64 KiB per property). A forgotten page is re-read, which is harmless."""


# --- intake markers --------------------------------------------------------------------------


class Claim(NamedTuple):
    """An upload's record: when it was first received and whether its bronze is complete."""

    received_at: dt.datetime
    done: bool


class IntakeMarkers:
    """One row per received upload (``PartitionKey`` = kind, ``RowKey`` = content digest) in the
    ``hubintake`` table: pins the receipt time replays reuse and says when bronze is complete."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    def claim(self, kind: str, digest: str, now: dt.datetime) -> Claim:
        """Record ``digest`` as received at ``now``, or return how it was recorded before."""
        from azure.core.exceptions import ResourceExistsError

        try:
            self.table.create_entity(
                {"PartitionKey": kind, "RowKey": digest, "ReceivedAt": now, "State": "started"}
            )
            return Claim(now, False)
        except ResourceExistsError:
            row = self.table.get_entity(kind, digest)
        received = row["ReceivedAt"]
        if not isinstance(received, dt.datetime):
            raise TypeError(f"hubintake row {kind}/{digest} has no ReceivedAt time")
        return Claim(received.astimezone(dt.UTC), row.get("State") == "done")

    def complete(self, kind: str, digest: str, *, pages: int, records: int) -> None:
        """Mark the upload's bronze as written in full."""
        from azure.data.tables import UpdateMode

        self.table.update_entity(
            {
                "PartitionKey": kind,
                "RowKey": digest,
                "State": "done",
                "Pages": pages,
                "Records": records,
                "CompletedAt": dt.datetime.now(dt.UTC),
            },
            mode=UpdateMode.MERGE,
        )


# --- territory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TerritoryLevels:
    """Where a forecast's territory sits in Region > County > City/ZIP, and by which rule it was
    found (``code``, ``region-name``, ``unassigned``, or ``pending`` when the hierarchy could not
    be read)."""

    rule: str
    region: str | None = None
    county: str | None = None
    city: str | None = None


def _name_key(value: str) -> str:
    return " ".join(value.casefold().split())


class TerritoryResolver:
    """Resolves the territory text of forecast submissions against one hierarchy snapshot: a
    territory code (``contoso_territorycode``) first, then a region name, both without case."""

    def __init__(self, territories: TerritoryMap) -> None:
        self.map = territories
        self.by_code = {
            _name_key(t.code): t for t in territories.by_id.values() if t.code and t.code.strip()
        }

    def resolve(self, territory: str) -> TerritoryLevels:
        """The levels of ``territory``; ``unassigned`` when nothing matches."""
        key = _name_key(territory)
        found = self.by_code.get(key)
        rule = "code"
        if found is None:
            found = self.map.regions.get(key)
            rule = "region-name"
        if found is None:
            return TerritoryLevels("unassigned")
        chain: dict[int, str] = {}
        node = found
        for _ in range(8):  # three levels; the bound guards against a cyclic parent
            chain.setdefault(node.level, node.name)
            parent = self.map.by_id.get(node.parent_id or "")
            if parent is None:
                break
            node = parent
        return TerritoryLevels(
            rule, chain.get(LEVEL_REGION), chain.get(LEVEL_COUNTY), chain.get(LEVEL_CITY)
        )


# --- intake ----------------------------------------------------------------------------------


def batch_digest(batch: ForecastBatch) -> str:
    """sha256 of the batch's canonical content, independent of submission order, whitespace
    and number spelling."""
    ordered = sorted(batch.submissions, key=lambda s: s.identity())
    return hashlib.sha256(canonical_json([s.model_dump() for s in ordered])).hexdigest()


def forecast_id(submission: ForecastSubmission) -> str:
    """A stable id of the submission's identity (salesRep in lower case, territory, month,
    category)."""
    text = json.dumps(list(submission.identity()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class ForecastIntake:
    """Accepts forecast batches into bronze (built once by ``shared.wiring``)."""

    bronze: BronzeWriter
    markers: IntakeMarkers
    territories: Callable[[], TerritoryMap]
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def accept(self, batch: ForecastBatch) -> ForecastAccepted:
        """Store a validated batch in bronze once and answer with its id and count.

        A replay (same content) gets the same answer and writes nothing new.
        """
        digest = batch_digest(batch)
        batch_id = digest[:32]
        answer = ForecastAccepted(batch_id=batch_id, accepted=len(batch.submissions))
        claim = self.markers.claim(FORECAST_ENTITY, digest, self.clock())
        if claim.done:
            log.info("forecast batch %s is a replay; nothing written", batch_id)
            return answer
        resolver = self._resolver()
        records = [
            self._record(s, batch_id, claim.received_at, resolver) for s in batch.submissions
        ]
        try:
            page = self.bronze.write_page(
                QUOTING_TOOL, FORECAST_ENTITY, f"fc-{digest[:40]}", 0, records
            )
            created = page.created
        except BronzeConflictError:
            # An earlier attempt stored this batch the same day with the territory hierarchy
            # as it was then; that copy stands (the submissions are the same).
            created = False
        self.markers.complete(FORECAST_ENTITY, digest, pages=1, records=len(records))
        log.info(
            "forecast batch %s: %d submission(s) %s",
            batch_id,
            len(records),
            "stored" if created else "already stored",
        )
        return answer

    def _resolver(self) -> TerritoryResolver | None:
        try:
            return TerritoryResolver(self.territories())
        except HubError as exc:
            # Intake never fails because Dataverse is slow; the rows carry rule "pending".
            log.warning("territory hierarchy unavailable at forecast intake: %s", exc)
            return None

    def _record(
        self,
        submission: ForecastSubmission,
        batch_id: str,
        received_at: dt.datetime,
        resolver: TerritoryResolver | None,
    ) -> dict[str, Any]:
        levels = (
            resolver.resolve(submission.territory)
            if resolver is not None
            else TerritoryLevels("pending")
        )
        record: dict[str, Any] = submission.model_dump(mode="json", by_alias=True)
        record.update(
            {
                "hubForecastId": forecast_id(submission),
                "hubBatchId": batch_id,
                "hubReceivedAt": format_instant(received_at),
                "hubMonthStart": f"{submission.month}-01",
                "hubCurrency": FORECAST_CURRENCY,
                "hubTerritoryRule": levels.rule,
                "hubRegion": levels.region,
                "hubCounty": levels.county,
                "hubCity": levels.city,
                # A forecast is for a territory, never for a single ZIP code.
                "hubZip": None,
            }
        )
        return record


# --- the lake job ----------------------------------------------------------------------------


@dataclass
class IngestState:
    """A ``lake_ingest`` watermark: every bronze page last modified before ``horizon`` has been
    ingested, and so have the pages in ``seen`` (name digest -> last modified) after it."""

    horizon: dt.datetime | None = None
    seen: dict[str, dt.datetime] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | None) -> IngestState:
        """The state stored as ``value`` (None: never ran)."""
        if not value:
            return cls()
        body = json.loads(value)
        horizon = dt.datetime.fromisoformat(body["horizon"]).astimezone(dt.UTC)
        seen = {
            str(k): dt.datetime.fromisoformat(v).astimezone(dt.UTC)
            for k, v in dict(body.get("seen") or {}).items()
        }
        return cls(horizon, seen)

    def dump(self) -> str:
        """The stored form (compact JSON)."""
        if self.horizon is None:
            raise ValueError("an ingest state without a horizon is not stored")
        return json.dumps(
            {
                "horizon": self.horizon.isoformat(),
                "seen": {k: v.isoformat() for k, v in sorted(self.seen.items())},
            },
            separators=(",", ":"),
        )


def page_digest(name: str) -> str:
    """Short stable digest of a bronze blob name, as remembered in the watermark."""
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()


@dataclass
class EntityIngest:
    """What one ``lake_ingest`` run did for one Quoting Tool bronze entity."""

    entity: str
    silver_table: str
    pages: int = 0
    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    watermark_advanced: bool = False


def ingest_quoting_tool(
    storage: LakeStorage,
    watermarks: WatermarkPort,
    *,
    specs: Iterable[EntitySpec] | None = None,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> list[EntityIngest]:
    """MERGE the Quoting Tool's new bronze pages (forecasts, archive, quotes) into silver.

    Per entity: list the bronze partitions since the watermark, read every page not ingested
    yet, conform and MERGE them in one stage, append the run log, then advance the watermark
    (ETag-guarded; an overlapping run that advanced it first covered the same pages, which the
    idempotent MERGE makes harmless). An idle run reads no page and writes nothing.
    """
    run_id = f"{clock():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    return [
        _ingest_entity(storage, watermarks, spec, run_id, clock)
        for spec in (specs if specs is not None else QUOTING_TOOL_SPECS.values())
    ]


def _ingest_entity(
    storage: LakeStorage,
    watermarks: WatermarkPort,
    spec: EntitySpec,
    run_id: str,
    clock: Callable[[], dt.datetime],
) -> EntityIngest:
    result = EntityIngest(spec.entity, spec.table)
    wm_key = f"{spec.source}.{spec.entity}"
    value, etag = watermarks.read(LAKE_JOB, wm_key)
    state = IngestState.parse(value)
    started = clock()
    candidates, requests = _new_pages(storage, spec, state, started)
    if candidates:
        reader = BronzeReader(storage)
        stage = SilverStage(storage, spec)
        # Quotes come one page per accepted revision, so a backlog is many small blobs: read a
        # few at a time. The order pages are staged in does not matter (the MERGE orders
        # versions itself); map keeps the listing's order anyway.
        with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
            for page in pool.map(reader.read_page, [name for _, name in candidates]):
                requests += 1
                stage.add(page.records, page)
                result.pages += 1
                result.records += len(page.records)
        counts = stage.commit()
        result.inserted, result.updated = counts.inserted, counts.updated
        result.unchanged, result.quarantined = counts.unchanged, counts.quarantined
        record_runs(
            storage,
            [
                RunRecord(
                    run_id=run_id,
                    source=spec.source,
                    entity=spec.entity,
                    silver_table=spec.table,
                    started_at=started,
                    finished_at=clock(),
                    records_read=result.records,
                    bronze_pages=result.pages,
                    silver_inserted=counts.inserted,
                    silver_updated=counts.updated,
                    silver_unchanged=counts.unchanged,
                    quarantined=counts.quarantined,
                    requests=requests,
                    max_source_modified_at=counts.max_source_modified_at,
                    watermark=None,
                )
            ],
        )
    horizon = started - LISTING_SKEW
    idle_and_recent = (
        not candidates and state.horizon is not None and horizon - state.horizon < HORIZON_REFRESH
    )
    if idle_and_recent:
        return result
    new_state = _advanced(state, horizon, candidates)
    try:
        watermarks.advance(LAKE_JOB, wm_key, new_state.dump(), etag, run_id=run_id)
        result.watermark_advanced = True
    except WatermarkConflictError:
        log.info("lake_ingest %s: watermark advanced by an overlapping run", wm_key)
    log.info(
        "lake_ingest %s: %d page(s), %d record(s), %d inserted, %d updated, %d quarantined",
        wm_key,
        result.pages,
        result.records,
        result.inserted,
        result.updated,
        result.quarantined,
    )
    return result


def _new_pages(
    storage: LakeStorage, spec: EntitySpec, state: IngestState, now: dt.datetime
) -> tuple[list[tuple[dt.datetime, str]], int]:
    """(last modified, name) of pages not ingested yet, oldest first, and the listings made."""
    from azure.core.exceptions import ResourceNotFoundError

    base = f"{spec.source}/{spec.entity}/"
    if state.horizon is None:
        prefixes = [base]
    else:
        # Blob names carry the writer's date; a day either side covers clocks near midnight.
        first = (state.horizon - dt.timedelta(days=1)).date()
        last = (now + dt.timedelta(days=1)).date()
        days = (last - first).days
        prefixes = [
            f"{base}ingest_date={(first + dt.timedelta(days=d)).isoformat()}/"
            for d in range(days + 1)
        ]
    client = storage.blob_service.get_container_client(storage.container("bronze"))
    found: list[tuple[dt.datetime, str]] = []
    try:
        for prefix in prefixes:
            for item in client.list_blobs(name_starts_with=prefix):
                try:
                    parse_blob_name(item.name)
                except ValueError:
                    continue
                modified = item.last_modified.astimezone(dt.UTC)
                if state.horizon is not None and modified < state.horizon:
                    continue
                if page_digest(item.name) in state.seen:
                    continue
                found.append((modified, item.name))
    except ResourceNotFoundError:
        return [], len(prefixes)  # no bronze container yet: nothing was ever received
    return sorted(found), len(prefixes)


def _advanced(
    state: IngestState, horizon: dt.datetime, ingested: Iterable[tuple[dt.datetime, str]]
) -> IngestState:
    new_horizon = max(horizon, state.horizon) if state.horizon is not None else horizon
    seen: Mapping[str, dt.datetime] = {
        **state.seen,
        **{page_digest(name): modified for modified, name in ingested},
    }
    kept = sorted(
        ((k, v) for k, v in seen.items() if v >= new_horizon), key=lambda kv: kv[1], reverse=True
    )[:MAX_REMEMBERED_PAGES]
    return IngestState(new_horizon, dict(kept))
