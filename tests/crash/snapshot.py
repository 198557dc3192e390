"""The end state of a world, normalised so a crashed-and-rerun world compares with a clean one.

What is compared, keyed by each record's business identity:

- silver: every table (its spec's key; the quarantine by (table, content hash)); not the
  ingestion run log, which records runs, not data;
- Dataverse: every table the flows write or export, by alternate key;
- SAP: sales orders, their items and equipment, by SAP key;
- gold: every table rebuilt from the converged silver, row by row, except ``integration_health``
  (built from the ingestion run log, which records every attempt, killed ones included);
- hub state: quote lifecycle, couplings, rejections, deferred records, the write ledger, and which
  watermarks and delta tokens exist.

What is dropped, because it differs between any two runs and is not data: ids the peers or the
hub assign (Dataverse primary ids and lookups are renamed to the referenced row's alternate key,
so relationships are still compared), times stamped by a system (``modifiedon``, ingestion and
commit times, the hub's receipt times of Quoting Tool records, ``LastChangeDateTime``, ETags and
row versions), run ids and bronze paths, tracking ids, watermark *values* (a mainframe ``ASOF`` is
the time of the run), and attempt counters.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.endstate import silver_keys
from tests.crash.reader import WorldReader

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DATAVERSE_TABLES = (
    "accounts",
    "products",
    "productpricelevels",
    "quotes",
    "quotedetails",
    "salesorders",
    "salesorderdetails",
    "contoso_partners",
    "contoso_customerassets",
    "contoso_legacyorders",
    "contoso_legacyorderlines",
    "contoso_plantinventories",
)
SAP_TABLES = {
    "A_SalesOrder": ("SalesOrder",),
    "A_SalesOrderItem": ("SalesOrder", "SalesOrderItem"),
    "Equipment": ("Equipment",),
}
DATAVERSE_SYSTEM = {"@odata.etag", "versionnumber", "createdon", "modifiedon"}
SAP_SYSTEM = {"LastChangeDateTime", "LastChangeDate", "CreationDate", "__metadata"}
SILVER_SYSTEM = {"bronze_path", "run_id", "ingested_at", "deleted_at"}
# Columns whose value is when the hub received or ingested a record (``hubReceivedAt``, the
# "ingested" kind): the Quoting Tool's tables (shared/lake/specs.py).
RECEIPT_COLUMNS = {"received_at", "created_at", "submitted_at"}
# Dataverse-export tables carry the row's stamps and version, and a hash over them.
EXPORT_SYSTEM = {"modified_on", "source_modified_at", "version_number", "content_hash"}
GOLD_FROM_RUN_LOG = {"integration_health"}
"""Gold tables built from the ingestion run log, which records attempts (killed ones too)."""
HUB_TABLES = {
    "hubquotes": ("PartitionKey", "RowKey"),
    "hubcouplings": ("PartitionKey", "RowKey"),
    "hubrejections": ("PartitionKey", "RowKey"),
    "hubdeferred": ("PartitionKey", "RowKey"),
    "hubwrites": ("PartitionKey", "RowKey"),
    "hubwatermarks": ("PartitionKey", "RowKey"),
}
HUB_SYSTEM = {
    "Timestamp",
    "UpdatedAt",
    "At",
    "RunId",
    "TrackingId",
    "AcceptedAt",
    "BronzePath",
    "Reason",
    "Details",
    "Attempts",
    "LastError",
    "FirstAt",
    "LastAt",
}
# Inside JSON held by hub rows (lifecycle steps, deferred records).
NESTED_SYSTEM = {"at", "runId", "trackingId", "LastChangeDateTime"}


@dataclass
class Snapshot:
    """Normalised tables: ``{table: {key: row}}`` and how many keys occurred more than once."""

    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, rows: Iterable[tuple[str, Any]]) -> None:
        """Add a table's rows; a key seen twice is counted as a duplicate (the last one kept)."""
        found: dict[str, Any] = {}
        counts: Counter[str] = Counter()
        for key, row in rows:
            counts[key] += 1
            found[key] = row
        self.tables[table] = found
        self.duplicates[table] = sum(n - 1 for n in counts.values() if n > 1)

    @property
    def rows(self) -> int:
        """Rows over all tables."""
        return sum(len(t) for t in self.tables.values())


def _names(reader: WorldReader) -> dict[str, str]:
    """Dataverse ids to stable names: ``<set>:<alternate key>`` (users by their role)."""
    from sandbox.dataverse.schema import Schema

    schema = Schema.load()
    hub, test = reader.world.hub_client[0], reader.world.test_client[0]
    names: dict[str, str] = {}
    for user in reader.records("dataverse", "systemusers"):
        app = user.get("applicationid")
        role = "hub" if app == hub else "sales-user" if app == test else user.get("fullname")
        names[str(user["systemuserid"])] = f"systemusers:{role}"
    for table in schema.tables.values():
        if not table.keys or table.entity_set == "systemusers":
            continue
        columns = table.keys[0].columns
        for row in reader.records("dataverse", table.entity_set):
            key = "|".join(str(row.get(c)) for c in columns)
            names[str(row[table.primary_key])] = f"{table.entity_set}:{key}"
    return names


def _plain(value: Any, names: Mapping[str, str], drop: set[str]) -> Any:
    """JSON-comparable value: ids renamed, decimals exact, times ISO, nested JSON normalised."""
    if isinstance(value, Mapping):
        return {
            str(k): _plain(v, names, drop)
            for k, v in sorted(value.items())
            if str(k) not in drop and "@" not in str(k)
        }
    if isinstance(value, (list, tuple)):
        return [_plain(v, names, drop) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, Decimal)):
        return format(Decimal(str(value)).normalize(), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    if GUID.match(text):
        return names.get(text.lower(), names.get(text, "<unknown id>"))
    if text[:1] in "[{":
        try:
            return _plain(json.loads(text), names, drop | NESTED_SYSTEM)
        except ValueError:
            return text
    return text


def _key(row: Mapping[str, Any], columns: Sequence[str], names: Mapping[str, str]) -> str:
    return "|".join(str(_plain(row.get(c), names, set())) for c in columns)


def take(reader: WorldReader) -> Snapshot:
    """The normalised end state of the world ``reader`` reads (see the module docstring)."""
    with reader.frozen():
        return _take(reader)


def _take(reader: WorldReader) -> Snapshot:
    from sandbox.dataverse.schema import Schema
    from shared.lake.silver import QUARANTINE_TABLE

    names = _names(reader)
    snap = Snapshot()
    schema = Schema.load()
    for entity_set in DATAVERSE_TABLES:
        table = schema.by_set[entity_set]
        drop = DATAVERSE_SYSTEM | {table.primary_key}
        columns = table.keys[0].columns
        rows = reader.records("dataverse", entity_set)
        snap.add(
            f"dataverse/{entity_set}",
            ((_key(r, columns, names), _plain(r, names, drop)) for r in rows),
        )
    for entity_set, columns in SAP_TABLES.items():
        rows = reader.records("sap", entity_set)
        snap.add(
            f"sap/{entity_set}",
            ((_key(r, columns, names), _plain(r, names, SAP_SYSTEM)) for r in rows),
        )
    keys = silver_keys()
    for name in reader.silver_tables():
        if name == "ingestion_runs":
            continue
        frame = reader.silver(name)
        if frame is None:
            continue
        drop = SILVER_SYSTEM | RECEIPT_COLUMNS
        if name.startswith("dataverse_"):
            drop |= EXPORT_SYSTEM
        columns = keys.get(name) or (
            ("silver_table", "content_hash") if name == QUARANTINE_TABLE else tuple(frame.columns)
        )
        snap.add(
            f"silver/{name}",
            (
                (_key(r, columns, names), _plain(r, names, drop))
                for r in frame.iter_rows(named=True)
            ),
        )
    for name in reader.silver_tables("gold"):
        if name in GOLD_FROM_RUN_LOG:
            continue
        frame = reader.silver(name, "gold")
        if frame is None:
            continue
        rows = [_plain(r, names, set()) for r in frame.iter_rows(named=True)]
        snap.add(f"gold/{name}", ((json.dumps(n, sort_keys=True), n) for n in rows))
    for hub_table, columns in HUB_TABLES.items():
        rows = reader.entities(hub_table)
        drop = HUB_SYSTEM | ({"Value"} if hub_table == "hubwatermarks" else set())
        snap.add(
            f"hub/{hub_table}", ((_key(r, columns, names), _plain(r, names, drop)) for r in rows)
        )
    return snap


@dataclass
class Comparison:
    """How a crashed-and-rerun world differs from a clean one, per table and in total."""

    tables: int = 0
    rows: int = 0
    lost: int = 0
    extra: int = 0
    duplicated: int = 0
    changed: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """Nothing lost, added, duplicated or changed."""
        return not (self.lost or self.extra or self.duplicated or self.changed)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, for the report."""
        return {
            "equal": self.equal,
            "tables": self.tables,
            "rows": self.rows,
            "lost": self.lost,
            "extra": self.extra,
            "duplicated": self.duplicated,
            "changed": self.changed,
            "examples": self.examples[:20],
        }


def compare(reference: Snapshot, crashed: Snapshot) -> Comparison:
    """Differences of ``crashed`` from ``reference``, table by table."""
    result = Comparison(tables=len(reference.tables), rows=reference.rows)
    for table in sorted(set(reference.tables) | set(crashed.tables)):
        ref = reference.tables.get(table, {})
        got = crashed.tables.get(table, {})
        lost = sorted(set(ref) - set(got))
        extra = sorted(set(got) - set(ref))
        changed = sorted(k for k in set(ref) & set(got) if ref[k] != got[k])
        duplicated = crashed.duplicates.get(table, 0) - reference.duplicates.get(table, 0)
        result.lost += len(lost)
        result.extra += len(extra)
        result.changed += len(changed)
        result.duplicated += max(0, duplicated)
        result.examples += [f"{table}: lost {k}" for k in lost[:3]]
        result.examples += [f"{table}: extra {k}" for k in extra[:3]]
        if duplicated > 0:
            result.examples.append(f"{table}: {duplicated} duplicated key(s)")
        for key in changed[:3]:
            a, b = ref[key], got[key]
            diff = sorted(c for c in set(a) | set(b) if a.get(c) != b.get(c))
            result.examples.append(
                f"{table}: {key} differs in {diff}: {[a.get(c) for c in diff]} != "
                f"{[b.get(c) for c in diff]}"
            )
    return result
