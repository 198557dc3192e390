"""Mainframe (Legacy Order System) records, exactly as ``docs/mainframe-api.md`` describes them.

Orders and their lines are generated per chunk of 1,000 orders as plain values (``RawOrder``),
then formatted into copybook records: upper-case fields, ``YYYYMMDD`` dates, ``YYYYMMDDHHMMSS``
UTC timestamps, zero-padded implied-decimal amounts, padded ids and status letters. Planted
problems are applied only at formatting, so the raw values stay the independent truth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from sandbox.datagen._core import CHUNK, Record, chunk_bounds, chunks_of, rng_for
from sandbox.datagen._master import (
    Account,
    Accounts,
    Product,
    Rep,
    duplicate_name,
    missing_account_number,
)

STATUSES = ("O", "R", "S", "I", "C", "X")
# Status mix by order age (days): open and released orders are recent, closed ones old.
_STATUS_BY_AGE: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = (
    (30, (("O", 0.55), ("R", 0.90), ("X", 1.0))),
    (90, (("O", 0.10), ("R", 0.40), ("S", 0.85), ("I", 0.95), ("X", 1.0))),
    (365, (("S", 0.15), ("I", 0.60), ("C", 0.95), ("X", 1.0))),
    (10**9, (("I", 0.20), ("C", 0.95), ("X", 1.0))),
)
_LINES_PER_ORDER = ((1, 0.35), (2, 0.60), (3, 0.80), (4, 0.92), (5, 1.0))
ORDER_KINDS = ("missing_customer", "invalid_date", "non_numeric_amount")
LINE_KINDS = ("non_positive_quantity", "non_numeric_amount")
# Planted line problems are chosen per order (the order's first line carries them); the plan
# keys them apart from order-level kinds.
LINE_PLAN_PREFIX = "line:"
ORPHAN_BASE = 9_000_000_000
ORDER_BASE = 1_000_001


def order_number(index: int) -> str:
    """``ORDNO`` of the order with this index: 10 digits, zero-padded."""
    return f"{ORDER_BASE + index:010d}"


def orphan_order_number(index: int) -> str:
    """An ``ORDNO`` that no generated order has."""
    return f"{ORPHAN_BASE + index:010d}"


def pad(value: str, width: int) -> str:
    """Right-pad with spaces to the copybook width (truncating longer values, as COBOL does)."""
    return value[:width].ljust(width)


def money(cents: int, width: int) -> str:
    """Amount with 2 implied decimals, zero-padded."""
    return f"{cents:0{width}d}"


def corrupt_number(text: str, variant: int) -> str:
    """A non-numeric amount of the same width: an overflowed edited field, a letter O for a
    zero, or an embedded blank."""
    width = len(text)
    if variant % 3 == 0:
        return "*" * width
    if variant % 3 == 1:
        position = max(0, width - 4)
        return text[:position] + "O" + text[position + 1 :]
    return text[: width // 2] + " " + text[width // 2 + 1 :]


def corrupt_date(yyyymmdd: str, variant: int) -> str:
    """An impossible ``YYYYMMDD``: month 13-19, day 32-39, or 30/31 February."""
    year = yyyymmdd[:4]
    if variant % 3 == 0:
        return f"{year}{13 + variant % 7:02d}{yyyymmdd[6:]}"
    if variant % 3 == 1:
        return f"{year}{yyyymmdd[4:6]}{32 + variant % 8:02d}"
    return f"{year}02{30 + variant % 2:02d}"


@dataclass(slots=True)
class RawLine:
    """One order line as values (quantity in thousandths, price in cents)."""

    line_no: int
    product: int
    qty_milli: int
    price_cents: int
    status: str
    problem: str | None = None


@dataclass(slots=True)
class RawOrder:
    """One legacy order as values; ``problem`` names the planted problem, if any."""

    index: int
    account: int  # -1 when the customer is planted as missing
    custno: str
    order_day: int  # date ordinal
    requested_day: int
    status: str
    currency: str
    total_cents: int
    plant: str
    rep: str
    qtref: str | None
    last_update: int  # epoch seconds, UTC
    problem: str | None
    lines: list[RawLine]


class Legacy:
    """Generator of legacy orders, lines, customers and inventory for one world."""

    def __init__(
        self,
        *,
        seed: int,
        orders: int,
        accounts: Accounts,
        products: Sequence[Product],
        plants: Sequence[str],
        reps: Sequence[Rep],
        as_of: dt.datetime,
        order_plan: dict[int, str],
        orphan_lines: int,
        customer_duplicates: Sequence[int],
    ) -> None:
        self.seed = seed
        self.count = orders
        self.accounts = accounts
        self.products = products
        self.plants = tuple(plants)
        self.reps = tuple(pad(r.user_id, 8) for r in reps)
        self.as_of = as_of
        self.as_of_day = as_of.date().toordinal()
        self.order_plan = order_plan
        self.orphan_lines = orphan_lines
        self.customer_duplicates = tuple(customer_duplicates)
        self._itemno = tuple(pad(p.sku, 18) for p in products)
        self._cents_usd = tuple(int(p.price_usd * 100) for p in products)
        self._cents_cad = tuple(int(p.price_cad * 100) for p in products)
        self._max_units = tuple({"CHL": 2, "AHU": 4}.get(p.family, 12) for p in products)
        self._dates: dict[int, str] = {}
        self.chunk = lru_cache(maxsize=4)(self._chunk)

    # ---- formatting helpers -----------------------------------------------------------------
    def yyyymmdd(self, ordinal: int) -> str:
        """``YYYYMMDD`` of a date ordinal (memoised: a world spans a few hundred days)."""
        text = self._dates.get(ordinal)
        if text is None:
            text = dt.date.fromordinal(ordinal).strftime("%Y%m%d")
            self._dates[ordinal] = text
        return text

    def timestamp(self, epoch: int) -> str:
        """``YYYYMMDDHHMMSS`` (UTC) of epoch seconds."""
        day, second = divmod(epoch, 86400)
        return (
            self.yyyymmdd(day + _EPOCH_ORDINAL)
            + f"{second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}"
        )

    # ---- raw generation -----------------------------------------------------------------------
    def _chunk(self, chunk: int) -> tuple[RawOrder, ...]:
        rng = rng_for(self.seed, "legacy-orders", chunk)
        # int(draw() * n) rather than randrange(n): the same determinism at a third of the cost,
        # which is what makes a million orders a matter of seconds.
        draw = rng.random
        n_accounts = self.accounts.count
        n_products = len(self.products)
        n_plants, n_reps = len(self.plants), len(self.reps)
        max_units, cents_usd, cents_cad = self._max_units, self._cents_usd, self._cents_cad
        year = self.as_of.year
        as_of_day, plan_get, plants, reps = (
            self.as_of_day,
            self.order_plan.get,
            self.plants,
            self.reps,
        )
        out: list[RawOrder] = []
        for i in chunk_bounds(chunk, self.count):
            age = 1 + int(729 * draw() ** 1.3)
            order_day = as_of_day - age
            roll = draw()
            status = "X"
            for limit, mix in _STATUS_BY_AGE:
                if age < limit:
                    for code, cumulative in mix:
                        if roll < cumulative:
                            status = code
                            break
                    break
            currency = "CAD" if draw() < 0.05 else "USD"
            account = int(n_accounts * draw() ** 1.6)
            problem = plan_get(i)
            custno = f"C{account + 1:07d}"
            if problem == "missing_customer":
                account, custno = -1, missing_account_number(i)
            qtref = None
            if draw() < 0.15:
                ref_year = min(dt.date.fromordinal(order_day).year, year - 1)
                qtref = f"QT-{ref_year}-{500000 + int(draw() * 400000):06d}"
            last_update = (order_day + int(draw() * age) - _EPOCH_ORDINAL) * 86400 + int(
                draw() * 86400
            )
            roll = draw()
            n_lines = 5
            for n, cumulative in _LINES_PER_ORDER:
                if roll < cumulative:
                    n_lines = n
                    break
            prices = cents_cad if currency == "CAD" else cents_usd
            lines: list[RawLine] = []
            total = 0
            for k in range(n_lines):
                product = int(draw() * n_products)
                units = 1 + int(draw() * max_units[product])
                price = prices[product] * (100 - int(draw() * 16)) // 100
                total += units * price
                lines.append(RawLine((k + 1) * 10, product, units * 1000, price, status, None))
            if problem is not None and problem.startswith(LINE_PLAN_PREFIX):
                lines[0].problem = problem[len(LINE_PLAN_PREFIX) :]
                problem = None
            # Positional on purpose: keyword construction costs a third more per order.
            out.append(
                RawOrder(
                    i,
                    account,
                    custno,
                    order_day,
                    order_day + 14 + int(draw() * 107),
                    status,
                    currency,
                    total,
                    plants[int(draw() * n_plants)],
                    reps[int(draw() * n_reps)],
                    qtref,
                    last_update,
                    problem,
                    lines,
                )
            )
        return tuple(out)

    def raw_orders(self) -> Iterator[RawOrder]:
        """Every order as values, in order-number order."""
        for chunk in chunks_of(self.count):
            yield from self.chunk(chunk)

    def raw_order(self, index: int) -> RawOrder:
        """One order by index."""
        return self.chunk(index // CHUNK)[index % CHUNK]

    # ---- copybook records ---------------------------------------------------------------------
    def order_record(self, order: RawOrder) -> Record:
        """An ``orders`` record, with the order's planted problem applied."""
        orddt = self.yyyymmdd(order.order_day)
        totamt = money(order.total_cents, 12)
        if order.problem == "invalid_date":
            orddt = corrupt_date(orddt, order.index)
        elif order.problem == "non_numeric_amount":
            totamt = corrupt_number(totamt, order.index)
        return {
            "ORDNO": order_number(order.index),
            "CUSTNO": pad(order.custno, 10),
            "ORDDT": orddt,
            "REQDT": self.yyyymmdd(order.requested_day),
            "STATUS": order.status,
            "CURR": order.currency,
            "TOTAMT": totamt,
            "PLANT": order.plant,
            "SLSREP": order.rep,
            "QTREF": pad(order.qtref or "", 40),
            "LSTUPD": self.timestamp(order.last_update),
        }

    def line_record(self, order_index: int, line: RawLine, last_update: int) -> Record:
        """An ``orderlines`` record, with the line's planted problem applied."""
        qty = f"{line.qty_milli:08d}"
        uprice = money(line.price_cents, 10)
        if line.problem == "non_positive_quantity":
            qty = "00000000" if order_index % 2 == 0 else f"-{line.qty_milli:07d}"
        elif line.problem == "non_numeric_amount":
            uprice = corrupt_number(uprice, order_index)
        return {
            "ORDNO": order_number(order_index),
            "LINENO": f"{line.line_no:04d}",
            "ITEMNO": self._itemno[line.product],
            "QTY": qty,
            "UPRICE": uprice,
            "STATUS": line.status,
            "LSTUPD": self.timestamp(last_update),
        }

    def orders(self) -> Iterator[Record]:
        """All ``orders`` records."""
        for order in self.raw_orders():
            yield self.order_record(order)

    def orderlines(self) -> Iterator[Record]:
        """All ``orderlines`` records, then the planted orphans (lines of missing orders)."""
        for order in self.raw_orders():
            for line in order.lines:
                yield self.line_record(order.index, line, order.last_update)
        yield from self.orphans()

    def orders_with_lines(self) -> Iterator[tuple[Record, list[Record]]]:
        """Each ``orders`` record with its ``orderlines`` records (one generation pass for both
        files; the orphans are not included)."""
        for order in self.raw_orders():
            yield (
                self.order_record(order),
                [self.line_record(order.index, line, order.last_update) for line in order.lines],
            )

    def orphans(self) -> Iterator[Record]:
        """Order lines whose order does not exist."""
        rng = rng_for(self.seed, "legacy-orphans")
        for j in range(self.orphan_lines):
            product = rng.randrange(len(self.products))
            age = rng.randint(1, 365)
            last_update = (self.as_of_day - age - _EPOCH_ORDINAL) * 86400 + rng.randrange(86400)
            line = RawLine(10, product, rng.randint(1, 5) * 1000, self._cents_usd[product], "O")
            record = self.line_record(0, line, last_update)
            record["ORDNO"] = orphan_order_number(j)
            yield record

    def line_count(self) -> int:
        """Number of ``orderlines`` records (one pass over the orders)."""
        return sum(len(o.lines) for o in self.raw_orders()) + self.orphan_lines

    def customer_record(self, account: Account, name: str | None = None) -> Record:
        """A ``customers`` record of an account (optionally under another name)."""
        return {
            "CUSTNO": pad(account.number, 10),
            "CUSTNM": pad((name or account.name).upper(), 40),
            "CITY": account.city.name.upper(),
            "STATE": account.city.county.state,
            "ZIP": account.zip,
            "CNTRY": "US",
            "STATUS": account.status,
            "LSTUPD": self.timestamp(int(account.last_update.timestamp())),
        }

    def customers(self) -> Iterator[Record]:
        """All ``customers`` records, then the planted duplicates (same ``CUSTNO``, other name)."""
        for account in self.accounts:
            yield self.customer_record(account)
        for index in self.customer_duplicates:
            account = self.accounts.get(index)
            record = self.customer_record(account, duplicate_name(account.name, index))
            # Keyed in later by someone else: a newer LSTUPD than the original.
            later = min(int(self.as_of.timestamp()), int(account.last_update.timestamp()) + 3600)
            record["LSTUPD"] = self.timestamp(later)
            yield record

    def inventory(self) -> Iterator[Record]:
        """``inventory`` records: most plant/item pairs, whole units on hand and allocated."""
        rng = rng_for(self.seed, "legacy-inventory")
        as_of = int(self.as_of.timestamp())
        for plant in self.plants:
            for p, itemno in enumerate(self._itemno):
                if rng.random() < 0.15:
                    continue
                onhand = rng.randint(0, 250) // (10 if self.products[p].family == "CHL" else 1)
                alloc = rng.randint(0, onhand)
                yield {
                    "PLANT": plant,
                    "ITEMNO": itemno,
                    "ONHAND": f"{onhand:07d}",
                    "ALLOC": f"{alloc:07d}",
                    "LSTUPD": self.timestamp(as_of - rng.randrange(30 * 86400)),
                }


_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
