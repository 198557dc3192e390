"""Reconciliation: do the systems still agree? (the daily check behind a 30-day parallel run)

Per entity, each pair of sides is compared by business key: counts, and a content hash of the
mapped comparable columns (sha256 of their canonical JSON, values normalised so that ``10``,
``10.0`` and ``"10.00"`` money agree). Every difference is drift, by key:

- ``missing_left``: the key exists only on the right side;
- ``missing_right``: the key exists only on the left side;
- ``different``: both have it, the hashes differ (``detail`` names the columns).

Entities and sides: quotes (the hub's quote store of pushed quotes ↔ Dataverse ``quotes`` ↔
lake silver ``dataverse_quotes``), legacy orders (lake silver ``legacy_orders`` ↔ Dataverse
``contoso_legacyorders``) and accounts (Dataverse ``accounts`` ↔ lake silver
``dataverse_accounts``). A side whose lake table does not exist yet is skipped (and said so),
never counted as everything missing. Findings are appended to the gold Delta tables
``reconciliation`` (drift by key) and ``reconciliation_counts`` (counts per entity and pair).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from azure.data.tables import TableClient

from shared.adapters.dataverse import DataverseClient
from shared.adapters.records import RejectionStore
from shared.lake.storage import LakeStorage

log = logging.getLogger(__name__)

DRIFT_TABLE = "reconciliation"
COUNTS_TABLE = "reconciliation_counts"
ENTITIES = ("quotes", "legacy_orders", "accounts")

Side = dict[str, dict[str, Any]]  # key -> comparable columns


def _normal(value: Any) -> Any:
    """One spelling per value: numbers as normalised decimals, blanks as None, text stripped."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, Decimal)):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return str(value)
        return format(number.normalize(), "f") if number.is_finite() else str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    text = str(value).strip()
    return text or None


def content_hash(columns: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of the normalised comparable columns."""
    canonical = json.dumps(
        {k: _normal(v) for k, v in columns.items()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Drift:
    """One key on which two sides disagree."""

    entity: str
    pair: str
    key: str
    kind: str  # missing_left | missing_right | different
    detail: str


@dataclass
class PairResult:
    """Counts and drift of one pair of sides of one entity."""

    entity: str
    left: str
    right: str
    left_count: int
    right_count: int
    drift: list[Drift] = field(default_factory=list)
    explained: list[Drift] = field(default_factory=list)
    """Differences the hub already recorded as a rejection (with its reason): accounted for,
    so they are listed but are not drift."""


@dataclass
class ReconcileReport:
    """Every pair compared in one run, and the sides that could not be read."""

    run_at: dt.datetime
    pairs: list[PairResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def drift(self) -> list[Drift]:
        """Every drift of the run."""
        return [d for p in self.pairs for d in p.drift]

    def drift_of(self, entity: str) -> set[tuple[str, str, str]]:
        """``(pair, key, kind)`` of the drift of one entity."""
        return {(d.pair, d.key, d.kind) for d in self.drift if d.entity == entity}

    def summary(self) -> dict[str, Any]:
        """Counts per entity and pair (for logs and the CLI)."""
        return {
            "runAt": self.run_at.isoformat(),
            "pairs": [
                {
                    "entity": p.entity,
                    "left": p.left,
                    "right": p.right,
                    "leftCount": p.left_count,
                    "rightCount": p.right_count,
                    "drift": len(p.drift),
                    "explainedByRejections": len(p.explained),
                }
                for p in self.pairs
            ],
            "drift": [d.__dict__ for d in self.drift],
            "skipped": self.skipped,
        }


def compare(entity: str, left_name: str, left: Side, right_name: str, right: Side) -> PairResult:
    """Compare two sides of an entity by key and content hash."""
    pair = f"{left_name}~{right_name}"
    result = PairResult(entity, left_name, right_name, len(left), len(right))
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        if a is None:
            result.drift.append(Drift(entity, pair, key, "missing_left", f"only in {right_name}"))
        elif b is None:
            result.drift.append(Drift(entity, pair, key, "missing_right", f"only in {left_name}"))
        elif content_hash(a) != content_hash(b):
            columns = sorted(c for c in set(a) | set(b) if _normal(a.get(c)) != _normal(b.get(c)))
            detail = json.dumps({c: [a.get(c), b.get(c)] for c in columns}, default=str)
            result.drift.append(Drift(entity, pair, key, "different", detail))
    return result


@dataclass
class Reconciler:
    """Reads each side and compares (built once by ``shared.wiring``)."""

    dataverse: DataverseClient
    quotes: TableClient
    storage: LakeStorage
    rejections: RejectionStore | None = None
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)

    def run(self, entities: Iterable[str] = ENTITIES, *, write: bool = True) -> ReconcileReport:
        """Reconcile ``entities``; append the findings to gold unless ``write`` is False."""
        report = ReconcileReport(self.clock())
        for entity in entities:
            if entity == "quotes":
                self._quotes(report)
            elif entity == "legacy_orders":
                self._legacy_orders(report)
            elif entity == "accounts":
                self._accounts(report)
            else:
                raise ValueError(f"unknown entity {entity!r}; known: {', '.join(ENTITIES)}")
        if write:
            write_gold(self.storage, report)
        log.info("reconciliation: %d drift(s); skipped %s", len(report.drift), report.skipped)
        return report

    # ---- sides ----------------------------------------------------------------------------------
    def _dataverse(self, entity_set: str, key: str, columns: Mapping[str, str]) -> Side:
        rows = self.dataverse.query(entity_set, select=[key, *columns.values()])
        return {
            str(r[key]): {name: r.get(column) for name, column in columns.items()}
            for r in rows
            if r.get(key)
        }

    def _silver(self, table: str, key: str, columns: Mapping[str, str]) -> Side | None:
        from shared.lake.delta import read_frame
        from shared.lake.specs import IS_DELETED

        frame = read_frame(self.storage, "silver", table)
        if frame is None:
            return None
        if IS_DELETED in frame.columns:
            frame = frame.filter(~frame[IS_DELETED].fill_null(False))
        side: Side = {}
        for row in frame.select([key, *columns.values()]).iter_rows(named=True):
            if row.get(key) is not None:
                side[str(row[key])] = {name: row.get(col) for name, col in columns.items()}
        return side

    def _pair(
        self,
        report: ReconcileReport,
        entity: str,
        left: tuple[str, Side | None],
        right: tuple[str, Side | None],
    ) -> None:
        for name, side in (left, right):
            if side is None:
                report.skipped.append(f"{entity}:{name} (not in the lake yet)")
                return
        assert left[1] is not None and right[1] is not None
        report.pairs.append(compare(entity, left[0], left[1], right[0], right[1]))

    def _quotes(self, report: ReconcileReport) -> None:
        hub: Side = {}
        for row in self.quotes.query_entities("RowKey eq 'current'"):
            pushed = int(row.get("PushedRevision", -1))
            if pushed >= 0:
                hub[str(row["PartitionKey"])] = {"revision": pushed}
        dataverse = self._dataverse(
            "quotes", "contoso_quotingtoolid", {"revision": "revisionnumber"}
        )
        lake = self._silver(
            "dataverse_quotes", "contoso_quotingtoolid", {"revision": "revisionnumber"}
        )
        self._pair(report, "quotes", ("quotingtool", hub), ("dataverse", dataverse))
        self._pair(report, "quotes", ("dataverse", dataverse), ("lake", lake))

    def _legacy_orders(self, report: ReconcileReport) -> None:
        lake = self._silver(
            "legacy_orders",
            "order_no",
            {"customer": "customer_no", "total": "total_amount", "currency": "currency"},
        )
        dataverse = self._dataverse(
            "contoso_legacyorders",
            "contoso_ordernumber",
            {
                "customer": "contoso_customernumber",
                "total": "contoso_totalamount",
                "currency": "contoso_currency",
            },
        )
        self._pair(report, "legacy_orders", ("lake", lake), ("dataverse", dataverse))
        # An order Dataverse refused (an orphan, say) is missing there by the hub's own record.
        self._explain(report, "legacy_orders", "dataverse-load", "legacy_orders")

    def _explain(self, report: ReconcileReport, entity: str, flow: str, prefix: str) -> None:
        if self.rejections is None:
            return
        refused = {r.key: r for r in self.rejections.list(flow)}
        for pair in report.pairs:
            if pair.entity != entity:
                continue
            kept = []
            for drift in pair.drift:
                rejection = refused.get(f"{prefix}:{drift.key}")
                if drift.kind == "missing_right" and rejection is not None:
                    pair.explained.append(
                        Drift(entity, drift.pair, drift.key, "rejected", rejection.reason)
                    )
                else:
                    kept.append(drift)
            pair.drift = kept

    def _accounts(self, report: ReconcileReport) -> None:
        columns = {
            "accountnumber": "accountnumber",
            "name": "name",
            "city": "address1_city",
            "postalcode": "address1_postalcode",
        }
        dataverse = self._dataverse("accounts", "accountid", columns)
        lake = self._silver("dataverse_accounts", "accountid", columns)
        self._pair(report, "accounts", ("dataverse", dataverse), ("lake", lake))


def write_gold(storage: LakeStorage, report: ReconcileReport) -> None:
    """Append a run's drift and counts to ``gold/reconciliation`` and
    ``gold/reconciliation_counts``."""
    import pyarrow as pa

    from shared.lake.delta import append_table

    drift = pa.Table.from_pylist(
        [
            {
                "run_at": report.run_at,
                "entity": d.entity,
                "pair": d.pair,
                "key": d.key,
                "kind": d.kind,
                "detail": d.detail,
            }
            for d in report.drift
        ],
        schema=pa.schema(
            [
                ("run_at", pa.timestamp("us", tz="UTC")),
                ("entity", pa.string()),
                ("pair", pa.string()),
                ("key", pa.string()),
                ("kind", pa.string()),
                ("detail", pa.string()),
            ]
        ),
    )
    counts = pa.Table.from_pylist(
        [
            {
                "run_at": report.run_at,
                "entity": p.entity,
                "left": p.left,
                "right": p.right,
                "left_count": p.left_count,
                "right_count": p.right_count,
                "drift": len(p.drift),
            }
            for p in report.pairs
        ],
        schema=pa.schema(
            [
                ("run_at", pa.timestamp("us", tz="UTC")),
                ("entity", pa.string()),
                ("left", pa.string()),
                ("right", pa.string()),
                ("left_count", pa.int64()),
                ("right_count", pa.int64()),
                ("drift", pa.int64()),
            ]
        ),
    )
    for table, data in ((DRIFT_TABLE, drift), (COUNTS_TABLE, counts)):
        append_table(storage, "gold", table, data)
