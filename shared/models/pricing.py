"""Approved price lists (``GET /api/pricing``) and stock availability from SAP
(``GET /api/products/{sku}/availability``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.models.common import (
    CurrencyCode,
    PriceAmount,
    Sku,
    StockQuantity,
    TextLine,
    Timestamp,
    WireModel,
)

MAX_CONTINUATION_TOKEN_CHARS = 2048


class PriceListEntry(WireModel):
    """One approved price of one product in one price list."""

    sku: Sku
    price_list: Annotated[TextLine, Field(max_length=100)]
    """The price list's name in Dynamics 365 Sales."""
    currency: CurrencyCode
    amount: PriceAmount
    """The unit price as a decimal string with up to 4 decimals, e.g. ``"1234.5000"``."""
    approved_on: Timestamp
    approved_by: Annotated[TextLine, Field(max_length=200)] | None = None
    """Who approved the price, where Dynamics 365 Sales records it."""
    modified_on: Timestamp
    """When the entry last changed; the ``since`` filter compares with this."""


class PricingPage(WireModel):
    """One page of price-list entries changed since the requested time, oldest change first."""

    items: list[PriceListEntry]
    continuation_token: (
        Annotated[str, Field(min_length=1, max_length=MAX_CONTINUATION_TOKEN_CHARS)] | None
    ) = None
    """Pass as ``continuationToken`` to get the next page; absent on the last page."""


class PlantAvailability(WireModel):
    """Available stock of the product at one SAP plant."""

    plant: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,4}$")]
    """The SAP plant code (4 characters)."""
    available: StockQuantity
    """Available quantity as a decimal string, e.g. ``"42.000"``."""
    unit: Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,3}$")]
    """The SAP unit of measure, e.g. ``EA``."""


class Availability(WireModel):
    """Stock availability of one product across plants, as last read from SAP."""

    sku: Sku
    plants: list[PlantAvailability]
    as_of: Timestamp
    """When SAP reported these figures."""
    stale: bool
    """True when SAP could not be reached and the figures come from the hub's last good read."""
    source: Literal["SAP"] = "SAP"
