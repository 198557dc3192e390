"""``generate()`` and ``ContosoData``: one deterministic Contoso world and its projections."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.datagen import _legacy, _quotes, _sap
from sandbox.datagen._core import (
    Planted,
    Record,
    Table,
    choose_planted,
    dumps,
    indexes_by_kind,
    planted_count,
    rng_for,
)
from sandbox.datagen._dataverse import Dataverse
from sandbox.datagen._legacy import Legacy, order_number, orphan_order_number
from sandbox.datagen._master import (
    Accounts,
    Geography,
    Goal,
    Product,
    Rep,
    account_number,
    build_geography,
    build_goals,
    build_products,
    build_reps,
    plant_codes,
    product_count,
)
from sandbox.datagen._quotes import Quotes, quote_id
from sandbox.datagen._sap import Sap, sales_order_number
from sandbox.datagen._truth import Truth

log = logging.getLogger(__name__)

DEFAULT_AS_OF = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
"""The world's "now" unless told otherwise: fixed, so a seed means the same data on any day."""
MIN_SCALE = 1
MAX_SCALE = 2_000_000
MAX_PROBLEM_RATE = 0.1
_NEXT_STATUS = {"O": "R", "R": "S", "S": "I", "I": "C"}


@dataclass(frozen=True)
class Counts:
    """Sizes of the base entities (line, contact and equipment counts come from ``len(table)``)."""

    legacy_orders: int
    accounts: int
    products: int
    quotes: int
    sap_orders: int
    plants: int
    territories: int
    postal_codes: int
    goals: int


@dataclass
class ContosoData:
    """A generated Contoso world. Large tables are lazy ``Table`` objects (re-iterable,
    regenerated chunk by chunk); small master data is held as plain lists."""

    seed: int
    scale: int
    as_of: dt.datetime
    problem_rate: float
    geography: Geography
    goals: list[Goal]
    products: list[Product]
    plants: tuple[str, ...]
    reps: list[Rep]
    accounts: Accounts
    legacy: Legacy
    quotes: Quotes
    sap: Sap
    dataverse: Dataverse
    planted: Planted
    counts: Counts
    truth: Truth = field(init=False)

    def __post_init__(self) -> None:
        self.truth = Truth(self)

    # ---- projections per system ---------------------------------------------------------------
    def mainframe_seed(self) -> dict[str, Table]:
        """LOS records exactly as ``docs/mainframe-api.md``: orders, orderlines, inventory,
        customers (planted duplicates and orphans included)."""
        legacy = self.legacy
        return {
            "orders": Table("orders", legacy.orders, self.counts.legacy_orders),
            "orderlines": Table("orderlines", legacy.orderlines, legacy.line_count),
            "inventory": Table("inventory", legacy.inventory),
            "customers": Table(
                "customers", legacy.customers, self.accounts.count + len(legacy.customer_duplicates)
            ),
        }

    def sap_seed(self) -> dict[str, Table]:
        """SAP entities with OData field names, plus the peer's ``stock`` table; Python values
        (see ``sandbox.datagen._sap``)."""
        sap = self.sap
        return {
            "A_SalesOrder": Table("A_SalesOrder", sap.sales_orders, self.counts.sap_orders),
            "A_Customer": Table("A_Customer", sap.customers, sap.customer_count()),
            "A_Product": Table("A_Product", sap.products_records, self.counts.products),
            "A_ProductDescription": Table(
                "A_ProductDescription", sap.product_descriptions, self.counts.products
            ),
            "Equipment": Table("Equipment", sap.equipment),
            "stock": Table("stock", sap.stock),
            "A_SlsPrcgConditionRecord": Table(
                "A_SlsPrcgConditionRecord", sap.price_conditions, 2 * self.counts.products
            ),
        }

    def dataverse_seed(self) -> dict[str, Table]:
        """Dataverse master data by entity set (``docs/dataverse-schema.md``)."""
        dv = self.dataverse
        return {
            "accounts": Table(
                "accounts", dv.accounts_records, self.accounts.count + len(dv.account_duplicates)
            ),
            "contacts": Table("contacts", dv.contacts),
            "products": Table("products", dv.products, self.counts.products),
            "transactioncurrencies": Table("transactioncurrencies", dv.currencies, 2),
            "pricelevels": Table("pricelevels", dv.pricelevels, 2),
            "productpricelevels": Table(
                "productpricelevels", dv.productpricelevels, 2 * self.counts.products
            ),
            "territories": Table("territories", dv.territories, self.counts.territories),
            "contoso_postalcodes": Table(
                "contoso_postalcodes", dv.postalcodes, self.counts.postal_codes
            ),
            "goals": Table("goals", dv.goals, self.counts.goals),
        }

    def quoting_tool_quotes(self) -> Table:
        """Open quotes in the Quoting Tool, as Quote JSON (camelCase, money as strings)."""
        return Table("quotes", self.quotes.__iter__, self.counts.quotes)

    # ---- changes ----------------------------------------------------------------------------
    def touch_mainframe(
        self, k: int, *, round: int = 1, at: dt.datetime | None = None
    ) -> dict[str, list[Record]]:
        """``k`` deterministic changes to valid mainframe records, each with ``LSTUPD = at``.

        ``at`` defaults to ``as_of + round hours``, newer than every generated ``LSTUPD``. The
        mix is about half orders (status advanced, or the rep reassigned when already closed),
        30% order lines (one more unit), 10% inventory (new on-hand) and 10% customers (status
        flipped). Changes of one ``round`` are the same whenever asked for; another round picks
        other records. Returns ``{entity: [full records]}``, sorted by key.

        Apply them as the mainframe's own transactions: pin the peer's clock to ``at`` and post
        them to ``/_sandbox/touch``, which changes the record with each key. Seeding them
        replaces orders, lines and inventory, but adds a second record to the customer file,
        which keeps records with duplicate keys.
        """
        if k < 0:
            raise ValueError("k must be >= 0")
        at = at or self.as_of + dt.timedelta(hours=round)
        if at.tzinfo is None:
            raise ValueError("at must be timezone-aware")
        legacy = self.legacy
        stamp = legacy.timestamp(int(at.timestamp()))
        rng = rng_for(self.seed, "touch", round)
        n_lines, n_inventory, n_customers = k * 3 // 10, k // 10, k // 10
        n_orders = k - n_lines - n_inventory - n_customers
        n_valid = self.counts.legacy_orders - len(legacy.order_plan)
        if max(n_orders, n_lines) > n_valid:
            raise ValueError(f"cannot touch {k} records in a world of {n_valid} valid orders")
        changes: dict[str, list[Record]] = {
            "orders": [],
            "orderlines": [],
            "inventory": [],
            "customers": [],
        }
        for index in _sample(rng, self.counts.legacy_orders, n_orders, legacy.order_plan):
            raw = legacy.raw_order(index)
            record = legacy.order_record(raw)
            if raw.status in _NEXT_STATUS:
                record["STATUS"] = _NEXT_STATUS[raw.status]
            else:
                others = [r for r in legacy.reps if r != raw.rep]
                record["SLSREP"] = others[index % len(others)]
            record["LSTUPD"] = stamp
            changes["orders"].append(record)
        for index in _sample(rng, self.counts.legacy_orders, n_lines, legacy.order_plan):
            raw = legacy.raw_order(index)
            line = raw.lines[0]
            record = legacy.line_record(index, line, raw.last_update)
            record["QTY"] = f"{line.qty_milli + 1000:08d}"
            record["LSTUPD"] = stamp
            changes["orderlines"].append(record)
        inventory = list(legacy.inventory())
        if n_inventory > len(inventory):
            raise ValueError(f"cannot touch {n_inventory} of {len(inventory)} inventory records")
        for record in sorted(
            rng.sample(inventory, n_inventory), key=lambda r: (r["PLANT"], r["ITEMNO"])
        ):
            onhand = int(record["ONHAND"]) + rng.randint(1, 25)
            record["ONHAND"] = f"{onhand:07d}"
            record["LSTUPD"] = stamp
            changes["inventory"].append(record)
        duplicates = set(legacy.customer_duplicates)
        if n_customers > self.accounts.count - len(duplicates):
            raise ValueError(f"cannot touch {n_customers} customers of {self.accounts.count}")
        for index in _sample(rng, self.accounts.count, n_customers, duplicates):
            record = legacy.customer_record(self.accounts.get(index))
            record["STATUS"] = {"A": "H", "H": "A", "I": "A"}[record["STATUS"]]
            record["LSTUPD"] = stamp
            changes["customers"].append(record)
        return changes

    # ---- files ------------------------------------------------------------------------------
    def write(self, out: Path) -> dict[str, Any]:
        """Write every projection as NDJSON under ``out`` (``mainframe/``, ``sap/``,
        ``dataverse/``, ``quotingtool/``) plus ``planted.json`` and ``manifest.json``.

        JSON encoding: ``Decimal`` as strings, dates ``YYYY-MM-DD``, datetimes RFC 3339 UTC.
        Returns the manifest (record counts per file, seconds taken).
        """
        started = time.perf_counter()
        systems: dict[str, dict[str, Table]] = {
            "mainframe": self.mainframe_seed(),
            "sap": self.sap_seed(),
            "dataverse": self.dataverse_seed(),
            "quotingtool": {"quotes": self.quoting_tool_quotes()},
        }
        files: dict[str, int] = {}
        folder = out / "mainframe"
        folder.mkdir(parents=True, exist_ok=True)
        # Orders and their lines come from the same generated chunk: write both in one pass.
        n_orders = n_lines = 0
        with (
            (folder / "orders.ndjson").open("w", encoding="utf-8") as orders,
            (folder / "orderlines.ndjson").open("w", encoding="utf-8") as lines,
        ):
            for order, order_lines in self.legacy.orders_with_lines():
                orders.write(dumps(order, native=True) + "\n")
                n_orders += 1
                for line in order_lines:
                    lines.write(dumps(line, native=True) + "\n")
                    n_lines += 1
            for line in self.legacy.orphans():
                lines.write(dumps(line, native=True) + "\n")
                n_lines += 1
        files["mainframe/orders.ndjson"] = n_orders
        files["mainframe/orderlines.ndjson"] = n_lines
        for system, tables in systems.items():
            folder = out / system
            folder.mkdir(parents=True, exist_ok=True)
            for name, table in tables.items():
                if system == "mainframe" and name in ("orders", "orderlines"):
                    continue
                path = folder / f"{name}.ndjson"
                n = 0
                native = system in ("mainframe", "quotingtool")
                with path.open("w", encoding="utf-8") as handle:
                    for record in table:
                        handle.write(dumps(record, native=native) + "\n")
                        n += 1
                files[f"{system}/{name}.ndjson"] = n
        (out / "planted.json").write_text(
            json.dumps({"counts": self.planted.counts(), "keys": self.planted.to_json()}, indent=1),
            encoding="utf-8",
        )
        manifest = {
            "seed": self.seed,
            "scale": self.scale,
            "asOf": self.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "problemRate": self.problem_rate,
            "files": files,
            "seconds": round(time.perf_counter() - started, 3),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        return manifest


def _sample(rng: random.Random, population: int, need: int, excluded: Container[int]) -> list[int]:
    """``need`` distinct indexes of ``range(population)`` not in ``excluded``, sorted, without
    materialising the population when ``need`` is small (a million orders stay virtual)."""
    if need * 2 > population:
        pool = [i for i in range(population) if i not in excluded]
        return sorted(rng.sample(pool, need))
    chosen: set[int] = set()
    while len(chosen) < need:
        index = rng.randrange(population)
        if index not in excluded:
            chosen.add(index)
    return sorted(chosen)


def generate(
    seed: int,
    scale: int,
    *,
    as_of: dt.datetime | None = None,
    problem_rate: float = 0.01,
) -> ContosoData:
    """Build the Contoso world for ``seed`` with ``scale`` legacy orders.

    Deterministic for ``(seed, scale, as_of, problem_rate)``. Other sizes derive from the
    scale: accounts = max(20, scale/20), products 30..300 (log scale), quotes and SAP orders =
    max(10, scale/10). ``problem_rate`` is the fraction of each entity that carries each kind of
    planted problem (at least one of each kind when positive; 0 gives clean data).
    Only master data is built here; transactional tables are generated when iterated.
    """
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be within {MIN_SCALE}..{MAX_SCALE}")
    if not 0 <= problem_rate <= MAX_PROBLEM_RATE:
        raise ValueError(f"problem_rate must be within 0..{MAX_PROBLEM_RATE}")
    as_of = as_of or DEFAULT_AS_OF
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    as_of = as_of.astimezone(dt.UTC).replace(microsecond=0)

    n_accounts = max(20, scale // 20)
    n_quotes = max(10, scale // 10)
    geography = build_geography(seed)
    goals = build_goals(seed, geography, as_of.year, scale)
    products = build_products(seed, product_count(scale))
    plants = plant_codes(seed)
    reps = build_reps(seed, n_accounts)
    accounts = Accounts(seed, n_accounts, geography, as_of)

    order_kinds = [
        *_legacy.ORDER_KINDS,
        *(_legacy.LINE_PLAN_PREFIX + kind for kind in _legacy.LINE_KINDS),
    ]
    order_plan = choose_planted(seed, "mainframe.orders", scale, order_kinds, problem_rate)
    orphans = planted_count(scale, problem_rate)
    mf_dups = sorted(
        choose_planted(seed, "mainframe.customers", n_accounts, ["duplicate_key"], problem_rate)
    )
    sap_dups = sorted(
        choose_planted(seed, "sap.A_Customer", n_accounts, ["duplicate_customer"], problem_rate)
    )
    dv_dups = sorted(
        choose_planted(seed, "dataverse.accounts", n_accounts, ["duplicate_account"], problem_rate)
    )
    quote_plan = choose_planted(seed, "quotingtool.quotes", n_quotes, _quotes.KINDS, problem_rate)
    sap_plan = choose_planted(seed, "sap.A_SalesOrder", n_quotes, _sap.KINDS, problem_rate)

    legacy = Legacy(
        seed=seed,
        orders=scale,
        accounts=accounts,
        products=products,
        plants=plants,
        reps=reps,
        as_of=as_of,
        order_plan=order_plan,
        orphan_lines=orphans,
        customer_duplicates=mf_dups,
    )
    quotes = Quotes(
        seed=seed,
        count=n_quotes,
        accounts=accounts,
        products=products,
        cities=geography.cities,
        reps=reps,
        as_of=as_of,
        plan=quote_plan,
    )
    sap = Sap(
        seed=seed,
        count=n_quotes,
        accounts=accounts,
        products=products,
        plants=plants,
        quotes=quotes,
        as_of=as_of,
        plan=sap_plan,
        customer_duplicates=sap_dups,
    )
    dataverse = Dataverse(
        seed=seed,
        accounts=accounts,
        geography=geography,
        goals=goals,
        products=products,
        as_of=as_of,
        account_duplicates=dv_dups,
    )

    planted = Planted()
    by_kind = indexes_by_kind(order_plan)
    for kind in _legacy.ORDER_KINDS:
        planted.add("mainframe.orders", kind, (order_number(i) for i in by_kind.get(kind, [])))
    for kind in _legacy.LINE_KINDS:
        indexes = by_kind.get(_legacy.LINE_PLAN_PREFIX + kind, [])
        planted.add("mainframe.orderlines", kind, ((order_number(i), "0010") for i in indexes))
    planted.add(
        "mainframe.orderlines",
        "missing_order",
        ((orphan_order_number(j), "0010") for j in range(orphans)),
    )
    planted.add("mainframe.customers", "duplicate_key", (account_number(i) for i in mf_dups))
    planted.add("sap.A_Customer", "duplicate_customer", (account_number(i) for i in sap_dups))
    planted.add("dataverse.accounts", "duplicate_account", (account_number(i) for i in dv_dups))
    quote_kinds = indexes_by_kind(quote_plan)
    for kind in _quotes.KINDS:
        planted.add(
            "quotingtool.quotes",
            kind,
            (quote_id(as_of.year, i) for i in quote_kinds.get(kind, [])),
        )
    planted.add(
        "sap.A_SalesOrder", "missing_customer", (sales_order_number(j) for j in sorted(sap_plan))
    )

    counts = Counts(
        legacy_orders=scale,
        accounts=n_accounts,
        products=len(products),
        quotes=n_quotes,
        sap_orders=n_quotes,
        plants=len(plants),
        territories=len(geography.regions) + len(geography.counties) + len(geography.cities),
        postal_codes=sum(len(c.zips) for c in geography.cities),
        goals=len(goals),
    )
    log.debug("generated world seed=%s scale=%s as_of=%s", seed, scale, as_of)
    return ContosoData(
        seed=seed,
        scale=scale,
        as_of=as_of,
        problem_rate=problem_rate,
        geography=geography,
        goals=goals,
        products=products,
        plants=plants,
        reps=reps,
        accounts=accounts,
        legacy=legacy,
        quotes=quotes,
        sap=sap,
        dataverse=dataverse,
        planted=planted,
        counts=counts,
    )
