"""Open quotes in the Quoting Tool, in the hub's Quote JSON (camelCase, money as strings)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from functools import lru_cache

from sandbox.datagen._core import CHUNK, Record, chunk_bounds, chunks_of, rng_for
from sandbox.datagen._master import (
    REFRIGERANTS,
    Accounts,
    City,
    Product,
    Rep,
    account_number,
    missing_account_number,
    street_address,
)

KINDS = ("unknown_account", "unknown_sku", "probability_out_of_range")
_LINE_COUNTS = ((1, 0.20), (2, 0.45), (3, 0.65), (4, 0.80), (6, 0.90), (8, 0.96), (40, 1.0))
_DISCOUNTS = (0, 0, 0, 2.5, 5, 5, 7.5, 10, 12, 15)
_PROBABILITIES = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9)
_NOTES = (
    "Replacement for failed unit; crane lift required.",
    "Customer requests delivery before the cooling season.",
    "Budgetary quote, engineer of record to confirm sizing.",
    "Includes start-up and first-year maintenance.",
    "Site access limited to weekends.",
    "Pricing valid for 30 days.",
)
CENT = Decimal("0.01")


def quote_id(year: int, index: int) -> str:
    """``QT-2026-000001`` for index 0 (within ``[A-Za-z0-9._-]{1,40}``)."""
    return f"QT-{year}-{index + 1:06d}"


class Quotes:
    """Generator of open quotes, per chunk."""

    def __init__(
        self,
        *,
        seed: int,
        count: int,
        accounts: Accounts,
        products: Sequence[Product],
        cities: Sequence[City],
        reps: Sequence[Rep],
        as_of: dt.datetime,
        plan: dict[int, str],
    ) -> None:
        self.seed = seed
        self.count = count
        self.accounts = accounts
        self.products = products
        self.cities = cities
        self.reps = reps
        self.as_of = as_of
        self.plan = plan
        self.chunk = lru_cache(maxsize=4)(self._chunk)

    def _chunk(self, chunk: int) -> tuple[Record, ...]:
        rng = rng_for(self.seed, "quotes", chunk)
        year = self.as_of.year
        today = self.as_of.date()
        out: list[Record] = []
        for i in chunk_bounds(chunk, self.count):
            problem = self.plan.get(i)
            account = int(self.accounts.count * rng.random() ** 1.4)
            account_no = account_number(account)
            if problem == "unknown_account":
                account_no = missing_account_number(i)
            currency = "CAD" if rng.random() < 0.05 else "USD"
            city = self.cities[rng.randrange(len(self.cities))]
            roll = rng.random()
            n_lines = next(n for n, cumulative in _LINE_COUNTS if roll < cumulative)
            if n_lines > 8:
                n_lines = rng.randint(9, n_lines)
            lines: list[Record] = []
            for k in range(n_lines):
                product = self.products[rng.randrange(len(self.products))]
                units = rng.randint(1, {"CHL": 2, "AHU": 4}.get(product.family, 10))
                price = product.price(currency)
                if rng.random() < 0.1:
                    # A negotiated special price instead of the list price.
                    price = (price * Decimal(rng.randint(94, 99)) / 100).quantize(CENT)
                line: Record = {
                    "lineNumber": k + 1,
                    "sku": product.sku,
                    "quantity": str(units),
                    "unitPrice": str(price.quantize(CENT)),
                    "discountPct": rng.choice(_DISCOUNTS),
                }
                if rng.random() < 0.8:
                    line["description"] = product.name
                if rng.random() < 0.7:
                    line["configuration"] = {
                        "tonnage": product.tonnage,
                        "voltage": product.voltage,
                        "refrigerant": rng.choice(REFRIGERANTS),
                        "options": sorted(rng.sample(product.options, rng.randint(0, 3))),
                    }
                lines.append(line)
            if problem == "unknown_sku":
                bad = lines[rng.randrange(len(lines))]
                bad["sku"] = f"{bad['sku'][:3]}-999-ZZ{i % 10}"
            probability = rng.choice(_PROBABILITIES)
            if problem == "probability_out_of_range":
                probability = round(1.05 + (i % 10) * 0.05, 2)
            offset = city.county.region.utc_offset
            tz = dt.timezone(dt.timedelta(hours=int(offset[:3]), minutes=int(offset[4:])))
            modified = (self.as_of - dt.timedelta(seconds=rng.randrange(60 * 86400))).astimezone(tz)
            quote: Record = {
                "quoteId": quote_id(year, i),
                "revision": rng.choice((0, 0, 0, 1, 1, 2, 3)),
                "accountNumber": account_no,
                "salesRep": self.reps[rng.randrange(len(self.reps))].email,
                "currency": currency,
                "expectedCloseDate": (today + dt.timedelta(days=rng.randint(7, 180))).isoformat(),
                "probability": probability,
                "shipTo": {
                    "street": street_address(rng.random(), rng.randint(10, 9999)),
                    "city": city.name,
                    "county": city.county.name,
                    "region": city.county.region.name,
                    "postalCode": rng.choice(city.zips),
                    "country": "US",
                },
                "lines": lines,
                "modifiedAt": modified.isoformat(timespec="seconds"),
            }
            if rng.random() < 0.3:
                quote["notes"] = rng.choice(_NOTES)
            out.append(quote)
        return tuple(out)

    def __iter__(self) -> Iterator[Record]:
        for chunk in chunks_of(self.count):
            for quote in self.chunk(chunk):
                yield _copy(quote)

    def get(self, index: int) -> Record:
        """One quote by index (a copy: callers may change it freely)."""
        return _copy(self.chunk(index // CHUNK)[index % CHUNK])


def _copy(quote: Record) -> Record:
    """A deep copy of a quote (its chunk is cached and must not be mutated by callers)."""
    out = dict(quote)
    out["shipTo"] = dict(quote["shipTo"])
    lines = []
    for line in quote["lines"]:
        copied = dict(line)
        if "configuration" in line:
            copied["configuration"] = dict(line["configuration"])
            copied["configuration"]["options"] = list(line["configuration"]["options"])
        lines.append(copied)
    out["lines"] = lines
    return out


def net_amount(line: Record) -> Decimal:
    """A quote line's net amount: quantity x unit price less the discount, to the cent."""
    gross = Decimal(line["quantity"]) * Decimal(line["unitPrice"])
    return (gross * (100 - Decimal(str(line["discountPct"]))) / 100).quantize(CENT)
