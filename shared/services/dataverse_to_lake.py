"""Flow 7: Dataverse change tracking into the lake (the hub's stand-in for Synapse Link).

For each table of ``EXPORT_TABLES`` (those with change tracking enabled: accounts, products,
productpricelevels, opportunities, goals, quotes, salesorders, salesorderdetails):

1. read the table's delta link from ``WatermarkStore`` (job ``dataverse-export``, entity = the
   entity set); none means a full read;
2. read the changes page by page (``Prefer: odata.track-changes``); every non-empty page goes to
   bronze as it arrives (source ``dataverse``, entity = the entity set) and into a silver stage;
3. one silver commit per table (``SilverStage``: conformance, quarantine, MERGE by primary id);
4. only then save the new delta link, ETag-guarded.

Deletions come back as ``$deletedEntity`` entries and become soft deletes in silver
(``is_deleted``, ``deleted_at``; the last known values are kept). An expired or unknown token
(0x80044352, ``DeltaTokenExpired``) means a full read: the MERGE absorbs the re-read (same version,
same content: nothing changes), and because deletions that happened while the token was dead are
lost with it, every silver row the full read no longer returns is soft-deleted. Those inferred
deletions are written to bronze like received ones, with ``"reason": "absent-from-full-sync"``,
so bronze still explains every silver row and ``reprocess_from_bronze`` reproduces it. The first
read of a table (no token) is a full read too, and reconciles the same way.

Bronze keeps the records as the client received them, with one adaptation: ``DataverseClient``
parses JSON numbers with a fraction as ``Decimal`` (money must never be a float) and the bronze
encoder refuses ``Decimal``, so those numbers are stored as their exact decimal text
(``12500.5`` → ``"12500.5"``); silver's ``decimal`` kind reads either form. Deletion entries are
rebuilt in their documented shape, since the client hands over only their ids.

Versions are ordered by ``source_modified_at``: Dataverse's ``modifiedon`` (whole seconds) refined
within its second by when the hub saw the version, ``min(ingested_at, modifiedon + 999,999 µs)``.
A later version of a row is always seen after the earlier one, so two changes in the same second
still order correctly, and a re-read of an unchanged version (seen a second or more after it was
made) gets the same stamp and changes nothing. A deletion is stamped with its ingestion time, after
every version seen before it.

Echoes: rows the hub itself wrote (flow 6, the quote push) are exported too — the lake wants
everything — and ``modified_by`` (``_modifiedby_value``) records who made each version, so later
flows can suppress their own echoes.

Snapshots: ``territories`` and ``contoso_postalcodes`` are not change-tracked
(``docs/dataverse-schema.md``), yet gold needs the territory hierarchy and the ZIP -> City/ZIP
territory map to place goals and orders the way the hub assigns territories. They are small (a few
hundred territories, a few thousand ZIP codes), so each run reads them in full
(``SNAPSHOT_TABLES``) and compares every row's ``versionnumber`` with the live silver row's: only
new or changed rows, and live silver rows the read no longer returns (inferred deletions,
``"reason": "absent-from-full-sync"``), go to bronze and silver. An unchanged snapshot writes
nothing; silver itself is the snapshot's state, so no token is kept for it.

Tables are independent: a failing table is logged and the others still run; the run then raises
``ExportIncomplete`` so the host records the failure, with the failed tables' tokens untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from shared.adapters.dataverse import ChangePage, DeltaTokenExpired
from shared.errors import HubError
from shared.lake.bronze import BronzePage, BronzeWriter
from shared.lake.delta import open_table
from shared.lake.runs import RunRecord, record_runs
from shared.lake.silver import SilverStage
from shared.lake.specs import (
    INGESTED_AT,
    IS_DELETED,
    Column,
    EntitySpec,
    dataverse_deletions,
    json_spec,
)
from shared.lake.storage import LakeStorage
from shared.ports import WatermarkPort
from shared.services.poll_mainframe import new_run_id

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)

JOB = "dataverse-export"
SOURCE = "dataverse"
MODIFIED = "source_modified_at"
MODIFIED_ON = "modified_on"
MODIFIED_BY = "modified_by"
RESYNC_REASON = "absent-from-full-sync"
_WITHIN_SECOND = 999_999


class ChangeSource(Protocol):
    """What the export needs of ``DataverseClient``."""

    base: str

    def iter_changes(
        self,
        entity_set: str,
        select: Sequence[str],
        delta_link: str | None = None,
        *,
        page_size: int | None = None,
    ) -> Iterator[ChangePage]:
        """Pages of changes since ``delta_link`` (everything when None)."""
        ...

    def query(
        self,
        entity_set: str,
        *,
        select: Sequence[str] | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row of ``entity_set`` (a plain read, following the paging links)."""
        ...


def order_versions(frame: pl.DataFrame) -> pl.DataFrame:
    """Refine ``source_modified_at`` within its second by when the version was seen.

    ``min(ingested_at, modifiedon + 999,999 µs)`` for rows; deletions keep their stamp (the
    ingestion time). Deterministic: it reads only the row's own values and lineage.
    """
    import polars as pl

    refined = pl.min_horizontal(
        pl.col(INGESTED_AT),
        pl.col(MODIFIED_ON) + pl.duration(microseconds=_WITHIN_SECOND),
    )
    return frame.with_columns(
        pl.when(pl.col(IS_DELETED)).then(pl.col(MODIFIED)).otherwise(refined).alias(MODIFIED)
    )


@dataclass(frozen=True)
class ExportTable:
    """A change-tracked Dataverse table and its silver spec (``dataverse_<entity set>``)."""

    entity_set: str
    primary_key: str
    spec: EntitySpec

    @property
    def select(self) -> tuple[str, ...]:
        """The columns requested (``$select``): every raw field the spec's columns read."""
        return tuple(dict.fromkeys(c.field for c in self.spec.columns))


def export_table(entity_set: str, primary_key: str, columns: Sequence[Column]) -> ExportTable:
    """An export of ``entity_set`` keyed by its primary id, with the columns every table has:
    the id, ``modified_on``, ``source_modified_at`` (ordering), ``modified_by`` (echoes) and
    ``version_number`` (the row version behind its ETag)."""
    common = (
        Column(primary_key, primary_key, "id"),
        Column(MODIFIED_ON, "modifiedon", "iso_timestamp"),
        Column(MODIFIED, "modifiedon", "iso_timestamp"),
        Column(MODIFIED_BY, "_modifiedby_value", "id"),
        Column("version_number", "versionnumber", "int"),
    )
    spec = json_spec(
        f"dataverse_{entity_set}",
        source=SOURCE,
        entity=entity_set,
        key=[primary_key],
        modified=MODIFIED,
        columns=[*common, *columns],
        soft_delete=dataverse_deletions(primary_key),
        transform=order_versions,
    )
    return ExportTable(entity_set, primary_key, spec)


def _lookup(column: str) -> Column:
    """A lookup's id, read as ``_<column>_value``."""
    return Column(column, f"_{column}_value", "id")


def _text(*names: str) -> list[Column]:
    return [Column(name, name, "text") for name in names]


def _ints(*names: str) -> list[Column]:
    return [Column(name, name, "int") for name in names]


def _money(*names: str) -> list[Column]:
    return [Column(name, name, "decimal", scale=2) for name in names]


_STATE = _ints("statecode", "statuscode")
PRODUCT_FAMILIES = (("100000000", "RTU"), ("100000001", "Chiller"), ("100000002", "AHU"))

EXPORT_TABLES: tuple[ExportTable, ...] = (
    export_table(
        "accounts",
        "accountid",
        [
            *_text(
                "accountnumber",
                "name",
                "address1_city",
                "address1_county",
                "address1_stateorprovince",
                "address1_postalcode",
                "address1_country",
            ),
            *_STATE,
            *_ints("contoso_creditstatus"),
            _lookup("primarycontactid"),
            _lookup("transactioncurrencyid"),
        ],
    ),
    export_table(
        "products",
        "productid",
        [
            *_text("productnumber", "name"),
            Column("product_family", "contoso_productfamily", "code", codes=PRODUCT_FAMILIES),
            *_STATE,
            *_money("price", "standardcost"),
            _lookup("defaultuomid"),
            _lookup("transactioncurrencyid"),
        ],
    ),
    export_table(
        "productpricelevels",
        "productpricelevelid",
        [
            *_text("contoso_pricekey", "contoso_approvedby"),
            *_money("amount"),
            Column("contoso_approvedon", "contoso_approvedon", "iso_timestamp"),
            _lookup("pricelevelid"),
            _lookup("productid"),
            _lookup("uomid"),
            _lookup("transactioncurrencyid"),
        ],
    ),
    export_table(
        "opportunities",
        "opportunityid",
        [
            *_text("contoso_quotingtoolid", "name"),
            *_money("estimatedvalue"),
            *_ints("closeprobability"),
            Column("estimatedclosedate", "estimatedclosedate", "iso_date"),
            *_STATE,
            _lookup("customerid"),
            _lookup("transactioncurrencyid"),
        ],
    ),
    export_table(
        "goals",
        "goalid",
        [
            *_text("contoso_goalkey", "title", "contoso_month"),
            *_money("targetmoney"),
            Column("goalstartdate", "goalstartdate", "iso_date"),
            Column("goalenddate", "goalenddate", "iso_date"),
            *_STATE,
            _lookup("contoso_territoryid"),
        ],
    ),
    export_table(
        "quotes",
        "quoteid",
        [
            *_text(
                "contoso_quotingtoolid",
                "name",
                "quotenumber",
                "contoso_territorycode",
                "contoso_territoryrule",
                "contoso_salesrep",
            ),
            *_ints("revisionnumber", "closeprobability"),
            *_STATE,
            *_money("totalamount"),
            Column("effectivefrom", "effectivefrom", "iso_timestamp"),
            Column("effectiveto", "effectiveto", "iso_timestamp"),
            _lookup("customerid"),
            _lookup("opportunityid"),
            _lookup("pricelevelid"),
            _lookup("transactioncurrencyid"),
        ],
    ),
    export_table(
        "salesorders",
        "salesorderid",
        [
            *_text(
                "contoso_sapsalesorder",
                "name",
                "ordernumber",
                "contoso_sapstatus",
                "contoso_sapversion",
            ),
            *_money("totalamount"),
            Column("requestdeliveryby", "requestdeliveryby", "iso_date"),
            Column("contoso_confirmed", "contoso_confirmed", "bool"),
            *_STATE,
            _lookup("quoteid"),
            _lookup("customerid"),
            _lookup("opportunityid"),
            _lookup("pricelevelid"),
            _lookup("transactioncurrencyid"),
        ],
    ),
    export_table(
        "salesorderdetails",
        "salesorderdetailid",
        [
            *_text("contoso_saporderitemkey", "productdescription"),
            *_ints("lineitemnumber"),
            Column("quantity", "quantity", "decimal", scale=5),
            *_money("priceperunit", "extendedamount"),
            Column("isproductoverridden", "isproductoverridden", "bool"),
            _lookup("salesorderid"),
            _lookup("productid"),
            _lookup("uomid"),
        ],
    ),
)
"""Every change-tracked table of ``docs/dataverse-schema.md``. ``quotedetails``, ``territories``
and ``contoso_postalcodes`` are not change-tracked there, so they are not exported this way (the
last two are ``SNAPSHOT_TABLES``)."""
EXPORT_TABLES_BY_SET: dict[str, ExportTable] = {t.entity_set: t for t in EXPORT_TABLES}

SNAPSHOT_TABLES: tuple[ExportTable, ...] = (
    export_table(
        "territories",
        "territoryid",
        [
            *_text("contoso_territorycode", "name"),
            *_ints("contoso_level"),
            _lookup("contoso_parentterritoryid"),
        ],
    ),
    export_table(
        "contoso_postalcodes",
        "contoso_postalcodeid",
        [
            *_text("contoso_name", "contoso_city", "contoso_county", "contoso_stateorprovince"),
            _lookup("contoso_territoryid"),
        ],
    ),
)
"""Tables without change tracking that are read in full each run and reconciled with silver by
row version: the territory hierarchy (Region > County > City/ZIP) and the ZIP code -> City/ZIP
territory map, which gold needs to place goals (``forecast_vs_goal``) and orders
(``forecast_accuracy``) as territory assignment places quotes and forecasts."""
SNAPSHOT_PAGE_SIZE = 5000
"""Records per bronze page of a snapshot (Dataverse's own default page size)."""


@dataclass
class TableExportResult:
    """What one export did for one table."""

    entity_set: str
    silver_table: str
    requests: int = 0
    """Change pages requested (not counted for snapshots: the client follows their pages)."""
    upserted: int = 0
    deleted: int = 0
    resync_deleted: int = 0
    full_read: bool = False
    resync: bool = False
    bronze_pages: int = 0
    silver_inserted: int = 0
    silver_updated: int = 0
    silver_unchanged: int = 0
    quarantined: int = 0
    token_saved: bool = False

    @property
    def received(self) -> int:
        """Records written to bronze (received upserts and deletions, inferred deletions)."""
        return self.upserted + self.deleted + self.resync_deleted


@dataclass
class ExportResult:
    """Counts per table of one ``export_dataverse`` run."""

    run_id: str
    tables: dict[str, TableExportResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def received(self) -> int:
        """Records written to bronze over all tables."""
        return sum(t.received for t in self.tables.values())

    def summary(self) -> str:
        """One line with the counts, for the timer's log."""
        changed = [t for t in self.tables.values() if t.received]
        parts = ", ".join(
            f"{t.entity_set}=+{t.upserted}/-{t.deleted + t.resync_deleted}"
            + (" (resync)" if t.resync else "")
            for t in changed
        )
        text = (
            f"dataverse-export {self.run_id}: {self.received} record(s) from "
            f"{len(self.tables)} table(s), {len(changed)} changed" + (f"; {parts}" if parts else "")
        )
        if self.failed:
            text += "; FAILED " + ", ".join(sorted(self.failed))
        return text


class ExportIncomplete(HubError):
    """One or more tables failed; the others were exported and their tokens saved."""

    def __init__(self, result: ExportResult) -> None:
        super().__init__(
            "dataverse-export failed for "
            + "; ".join(f"{name}: {reason}" for name, reason in sorted(result.failed.items()))
        )
        self.result = result


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def export_dataverse(
    client: ChangeSource,
    watermarks: WatermarkPort,
    storage: LakeStorage,
    *,
    tables: Sequence[ExportTable] = EXPORT_TABLES,
    snapshots: Sequence[ExportTable] = SNAPSHOT_TABLES,
    entity_sets: Sequence[str] | None = None,
    page_size: int | None = None,
    run_id: str | None = None,
    clock: Callable[[], dt.datetime] = _now,
) -> ExportResult:
    """Export every table's changes since its saved delta link into bronze and silver, then
    reconcile the ``snapshots`` tables (read in full) with silver.

    ``entity_sets`` restricts the run to some tables. Raises ``ExportIncomplete`` after the
    other tables ran when any table failed (its token stays where it was).
    """
    known = {t.entity_set for t in (*tables, *snapshots)}
    unknown = sorted(set(entity_sets or ()) - known)
    if unknown:
        raise ValueError(f"unknown export tables: {unknown}")
    selected = [
        (table, tracked)
        for group, tracked in ((tables, True), (snapshots, False))
        for table in group
        if entity_sets is None or table.entity_set in entity_sets
    ]
    run = run_id or new_run_id(clock())
    writer = BronzeWriter(storage, clock=clock)
    result = ExportResult(run_id=run)
    runs: list[RunRecord] = []
    for table, tracked in selected:
        started = clock()
        outcome = TableExportResult(table.entity_set, table.spec.table)
        result.tables[table.entity_set] = outcome
        try:
            if tracked:
                committed_at, max_modified = _export_table(
                    client,
                    watermarks,
                    storage,
                    writer,
                    table,
                    result=outcome,
                    run_id=run,
                    page_size=page_size,
                )
            else:
                committed_at, max_modified = _export_snapshot(
                    client, storage, writer, table, result=outcome, run_id=run, page_size=page_size
                )
        except Exception as exc:
            log.exception("dataverse-export %s %s failed", run, table.entity_set)
            result.failed[table.entity_set] = f"{type(exc).__name__}: {exc}"
            continue
        if outcome.received:
            runs.append(
                RunRecord(
                    run_id=run,
                    source=SOURCE,
                    entity=table.entity_set,
                    silver_table=table.spec.table,
                    started_at=started,
                    finished_at=committed_at or clock(),
                    records_read=outcome.received,
                    bronze_pages=outcome.bronze_pages,
                    silver_inserted=outcome.silver_inserted,
                    silver_updated=outcome.silver_updated,
                    silver_unchanged=outcome.silver_unchanged,
                    quarantined=outcome.quarantined,
                    requests=outcome.requests,
                    max_source_modified_at=max_modified,
                    watermark=None,
                )
            )
    record_runs(storage, runs)
    if result.failed:
        log.error("%s", result.summary())
        raise ExportIncomplete(result)
    log.info("%s", result.summary())
    return result


def _export_table(
    client: ChangeSource,
    watermarks: WatermarkPort,
    storage: LakeStorage,
    writer: BronzeWriter,
    table: ExportTable,
    *,
    result: TableExportResult,
    run_id: str,
    page_size: int | None,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    stored, etag = watermarks.read(JOB, table.entity_set)
    link = stored
    if link is not None and not link.startswith(client.base):
        # A token of another environment URL (the environment moved): only a full read is safe.
        log.warning("dataverse-export %s: saved delta link is for another URL", table.entity_set)
        link, result.resync = None, True
    pages = _PageWriter(writer, table.entity_set, run_id, result)
    stage = SilverStage(storage, table.spec)
    try:
        new_link, seen = _read_changes(
            client, table, link, stage=stage, pages=pages, result=result, page_size=page_size
        )
    except DeltaTokenExpired:
        log.warning("dataverse-export %s: delta token expired; full resync", table.entity_set)
        result.resync = True
        stage = SilverStage(storage, table.spec)
        result.upserted = result.deleted = 0
        new_link, seen = _read_changes(
            client, table, None, stage=stage, pages=pages, result=result, page_size=page_size
        )
    if seen is not None:
        absent = absent_ids(storage, table, seen)
        if absent:
            records = [_deletion(client.base, table.entity_set, i, RESYNC_REASON) for i in absent]
            stage.add(records, pages.write(records))
            result.resync_deleted = len(absent)
    counts = stage.commit()
    committed_at = writer.clock() if result.received else None
    result.silver_inserted = counts.inserted
    result.silver_updated = counts.updated
    result.silver_unchanged = counts.unchanged
    result.quarantined = counts.quarantined
    if new_link is not None and new_link != stored:
        watermarks.advance(JOB, table.entity_set, new_link, etag, run_id=run_id)
        result.token_saved = True
    log.info(
        "dataverse-export %s %s: +%d -%d (inferred -%d) in %d request(s); silver +%d ~%d =%d%s",
        run_id,
        table.entity_set,
        result.upserted,
        result.deleted,
        result.resync_deleted,
        result.requests,
        result.silver_inserted,
        result.silver_updated,
        result.silver_unchanged,
        "; full resync" if result.resync else "",
    )
    return committed_at, counts.max_source_modified_at


def _export_snapshot(
    client: ChangeSource,
    storage: LakeStorage,
    writer: BronzeWriter,
    table: ExportTable,
    *,
    result: TableExportResult,
    run_id: str,
    page_size: int | None,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Read a table without change tracking in full; stage what differs from live silver."""
    key = table.primary_key
    rows = list(client.query(table.entity_set, select=table.select, page_size=page_size))
    result.full_read = True
    stored = live_versions(storage, table)
    # -1 is no Dataverse row version, so a row silver does not hold always differs.
    changed = [
        _as_received(row)
        for row in rows
        if stored.get(str(row.get(key)), -1) != _version(row.get("versionnumber"))
    ]
    absent = absent_ids(storage, table, [str(row.get(key)) for row in rows])
    records = changed + [_deletion(client.base, table.entity_set, i, RESYNC_REASON) for i in absent]
    result.upserted, result.resync_deleted = len(changed), len(absent)
    if not records:
        log.info(
            "dataverse-export %s %s: snapshot of %d row(s) unchanged",
            run_id,
            table.entity_set,
            len(rows),
        )
        return None, None
    pages = _PageWriter(writer, table.entity_set, run_id, result)
    stage = SilverStage(storage, table.spec)
    for start in range(0, len(records), SNAPSHOT_PAGE_SIZE):
        chunk = records[start : start + SNAPSHOT_PAGE_SIZE]
        stage.add(chunk, pages.write(chunk))
    counts = stage.commit()
    result.silver_inserted = counts.inserted
    result.silver_updated = counts.updated
    result.silver_unchanged = counts.unchanged
    result.quarantined = counts.quarantined
    log.info(
        "dataverse-export %s %s: snapshot of %d row(s): +%d changed, -%d gone; silver +%d ~%d =%d",
        run_id,
        table.entity_set,
        len(rows),
        len(changed),
        len(absent),
        counts.inserted,
        counts.updated,
        counts.unchanged,
    )
    return writer.clock(), counts.max_source_modified_at


def _version(value: Any) -> int | None:
    """A row version as an int (Dataverse sends ``versionnumber`` as a JSON number)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def live_versions(storage: LakeStorage, table: ExportTable) -> dict[str, int | None]:
    """Live silver rows of ``table``: primary id -> ``version_number``."""
    import polars as pl

    if open_table(storage, "silver", table.spec.table) is None:
        return {}
    key = table.primary_key
    live = (
        pl.scan_delta(
            storage.table_uri("silver", table.spec.table),
            storage_options=storage.storage_options(),
        )
        .filter(~pl.col(IS_DELETED).fill_null(False))
        .select(key, "version_number")
        .collect()
    )
    return {
        str(row_id): None if version is None else int(version)
        for row_id, version in live.iter_rows()
    }


@dataclass
class _PageWriter:
    """Numbers a table's bronze pages across the attempts of one run."""

    writer: BronzeWriter
    entity_set: str
    run_id: str
    result: TableExportResult
    n: int = 0

    def write(self, records: Sequence[Mapping[str, Any]]) -> BronzePage:
        """Write the next page of this table's run."""
        page = self.writer.write_page(SOURCE, self.entity_set, self.run_id, self.n, records)
        self.n += 1
        self.result.bronze_pages += 1
        return page


def _read_changes(
    client: ChangeSource,
    table: ExportTable,
    delta_link: str | None,
    *,
    stage: SilverStage,
    pages: _PageWriter,
    result: TableExportResult,
    page_size: int | None,
) -> tuple[str | None, list[str] | None]:
    """Stream the changes into bronze and the stage: (new delta link, ids seen if a full read)."""
    full = delta_link is None
    result.full_read = full
    seen: list[str] | None = [] if full else None
    new_link: str | None = None
    for page in client.iter_changes(
        table.entity_set, table.select, delta_link, page_size=page_size
    ):
        result.requests += 1
        records = [_as_received(entry) for entry in page.upserted]
        records += [_deletion(client.base, table.entity_set, i, "deleted") for i in page.deleted]
        result.upserted += len(page.upserted)
        result.deleted += len(page.deleted)
        if seen is not None:
            seen.extend(str(entry.get(table.primary_key)) for entry in page.upserted)
        if records:
            stage.add(records, pages.write(records))
        new_link = page.delta_link or new_link
    return new_link, seen


def absent_ids(storage: LakeStorage, table: ExportTable, seen: Sequence[str]) -> list[str]:
    """Live silver ids a full read did not return (deleted while no token covered them)."""
    import polars as pl

    if open_table(storage, "silver", table.spec.table) is None:
        return []
    key = table.primary_key
    live = (
        pl.scan_delta(
            storage.table_uri("silver", table.spec.table),
            storage_options=storage.storage_options(),
        )
        .filter(~pl.col(IS_DELETED).fill_null(False))
        .select(key)
    )
    returned = pl.LazyFrame({key: list(seen)}, schema={key: pl.String})
    absent = live.join(returned, on=key, how="anti").sort(key).collect()
    return [str(v) for v in absent.get_column(key).to_list()]


def _as_received(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry for bronze: exact decimals as their text (the bronze encoder refuses Decimal)."""
    return {k: format(v, "f") if isinstance(v, Decimal) else v for k, v in entry.items()}


def _deletion(base: str, entity_set: str, row_id: str, reason: str) -> dict[str, Any]:
    """A ``$deletedEntity`` entry in the shape change tracking sends it."""
    return {
        "@odata.context": f"{base}$metadata#{entity_set}/$deletedEntity",
        "id": row_id,
        "reason": reason,
    }
