"""Silver: typed, conformed entities MERGEd by business key, latest source version wins.

Per entity (``shared.lake.specs.EntitySpec``) there is one Delta table in the silver container.
Records are conformed page by page with vectorised polars expressions (no per-record Python), the
invalid ones go to the ``quarantine`` table with their reasons and bronze location, and the valid
ones are staged and MERGEd once per run:

1. within the batch, each key keeps its newest version (the spec's version number if it has one,
   then source modified time, then content hash as a deterministic tie-break), so a batch never
   holds two versions of one key;
2. the MERGE updates a target row only when the source version is newer by the same ordering, so
   an older or identical version never overwrites the stored one, whatever order batches arrive
   in; a re-read of an unchanged record changes nothing and commits nothing (a spec's
   ``earliest`` columns keep the smallest value any version carried, by the same rule);
3. a lost commit race is retried with bounded backoff (``shared.lake.delta.with_commit_retry``).

The quarantine table is MERGEd too, keyed by (table, content hash): re-reading the same bad record
(overlap windows, re-runs) records it once.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.lake.bronze import BronzePage, BronzePageData, BronzeReader, canonical_json
from shared.lake.delta import create_with_rows, ensure_table, open_table, with_commit_retry
from shared.lake.specs import (
    BRONZE_PATH,
    CONTENT_HASH,
    DELETED_AT,
    INGESTED_AT,
    IS_DELETED,
    LINEAGE_COLUMNS,
    PREPARE_ERROR,
    RUN_ID,
    Column,
    EntitySpec,
)
from shared.lake.storage import LakeStorage

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

log = logging.getLogger(__name__)

QUARANTINE_TABLE = "quarantine"
DEFAULT_MAX_STAGED_ROWS = 100_000
"""Above this many staged valid rows a stage MERGEs early, bounding a run's memory."""

_ROW = "__row"
_REASON = "__reason"
_RECORD = "__record"
_KEY = "__key"
_DELETED = "__deleted"


@dataclass
class MergeCounts:
    """What one or more MERGEs did to a silver table and the quarantine."""

    received: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    quarantine_new: int = 0
    commits: int = 0
    max_source_modified_at: dt.datetime | None = None

    def add(self, other: MergeCounts) -> None:
        """Accumulate ``other`` into this."""
        self.received += other.received
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.quarantined += other.quarantined
        self.quarantine_new += other.quarantine_new
        self.commits += other.commits
        if other.max_source_modified_at is not None and (
            self.max_source_modified_at is None
            or other.max_source_modified_at > self.max_source_modified_at
        ):
            self.max_source_modified_at = other.max_source_modified_at


# --- Conformance -------------------------------------------------------------------------------


def raw_frame(spec: EntitySpec, records: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """The spec's raw fields as strings, one row per record, in order.

    Records go through the spec's ``prepare`` first, when it has one. Missing fields are null. Scalars are read as their JSON text; a nested value (which no spec
    field expects) becomes its canonical JSON, so it fails the column's parse and is quarantined.
    """
    import polars as pl

    if spec.prepare is not None:
        records = [spec.prepare(r) for r in records]
    schema = dict.fromkeys(spec.raw_fields, pl.String)
    try:
        return pl.DataFrame(records, schema=schema, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        # Rare: some value is a dict or list. Normalise those rows in Python, then retry.
        rows = [
            {f: _scalar_text(r.get(f)) for f in spec.raw_fields if r.get(f) is not None}
            for r in records
        ]
        return pl.DataFrame(rows, schema=schema, strict=False)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    return canonical_json({"v": value})[5:-1]


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    import polars as pl

    trimmed = expr.str.strip_chars()
    return pl.when(trimmed == "").then(None).otherwise(trimmed)


def _decimal_of_unscaled(expr: pl.Expr, precision: int, scale: int) -> pl.Expr:
    """Unscaled integer -> decimal(precision, scale), exactly (no float on the way)."""
    import polars as pl

    step = pl.lit(decimal.Decimal(1).scaleb(-scale), dtype=pl.Decimal(38, scale))
    return (expr.cast(pl.Decimal(38, 0)) * step).cast(pl.Decimal(precision, scale), strict=False)


def _parse(column: Column, value: pl.Expr) -> tuple[pl.Expr, pl.Expr, str]:
    """(typed value, well-formed?, reason prefix) for one column's trimmed raw value."""
    import polars as pl

    kind = column.kind
    if kind in ("id", "text"):
        return value, pl.lit(True), "bad value"
    if kind == "int":
        ok = value.str.contains(r"^[+-]?\d{1,18}$")
        return value.cast(pl.Int64, strict=False), ok, "bad number"
    if kind == "legacy_date":
        ok = value.str.contains(r"^\d{8}$")
        zero = value == "00000000"
        parsed = value.str.strptime(pl.Date, "%Y%m%d", strict=False)
        return pl.when(zero).then(None).otherwise(parsed), ok, "bad date"
    if kind == "legacy_timestamp":
        ok = value.str.contains(r"^\d{14}$")
        parsed = value.str.strptime(pl.Datetime("us", "UTC"), "%Y%m%d%H%M%S", strict=False)
        return parsed, ok, "bad timestamp"
    if kind == "implied_decimal":
        ok = value.str.contains(r"^[+-]?\d{1,18}$")
        unscaled = value.cast(pl.Int64, strict=False)
        return _decimal_of_unscaled(unscaled, column.precision, column.scale), ok, "bad number"
    if kind == "decimal":
        # Extra decimals must be zeros: money is refused, never rounded or truncated.
        ok = value.str.contains(rf"^[+-]?\d+(\.\d{{0,{column.scale}}}0*)?$")
        parsed = value.cast(pl.Decimal(column.precision, column.scale), strict=False)
        return parsed, ok, "bad number"
    if kind == "code":
        mapped = value.replace_strict(dict(column.codes), default=None, return_dtype=pl.String)
        return mapped, pl.lit(True), "unknown"
    if kind == "iso_date":
        ok = value.str.contains(r"^\d{4}-\d{2}-\d{2}$")
        return value.str.strptime(pl.Date, "%Y-%m-%d", strict=False), ok, "bad date"
    if kind == "iso_timestamp":
        ok = value.str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
        aware = value.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f%#z", time_unit="us", time_zone="UTC", strict=False
        )
        naive = value.str.to_datetime(
            "%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False
        ).dt.replace_time_zone("UTC")
        return pl.coalesce(aware, naive), ok, "bad timestamp"
    if kind == "bool":
        lowered = value.str.to_lowercase()
        mapped = lowered.replace_strict(
            {"true": True, "false": False}, default=None, return_dtype=pl.Boolean
        )
        return mapped, pl.lit(True), "bad boolean"
    raise ValueError(f"unknown column kind {kind!r}")


@functools.cache
def silver_schema(spec: EntitySpec) -> pa.Schema:
    """The Arrow schema of a spec's silver table (spec columns, then system columns)."""
    schema = (
        conform(spec, raw_frame(spec, []), bronze_path="", run_id="", ingested_at=_EPOCH)[0]
        .to_arrow()
        .schema
    )
    missing = [c for c in spec.earliest if c not in schema.names]
    if missing:
        raise ValueError(f"spec {spec.table}: 'earliest' columns not produced: {missing}")
    return schema


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def attach_lineage(
    raw: pl.DataFrame,
    *,
    bronze_path: str,
    run_id: str,
    ingested_at: dt.datetime,
    content_hashes: Sequence[str] | None = None,
    record_texts: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Add a page's lineage columns (and optionally each record's raw JSON) to its raw frame."""
    import polars as pl

    # Eager Series and hstack: no query plan per page (a with_columns would build and run one).
    n = raw.height

    def constant(name: str, value: object, dtype: pl.DataType) -> pl.Series:
        return pl.Series(name, [value], dtype=dtype).new_from_index(0, n)

    columns = [
        constant(BRONZE_PATH, bronze_path, pl.String()),
        constant(RUN_ID, run_id, pl.String()),
        constant(INGESTED_AT, ingested_at, pl.Datetime("us", "UTC")),
        pl.Series(CONTENT_HASH, list(content_hashes), dtype=pl.String)
        if content_hashes is not None
        else constant(CONTENT_HASH, None, pl.String()),
    ]
    if record_texts is not None:
        columns.append(pl.Series(_RECORD, list(record_texts), dtype=pl.String))
    return raw.hstack(columns)


def conform(
    spec: EntitySpec,
    raw: pl.DataFrame,
    *,
    bronze_path: str,
    run_id: str,
    ingested_at: dt.datetime,
    content_hashes: Sequence[str] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Type and check one page's ``raw`` frame (from ``raw_frame``): (valid rows, rejected rows).

    Rejected rows carry ``reason`` (every problem found, ``; ``-separated), the business key as
    received and the row's position in ``raw`` (``__row``), so callers can attach the record.
    """
    framed = attach_lineage(
        raw,
        bronze_path=bronze_path,
        run_id=run_id,
        ingested_at=ingested_at,
        content_hashes=content_hashes,
    )
    return conform_frame(spec, framed)


def conform_frame(spec: EntitySpec, framed: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``conform`` over raw rows that already carry their lineage (any number of pages at once).

    One lazy plan, collected once: the per-call overhead of polars is paid per batch, not per
    page. When the frame has each record's raw JSON (``attach_lineage(record_texts=...)``),
    rejected rows carry it as ``record``.
    """
    import polars as pl

    frame = framed.lazy().with_row_index(_ROW)
    soft = spec.soft_delete
    if soft is None:
        deleted = pl.lit(False)
    else:
        marker = pl.col(soft.field)
        matched = (
            marker == soft.equals
            if soft.equals is not None
            else marker.str.ends_with(soft.endswith or "")
        )
        deleted = matched.fill_null(False)
    alternate_keys = dict(soft.key_fields) if soft is not None else {}

    typed: list[pl.Expr] = []
    # A record its spec's prepare could not read says why, instead of listing missing fields.
    reasons: list[pl.Expr] = [pl.col(PREPARE_ERROR)] if spec.prepare is not None else []
    unreadable = pl.col(PREPARE_ERROR).is_not_null() if spec.prepare is not None else pl.lit(False)
    key_text: list[pl.Expr] = []
    # Why in steps: the deletion marker and each column's trimmed value, parse and
    # well-formedness are used by up to five expressions below (typed value, bad, missing,
    # positive, key), and polars evaluated them once per use (the plan took four times as long
    # as its parts). Computing them once into temporary columns first, then referring to those,
    # gives the same values.
    frame = frame.with_columns(deleted.alias(_DELETED))
    deleted = pl.col(_DELETED)
    parts: list[pl.Expr] = []
    temporary: list[str] = [_DELETED]
    for index, column in enumerate(spec.columns):
        if column.kind == "ingested":
            # Lineage, not a raw value: always present, nothing to check.
            typed.append(pl.col(INGESTED_AT).alias(column.name))
            continue
        source = pl.col(column.field)
        if column.name in alternate_keys:
            source = pl.coalesce(pl.when(deleted).then(pl.col(alternate_keys[column.name])), source)
        value_expr = _blank_to_null(source)
        parsed_expr, well_formed_expr, label = _parse(column, value_expr)
        names = (f"__value{index}", f"__parsed{index}", f"__ok{index}")
        parts += [
            value_expr.alias(names[0]),
            parsed_expr.alias(names[1]),
            well_formed_expr.alias(names[2]),
        ]
        temporary += names
        value, parsed, well_formed = (pl.col(name) for name in names)
        if column.kind == "legacy_date":
            present = value.is_not_null() & (value != "00000000")
        else:
            present = value.is_not_null()
        bad = present & (~well_formed | parsed.is_null())
        checks = [
            pl.when(bad).then(
                pl.concat_str(pl.lit(f"{label} {column.field}='"), value, pl.lit("'"))
            )
        ]
        is_key = column.name in spec.key
        if is_key:
            # The key as received, computed before the typed column may replace a same-named
            # raw field.
            key_text.append(value.cast(pl.String).fill_null(""))
        if spec.is_required(column):
            missing = ~present & ~unreadable
            # A deletion carries its key and nothing else: only the key is required of it.
            if not is_key:
                missing = missing & ~deleted
            checks.append(pl.when(missing).then(pl.lit(f"missing {column.field}")))
        if column.positive:
            checks.append(
                pl.when(~bad & parsed.is_not_null() & (parsed <= 0)).then(
                    pl.concat_str(pl.lit(f"non-positive {column.field}='"), value, pl.lit("'"))
                )
            )
        reasons.extend(checks)
        typed.append(pl.when(bad).then(None).otherwise(parsed).alias(column.name))

    ingested = pl.col(INGESTED_AT)
    deleted_at: pl.Expr = pl.when(deleted).then(ingested)
    if soft is not None and soft.deleted_at_field:
        stamp, _, _ = _parse(
            Column(DELETED_AT, soft.deleted_at_field, "iso_timestamp"),
            _blank_to_null(pl.col(soft.deleted_at_field)),
        )
        deleted_at = pl.when(deleted).then(pl.coalesce(stamp, ingested))

    reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
    plan = frame.with_columns(*parts).with_columns(
        *typed,
        deleted.alias(IS_DELETED),
        deleted_at.cast(pl.Datetime("us", "UTC")).alias(DELETED_AT),
        reason.alias(_REASON),
        pl.concat_str(key_text, separator="|").alias(_KEY),
    )
    if soft is not None:
        # A deletion without a modified time is ordered by when it was received.
        plan = plan.with_columns(
            pl.when(pl.col(IS_DELETED))
            .then(pl.coalesce(pl.col(spec.modified), pl.col(DELETED_AT)))
            .otherwise(pl.col(spec.modified))
            .alias(spec.modified)
        )
    staged = plan.collect().drop(temporary)
    invalid = pl.col(_REASON).is_not_null() & (pl.col(_REASON) != "")
    silver_columns = [c.name for c in spec.columns] + [IS_DELETED, DELETED_AT, *LINEAGE_COLUMNS]
    valid = staged.filter(~invalid).select(silver_columns)
    if spec.transform is not None:
        valid = spec.transform(valid)
    rejected = staged.filter(invalid).select(
        pl.lit(spec.source).alias("source"),
        pl.lit(spec.entity).alias("entity"),
        pl.lit(spec.table).alias("silver_table"),
        pl.col(_KEY).alias("business_key"),
        pl.col(_REASON).alias("reason"),
        *[pl.col(c) for c in LINEAGE_COLUMNS],
        pl.col(_RECORD).alias("record") if _RECORD in staged.columns else pl.col(_ROW),
    )
    return valid, rejected


def latest_per_key(spec: EntitySpec, frame: pl.DataFrame) -> pl.DataFrame:
    """One row per business key: the newest by (version, modified time, content hash),
    deterministically; ``earliest`` columns carry the smallest value of the key's versions."""
    import polars as pl

    order = [*spec.key, *spec.ordering, CONTENT_HASH]
    descending = [False] * len(spec.key) + [True] * (len(spec.ordering) + 1)
    latest = frame.sort(order, descending=descending, nulls_last=True).unique(
        subset=list(spec.key), keep="first", maintain_order=True
    )
    if not spec.earliest or latest.height == frame.height:
        return latest
    first = frame.group_by(list(spec.key)).agg(pl.col(c).min() for c in spec.earliest)
    columns = latest.columns
    return (
        latest.drop(list(spec.earliest)).join(first, on=list(spec.key), how="left").select(columns)
    )


# --- Quarantine ----------------------------------------------------------------------------------


def quarantine_schema() -> pa.Schema:
    """source, entity, silver_table, business_key, reason, lineage columns, record (raw JSON)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("source", pa.string()),
            ("entity", pa.string()),
            ("silver_table", pa.string()),
            ("business_key", pa.string()),
            ("reason", pa.string()),
            (BRONZE_PATH, pa.string()),
            (RUN_ID, pa.string()),
            (CONTENT_HASH, pa.string()),
            (INGESTED_AT, pa.timestamp("us", tz="UTC")),
            ("record", pa.string()),
        ]
    )


def merge_quarantine(storage: LakeStorage, rejected: pl.DataFrame) -> int:
    """Record rejected rows once per (table, content hash); returns how many were new."""
    if rejected.height == 0:
        return 0
    schema = quarantine_schema()
    source = rejected.unique(
        subset=["silver_table", CONTENT_HASH], keep="first", maintain_order=True
    )
    data = source.select(schema.names).to_arrow().cast(schema)

    def merge() -> int:
        # The first rejection ever: create the table with the rows (no MERGE against nothing).
        if open_table(storage, "silver", QUARANTINE_TABLE) is None and create_with_rows(
            storage, "silver", QUARANTINE_TABLE, data
        ):
            return int(data.num_rows)
        table = ensure_table(storage, "silver", QUARANTINE_TABLE, schema)
        metrics = (
            table.merge(
                data,
                predicate="t.silver_table = s.silver_table AND t.content_hash = s.content_hash",
                source_alias="s",
                target_alias="t",
            )
            .when_not_matched_insert_all()
            .execute()
        )
        return int(metrics.get("num_target_rows_inserted", 0))

    return with_commit_retry(merge, "merge silver/quarantine")


# --- MERGE ---------------------------------------------------------------------------------------


def _target_key_range(spec: EntitySpec, latest: pl.DataFrame) -> str:
    """A MERGE conjunct limiting the target to the batch's range of its first key column.

    It changes no result (a target row outside the batch's key range matches no source row),
    but delta-rs prunes the target's files by their min/max statistics only for predicates on
    literals, not for the join condition: without it every MERGE scans, and holds in memory,
    the whole table, so a run's time and memory would grow with the table instead of the batch.
    Only text keys (every source's business keys so far) get the range.
    """
    import polars as pl

    column = spec.key[0]
    values = latest.get_column(column)
    if values.dtype != pl.String or values.null_count() == values.len():
        return ""
    low, high = values.min(), values.max()
    if not isinstance(low, str) or not isinstance(high, str):
        return ""

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    return f" AND t.{column} >= {literal(low)} AND t.{column} <= {literal(high)}"


def _newer(spec: EntitySpec) -> str:
    """The MERGE predicate "the source version is newer than the stored one": lexicographic over
    the spec's ordering columns, then the content hash (the same order as ``latest_per_key``)."""
    condition = f"s.{CONTENT_HASH} > t.{CONTENT_HASH}"
    for column in reversed(spec.ordering):
        condition = f"(s.{column} > t.{column} OR (s.{column} = t.{column} AND {condition}))"
    return condition


def merge_silver(storage: LakeStorage, spec: EntitySpec, valid: pl.DataFrame) -> MergeCounts:
    """MERGE conformed rows into the spec's table: insert new keys, update only to newer versions.

    Returns inserted/updated/unchanged counts (unchanged = rows not applied because the stored
    version is the same or newer, plus older duplicates within the batch).
    """
    counts = MergeCounts(received=valid.height)
    if valid.height == 0:
        return counts
    schema = silver_schema(spec)
    latest = latest_per_key(spec, valid)
    data = latest.select(schema.names).to_arrow().cast(schema)
    counts.max_source_modified_at = latest.get_column(spec.modified).max()  # type: ignore[assignment]
    newer = _newer(spec)
    on = " AND ".join(f"t.{k} = s.{k}" for k in spec.key) + _target_key_range(spec, latest)
    earlier = {c: f"s.{c} < t.{c}" for c in spec.earliest}

    def merge() -> dict[str, Any]:
        # An initial load (no table yet) writes the batch's latest rows as the table's first
        # version: exactly what the MERGE would insert, at a fraction of its cost. A table
        # created meanwhile by someone else refuses the write and the MERGE below runs instead.
        if open_table(storage, "silver", spec.table) is None and create_with_rows(
            storage, "silver", spec.table, data
        ):
            return {"num_target_rows_inserted": data.num_rows}
        table = ensure_table(storage, "silver", spec.table, schema)
        merger = table.merge(data, predicate=on, source_alias="s", target_alias="t")
        if spec.soft_delete is not None:
            # A deletion keeps the last known values and marks the row, so reports can still
            # explain history; only a newer deletion applies, like any other version.
            kept = {
                c: f"s.{c}"
                for c in (IS_DELETED, DELETED_AT, *spec.ordering, *LINEAGE_COLUMNS)
                if c not in spec.earliest
            }
            merger = merger.when_matched_update(kept, predicate=f"s.{IS_DELETED} AND {newer}")
        if earlier:
            # The first matching clause applies: a newer version replaces the row but keeps the
            # smaller earliest values; an older one may still lower them, and changes nothing
            # else. An identical re-read matches neither clause.
            updates = {c: f"s.{c}" for c in schema.names}
            updates |= {
                c: f"CASE WHEN {cond} THEN s.{c} ELSE t.{c} END" for c, cond in earlier.items()
            }
            merger = merger.when_matched_update(updates, predicate=newer)
            merger = merger.when_matched_update(
                {c: f"CASE WHEN {cond} THEN s.{c} ELSE t.{c} END" for c, cond in earlier.items()},
                predicate=" OR ".join(earlier.values()),
            )
        else:
            merger = merger.when_matched_update_all(predicate=newer)
        metrics: dict[str, Any] = merger.when_not_matched_insert_all().execute()
        return metrics

    metrics = with_commit_retry(merge, f"merge silver/{spec.table}")
    counts.inserted = int(metrics.get("num_target_rows_inserted", 0))
    counts.updated = int(metrics.get("num_target_rows_updated", 0))
    counts.unchanged = counts.received - counts.inserted - counts.updated
    counts.commits = 1 if counts.inserted or counts.updated else 0
    log.info(
        "silver/%s: %d received, %d inserted, %d updated, %d unchanged",
        spec.table,
        counts.received,
        counts.inserted,
        counts.updated,
        counts.unchanged,
    )
    return counts


# --- Staging pages of a run ------------------------------------------------------------------------


@dataclass
class SilverStage:
    """Stages pages as they arrive and conforms and MERGEs them in one batch at ``commit``.

    Between pages only the spec's raw fields, lineage and each record's canonical JSON are kept,
    as Arrow strings (far smaller than the raw dicts). Conformance runs once per batch, so the
    per-page cost is a frame construction. When ``max_rows`` rows are staged they are committed
    early, which bounds memory however long a listing is.
    """

    storage: LakeStorage
    spec: EntitySpec
    max_rows: int = DEFAULT_MAX_STAGED_ROWS
    counts: MergeCounts = field(default_factory=MergeCounts)
    _pages: list[pl.DataFrame] = field(default_factory=list)
    _staged_rows: int = 0

    def add(self, records: Sequence[Mapping[str, Any]], page: BronzePage | BronzePageData) -> None:
        """Stage one page of raw records that was written to bronze as ``page``."""
        if not records:
            return
        texts = page.record_texts or [canonical_json(r) for r in records]
        framed = attach_lineage(
            raw_frame(self.spec, records),
            bronze_path=page.path,
            run_id=page.run_id,
            ingested_at=page.ingested_at,
            content_hashes=page.content_hashes,
            record_texts=texts,
        )
        self._pages.append(framed)
        self._staged_rows += framed.height
        if self._staged_rows >= self.max_rows:
            self.commit()

    @property
    def pending(self) -> int:
        """Rows staged and not yet committed."""
        return self._staged_rows

    def commit(self) -> MergeCounts:
        """Conform everything staged, MERGE the quarantine and then silver; the run's totals."""
        import polars as pl

        if not self._pages:
            return self.counts
        framed = pl.concat(self._pages, how="vertical")
        self._pages, self._staged_rows = [], 0
        valid, rejected = conform_frame(self.spec, framed)
        del framed
        if rejected.height:
            self.counts.quarantined += rejected.height
            self.counts.quarantine_new += merge_quarantine(self.storage, rejected)
        self.counts.add(merge_silver(self.storage, self.spec, valid))
        return self.counts


def reprocess_from_bronze(
    storage: LakeStorage,
    spec: EntitySpec,
    *,
    ingest_dates: Iterable[dt.date] | None = None,
) -> MergeCounts:
    """Re-conform a source entity's bronze pages into silver (after a spec fix, say).

    Safe to repeat: the MERGE keeps the newest version per key and the quarantine is keyed by
    content, so replaying bronze converges on the same silver.
    """
    reader = BronzeReader(storage)
    stage = SilverStage(storage, spec)
    dates: Iterable[dt.date | None] = ingest_dates if ingest_dates is not None else [None]
    for day in dates:
        for page in reader.iter_pages(spec.source, spec.entity, ingest_date=day):
            stage.add(page.records, page)
    return stage.commit()
