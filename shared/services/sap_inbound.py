"""Flow 10: the SAP inbound batch — sales orders, customer assets and partners into the hub.

Each run, on the ``sap_inbound`` timer:

1. **Deferred first.** Orders and assets parked in ``hubdeferred`` because their parent (the
   account, a product) was not in Dataverse are tried again; those whose parents now exist land,
   the others stay parked (never failed).
2. **Read changes.** Sales orders (with ``to_Item`` and ``to_Partner``) and equipment (with its
   partners) changed since the watermark: ``$filter=LastChangeDateTime gt …``, paged by
   ``SapClient.changed_since`` (keyset paging, nothing skipped).
3. **Bronze and silver.** Each page goes to bronze (source ``sap``) as read; the run's records are
   MERGEd once into ``silver/sap_orders``, ``sap_order_items`` and ``sap_equipment``.
4. **Dataverse** under the sync rules (``shared.sync.rules``): ``salesorders`` keyed by
   ``contoso_sapsalesorder``, ``salesorderdetails`` by ``contoso_saporderitemkey``,
   ``contoso_partners`` and ``contoso_customerassets``, by bulk upserts; lookups bind by alternate
   key (account by ``SoldToParty`` = ``accountnumber``, quote by ``PurchaseOrderByCustomer`` =
   ``contoso_quotingtoolid``, product by ``productnumber``). A record whose parent is missing is
   deferred. Every order write is recorded in the write ledger so flow 11 does not echo it.
5. **Couplings.** An order whose ``PurchaseOrderByCustomer`` is a hub quote couples the quote to
   the SAP order and moves the quote's lifecycle to ``ordered`` with the order number.
6. **Watermark** (job ``sap-inbound``) advances, ETag-guarded, only after silver and Dataverse
   committed; a transient failure raises before it moves, so the next run reads the same changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from shared.adapters.dataverse import BulkResult, UpsertRow, bind
from shared.adapters.quote_store import QuoteStore, StaleWrite
from shared.adapters.records import CouplingStore, RejectionStore
from shared.adapters.sap import EQUIPMENT, SALES_ORDERS, SapRecord
from shared.errors import TransientError
from shared.lake.bronze import BronzeWriter, format_instant
from shared.lake.storage import LakeStorage
from shared.ports import WatermarkPort
from shared.services.poll_mainframe import new_run_id
from shared.sync.echo import WriteLedger
from shared.sync.engine import DeferredStore
from shared.sync.rules import DATAVERSE, SAP, rule

log = logging.getLogger(__name__)

JOB = "sap-inbound"
FLOW = "sap-inbound"
ORDERS = "sales_orders"
ASSETS = "customer_assets"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ID_COLUMNS = {"accounts": "accountid", "products": "productid", "quotes": "quoteid"}


class SapReader(Protocol):
    """What the batch needs of ``SapClient``."""

    def changed_since(
        self, path: str, since: dt.datetime, *, expand: Sequence[str] = ()
    ) -> Iterable[Any]:
        """Pages (``records``, ``high_watermark``) of records changed after ``since``."""
        ...


class DataverseWriter(Protocol):
    """What the batch needs of ``DataverseClient``."""

    def get(
        self, entity_set: str, key: Any, *, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """The row with this key, or None."""
        ...

    def upsert_many(
        self, entity_set: str, logical_name: str, rows: Sequence[UpsertRow]
    ) -> BulkResult:
        """Bulk upsert by key."""
        ...

    def ids_by(
        self, entity_set: str, column: str, values: Iterable[str], *, id_column: str
    ) -> dict[str, str]:
        """The ids of the rows whose ``column`` is one of ``values``, by value."""
        ...


def to_raw(data: Mapping[str, Any]) -> dict[str, Any]:
    """A SAP record in JSON form for bronze and the deferred store.

    ``Edm.DateTime`` ``…Date`` properties become ``YYYY-MM-DD``, other times ISO 8601 UTC,
    decimals text (never float); expanded children recursively.
    """
    raw: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, list):
            raw[name] = [to_raw(v) for v in value if isinstance(v, Mapping)]
        elif isinstance(value, dt.datetime):
            raw[name] = (
                value.astimezone(dt.UTC).date().isoformat()
                if name.endswith("Date")
                else format_instant(value)
            )
        elif isinstance(value, dt.date):
            raw[name] = value.isoformat()
        elif isinstance(value, Decimal):
            raw[name] = str(value)
        else:
            raw[name] = value
    return raw


@dataclass
class InboundResult:
    """What one inbound run did."""

    run_id: str
    orders_read: int = 0
    assets_read: int = 0
    orders_landed: int = 0
    items_landed: int = 0
    partners_landed: int = 0
    assets_landed: int = 0
    deferred: int = 0
    retried: int = 0
    rejected: int = 0
    quotes_ordered: list[str] = field(default_factory=list)
    watermarks: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the timer's log."""
        return (
            f"sap-inbound {self.run_id}: {self.orders_read} order(s) and {self.assets_read} "
            f"asset(s) read; landed {self.orders_landed} order(s), {self.items_landed} item(s), "
            f"{self.partners_landed} partner(s), {self.assets_landed} asset(s); "
            f"{self.deferred} deferred ({self.retried} retried), {self.rejected} rejected, "
            f"{len(self.quotes_ordered)} quote(s) ordered"
        )


@dataclass
class SapInbound:
    """Flow 10 with its collaborators; ``run()`` is one batch."""

    sap: SapReader
    dataverse: DataverseWriter
    storage: LakeStorage
    watermarks: WatermarkPort
    couplings: CouplingStore
    quotes: QuoteStore
    rejections: RejectionStore
    deferred: DeferredStore
    ledger: WriteLedger
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def run(self, *, run_id: str | None = None) -> InboundResult:
        """One batch: deferred records, then changes since the watermarks (see module doc)."""
        result = InboundResult(run_id=run_id or new_run_id(self.clock()))
        cache: dict[tuple[str, str], str | None] = {}
        retry_orders = self.deferred.pending(ORDERS)
        retry_assets = self.deferred.pending(ASSETS)
        result.retried = len(retry_orders) + len(retry_assets)

        orders, order_mark = self._read(SALES_ORDERS, ("to_Item", "to_Partner"), "A_SalesOrder")
        assets, asset_mark = self._read(EQUIPMENT, ("to_Partner",), "Equipment")
        result.orders_read, result.assets_read = len(orders), len(assets)
        self._to_lake(result.run_id, orders, assets)

        fresh = {o["SalesOrder"]: o for o in orders}
        # A deferred order read again is replaced by its newer version.
        pending = [d.record for d in retry_orders if d.key not in fresh]
        fresh_assets = {a["Equipment"]: a for a in assets}
        pending_assets = [d.record for d in retry_assets if d.key not in fresh_assets]
        all_orders = [*pending, *fresh.values()]
        all_assets = [*pending_assets, *fresh_assets.values()]
        self._look_up(cache, all_orders, all_assets)
        self._orders(all_orders, result, cache)
        self._assets(all_assets, result, cache)

        for entity, (mark, value) in {
            "A_SalesOrder": order_mark,
            "Equipment": asset_mark,
        }.items():
            if value is not None:
                self.watermarks.advance(JOB, entity, value, mark, run_id=result.run_id)
                result.watermarks[entity] = value
        log.info("%s", result.summary())
        return result

    # ---- reading and the lake -----------------------------------------------------------------
    def _read(
        self, path: str, expand: Sequence[str], entity: str
    ) -> tuple[list[dict[str, Any]], tuple[str | None, str | None]]:
        stored, etag = self.watermarks.read(JOB, entity)
        since = dt.datetime.fromisoformat(stored) if stored else EPOCH
        records: list[dict[str, Any]] = []
        high: dt.datetime | None = None
        for page in self.sap.changed_since(path, since, expand=expand):
            records.extend(to_raw(r.data if isinstance(r, SapRecord) else r) for r in page.records)
            high = page.high_watermark or high
        value = high.astimezone(dt.UTC).isoformat() if high is not None else None
        return records, (etag, value if value != stored else None)

    def _to_lake(
        self, run_id: str, orders: list[dict[str, Any]], assets: list[dict[str, Any]]
    ) -> None:
        from shared.lake.silver import SilverStage
        from shared.lake.specs import SAP_EQUIPMENT, SAP_ORDER_ITEMS, SAP_ORDERS, SAP_SOURCE

        writer = BronzeWriter(self.storage)
        headers = [
            {**o, "hubPlant": next((i.get("ProductionPlant") for i in o.get("to_Item", [])), None)}
            for o in orders
        ]
        items = [
            {
                **item,
                "hubItemKey": f"{o['SalesOrder']}|{item['SalesOrderItem']}",
                "hubOrderChangedAt": o["LastChangeDateTime"],
            }
            for o in orders
            for item in o.get("to_Item", [])
        ]
        equipment = [{**a, "hubCustomer": _owner(a)} for a in assets]
        for spec, records in (
            (SAP_ORDERS, headers),
            (SAP_ORDER_ITEMS, items),
            (SAP_EQUIPMENT, equipment),
        ):
            if not records:
                continue
            page = writer.write_page(SAP_SOURCE, spec.entity, run_id, 0, records)
            stage = SilverStage(self.storage, spec)
            stage.add(records, page)
            stage.commit()

    # ---- Dataverse ----------------------------------------------------------------------------
    def _look_up(
        self,
        cache: dict[tuple[str, str], str | None],
        orders: Sequence[Mapping[str, Any]],
        assets: Sequence[Mapping[str, Any]],
    ) -> None:
        """Resolve every parent the batch binds to in a few queries, not one GET per key."""
        wanted: dict[tuple[str, str], set[str]] = {
            ("accounts", "accountnumber"): set(),
            ("products", "productnumber"): set(),
            ("quotes", "contoso_quotingtoolid"): set(),
        }
        for order in orders:
            wanted["accounts", "accountnumber"].add(str(order.get("SoldToParty") or ""))
            wanted["quotes", "contoso_quotingtoolid"].add(
                str(order.get("PurchaseOrderByCustomer") or "")
            )
            for item in order.get("to_Item", []):
                wanted["products", "productnumber"].add(str(item.get("Material") or ""))
        for asset in assets:
            wanted["accounts", "accountnumber"].add(_owner(asset) or "")
            wanted["products", "productnumber"].add(str(asset.get("Material") or ""))
        for (entity_set, column), values in wanted.items():
            values.discard("")
            ids = self.dataverse.ids_by(
                entity_set, column, values, id_column=_ID_COLUMNS[entity_set]
            )
            for value in values:
                cache[(entity_set, value)] = ids.get(value)

    def _exists(
        self, cache: dict[tuple[str, str], str | None], entity_set: str, column: str, value: str
    ) -> str | None:
        """The Dataverse id of the row with ``column`` = ``value`` (cached for the run)."""
        if (entity_set, value) not in cache:
            id_column = _ID_COLUMNS[entity_set]
            row = self.dataverse.get(entity_set, {column: value}, select=[id_column])
            cache[(entity_set, value)] = None if row is None else str(row.get(id_column) or "")
        return cache[(entity_set, value)]

    def _missing_parent(
        self, cache: dict[tuple[str, str], str | None], order: Mapping[str, Any]
    ) -> tuple[str, str] | None:
        account = str(order.get("SoldToParty") or "")
        if not account or self._exists(cache, "accounts", "accountnumber", account) is None:
            return ("accounts", account)
        for item in order.get("to_Item", []):
            sku = str(item.get("Material") or "")
            if not sku or self._exists(cache, "products", "productnumber", sku) is None:
                return ("products", sku)
        return None

    def _orders(
        self,
        orders: list[dict[str, Any]],
        result: InboundResult,
        cache: dict[tuple[str, str], str | None],
    ) -> None:
        order_rule = rule(ORDERS)
        ready: list[dict[str, Any]] = []
        for order in orders:
            number = str(order["SalesOrder"])
            parent = self._missing_parent(cache, order)
            if parent is not None:
                self.deferred.defer(
                    ORDERS, number, order, parent_entity=parent[0], parent_key=parent[1]
                )
                result.deferred += 1
                continue
            ready.append(order)
        if not ready:
            return
        rows = []
        for order in ready:
            values = order_rule.to_dataverse(order)
            values["customerid_account@odata.bind"] = bind(
                "accounts", {"accountnumber": str(order["SoldToParty"])}
            )
            reference = str(order.get("PurchaseOrderByCustomer") or "")
            if reference and self._exists(cache, "quotes", "contoso_quotingtoolid", reference):
                values["quoteid@odata.bind"] = bind("quotes", {"contoso_quotingtoolid": reference})
            values["contoso_sapversion"] = str(order.get("LastChangeDateTime") or "")
            rows.append(UpsertRow({"contoso_sapsalesorder": str(order["SalesOrder"])}, values))
        landed = self._settle("salesorders", "salesorder", rows, result)
        result.orders_landed += len(landed)
        outbound = order_rule.outbound_fields()
        by_number = {str(o["SalesOrder"]): o for o in ready}
        for row in landed:
            number = str(row.key["contoso_sapsalesorder"])  # type: ignore[index]
            written = {f.dataverse: row.values.get(f.dataverse) for f in outbound}
            self.ledger.record(DATAVERSE, ORDERS, number, written)
            self.deferred.resolve(ORDERS, number)
            self._couple(by_number[number], cache, result)
        done = [by_number[str(r.key["contoso_sapsalesorder"])] for r in landed]  # type: ignore[index]
        self._items(done, result)
        self._partners(done, result)

    def _items(self, orders: list[dict[str, Any]], result: InboundResult) -> None:
        item_rule = rule("sales_order_items")
        rows = []
        for order in orders:
            number = str(order["SalesOrder"])
            for item in order.get("to_Item", []):
                values = item_rule.to_dataverse(item)
                values["salesorderid@odata.bind"] = bind(
                    "salesorders", {"contoso_sapsalesorder": number}
                )
                values["productid@odata.bind"] = bind(
                    "products", {"productnumber": str(item["Material"])}
                )
                values["lineitemnumber"] = int(str(item["SalesOrderItem"]))
                if item.get("NetAmount") not in (None, ""):
                    values["extendedamount"] = Decimal(str(item["NetAmount"]))
                key = f"{number}|{item['SalesOrderItem']}"
                rows.append(UpsertRow({"contoso_saporderitemkey": key}, values))
        result.items_landed += len(
            self._settle("salesorderdetails", "salesorderdetail", rows, result)
        )

    def _partners(self, orders: list[dict[str, Any]], result: InboundResult) -> None:
        partner_rule = rule("partners")
        rows = []
        for order in orders:
            number = str(order["SalesOrder"])
            for partner in order.get("to_Partner", []):
                values = partner_rule.to_dataverse({**partner, "SalesOrder": number})
                who = partner.get("Customer") or partner.get("Supplier") or partner.get("Personnel")
                values["contoso_name"] = str(who or partner["PartnerFunction"])[:100]
                values["contoso_customernumber"] = str(partner.get("Customer") or "") or None
                values["contoso_SalesOrderId@odata.bind"] = bind(
                    "salesorders", {"contoso_sapsalesorder": number}
                )
                key = f"{number}|{partner['PartnerFunction']}"
                rows.append(UpsertRow({"contoso_partnerkey": key}, values))
        result.partners_landed += len(
            self._settle("contoso_partners", "contoso_partner", rows, result)
        )

    def _assets(
        self,
        assets: list[dict[str, Any]],
        result: InboundResult,
        cache: dict[tuple[str, str], str | None],
    ) -> None:
        asset_rule = rule(ASSETS)
        rows = []
        for asset in assets:
            number = str(asset["Equipment"])
            owner = _owner(asset)
            if owner and self._exists(cache, "accounts", "accountnumber", owner) is None:
                self.deferred.defer(
                    ASSETS, number, asset, parent_entity="accounts", parent_key=owner
                )
                result.deferred += 1
                continue
            values = asset_rule.to_dataverse(asset)
            if owner:
                values["contoso_customernumber"] = owner
                values["contoso_AccountId@odata.bind"] = bind("accounts", {"accountnumber": owner})
            sku = str(asset.get("Material") or "")
            if sku and self._exists(cache, "products", "productnumber", sku):
                values["contoso_ProductId@odata.bind"] = bind("products", {"productnumber": sku})
            rows.append(UpsertRow({"contoso_equipmentnumber": number}, values))
        landed = self._settle("contoso_customerassets", "contoso_customerasset", rows, result)
        for row in landed:
            self.deferred.resolve(ASSETS, str(row.key["contoso_equipmentnumber"]))  # type: ignore[index]
        result.assets_landed += len(landed)

    def _settle(
        self, entity_set: str, logical: str, rows: list[UpsertRow], result: InboundResult
    ) -> list[UpsertRow]:
        """Upsert; record permanent refusals, raise on transient ones; the rows that landed."""
        if not rows:
            return []
        outcome = self.dataverse.upsert_many(entity_set, logical, rows)
        for bad in outcome.rejected:
            result.rejected += 1
            self.rejections.record(
                FLOW,
                f"{entity_set}:{_key_text(bad.key)}",
                getattr(bad.error, "code", None) or "rejected",
                str(bad.error),
            )
        if outcome.transient:
            raise TransientError(
                f"{len(outcome.transient)} {entity_set} row(s) failed transiently; the watermark "
                "stays and the next run sends them again"
            )
        return [rows[r.index] for r in outcome.rows if r.ok]

    # ---- couplings ----------------------------------------------------------------------------
    def _couple(
        self,
        order: Mapping[str, Any],
        cache: dict[tuple[str, str], str | None],
        result: InboundResult,
    ) -> None:
        number = str(order["SalesOrder"])
        reference = str(order.get("PurchaseOrderByCustomer") or "")
        self.couplings.link(ORDERS, {SAP: number})
        if not reference:
            return
        record = self.quotes.get(reference)
        if record is None:
            return  # a customer's own PO number, not a quote that went through the hub
        ids: dict[str, str] = {"quotingtool": reference, SAP: number}
        dataverse_id = record.dataverse_id or self._exists(
            cache, "quotes", "contoso_quotingtoolid", reference
        )
        if dataverse_id:
            ids[DATAVERSE] = dataverse_id
        self.couplings.link("quote", ids)
        for _ in range(5):
            if record is None:
                return
            if record.sap_order_number == number and record.status == "ordered":
                return
            record.sap_order_number = number
            record.step("ordered", self.clock(), sapOrderNumber=number)
            try:
                self.quotes.save(record)
            except StaleWrite:
                record = self.quotes.get(reference)
                continue
            result.quotes_ordered.append(reference)
            return
        raise TransientError(f"quote {reference} kept changing; it is marked ordered next run")


def _owner(asset: Mapping[str, Any]) -> str | None:
    """The customer owning an asset: its sold-to (``AG``) partner, else the first partner."""
    partners = [p for p in asset.get("to_Partner", []) if isinstance(p, Mapping)]
    chosen = next((p for p in partners if p.get("PartnerFunction") == "AG"), None)
    chosen = chosen or (partners[0] if partners else None)
    if chosen is None or not chosen.get("Partner"):
        return None
    partner = str(chosen["Partner"])
    # SAP's ALPHA conversion pads numeric ids with zeros; the account number is unpadded.
    return partner.lstrip("0") or partner if partner.isdigit() else partner


def _key_text(key: Any) -> str:
    if isinstance(key, Mapping):
        return "|".join(str(v) for v in key.values())
    return str(key)
