""" "No watermark or delta token is ever ahead of committed data", checked against the real stores.

Each check reads a job's stored watermarks (``WatermarkStore``) and, for every one, the source
records it claims to cover, then looks for each of them where the job commits it. Covered means
"the next run will not read it again":

- ``poll_mainframe`` (flow 5): the value is the listing's ``ASOF``; every mainframe record with
  ``LSTUPD`` at or before it must be in silver (its content hash, or a newer version of its key)
  or in the quarantine (its content hash).
- ``dataverse-load`` (flow 6): the cursor ``(ingested_at, key)``; every live silver row at or
  before it must be in Dataverse under its alternate key with the mapped values, or recorded as
  refused in the rejection store.
- ``lake-ingest`` (the Quoting Tool's bronze, e.g. the quotes intake wrote): every bronze page
  older than the horizon, or remembered as seen, must have its records in silver (their content
  hash, or their key at a revision at least as new) or in the quarantine.
- ``dataverse-export`` (flow 7): the delta link stands for a change-tracking version; every
  Dataverse row of that table at or below it must be in ``silver/dataverse_<set>`` with that
  row version (or a newer one) and not deleted.
- ``sap-inbound`` (flow 10): the change stamp; every SAP order (equipment) changed at or before
  it must be in silver with that version or newer, and in Dataverse with that version, or be
  parked in the deferred store, or refused.
- ``sap-outbound`` (flow 11): the ``salesorders`` delta link; every order change a sales user
  made at or below its version must be in SAP.
- quote push (flow 1a) has no watermark; its equivalents are the quote's pushed revision (a
  redelivery skips a pushed revision) and the message's completion: both must only exist once
  Dataverse holds the quote revision and all its lines.

A violation names the record and what is missing. Each check also reports the watermark value
beside the newest committed change, for the report.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.crash.reader import WorldReader, decode_token, row_version, sap_time

MAX_LISTED = 10


@dataclass
class MarkCheck:
    """One watermark or delta token against the data it covers."""

    job: str
    entity: str
    value: str | None
    covered: int = 0
    committed: int = 0
    committed_max: str | None = None
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0

    def violate(self, text: str) -> None:
        """Record one covered record that is not committed."""
        self.violation_count += 1
        if len(self.violations) < MAX_LISTED:
            self.violations.append(text)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, for the report."""
        return asdict(self)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(value)


# ---- flow 5 -------------------------------------------------------------------------------------


def _mainframe_key(spec: Any, record: Mapping[str, Any]) -> tuple[Any, ...] | None:
    key: list[Any] = []
    for name in spec.key:
        column = spec.column(name)
        raw = str(record.get(column.field) or "").strip()
        try:
            key.append(int(raw) if column.kind == "int" else raw)
        except ValueError:
            return None
    return tuple(key)


def check_mainframe(reader: WorldReader) -> list[MarkCheck]:
    """Flow 5 watermarks: every record listed up to the watermark is in silver or quarantine."""
    from shared.lake.bronze import content_hash
    from shared.lake.silver import QUARANTINE_TABLE
    from shared.lake.specs import MAINFRAME_SPECS
    from shared.services.poll_mainframe import JOB, parse_watermark

    marks = reader.watermarks(JOB)
    if not marks:
        return []
    quarantine = reader.silver(QUARANTINE_TABLE)
    checks = []
    for mark in marks:
        spec = MAINFRAME_SPECS[mark.entity]
        check = MarkCheck(JOB, mark.entity, mark.value)
        limit = parse_watermark(mark.value)
        silver = reader.silver(spec.table)
        hashes: set[str] = set()
        newest: dict[tuple[Any, ...], dt.datetime] = {}
        if silver is not None:
            hashes = set(silver.get_column("content_hash").to_list())
            for row in silver.select([*spec.key, spec.modified]).iter_rows(named=True):
                newest[tuple(row[k] for k in spec.key)] = row[spec.modified]
            latest = silver.get_column(spec.modified).max()
            check.committed_max = _text(latest)
        if quarantine is not None:
            bad = quarantine.filter(quarantine.get_column("silver_table") == spec.table)
            hashes |= set(bad.get_column("content_hash").to_list())
        for record in reader.records("mainframe", mark.entity):
            try:
                changed = dt.datetime.strptime(record["LSTUPD"], "%Y%m%d%H%M%S").replace(
                    tzinfo=dt.UTC
                )
            except (KeyError, ValueError):
                changed = None  # listed by text comparison either way: covered
            if changed is not None and changed > limit:
                continue
            check.covered += 1
            key = _mainframe_key(spec, record)
            stored = newest.get(key) if key is not None else None
            if content_hash(record) in hashes or (
                stored is not None and changed is not None and stored > changed
            ):
                check.committed += 1
            else:
                check.violate(f"{mark.entity} {key} (LSTUPD {record.get('LSTUPD')}) not committed")
        checks.append(check)
    return checks


# ---- flow 6 -------------------------------------------------------------------------------------


def same_value(expected: Any, actual: Any) -> bool:
    """A mapped value against what Dataverse returns (JSON numbers, ISO dates and times)."""
    if expected in (None, "") or actual in (None, ""):
        return expected in (None, "") and actual in (None, "")
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected) == bool(actual)
    if isinstance(expected, (int, Decimal, float)):
        try:
            return Decimal(str(expected)) == Decimal(str(actual))
        except InvalidOperation:
            return False
    if isinstance(expected, dt.datetime):
        seen = dt.datetime.fromisoformat(str(actual).replace("Z", "+00:00"))
        return abs((seen - expected).total_seconds()) < 1
    if isinstance(expected, dt.date):
        return str(actual).startswith(expected.isoformat())
    return str(expected) == str(actual)


def _by_key(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> dict[tuple[str, ...], Any]:
    return {tuple(str(r.get(c)) for c in columns): r for r in rows}


def check_load(reader: WorldReader) -> list[MarkCheck]:
    """Flow 6 cursors: every silver row up to the cursor is in Dataverse (or refused)."""
    import polars as pl

    from shared.errors import PermanentError
    from shared.mappings import MAPPINGS_BY_NAME
    from shared.services.load_dataverse import FLOW, JOB, LoadCursor, changed_rows

    marks = reader.watermarks(JOB)
    if not marks:
        return []
    refused = {
        str(e.get("Key") or e["RowKey"])
        for e in reader.entities("hubrejections")
        if e["PartitionKey"] == FLOW
    }
    checks = []
    for mark in marks:
        mapping = MAPPINGS_BY_NAME[mark.entity]
        check = MarkCheck(JOB, mark.entity, mark.value)
        cursor = LoadCursor.loads(mark.value)
        version = reader.silver_version(mapping.silver_table)
        if version is None:
            check.violate(f"cursor set but silver/{mapping.silver_table} does not exist")
            checks.append(check)
            continue
        rows = changed_rows(reader.storage, mapping, version, None, 10_000_000)
        since = pl.lit(cursor.ingested_at, dtype=pl.Datetime("us", "UTC"))
        done = rows.filter(
            (pl.col("ingested_at") < since)
            | ((pl.col("ingested_at") == since) & (pl.col("__business_key") <= cursor.key))
        )
        key_columns = [column for column, _ in mapping.key]
        present = _by_key(reader.records("dataverse", mapping.entity_set), key_columns)
        newest = None
        for row in done.iter_rows(named=True):
            check.covered += 1
            business_key = mapping.business_key(row)
            if f"{mapping.name}:{business_key}" in refused:
                check.committed += 1
                continue
            try:
                upsert = mapping.to_upsert(row)
            except PermanentError:
                check.violate(f"{business_key}: unmappable and not recorded as refused")
                continue
            key = tuple(str(upsert.key[c]) for c in key_columns)  # type: ignore[index]
            found = present.get(key)
            if found is None:
                check.violate(f"{business_key}: not in {mapping.entity_set}")
                continue
            stale = [
                t.column
                for t in mapping.columns
                if not same_value(upsert.values[t.column], found.get(t.column))
            ]
            if stale:
                check.violate(f"{business_key}: {mapping.entity_set} holds old {stale}")
                continue
            check.committed += 1
            newest = (row["ingested_at"], row["__business_key"])
        if newest is not None:
            check.committed_max = json.dumps([_text(newest[0]), newest[1]])
        checks.append(check)
    return checks


# ---- flow 7 -------------------------------------------------------------------------------------


def check_export(reader: WorldReader) -> list[MarkCheck]:
    """Flow 7 delta tokens: every row version the token covers is in silver."""
    from shared.services.dataverse_to_lake import EXPORT_TABLES_BY_SET, JOB

    checks = []
    for mark in reader.watermarks(JOB):
        table = EXPORT_TABLES_BY_SET[mark.entity]
        check = MarkCheck(JOB, mark.entity, f"version {decode_token(mark.value)}")
        limit = decode_token(mark.value)
        silver = reader.silver(table.spec.table)
        stored: dict[str, dict[str, Any]] = {}
        if silver is not None:
            stored = {str(r[table.primary_key]): r for r in silver.iter_rows(named=True)}
        newest = 0
        for record in reader.records("dataverse", mark.entity):
            version = row_version(record)
            if version > limit:
                continue
            check.covered += 1
            row = stored.get(str(record[table.primary_key]))
            have = None if row is None else row.get("version_number")
            modified = record.get("modifiedon")
            fresh = row is not None and (
                int(have) >= version
                if have is not None
                else _text(row.get("modified_on")) == str(modified)
            )
            if fresh and row is not None and not row.get("is_deleted"):
                check.committed += 1
                newest = max(newest, version)
            else:
                check.violate(f"{mark.entity} {record[table.primary_key]} v{version} not in silver")
        check.committed_max = f"version {newest}" if newest else None
        checks.append(check)
    return checks


# ---- lake_ingest (the Quoting Tool's bronze) ----------------------------------------------------


def check_ingest(reader: WorldReader) -> list[MarkCheck]:
    """``lake_ingest`` watermarks: every bronze page they cover is in silver (or quarantine)."""
    from shared.lake.bronze import BronzeReader
    from shared.lake.silver import QUARANTINE_TABLE
    from shared.lake.specs import QUOTING_TOOL_SPECS
    from shared.services.forecasts import LAKE_JOB, IngestState, page_digest

    marks = reader.watermarks(LAKE_JOB)
    if not marks:
        return []
    quarantine = reader.silver(QUARANTINE_TABLE)
    bronze = reader.storage.blob_service.get_container_client(reader.storage.container("bronze"))
    pages = BronzeReader(reader.storage)
    checks = []
    for mark in marks:
        source, entity = mark.entity.split(".", 1)
        spec = QUOTING_TOOL_SPECS[entity]
        state = IngestState.parse(mark.value)
        check = MarkCheck(LAKE_JOB, mark.entity, _text(state.horizon))
        silver = reader.silver(spec.table)
        version = getattr(spec, "version", None)
        prepare = getattr(spec, "prepare", None)
        hashes: set[str] = set()
        keys: dict[str, int] = {}
        if silver is not None:
            hashes = set(silver.get_column("content_hash").to_list())
            keys = {
                "|".join(str(r[k]) for k in spec.key): int(r[version]) if version else 0
                for r in silver.iter_rows(named=True)
            }
            check.committed_max = _text(silver.get_column(spec.modified).max())
        if quarantine is not None:
            bad = quarantine.filter(quarantine.get_column("silver_table") == spec.table)
            hashes |= set(bad.get_column("content_hash").to_list())
        for blob in bronze.list_blobs(name_starts_with=f"{source}/{entity}/"):
            modified = blob.last_modified.astimezone(dt.UTC)
            old = state.horizon is not None and modified < state.horizon
            if not old and page_digest(blob.name) not in state.seen:
                continue
            page = pages.read_page(blob.name)
            for record, digest in zip(page.records, page.content_hashes, strict=True):
                check.covered += 1
                raw = prepare(record) if prepare is not None else record
                key = "|".join(str(raw.get(spec.column(k).field) or "").strip() for k in spec.key)
                mine = int(raw.get(spec.column(version).field) or 0) if version else 0
                # Its hash, or its key held by a version at least as new (one that superseded it).
                if digest in hashes or keys.get(key, -1) >= mine:
                    check.committed += 1
                else:
                    check.violate(f"{blob.name}: record {key} not in silver/{spec.table}")
        checks.append(check)
    return checks


# ---- flow 10 ------------------------------------------------------------------------------------


def check_sap_inbound(reader: WorldReader) -> list[MarkCheck]:
    """Flow 10 watermarks: orders and equipment up to the stamp are in silver and Dataverse."""
    from shared.services.sap_inbound import ASSETS, FLOW, JOB, ORDERS

    marks = {m.entity: m for m in reader.watermarks(JOB)}
    if not marks:
        return []
    deferred = {(str(e["PartitionKey"]), str(e["Key"])) for e in reader.entities("hubdeferred")}
    refused = {
        str(e.get("Key") or e["RowKey"])
        for e in reader.entities("hubrejections")
        if e["PartitionKey"] == FLOW
    }
    checks = []
    layout = (
        ("A_SalesOrder", "SalesOrder", "sap_orders", "order_no", ORDERS, "salesorders"),
        (
            "Equipment",
            "Equipment",
            "sap_equipment",
            "equipment_no",
            ASSETS,
            "contoso_customerassets",
        ),
    )
    for entity, key, silver_table, silver_key, deferred_entity, entity_set in layout:
        mark = marks.get(entity)
        if mark is None:
            continue
        check = MarkCheck(JOB, entity, mark.value)
        limit = dt.datetime.fromisoformat(mark.value)
        silver = reader.silver(silver_table)
        lake: dict[str, dt.datetime] = {}
        if silver is not None:
            lake = {
                str(r[silver_key]): r["source_modified_at"]
                for r in silver.select(silver_key, "source_modified_at").iter_rows(named=True)
            }
        dataverse_key = "contoso_sapsalesorder" if entity == "A_SalesOrder" else None
        dataverse_key = dataverse_key or "contoso_equipmentnumber"
        landed = {str(r.get(dataverse_key)): r for r in reader.records("dataverse", entity_set)}
        items = {
            str(r.get("contoso_saporderitemkey"))
            for r in reader.records("dataverse", "salesorderdetails")
        }
        sap_items: dict[str, list[str]] = {}
        if entity == "A_SalesOrder":
            for item in reader.records("sap", "A_SalesOrderItem"):
                sap_items.setdefault(str(item["SalesOrder"]), []).append(
                    str(item["SalesOrderItem"])
                )
        newest: dt.datetime | None = None
        for record in reader.records("sap", entity):
            changed = sap_time(record.get("LastChangeDateTime"))
            if changed is None or changed > limit:
                continue
            check.covered += 1
            number = str(record[key])
            stored = lake.get(number)
            if stored is None or stored < changed:
                check.violate(f"{entity} {number} ({changed.isoformat()}) not in silver")
                continue
            parked = (deferred_entity, number) in deferred
            if f"{entity_set}:{number}" in refused or parked:
                check.committed += 1
                continue
            row = landed.get(number)
            if row is None:
                check.violate(f"{entity} {number} neither in Dataverse nor deferred nor refused")
                continue
            if entity == "A_SalesOrder":
                version = sap_time(row.get("contoso_sapversion"))
                if version is None or version < changed:
                    check.violate(f"order {number}: Dataverse holds version {version}")
                    continue
                missing = [i for i in sap_items.get(number, []) if f"{number}|{i}" not in items]
                if missing:
                    check.violate(f"order {number}: items {missing} not in Dataverse")
                    continue
            check.committed += 1
            newest = changed if newest is None or changed > newest else newest
        check.committed_max = _text(newest)
        checks.append(check)
    return checks


# ---- flow 11 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SalesEdit:
    """A change a sales user made in Dataverse that flow 11 must carry to SAP."""

    order: str
    delivery_date: str
    confirmed: bool


def check_sap_outbound(reader: WorldReader, edits: Sequence[SalesEdit]) -> list[MarkCheck]:
    """Flow 11 delta token: every sales edit at or below its version is in SAP."""
    from shared.services.sap_outbound import JOB

    mark = next((m for m in reader.watermarks(JOB) if m.entity == "salesorders"), None)
    if mark is None or not edits:
        return []
    limit = decode_token(mark.value)
    check = MarkCheck(JOB, "salesorders", f"version {limit}")
    rows = {
        str(r.get("contoso_sapsalesorder")): r for r in reader.records("dataverse", "salesorders")
    }
    sap = {str(r["SalesOrder"]): r for r in reader.records("sap", "A_SalesOrder")}
    newest = 0
    for edit in edits:
        row = rows.get(edit.order)
        if row is None or row_version(row) > limit:
            continue
        check.covered += 1
        order = sap.get(edit.order, {})
        date = sap_time(order.get("RequestedDeliveryDate"))
        blocked = str(order.get("DeliveryBlockReason") or "")
        if (
            date is None
            or date.date().isoformat() != edit.delivery_date
            or (edit.confirmed and blocked)
        ):
            check.violate(
                f"order {edit.order}: SAP has {date} / block {blocked!r}, sales set "
                f"{edit.delivery_date} / confirmed={edit.confirmed}"
            )
            continue
        check.committed += 1
        newest = max(newest, row_version(row))
    check.committed_max = f"version {newest}" if newest else None
    return [check]


# ---- flow 1a ------------------------------------------------------------------------------------


def check_quotes(
    reader: WorldReader, quotes: Mapping[str, Mapping[str, Any]], completed: Iterable[str]
) -> list[MarkCheck]:
    """Pushed revisions and completed messages only for quotes fully in Dataverse."""
    current = {
        str(e["PartitionKey"]): e
        for e in reader.entities("hubquotes")
        if e.get("RowKey") == "current"
    }
    if not current:
        return []
    in_dataverse = {
        str(r.get("contoso_quotingtoolid")): r for r in reader.records("dataverse", "quotes")
    }
    lines = {
        str(r.get("contoso_quotelinekey")) for r in reader.records("dataverse", "quotedetails")
    }
    pushed = MarkCheck("quote-push", "pushedRevision", f"{len(current)} quote record(s)")
    for quote_id, entity in sorted(current.items()):
        revision = int(entity.get("PushedRevision", -1))
        if revision < 0:
            continue  # the store's "not pushed yet"
        pushed.covered += 1
        row = in_dataverse.get(quote_id)
        expected = {f"{quote_id}|{line['lineNumber']}" for line in quotes[quote_id]["lines"]}
        if (
            row is None
            or row.get("revisionnumber") is None
            or int(row["revisionnumber"]) != revision
        ):
            pushed.violate(
                f"{quote_id} r{revision} marked pushed, Dataverse has {row and row.get('revisionnumber')}"
            )
        elif not expected <= lines:
            pushed.violate(
                f"{quote_id} r{revision} marked pushed, lines {sorted(expected - lines)} missing"
            )
        else:
            pushed.committed += 1
    done = MarkCheck("quote-push", "completedMessages", None)
    for message_id in completed:
        quote_id = message_id.rsplit("-r", 1)[0]
        done.covered += 1
        status = str((current.get(quote_id) or {}).get("Status") or "")
        if status in ("", "received"):
            done.violate(
                f"message {message_id} completed, quote {quote_id} is {status or 'unknown'}"
            )
        else:
            done.committed += 1
    done.value = f"{done.covered} completed"
    return [pushed, done]


# ---- all of them --------------------------------------------------------------------------------


def check_all(
    reader: WorldReader,
    *,
    edits: Sequence[SalesEdit] = (),
    quotes: Mapping[str, Mapping[str, Any]] | None = None,
    completed: Iterable[str] = (),
) -> list[MarkCheck]:
    """Every job's watermarks and delta tokens against the data they cover."""
    with reader.frozen():
        checks = [
            *check_mainframe(reader),
            *check_load(reader),
            *check_ingest(reader),
            *check_export(reader),
            *check_sap_inbound(reader),
            *check_sap_outbound(reader, edits),
        ]
        if quotes:
            checks += check_quotes(reader, quotes, completed)
    return checks
