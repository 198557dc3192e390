"""Flow 11: the SAP outbound batch — order confirmations and changes from Sales back to SAP.

Each run, on the ``sap_outbound`` timer:

1. **Sales orders.** Dataverse change tracking on ``salesorders`` (delta token in
   ``WatermarkStore``, job ``sap-outbound``, entity ``salesorders``) yields the orders changed
   since the last run. Only the fields the sync rule lets flow back are considered
   (``shared.sync.rules``: ``contoso_confirmed`` → ``DeliveryBlockReason`` — confirming lifts the
   ``ZC`` "awaiting confirmation" block — and ``requestdeliveryby`` → ``RequestedDeliveryDate``);
   an empty value never clears SAP's.
2. **Echo.** A change the hub wrote itself (the inbound batch's upserts: same hash in the write
   ledger, or made by the hub's application user) is not written back.
3. **Write.** The SAP order is read (for its ETag); when SAP already holds the values nothing is
   sent; otherwise ``PATCH A_SalesOrder`` with the CSRF token and ``If-Match``. On ``412`` the
   order is read again: when the fields we send did not change in SAP meanwhile the PATCH is
   retried with the new ETag; when they did, the entity's conflict rule (last writer by modified
   time) decides, the loser is logged with both versions, and only a Dataverse win is retried.
   At most ``max_attempts`` PATCHes per order. Couplings (SAP ↔ Dataverse ids) are kept.
4. **Prices** are SAP → Sales only. Changes to ``productpricelevels`` found by change tracking
   (job ``sap-outbound``, entity ``productpricelevels``) that the hub did not make are refused and
   reported (rejection flow ``sync-direction``, with the Sales value and SAP's current prices) and
   never sent to SAP. The first run (or one after an expired token) only sets the baseline.
5. The delta tokens advance after every change of the run is settled. A transient failure
   raises before that, so the next run sees the same changes again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.adapters.dataverse import DeltaTokenExpired, odata_literal
from shared.adapters.records import CouplingStore, RejectionStore
from shared.adapters.sap import (
    PRICE_CONDITIONS,
    PRICE_VALIDITIES,
    EtagConflict,
    SalesOrder,
)
from shared.errors import HubError, PermanentError
from shared.ports import WatermarkPort
from shared.services.poll_mainframe import new_run_id
from shared.sync.echo import EchoFilter, WriteLedger
from shared.sync.engine import SyncEngine, Version
from shared.sync.rules import DATAVERSE, SAP, rule

log = logging.getLogger(__name__)

JOB = "sap-outbound"
FLOW = "sap-outbound"
ORDERS = "sales_orders"
ORDER_SELECT = (
    "salesorderid",
    "contoso_sapsalesorder",
    "requestdeliveryby",
    "contoso_confirmed",
    "modifiedon",
    "_modifiedby_value",
)
PRICE_SELECT = (
    "productpricelevelid",
    "contoso_pricekey",
    "amount",
    "modifiedon",
    "_modifiedby_value",
)


class SapWriter(Protocol):
    """What the batch needs of ``SapClient``."""

    def get_sales_order(self, number: str, *, expand_items: bool = True) -> SalesOrder:
        """One order with its ETag."""
        ...

    def update_sales_order(self, number: str, changes: Mapping[str, Any], etag: str) -> str:
        """PATCH with If-Match; ``EtagConflict`` on 412."""
        ...

    def read_all(
        self, path: str, *, filter_expr: str | None = None, select: Sequence[str] = ()
    ) -> Iterable[list[Any]]:
        """Every record matching a filter, page by page."""
        ...


class ChangeReader(Protocol):
    """What the batch needs of ``DataverseClient``."""

    def changes(self, entity_set: str, select: Sequence[str], delta_link: str | None = None) -> Any:
        """All changes since ``delta_link`` (``upserted``, ``deleted``, ``delta_link``)."""
        ...


@dataclass
class OutboundResult:
    """What one outbound run did."""

    run_id: str
    changes: int = 0
    echoes: int = 0
    unchanged: int = 0
    written: list[str] = field(default_factory=list)
    conflicts: int = 0
    conflicts_lost: int = 0
    rejected: int = 0
    prices_refused: int = 0
    baseline: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the timer's log."""
        return (
            f"sap-outbound {self.run_id}: {self.changes} order change(s), {len(self.written)} "
            f"written to SAP, {self.echoes} echo(es) suppressed, {self.unchanged} already in SAP, "
            f"{self.conflicts} conflict(s) ({self.conflicts_lost} lost to SAP), {self.rejected} "
            f"rejected, {self.prices_refused} price change(s) refused"
            + (f"; baseline set for {', '.join(self.baseline)}" if self.baseline else "")
        )


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _same(sap_value: Any, wanted: Any) -> bool:
    if isinstance(sap_value, dt.datetime) and isinstance(wanted, dt.datetime):
        return sap_value.date() == wanted.date()
    return bool((sap_value or "") == (wanted or ""))


@dataclass
class SapOutbound:
    """Flow 11 with its collaborators; ``run()`` is one batch."""

    sap: SapWriter
    dataverse: ChangeReader
    watermarks: WatermarkPort
    couplings: CouplingStore
    rejections: RejectionStore
    engine: SyncEngine
    echo: EchoFilter
    ledger: WriteLedger
    max_attempts: int = 3
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def run(self, *, run_id: str | None = None) -> OutboundResult:
        """One batch: order changes to SAP, then the price direction check (see module doc)."""
        result = OutboundResult(run_id=run_id or new_run_id(self.clock()))
        rows, commit = self._changes("salesorders", ORDER_SELECT, result, baseline=False)
        for row in rows:
            if row.get("contoso_sapsalesorder"):
                result.changes += 1
                self._order(row, result)
        commit()
        prices, commit_prices = self._changes(
            "productpricelevels", PRICE_SELECT, result, baseline=True
        )
        for row in prices:
            self._price(row, result)
        commit_prices()
        log.info("%s", result.summary())
        return result

    def _changes(
        self, entity_set: str, select: Sequence[str], result: OutboundResult, *, baseline: bool
    ) -> tuple[list[dict[str, Any]], Callable[[], None]]:
        """The changed rows since the stored delta token and a callable that saves the new one.

        ``baseline``: without a usable token, read everything only to get one (no rows).
        """
        stored, etag = self.watermarks.read(JOB, entity_set)
        try:
            page = self.dataverse.changes(entity_set, select, stored)
            first = stored is None
        except DeltaTokenExpired:
            log.warning("%s: delta token expired; reading %s in full", JOB, entity_set)
            page = self.dataverse.changes(entity_set, select, None)
            first = True
        rows: list[dict[str, Any]] = list(page.upserted)
        if baseline and first:
            result.baseline.append(entity_set)
            rows = []

        def commit() -> None:
            if page.delta_link and page.delta_link != stored:
                self.watermarks.advance(
                    JOB, entity_set, page.delta_link, etag, run_id=result.run_id
                )

        return rows, commit

    # ---- sales orders -------------------------------------------------------------------------
    def _order(self, row: Mapping[str, Any], result: OutboundResult) -> None:
        order_rule = rule(ORDERS)
        number = str(row["contoso_sapsalesorder"])
        projection = {f.dataverse: row.get(f.dataverse) for f in order_rule.outbound_fields()}
        if self.echo.is_echo(
            DATAVERSE, ORDERS, number, projection, modified_by=row.get("_modifiedby_value")
        ):
            result.echoes += 1
            return
        wanted = order_rule.outbound_to_sap({k: v for k, v in projection.items() if v is not None})
        if not self.engine.permit(order_rule, DATAVERSE, SAP, number, attempted=wanted):
            return
        modified_at = _parse_time(row.get("modifiedon"))
        try:
            current = self.sap.get_sales_order(number, expand_items=False)
            for _ in range(self.max_attempts):
                send = {k: v for k, v in wanted.items() if not _same(current.header.get(k), v)}
                if not send:
                    result.unchanged += 1
                    self._settled(number, row, wanted)
                    return
                if current.etag is None:
                    raise PermanentError(f"SAP sales order {number} has no ETag", code="502")
                try:
                    self.sap.update_sales_order(number, send, current.etag)
                except EtagConflict as conflict:
                    fresh = conflict.current
                    if all(_same(fresh.header.get(k), v) for k, v in send.items()):
                        # Our PATCH landed and only its answer was lost (the retry then met our
                        # own new ETag, as SapClient.update_sales_order documents): SAP holds
                        # exactly what we sent, so there is no conflict to resolve or log.
                        result.written.append(number)
                        self._settled(number, row, wanted)
                        return
                    result.conflicts += 1
                    touched = [
                        k for k in wanted if not _same(fresh.header.get(k), current.header.get(k))
                    ]
                    if touched:
                        winner = self.engine.resolve(
                            order_rule,
                            number,
                            Version(DATAVERSE, dict(send), modified_at),
                            Version(
                                SAP,
                                {k: fresh.header.get(k) for k in wanted},
                                _parse_time(fresh.header.get("LastChangeDateTime")),
                            ),
                        )
                        if winner.system == SAP:
                            result.conflicts_lost += 1
                            return
                    current = fresh
                    continue
                result.written.append(number)
                self._settled(number, row, wanted)
                return
            raise PermanentError(
                f"SAP sales order {number} kept changing; gave up after {self.max_attempts} "
                "attempt(s)",
                code="412",
            )
        except PermanentError as exc:
            result.rejected += 1
            self.rejections.record(
                FLOW,
                f"salesorders:{number}",
                exc.code or "rejected",
                str(exc),
                **{k: str(v) for k, v in wanted.items()},
            )

    def _settled(self, number: str, row: Mapping[str, Any], sent: Mapping[str, Any]) -> None:
        self.ledger.record(SAP, ORDERS, number, sent)
        ids: dict[str, str] = {SAP: number}
        if row.get("salesorderid"):
            ids[DATAVERSE] = str(row["salesorderid"])
        self.couplings.link(ORDERS, ids)

    # ---- prices -------------------------------------------------------------------------------
    def _price(self, row: Mapping[str, Any], result: OutboundResult) -> None:
        price_rule = rule("prices")
        key = str(row.get("contoso_pricekey") or row.get("productpricelevelid"))
        attempted = {"amount": str(row.get("amount")), "modifiedBy": row.get("_modifiedby_value")}
        if self.echo.is_echo(
            DATAVERSE,
            "prices",
            key,
            {"amount": row.get("amount")},
            modified_by=row.get("_modifiedby_value"),
        ):
            result.echoes += 1
            return
        refused = not self.engine.permit(
            price_rule, DATAVERSE, SAP, key, attempted=attempted, current=self._sap_prices(key)
        )
        if refused:
            result.prices_refused += 1

    def _sap_prices(self, key: str) -> dict[str, Any] | None:
        """SAP's current list prices of the key's material, by currency (for the report)."""
        sku = key.rsplit("|", 1)[-1]
        try:
            records = [
                r
                for page in self.sap.read_all(
                    PRICE_VALIDITIES, filter_expr=f"Material eq {odata_literal(sku)}"
                )
                for r in page
            ]
            prices: dict[str, Any] = {}
            for validity in records:
                number = validity.get("ConditionRecord")
                for page in self.sap.read_all(
                    PRICE_CONDITIONS, filter_expr=f"ConditionRecord eq {odata_literal(str(number))}"
                ):
                    for condition in page:
                        unit = str(condition.get("ConditionRateValueUnit") or "")
                        prices[unit] = str(condition.get("ConditionRateValue"))
        except HubError as exc:
            log.warning("SAP prices of %s unavailable for the refusal report: %s", sku, exc)
            return None
        return {"material": sku, "prices": prices}
