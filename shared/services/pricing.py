"""Flow 1b, prices: approved price-list entries that changed since a time, paged for the Quoting
Tool (``GET /api/pricing``). Prices only flow toward the Quoting Tool; nothing here writes.

Source: Dataverse ``productpricelevels``. An entry is *approved* when a pricing manager stamped
``contoso_approvedon``; it is *changed since T* when ``modifiedon ge T``. Each entry is shaped as
``shared.models.pricing.PriceListEntry``: the product's ``productnumber`` is the SKU, the price
list's name and ISO currency come from ``pricelevels`` and ``transactioncurrencies`` (Dataverse's
Web API has no ``$expand`` in our sandbox and these are small, so they are looked up by id).

Paging is keyset paging in a stable order, never ``$skip`` (a row that changes while a client
pages would shift the offsets and another row would be skipped). The order is
``(modifiedon, productpricelevelid)``, but the Web API shows ``modifiedon`` to the second while
Dataverse may store it more finely, so a cursor of "the last row's modifiedon and id" could not
be compared reliably. Instead the cursor names a *one-second window* and the last id read in it:

- rows of earlier seconds come from an ordered scan; only whole seconds are taken from a scan
  (the rows of the scan's last second are re-read as a window), so no row of a second is ever
  split between a scan and a window;
- a window reads ``modifiedon`` in ``[second, second + 1 s)`` in id order after the cursor's id.

A client that pages to the end therefore sees every row that matched when it started exactly
once; a row changed while it pages moves to a later second and is sent (again) later, which is
what a changed-only feed must do.

The continuation token is opaque to clients but not secret: base64url of a small JSON object
(``since``, window second, last id). It is validated structurally and must belong to the same
``since``; a token that does not parse is refused with 400. It is deliberately unsigned: a forged
token can only ask for a page of rows the caller may read anyway with another ``since``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

from pydantic import ValidationError

from shared.adapters.dataverse import odata_literal
from shared.models.pricing import MAX_CONTINUATION_TOKEN_CHARS, PriceListEntry, PricingPage

log = logging.getLogger(__name__)

PAGE_SIZE: Final = 500
"""Entries per page of ``GET /api/pricing``."""
LOOKUP_CHUNK: Final = 50
"""Ids per lookup query (``id eq a or id eq b ...``), keeping the URL well under 32 KB."""
TOKEN_VERSION: Final = 1
ENTRY_COLUMNS: Final = (
    "productpricelevelid",
    "_productid_value",
    "_pricelevelid_value",
    "_transactioncurrencyid_value",
    "amount",
    "contoso_approvedon",
    "contoso_approvedby",
    "modifiedon",
)
APPROVED: Final = "contoso_approvedon ne null"
_ONE_SECOND: Final = dt.timedelta(seconds=1)
_PRICE_PLACES: Final = Decimal("0.0001")


class DataverseReader(Protocol):
    """The part of ``shared.adapters.dataverse.DataverseClient`` the feed uses."""

    def query(
        self,
        entity_set: str,
        *,
        select: Sequence[str] | None = None,
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Rows matching an OData query, following next links."""
        ...


class InvalidToken(ValueError):
    """A continuation token this API did not issue for this ``since`` (answer 400)."""


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: inside the one-second window ``second``, after ``after``
    (None: at the window's first row). Rows of earlier seconds were all delivered."""

    since: dt.datetime
    second: dt.datetime
    after: uuid.UUID | None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def _second(value: dt.datetime) -> dt.datetime:
    return _utc(value).replace(microsecond=0)


def _instant_text(value: dt.datetime) -> str:
    return _utc(value).isoformat(timespec="microseconds")


def encode_token(cursor: Cursor) -> str:
    """The opaque continuation token of ``cursor`` (base64url JSON, no padding)."""
    body = {
        "v": TOKEN_VERSION,
        "s": _instant_text(cursor.since),
        "w": _instant_text(cursor.second),
        "k": str(cursor.after) if cursor.after is not None else None,
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: str, since: dt.datetime) -> Cursor:
    """The cursor in ``token``; raises ``InvalidToken`` unless it is well formed, this API's
    version, and issued for the same ``since`` (compared as instants)."""
    if not token or len(token) > MAX_CONTINUATION_TOKEN_CHARS:
        raise InvalidToken("continuationToken has an impossible length")
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
        body = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidToken("continuationToken is not a token this API issued") from None
    if not isinstance(body, dict) or set(body) != {"v", "s", "w", "k"}:
        raise InvalidToken("continuationToken is not a token this API issued")
    if body["v"] != TOKEN_VERSION:
        raise InvalidToken("continuationToken is from another version of this API")
    try:
        token_since = _parse_instant(body["s"])
        second = _parse_instant(body["w"])
        after = uuid.UUID(body["k"]) if body["k"] is not None else None
    except (TypeError, ValueError, AttributeError):
        raise InvalidToken("continuationToken is not a token this API issued") from None
    if token_since != _utc(since):
        raise InvalidToken("continuationToken belongs to another value of since")
    if second.microsecond or second < _second(since):
        raise InvalidToken("continuationToken is not a token this API issued")
    return Cursor(token_since, second, after)


def _parse_instant(text: object) -> dt.datetime:
    if not isinstance(text, str):
        raise TypeError("expected an ISO 8601 string")
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("naive time")
    return _utc(value)


def _row_modified(row: Mapping[str, Any]) -> dt.datetime:
    value = row.get("modifiedon")
    if not isinstance(value, str):
        raise ValueError("Dataverse row without modifiedon")
    return _utc(dt.datetime.fromisoformat(value))


@dataclass
class PricingFeed:
    """Pages of approved, changed price-list entries from Dataverse (see the module docstring)."""

    dataverse: DataverseReader
    page_size: int = PAGE_SIZE

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 4999:
            raise ValueError("page_size must be between 1 and 4999")

    def page(self, since: dt.datetime, token: str | None = None) -> PricingPage:
        """One page of entries changed at or after ``since``, oldest change first.

        ``token`` is the previous page's ``continuationToken``; raises ``InvalidToken`` for one
        that is malformed or belongs to another ``since``. ``TransientError`` from Dataverse
        propagates (the caller answers 503).
        """
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        since = _utc(since)
        cursor = decode_token(token, since) if token is not None else None
        rows, next_cursor = self._rows(since, cursor)
        items = self._entries(rows)
        return PricingPage(
            items=items,
            continuation_token=encode_token(next_cursor) if next_cursor is not None else None,
        )

    # ---- reading rows in keyset order ---------------------------------------------------------
    def _rows(
        self, since: dt.datetime, cursor: Cursor | None
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        rows: list[dict[str, Any]] = []
        window = cursor.second if cursor is not None else None
        after = cursor.after if cursor is not None else None
        scan_from = since
        while True:
            remaining = self.page_size - len(rows)
            if window is not None:
                if remaining == 0:
                    # A scan filled the page with whole seconds; the window is the next page.
                    return rows, Cursor(since, window, after)
                found = self._window(since, window, after, remaining + 1)
                if len(found) > remaining:
                    taken = found[:remaining]
                    rows.extend(taken)
                    last = uuid.UUID(str(taken[-1]["productpricelevelid"]))
                    return rows, Cursor(since, window, last)
                rows.extend(found)
                scan_from = max(since, window + _ONE_SECOND)
                window, after = None, None
                if len(rows) == self.page_size:
                    # The page is full exactly at a window's end: continue after that window.
                    return rows, Cursor(since, scan_from, None)
                continue
            found = self._scan(scan_from, self.page_size - len(rows) + 1)
            if len(found) <= self.page_size - len(rows):
                rows.extend(found)
                return rows, None
            # More rows than fit: take the whole seconds before the last one read and re-read
            # that last second as a window, in id order.
            last_second = _second(_row_modified(found[-1]))
            rows.extend(r for r in found if _second(_row_modified(r)) < last_second)
            window, after = last_second, None

    def _window(
        self, since: dt.datetime, second: dt.datetime, after: uuid.UUID | None, top: int
    ) -> list[dict[str, Any]]:
        clauses = [
            APPROVED,
            f"modifiedon ge {odata_literal(max(since, second))}",
            f"modifiedon lt {odata_literal(second + _ONE_SECOND)}",
        ]
        if after is not None:
            clauses.append(f"productpricelevelid gt {odata_literal(after)}")
        return list(
            self.dataverse.query(
                "productpricelevels",
                select=ENTRY_COLUMNS,
                filter=" and ".join(clauses),
                orderby="productpricelevelid asc",
                top=top,
                page_size=top,
            )
        )

    def _scan(self, start: dt.datetime, top: int) -> list[dict[str, Any]]:
        return list(
            self.dataverse.query(
                "productpricelevels",
                select=ENTRY_COLUMNS,
                filter=f"{APPROVED} and modifiedon ge {odata_literal(start)}",
                orderby="modifiedon asc,productpricelevelid asc",
                top=top,
                page_size=top,
            )
        )

    # ---- shaping ------------------------------------------------------------------------------
    def _entries(self, rows: Sequence[Mapping[str, Any]]) -> list[PriceListEntry]:
        products = self._lookup(
            "products", "productid", ["productnumber"], (r.get("_productid_value") for r in rows)
        )
        lists = self._lookup(
            "pricelevels",
            "pricelevelid",
            ["name", "_transactioncurrencyid_value"],
            (r.get("_pricelevelid_value") for r in rows),
        )
        currency_ids = [r.get("_transactioncurrencyid_value") for r in rows]
        currency_ids += [p.get("_transactioncurrencyid_value") for p in lists.values()]
        currencies = self._lookup(
            "transactioncurrencies", "transactioncurrencyid", ["isocurrencycode"], currency_ids
        )
        entries: list[PriceListEntry] = []
        for row in rows:
            entry = self._entry(row, products, lists, currencies)
            if entry is not None:
                entries.append(entry)
        return entries

    def _entry(
        self,
        row: Mapping[str, Any],
        products: Mapping[str, Mapping[str, Any]],
        lists: Mapping[str, Mapping[str, Any]],
        currencies: Mapping[str, Mapping[str, Any]],
    ) -> PriceListEntry | None:
        entry_id = row.get("productpricelevelid")
        product = products.get(str(row.get("_productid_value") or "").lower())
        price_list = lists.get(str(row.get("_pricelevelid_value") or "").lower())
        if product is None or price_list is None:
            # A price entry always names both; a missing one means it was deleted meanwhile.
            log.warning("pricing: entry %s has no product or price list; not sent", entry_id)
            return None
        currency_id = row.get("_transactioncurrencyid_value") or price_list.get(
            "_transactioncurrencyid_value"
        )
        currency = currencies.get(str(currency_id or "").lower(), {}).get("isocurrencycode")
        try:
            amount = _price_text(row.get("amount"))
            return PriceListEntry(
                sku=product.get("productnumber"),
                price_list=price_list.get("name"),
                currency=currency,
                amount=amount,
                approved_on=row.get("contoso_approvedon"),
                approved_by=(str(row.get("contoso_approvedby") or "").strip() or None),
                modified_on=row.get("modifiedon"),
            )
        except (ValidationError, ValueError) as exc:
            # Dataverse data the contract cannot carry (a product number that is no valid SKU,
            # a currency that is not ISO 4217, a negative price): skipped loudly, never mangled.
            reasons = (
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            log.warning("pricing: entry %s not sent: %s", entry_id, reasons)
            return None

    def _lookup(
        self, entity_set: str, key: str, columns: list[str], ids: Iterable[object]
    ) -> dict[str, dict[str, Any]]:
        wanted = sorted({str(i).lower() for i in ids if i})
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            chunk = [uuid.UUID(i) for i in wanted[start : start + LOOKUP_CHUNK]]
            filter_text = " or ".join(f"{key} eq {odata_literal(i)}" for i in chunk)
            for row in self.dataverse.query(
                entity_set, select=[key, *columns], filter=filter_text, page_size=LOOKUP_CHUNK
            ):
                found[str(row[key]).lower()] = row
        return found


def _price_text(value: object) -> str:
    """Dataverse money as a 4-decimal string; refuses a value that would need rounding."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise ValueError("amount is missing or not a number")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError("amount is not a decimal") from None
    if not amount.is_finite():
        raise ValueError("amount is not finite")
    exact = amount.quantize(_PRICE_PLACES)
    if exact != amount:
        raise ValueError("amount has more than 4 decimals")
    return format(exact, "f")
