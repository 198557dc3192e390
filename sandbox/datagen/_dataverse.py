"""The Dataverse master data that exists before the hub runs, as Web API entity records.

Columns are the logical names of ``docs/dataverse-schema.md``; each record is a create payload
the Web API (and the sandbox's ``/_sandbox/seed``) accepts as it is:

- primary keys are deterministic GUIDs;
- lookups are ``<navigation property>@odata.bind`` references to those GUIDs, through the
  navigation property's own (case-sensitive) name: ``contoso_ParentTerritoryId``, not the
  column name ``contoso_parentterritoryid`` (which Dataverse refuses with 0x80048d19 "An
  undeclared property ...");
- choice columns carry their option values (``contoso_productfamily`` 100000000 RTU, ...),
  never labels;
- money and decimal columns are ``JsonNumber`` values (``Decimal`` that JSON writes as a
  number, as the Web API requires); dates are ``date`` / ``datetime`` values.

Accounts have the alternate key ``accountnumber``, which Dataverse enforces: two rows with one
account number cannot exist. The planted duplicate is therefore what really happens in a CRM:
the same company keyed in again by hand, under a variant of its name and *without* an account
number (key columns may be empty; empty values are not indexed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal

from sandbox.datagen._core import JsonNumber, Record, stable_uuid
from sandbox.datagen._master import (
    CAD_RATE,
    Account,
    Accounts,
    Geography,
    Goal,
    Product,
    duplicate_name,
)
from sandbox.datagen._sap import price_list_name

CURRENCIES = ("USD", "CAD")
PRICE_APPROVER = "pricing@contoso.com"
# Option values of the choice columns (docs/dataverse-schema.md).
PRODUCT_FAMILY_OPTIONS = {"RTU": 100000000, "CHL": 100000001, "AHU": 100000002}
CREDIT_STATUS_OK = 100000000
CREDIT_STATUS_ON_HOLD = 100000001


class Dataverse:
    """Projection of one world onto the Dataverse tables the hub reads."""

    def __init__(
        self,
        *,
        seed: int,
        accounts: Accounts,
        geography: Geography,
        goals: Sequence[Goal],
        products: Sequence[Product],
        as_of: dt.datetime,
        account_duplicates: Sequence[int],
    ) -> None:
        self.seed = seed
        self.accounts = accounts
        self.geography = geography
        self.goals_list = goals
        self.products_list = products
        self.as_of = as_of
        self.account_duplicates = tuple(account_duplicates)

    def _id(self, kind: str, key: str) -> str:
        return stable_uuid(self.seed, kind, key)

    def account_id(self, number: str) -> str:
        """``accountid`` of the (first) account with this account number."""
        return self._id("account", number)

    def territory_id(self, code: str) -> str:
        """``territoryid`` of a territory code."""
        return self._id("territory", code)

    def _account(self, account: Account, accountid: str, name: str, *, numbered: bool) -> Record:
        record: Record = {"accountid": accountid, "name": name}
        if numbered:
            record["accountnumber"] = account.number
        record |= {
            "address1_line1": account.street,
            "address1_city": account.city.name,
            "address1_county": account.city.county.name,
            "address1_stateorprovince": account.city.county.state,
            "address1_postalcode": account.zip,
            "address1_country": "US",
            "statecode": 1 if account.status == "I" else 0,
            "contoso_creditstatus": (
                CREDIT_STATUS_ON_HOLD if account.status == "H" else CREDIT_STATUS_OK
            ),
        }
        return record

    def accounts_records(self) -> Iterator[Record]:
        """``accounts``, then the planted duplicates: the same company (same address) under
        another name and without an account number, as a hand-made second record is."""
        for account in self.accounts:
            yield self._account(
                account, self.account_id(account.number), account.name, numbered=True
            )
        for index in self.account_duplicates:
            account = self.accounts.get(index)
            yield self._account(
                account,
                self._id("account-duplicate", account.number),
                duplicate_name(account.name, index + 2),
                numbered=False,
            )

    def contacts(self) -> Iterator[Record]:
        """``contacts`` of every account."""
        for account in self.accounts:
            for contact in account.contacts:
                yield {
                    "contactid": self._id("contact", contact.number),
                    "contoso_contactnumber": contact.number,
                    "firstname": contact.first,
                    "lastname": contact.last,
                    "emailaddress1": contact.email,
                    "parentcustomerid_account@odata.bind": (
                        f"/accounts({self.account_id(account.number)})"
                    ),
                }

    def products(self) -> Iterator[Record]:
        """``products`` (the SKU is ``productnumber``)."""
        for product in self.products_list:
            yield {
                "productid": self._id("product", product.sku),
                "name": product.name,
                "productnumber": product.sku,
                "contoso_productfamily": PRODUCT_FAMILY_OPTIONS[product.family],
                "statecode": 0,
            }

    def currencies(self) -> Iterator[Record]:
        """``transactioncurrencies`` the price lists refer to (USD is the base currency)."""
        for code, name, symbol, rate in (
            ("USD", "US Dollar", "$", Decimal("1.0")),
            ("CAD", "Canadian Dollar", "CA$", CAD_RATE),
        ):
            yield {
                "transactioncurrencyid": self._id("currency", code),
                "isocurrencycode": code,
                "currencyname": name,
                "currencysymbol": symbol,
                "exchangerate": JsonNumber(rate),
            }

    def pricelevels(self) -> Iterator[Record]:
        """``pricelevels``: one list per currency for the year."""
        year = self.as_of.year
        for currency in CURRENCIES:
            name = price_list_name(currency, year)
            yield {
                "pricelevelid": self._id("pricelevel", name),
                "name": name,
                "transactioncurrencyid@odata.bind": (
                    f"/transactioncurrencies({self._id('currency', currency)})"
                ),
                "begindate": dt.date(year, 1, 1),
                "enddate": dt.date(year, 12, 31),
            }

    def productpricelevels(self) -> Iterator[Record]:
        """``productpricelevels``: the SAP list prices, keyed ``{pricelist}|{sku}``."""
        year = self.as_of.year
        approved = dt.datetime(year, 1, 1, 6, 0, tzinfo=dt.UTC)
        for currency in CURRENCIES:
            name = price_list_name(currency, year)
            for product in self.products_list:
                key = f"{name}|{product.sku}"
                yield {
                    "productpricelevelid": self._id("productpricelevel", key),
                    "contoso_pricekey": key,
                    "pricelevelid@odata.bind": f"/pricelevels({self._id('pricelevel', name)})",
                    "productid@odata.bind": f"/products({self._id('product', product.sku)})",
                    "amount": JsonNumber(product.price(currency)),
                    "contoso_approvedon": approved,
                    "contoso_approvedby": PRICE_APPROVER,
                }

    def territories(self) -> Iterator[Record]:
        """``territories``: regions (level 1), counties (2), cities with ZIPs (3)."""
        for region in self.geography.regions:
            yield {
                "territoryid": self.territory_id(region.code),
                "name": region.name,
                "contoso_territorycode": region.code,
                "contoso_level": 1,
            }
        for county in self.geography.counties:
            yield {
                "territoryid": self.territory_id(county.code),
                "name": county.name,
                "contoso_territorycode": county.code,
                "contoso_level": 2,
                "contoso_ParentTerritoryId@odata.bind": (
                    f"/territories({self.territory_id(county.region.code)})"
                ),
            }
        for city in self.geography.cities:
            yield {
                "territoryid": self.territory_id(city.code),
                "name": city.name,
                "contoso_territorycode": city.code,
                "contoso_level": 3,
                "contoso_ParentTerritoryId@odata.bind": (
                    f"/territories({self.territory_id(city.county.code)})"
                ),
            }

    def postalcodes(self) -> Iterator[Record]:
        """``contoso_postalcodes``: each ZIP and its City/ZIP territory."""
        for city in self.geography.cities:
            for zip_code in city.zips:
                yield {
                    "contoso_postalcodeid": self._id("postalcode", zip_code),
                    "contoso_name": zip_code,
                    "contoso_city": city.name,
                    "contoso_county": city.county.name,
                    "contoso_stateorprovince": city.county.state,
                    "contoso_TerritoryId@odata.bind": (
                        f"/territories({self.territory_id(city.code)})"
                    ),
                }

    def goals(self) -> Iterator[Record]:
        """``goals``: one per territory and month, keyed ``{territorycode}|{YYYY-MM}``."""
        for goal in self.goals_list:
            key = f"{goal.territory_code}|{goal.month}"
            yield {
                "goalid": self._id("goal", key),
                "title": f"{goal.territory_code} revenue {goal.month}",
                "contoso_goalkey": key,
                "targetmoney": JsonNumber(goal.target),
                "contoso_TerritoryId@odata.bind": (
                    f"/territories({self.territory_id(goal.territory_code)})"
                ),
                "contoso_month": goal.month,
                "goalstartdate": goal.start,
                "goalenddate": goal.end,
            }
