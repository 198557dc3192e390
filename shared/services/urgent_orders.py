"""Flow 12: urgent order updates over session-enabled Service Bus queues, one each way.

The message schema is in ``docs/urgent-orders.md``. What makes the flow safe:

- **Order**: the session id is the order number, so the platform hands one order's updates to
  one function instance at a time, in send order.
- **Idempotent by message id**: every handled message id (applied, stale, rejected) is recorded
  in the ``hubmessages`` table; a redelivered or re-sent message is recognised and completes.
- **Never backwards**: the last applied source version per (direction, order) is kept in
  ``huborderversions``; an update whose version is not newer is skipped and logged. Updates
  sent out of order (across sessions, or re-sent late) therefore cannot overwrite newer data.
- **Permanent problems complete**: bad JSON, an unknown order or item, an unknown or
  read-only field are recorded as rejections (``RejectionStore``) with a reason, and the message
  completes. Only transient failures raise, so the platform redelivers and in the end
  dead-letters.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared.adapters.dataverse import DataverseClient
from shared.adapters.records import RejectionStore, table_key
from shared.adapters.sap import EtagConflict, SalesOrder, SapClient
from shared.errors import PermanentError, TransientError
from shared.sync.rules import CONFIRMATION_BLOCK

log = logging.getLogger(__name__)

Direction = Literal["sap-to-dataverse", "dataverse-to-sap"]
DIRECTIONS: tuple[Direction, ...] = ("sap-to-dataverse", "dataverse-to-sap")
MESSAGES_TABLE = "hubmessages"
VERSIONS_TABLE = "huborderversions"
MAX_SAP_ATTEMPTS = 2  # the first try plus one retry after a re-read on 412
# Which changes each direction may carry: SAP masters the order status, Sales confirms.
ALLOWED_CHANGES: dict[Direction, frozenset[str]] = {
    "sap-to-dataverse": frozenset({"requestedDeliveryDate", "status", "items"}),
    "dataverse-to-sap": frozenset({"requestedDeliveryDate", "confirmed", "items"}),
}
# A confirmed order has its delivery block released; an unconfirmed one carries this block.


def flow_name(direction: Direction) -> str:
    """The rejection-store flow of a direction (``urgent-sap-to-dataverse`` …)."""
    return f"urgent-{direction}"


class Rejected(PermanentError):
    """A message that no retry can apply; recorded as a rejection, and the message completes."""


@dataclass(frozen=True)
class ItemChange:
    """A new requested quantity for one order item."""

    item: str
    quantity: Decimal


@dataclass(frozen=True)
class UrgentUpdate:
    """One parsed urgent order update."""

    message_id: str
    order: str
    version: tuple[int, str]  # (kind, sortable text): kind 0 = time stamp, 1 = version number
    requested_delivery_date: dt.date | None
    status: str | None
    confirmed: bool | None
    items: tuple[ItemChange, ...]


@dataclass(frozen=True)
class Outcome:
    """What happened to a message: ``applied``, ``duplicate``, ``stale`` or ``rejected``."""

    result: Literal["applied", "duplicate", "stale", "rejected"]
    message_id: str
    order: str | None = None
    reason: str | None = None


def _version(value: Any) -> tuple[int, str]:
    """A comparable version: an integer ``versionnumber`` or an ISO time stamp
    (SAP ``LastChangeDateTime``, Dataverse ``modifiedon``)."""
    if isinstance(value, bool):
        raise Rejected("sourceVersion must be a version number or an ISO 8601 time stamp")
    if isinstance(value, int):
        if value < 0:
            raise Rejected("sourceVersion must not be negative")
        return (1, f"{value:020d}")
    if isinstance(value, str) and value.isdigit():
        return (1, f"{int(value):020d}")
    if isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value)
        except ValueError:
            raise Rejected(f"sourceVersion {value[:60]!r} is not a time stamp") from None
        if stamp.tzinfo is None:
            raise Rejected("sourceVersion time stamps must carry a time zone")
        return (0, stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    raise Rejected("sourceVersion must be a version number or an ISO 8601 time stamp")


def _text(body: Mapping[str, Any], name: str, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise Rejected(f"{name} must be a non-empty string of at most {max_length} characters")
    return value.strip()


def _item_number(value: Any) -> str:
    text = str(value).strip() if isinstance(value, (str, int)) else ""
    if not text.isdigit() or len(text) > 6:
        raise Rejected(f"item {value!r} is not an SAP item number")
    # SAP shows item numbers with leading zeros in some APIs (000010) and without in others.
    return text.lstrip("0") or "0"


def parse_update(raw: bytes, direction: Direction, message_id: str) -> UrgentUpdate:
    """Validate an urgent update message; ``Rejected`` says why it cannot be applied."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: the C decoder gives up on deep nesting; retrying would fail the same way.
        raise Rejected("the message body is not JSON") from None
    if not isinstance(body, dict):
        raise Rejected("the message body must be a JSON object")
    unknown = set(body) - {"messageId", "orderNumber", "sourceVersion", "changes"}
    if unknown:
        raise Rejected(f"unknown members: {', '.join(sorted(unknown))}")
    order = _text(body, "orderNumber", 10)
    if "sourceVersion" not in body:
        raise Rejected("sourceVersion is required")
    version = _version(body["sourceVersion"])
    changes = body.get("changes")
    if not isinstance(changes, dict) or not changes:
        raise Rejected("changes must be a non-empty object")
    fields = set(changes)
    not_allowed = fields - ALLOWED_CHANGES[direction]
    if not_allowed:
        raise Rejected(f"fields not mappable {direction}: {', '.join(sorted(not_allowed))}")
    date: dt.date | None = None
    if "requestedDeliveryDate" in changes:
        try:
            date = dt.date.fromisoformat(str(changes["requestedDeliveryDate"]))
        except ValueError:
            raise Rejected("requestedDeliveryDate must be a date (YYYY-MM-DD)") from None
    status: str | None = None
    if "status" in changes:
        value = changes["status"]
        if not isinstance(value, str) or not 1 <= len(value) <= 1:
            raise Rejected("status must be an SAP overall status code (one character)")
        status = value
    confirmed: bool | None = None
    if "confirmed" in changes:
        if not isinstance(changes["confirmed"], bool):
            raise Rejected("confirmed must be true or false")
        confirmed = changes["confirmed"]
    items: list[ItemChange] = []
    if "items" in changes:
        if not isinstance(changes["items"], list) or not changes["items"]:
            raise Rejected("items must be a non-empty list")
        for entry in changes["items"]:
            if not isinstance(entry, dict) or set(entry) != {"item", "quantity"}:
                raise Rejected("each item change must be {item, quantity}")
            try:
                quantity = Decimal(str(entry["quantity"]))
            except InvalidOperation:
                raise Rejected(f"quantity {entry['quantity']!r} is not a number") from None
            if not quantity.is_finite() or quantity <= 0:
                raise Rejected("quantities must be positive")
            items.append(ItemChange(_item_number(entry["item"]), quantity))
        if len({i.item for i in items}) != len(items):
            raise Rejected("an item appears twice")
    return UrgentUpdate(message_id, order, version, date, status, confirmed, tuple(items))


@dataclass
class UrgentOrders:
    """Applies urgent order updates in both directions (built once by ``shared.wiring``)."""

    dataverse: DataverseClient
    sap: SapClient
    messages: TableClient
    versions: TableClient
    rejections: RejectionStore

    def handle(self, direction: Direction, raw: bytes, *, message_id: str) -> Outcome:
        """Apply one message; raises only for transient failures (the platform redelivers)."""
        if not message_id:
            message_id = _body_message_id(raw)
        if self._seen(direction, message_id):
            log.info("urgent %s: message %s already handled", direction, message_id)
            return Outcome("duplicate", message_id)
        order: str | None = None
        try:
            update = parse_update(raw, direction, message_id)
            order = update.order
            outcome = self._apply(direction, update)
        except Rejected as exc:
            outcome = self._reject(direction, message_id, order, str(exc))
        except PermanentError as exc:
            # An SAP or Dataverse refusal of this content (not of the hub's state): retrying
            # would fail the same way, so it is recorded rather than dead-lettered.
            outcome = self._reject(direction, message_id, order, f"target refused: {exc}")
        self._remember(direction, message_id, outcome)
        return outcome

    # ---- bookkeeping ----------------------------------------------------------------------------
    def _seen(self, direction: Direction, message_id: str) -> bool:
        try:
            self.messages.get_entity(table_key(direction), table_key(message_id))
        except ResourceNotFoundError:
            return False
        return True

    def _remember(self, direction: Direction, message_id: str, outcome: Outcome) -> None:
        self.messages.upsert_entity(
            {
                "PartitionKey": table_key(direction),
                "RowKey": table_key(message_id),
                "Result": outcome.result,
                "Order": outcome.order or "",
                "At": dt.datetime.now(dt.UTC),
            },
            mode=UpdateMode.REPLACE,
        )

    def _reject(
        self, direction: Direction, message_id: str, order: str | None, reason: str
    ) -> Outcome:
        log.warning("urgent %s: message %s rejected: %s", direction, message_id, reason)
        self.rejections.record(
            flow_name(direction), message_id, "rejected", reason, order=order or ""
        )
        return Outcome("rejected", message_id, order, reason)

    def applied_version(self, direction: Direction, order: str) -> tuple[int, str] | None:
        """The last source version applied for ``order`` in ``direction``."""
        try:
            row = self.versions.get_entity(table_key(direction), table_key(order))
        except ResourceNotFoundError:
            return None
        return (int(row["Kind"]), str(row["Version"]))

    def _record_version(self, direction: Direction, update: UrgentUpdate) -> None:
        self.versions.upsert_entity(
            {
                "PartitionKey": table_key(direction),
                "RowKey": table_key(update.order),
                "Kind": update.version[0],
                "Version": update.version[1],
                "MessageId": update.message_id,
            },
            mode=UpdateMode.REPLACE,
        )

    # ---- applying -------------------------------------------------------------------------------
    def _apply(self, direction: Direction, update: UrgentUpdate) -> Outcome:
        held = self.applied_version(direction, update.order)
        if held is not None:
            if held[0] != update.version[0]:
                raise Rejected(
                    "sourceVersion kind differs from the versions applied to this order before"
                )
            if update.version[1] <= held[1]:
                log.info(
                    "urgent %s: order %s message %s is stale (version %s, applied %s); skipped",
                    direction,
                    update.order,
                    update.message_id,
                    update.version[1],
                    held[1],
                )
                return Outcome("stale", update.message_id, update.order, f"applied {held[1]}")
        if direction == "sap-to-dataverse":
            applied = self._to_dataverse(update)
        else:
            applied = self._to_sap(update)
        if applied:
            self._record_version(direction, update)
            return Outcome("applied", update.message_id, update.order)
        return Outcome("stale", update.message_id, update.order, "target holds a newer version")

    def _to_dataverse(self, update: UrgentUpdate) -> bool:
        key = {"contoso_sapsalesorder": update.order}
        row = self.dataverse.get("salesorders", key, select=["salesorderid", "contoso_sapversion"])
        if row is None:
            raise Rejected(f"order {update.order} is unknown to Dataverse")
        held = row.get("contoso_sapversion")
        if update.version[0] == 0 and isinstance(held, str) and held:
            try:
                if _version(held)[1] >= update.version[1]:
                    # The batch (flow 10) already brought this or a later SAP version.
                    return False
            except Rejected:
                log.warning("order %s holds an unreadable contoso_sapversion", update.order)
        item_keys = [f"{update.order}|{i.item}" for i in update.items]
        for item_key in item_keys:
            if (
                self.dataverse.get(
                    "salesorderdetails",
                    {"contoso_saporderitemkey": item_key},
                    select=["salesorderdetailid"],
                )
                is None
            ):
                raise Rejected(f"order item {item_key} is unknown to Dataverse")
        values: dict[str, Any] = {}
        if update.version[0] == 0:
            values["contoso_sapversion"] = update.version[1]
        if update.requested_delivery_date is not None:
            values["requestdeliveryby"] = update.requested_delivery_date.isoformat()
        if update.status is not None:
            values["contoso_sapstatus"] = update.status
        for change, item_key in zip(update.items, item_keys, strict=True):
            self.dataverse.upsert(
                "salesorderdetails",
                {"contoso_saporderitemkey": item_key},
                {"quantity": change.quantity},
                if_match="*",
            )
        # The header last: its contoso_sapversion says the whole update landed.
        if values:
            self.dataverse.upsert("salesorders", key, values, if_match="*")
        return True

    def _to_sap(self, update: UrgentUpdate) -> bool:
        order = self._read_sap(update.order)
        known = {_item_number(i.get("SalesOrderItem", "")) for i in order.items}
        missing = [i.item for i in update.items if i.item not in known]
        if missing:
            raise Rejected(f"order {update.order} has no item {', '.join(missing)} in SAP")
        header: dict[str, Any] = {}
        if update.requested_delivery_date is not None:
            header["RequestedDeliveryDate"] = dt.datetime.combine(
                update.requested_delivery_date, dt.time(), dt.UTC
            )
        if update.confirmed is not None:
            header["DeliveryBlockReason"] = "" if update.confirmed else CONFIRMATION_BLOCK
        for attempt in range(1, MAX_SAP_ATTEMPTS + 1):
            etag = order.etag
            if etag is None:
                raise TransientError(f"SAP sales order {update.order} came without an ETag")
            try:
                if header:
                    etag = self.sap.update_sales_order(update.order, header, etag)
                for change in update.items:
                    etag = self.sap.update_sales_order_item(
                        update.order,
                        _sap_item(order, change.item),
                        {"RequestedQuantity": change.quantity},
                        etag,
                    )
                return True
            except EtagConflict as exc:
                # Someone changed the order in SAP between our read and our write. The urgent
                # update is a newer explicit change, so it is re-applied on the current record;
                # bounded, so a hot record goes back to the platform instead of spinning here.
                log.info(
                    "urgent: SAP order %s changed meanwhile (attempt %d)", update.order, attempt
                )
                order = exc.current
        raise TransientError(f"SAP sales order {update.order} kept changing; left for redelivery")

    def _read_sap(self, number: str) -> SalesOrder:
        try:
            return self.sap.get_sales_order(number)
        except PermanentError as exc:
            if exc.code == "404" or "not found" in str(exc).lower():
                raise Rejected(f"order {number} is unknown to SAP") from exc
            raise


def _sap_item(order: SalesOrder, item: str) -> str:
    """SAP's own spelling of an item number (with or without its leading zeros)."""
    for row in order.items:
        number = str(row.get("SalesOrderItem", ""))
        if _item_number(number) == item:
            return number
    raise Rejected(f"order {order.number} has no item {item} in SAP")


def _body_message_id(raw: bytes) -> str:
    """A message id from the body when the broker gave none (never the case on Service Bus)."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("messageId"), str) and body["messageId"]:
        return str(body["messageId"])[:128]
    raise TransientError("a message without a message id cannot be handled idempotently")
