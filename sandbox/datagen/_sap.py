"""SAP S/4HANA records with the OData field names of the standard APIs.

Values are Python values: ``Decimal`` for amounts and quantities, ``datetime.date`` for
``Edm.DateTime`` dates (midnight), timezone-aware UTC ``datetime`` for ``LastChangeDateTime``
(``Edm.DateTimeOffset``). The SAP peer's seed route converts them to its wire format.

Entities, each in the shape the real API (and the sandbox peer's seed) takes it:

- ``A_SalesOrder`` (API_SALES_ORDER_SRV), its items nested under ``to_Item`` as a deep insert
  or ``$expand=to_Item`` carries them;
- ``A_Customer`` (API_BUSINESS_PARTNER). ``Customer`` is the key of SAP's customer master, so
  SAP cannot hold two customers with one number: the planted duplicate is a second customer
  *number* for the same company under a variant of its name, as a duplicate is created in SAP.
  Customers that exist only in SAP (entered there directly, unknown to the CRM and the
  mainframe) are the sold-to parties of the orders planted as ``missing_customer``: SAP refuses
  an order for a sold-to party it does not know;
- ``A_Product`` and ``A_ProductDescription`` (API_PRODUCT_SRV);
- ``Equipment`` (API_EQUIPMENT, installed base). The owning customer is an ``EquipmentPartner``
  under ``to_Partner`` (partner function ``SP``, sold-to party): ``Equipment`` itself has no
  customer property;
- ``A_SlsPrcgConditionRecord`` (API_SLSPRICINGCONDITIONRECORD_SRV), list prices of condition
  type ``PPR0`` (S/4HANA's price condition); the material and sales area live in the validity
  sub-entity ``to_SlsPrcgCndnRecdValidity``, as in SAP;
- ``stock``: unrestricted stock per material and plant. The hub reads stock only through
  ``API_PRODUCT_AVAILY_INFO_BASIC`` (available to promise), which the sandbox peer computes from
  this table of its control surface (``{"Material", "Plant", "qty", "BaseUnit"}``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from functools import lru_cache

from sandbox.datagen._core import CHUNK, Record, chunk_bounds, chunks_of, rng_for
from sandbox.datagen._master import (
    Accounts,
    Product,
    account_number,
    duplicate_account_number,
    duplicate_name,
    missing_account_number,
)
from sandbox.datagen._quotes import Quotes, net_amount

SALES_ORG = "1010"
DISTRIBUTION_CHANNEL = "10"
DIVISION = "00"
END_OF_TIME = dt.date(9999, 12, 31)
KINDS = ("missing_customer",)
SALES_ORDER_BASE = 10_000_001
PRICE_CONDITION = "PPR0"
SOLD_TO_PARTY = "SP"  # partner function of the customer owning a piece of equipment


def sales_order_number(index: int) -> str:
    """``SalesOrder`` of the order with this index."""
    return str(SALES_ORDER_BASE + index)


def price_list_name(currency: str, year: int) -> str:
    """The Dataverse price list (``pricelevel.name``) that SAP prices in a currency feed."""
    return f"Contoso {currency} {year}"


class Sap:
    """Generator of the SAP side of one world."""

    def __init__(
        self,
        *,
        seed: int,
        count: int,
        accounts: Accounts,
        products: Sequence[Product],
        plants: Sequence[str],
        quotes: Quotes,
        as_of: dt.datetime,
        plan: dict[int, str],
        customer_duplicates: Sequence[int],
    ) -> None:
        if quotes.count != count:
            raise ValueError("SAP orders and quotes are generated chunk-aligned: equal counts")
        self.seed = seed
        self.count = count
        self.accounts = accounts
        self.products = products
        self.by_sku = {p.sku: p for p in products}
        self.plants = tuple(plants)
        self.quotes = quotes
        self.as_of = as_of
        self.plan = plan
        self.customer_duplicates = tuple(customer_duplicates)
        self.chunk = lru_cache(maxsize=4)(self._chunk)

    def _chunk(self, chunk: int) -> tuple[Record, ...]:
        rng = rng_for(self.seed, "sap-orders", chunk)
        today = self.as_of.date()
        out: list[Record] = []
        for j in chunk_bounds(chunk, self.count):
            problem = self.plan.get(j)
            from_quote = problem is None and j not in self.quotes.plan and rng.random() < 0.35
            if from_quote:
                quote = self.quotes.get(j)
                sold_to = quote["accountNumber"]
                currency = quote["currency"]
                reference = quote["quoteId"]
                order_date = today - dt.timedelta(days=rng.randint(1, 20))
                delivery = dt.date.fromisoformat(quote["expectedCloseDate"]) + dt.timedelta(
                    days=rng.randint(30, 90)
                )
                status = "A"
                items_src = [
                    (line["sku"], Decimal(line["quantity"]), net_amount(line))
                    for line in quote["lines"]
                ]
            else:
                account = int(self.accounts.count * rng.random() ** 1.6)
                sold_to = account_number(account)
                if problem == "missing_customer":
                    sold_to = missing_account_number(j)
                currency = "CAD" if rng.random() < 0.05 else "USD"
                reference = f"PO-{rng.randint(100000, 999999)}"
                age = rng.randint(1, 365)
                order_date = today - dt.timedelta(days=age)
                delivery = order_date + dt.timedelta(days=rng.randint(21, 120))
                roll = rng.random()
                if age < 30:
                    status = "A" if roll < 0.7 else "B"
                elif age < 120:
                    status = "B" if roll < 0.5 else "C"
                else:
                    status = "C"
                items_src = []
                for _ in range(rng.randint(1, 4)):
                    product = self.products[rng.randrange(len(self.products))]
                    units = Decimal(rng.randint(1, {"CHL": 2, "AHU": 4}.get(product.family, 10)))
                    price = product.price(currency) * (100 - rng.randrange(16)) / 100
                    items_src.append(
                        (product.sku, units, (units * price).quantize(Decimal("0.01")))
                    )
            changed_days = (today - order_date).days
            changed = dt.datetime.combine(
                order_date + dt.timedelta(days=rng.randrange(max(1, changed_days))),
                dt.time(),
                tzinfo=dt.UTC,
            ) + dt.timedelta(seconds=rng.randrange(86400))
            changed = min(changed, self.as_of)
            number = sales_order_number(j)
            plant = self.plants[rng.randrange(len(self.plants))]
            items: list[Record] = []
            for k, (sku, quantity, amount) in enumerate(items_src):
                # Orders come only from quotes without planted problems: every SKU is known.
                material = self.by_sku[sku]
                items.append(
                    {
                        "SalesOrder": number,
                        "SalesOrderItem": str((k + 1) * 10),
                        "Material": sku,
                        "SalesOrderItemText": material.name[:40],
                        "RequestedQuantity": quantity,
                        "RequestedQuantityUnit": "EA",
                        "NetAmount": amount,
                        "TransactionCurrency": currency,
                        "ProductionPlant": plant,
                    }
                )
            out.append(
                {
                    "SalesOrder": number,
                    "SalesOrderType": "OR",
                    "SalesOrganization": SALES_ORG,
                    "DistributionChannel": DISTRIBUTION_CHANNEL,
                    "OrganizationDivision": DIVISION,
                    "SoldToParty": sold_to,
                    "PurchaseOrderByCustomer": reference,
                    "SalesOrderDate": order_date,
                    "RequestedDeliveryDate": delivery,
                    "TotalNetAmount": sum((i["NetAmount"] for i in items), Decimal("0.00")),
                    "TransactionCurrency": currency,
                    "OverallSDProcessStatus": status,
                    "LastChangeDateTime": changed,
                    "to_Item": items,
                }
            )
        return tuple(out)

    def sales_orders(self) -> Iterator[Record]:
        """``A_SalesOrder`` records with ``to_Item``."""
        for chunk in chunks_of(self.count):
            for order in self.chunk(chunk):
                copied = dict(order)
                copied["to_Item"] = [dict(item) for item in order["to_Item"]]
                yield copied

    def sales_order(self, index: int) -> Record:
        """One ``A_SalesOrder`` by index (shared with the cache: do not mutate)."""
        return self.chunk(index // CHUNK)[index % CHUNK]

    def equipment(self) -> Iterator[Record]:
        """Installed base: one ``Equipment`` per delivered unit (up to two per item) of every
        completely processed order without a planted problem."""
        for chunk in chunks_of(self.count):
            for order in self.chunk(chunk):
                if order["OverallSDProcessStatus"] != "C":
                    continue
                index = int(order["SalesOrder"]) - SALES_ORDER_BASE
                if index in self.plan:
                    continue
                year = order["SalesOrderDate"].year % 100
                for k, item in enumerate(order["to_Item"]):
                    product = self.by_sku[item["Material"]]
                    for unit in range(min(2, int(item["RequestedQuantity"]))):
                        yield {
                            "Equipment": f"{order['SalesOrder']}{k + 1:02d}{unit + 1:02d}",
                            "ValidityEndDate": END_OF_TIME,
                            "EquipmentName": product.name[:40],
                            "EquipmentCategory": "M",
                            "Material": product.sku,
                            "SerialNumber": (
                                f"{product.family}{year:02d}{order['SalesOrder'][-6:]}"
                                f"{k + 1:02d}{unit + 1}"
                            ),
                            "LastChangeDateTime": order["LastChangeDateTime"],
                            "to_Partner": [
                                {
                                    "PartnerFunction": SOLD_TO_PARTY,
                                    "EquipmentPartnerObjectNmbr": "1",
                                    "Partner": order["SoldToParty"],
                                }
                            ],
                        }

    def customers(self) -> Iterator[Record]:
        """``A_Customer``: every account, then the planted duplicates (a second number for an
        account's company, other name), then the SAP-only sold-to parties of the orders planted
        as ``missing_customer``."""
        for account in self.accounts:
            yield _customer(account.number, account.name, account.status)
        for index in self.customer_duplicates:
            account = self.accounts.get(index)
            yield _customer(
                duplicate_account_number(index), duplicate_name(account.name, index + 1), "A"
            )
        for index in sorted(self.plan):
            yield _customer(missing_account_number(index), f"SAP-only customer {index + 1}", "A")

    def customer_count(self) -> int:
        """How many ``A_Customer`` records ``customers()`` yields."""
        return self.accounts.count + len(self.customer_duplicates) + len(self.plan)

    def products_records(self) -> Iterator[Record]:
        """``A_Product``."""
        rng = rng_for(self.seed, "sap-products")
        for product in self.products:
            yield {
                "Product": product.sku,
                "ProductType": "FERT",
                "BaseUnit": "EA",
                "ProductGroup": product.family,
                "IsMarkedForDeletion": False,
                "LastChangeDateTime": self.as_of - dt.timedelta(seconds=rng.randrange(90 * 86400)),
            }

    def product_descriptions(self) -> Iterator[Record]:
        """``A_ProductDescription`` (English)."""
        for product in self.products:
            yield {
                "Product": product.sku,
                "Language": "EN",
                "ProductDescription": product.name[:40],
            }

    def stock(self) -> Iterator[Record]:
        """``stock``: unrestricted stock per material and plant (whole units)."""
        rng = rng_for(self.seed, "sap-stock")
        for plant in self.plants:
            for product in self.products:
                if rng.random() < 0.2:
                    continue
                quantity = rng.randint(0, 120) // (10 if product.family == "CHL" else 1)
                yield {
                    "Material": product.sku,
                    "Plant": plant,
                    "qty": Decimal(quantity),
                    "BaseUnit": "EA",
                }

    def price_conditions(self) -> Iterator[Record]:
        """``A_SlsPrcgConditionRecord``: one ``PPR0`` list price per material and currency,
        its material and sales area in the validity under ``to_SlsPrcgCndnRecdValidity``."""
        start = dt.date(self.as_of.year, 1, 1)
        number = 0
        for currency in ("USD", "CAD"):
            for product in self.products:
                number += 1
                record = f"{number:010d}"
                yield {
                    "ConditionRecord": record,
                    "ConditionType": PRICE_CONDITION,
                    "ConditionRateValue": product.price(currency),
                    "ConditionRateValueUnit": currency,
                    "ConditionQuantity": Decimal(1),
                    "ConditionQuantityUnit": "EA",
                    "ConditionValidityStartDate": start,
                    "ConditionValidityEndDate": END_OF_TIME,
                    "to_SlsPrcgCndnRecdValidity": [
                        {
                            "ConditionRecord": record,
                            "ConditionValidityStartDate": start,
                            "ConditionValidityEndDate": END_OF_TIME,
                            "ConditionType": PRICE_CONDITION,
                            "SalesOrganization": SALES_ORG,
                            "DistributionChannel": DISTRIBUTION_CHANNEL,
                            "Material": product.sku,
                        }
                    ],
                }


def _customer(number: str, name: str, status: str) -> Record:
    return {
        "Customer": number,
        "CustomerName": name[:80],
        "CustomerAccountGroup": "CUST",
        # SAP's central order block: credit hold on the mainframe is block "01".
        "OrderIsBlockedForCustomer": "01" if status == "H" else "",
        "DeletionIndicator": status == "I",
    }


def sap_order_for_quote(
    quote: Record, number: str, *, order_date: str, delivery_date: str, changed_at: str
) -> Record:
    """The SAP sales order a customer places for a Quoting Tool quote: ``PurchaseOrderByCustomer``
    is the quote id (flow 10 couples them), one item per quote line from plant P100, the quote's
    account as sold-to partner ``AG``, and the delivery blocked (``ZC``) until Sales confirms it
    (flow 11). ``changed_at`` is the fixed ``LastChangeDateTime`` SAP would have stamped (the
    peer stamps a seed without one with now, which two runs would not share)."""
    currency = quote["currency"]
    return {
        "SalesOrder": number,
        "SalesOrderType": "OR",
        "SalesOrganization": SALES_ORG,
        "DistributionChannel": DISTRIBUTION_CHANNEL,
        "OrganizationDivision": DIVISION,
        "SoldToParty": quote["accountNumber"],
        "PurchaseOrderByCustomer": quote["quoteId"],
        "SalesOrderDate": order_date,
        "RequestedDeliveryDate": delivery_date,
        "TransactionCurrency": currency,
        "OverallSDProcessStatus": "A",
        "DeliveryBlockReason": "ZC",
        "LastChangeDateTime": changed_at,
        "to_Item": [
            {
                "SalesOrder": number,
                "SalesOrderItem": str(10 * line["lineNumber"]),
                "Material": line["sku"],
                "RequestedQuantity": str(line["quantity"]),
                "RequestedQuantityUnit": "EA",
                "TransactionCurrency": currency,
                "ProductionPlant": "P100",
            }
            for line in quote["lines"]
        ],
        "to_Partner": [
            {"SalesOrder": number, "PartnerFunction": "AG", "Customer": quote["accountNumber"]}
        ],
    }
