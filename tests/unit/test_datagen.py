"""The deterministic Contoso data generator (sandbox.datagen).

Format checks reproduce docs/mainframe-api.md (the LOS copybook contract) and the hub's Quote
JSON; problem detection here is written independently of the generator (plain parsing), so a
planted set that matches it proves both the plant and the report.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections import Counter
from decimal import Decimal

import pytest

from sandbox.datagen import DEFAULT_AS_OF, JsonNumber, generate, to_jsonable
from sandbox.datagen.__main__ import main as datagen_main

pytestmark = pytest.mark.unit

AS_OF = dt.datetime(2026, 5, 19, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def world():
    return generate(7, 2000, as_of=AS_OF, problem_rate=0.01)


def _dump(tables):
    return {name: [json.dumps(to_jsonable(r), sort_keys=True) for r in t] for name, t in tables}


def _everything(data):
    out = {}
    for system, tables in (
        ("mainframe", data.mainframe_seed()),
        ("sap", data.sap_seed()),
        ("dataverse", data.dataverse_seed()),
    ):
        for name, rows in _dump(tables.items()).items():
            out[f"{system}.{name}"] = rows
    out["quotes"] = [json.dumps(q, sort_keys=True) for q in data.quoting_tool_quotes()]
    return out


# ---- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_data_in_every_projection():
    # Given two worlds from the same seed, scale and clock
    first = generate(11, 600, as_of=AS_OF)
    second = generate(11, 600, as_of=AS_OF)
    # When every table of every system is serialised
    # Then they are identical, as are the planted reports
    assert _everything(first) == _everything(second)
    assert first.planted.to_json() == second.planted.to_json()


def test_different_seed_gives_different_data():
    # Given two seeds
    a, b = generate(1, 600, as_of=AS_OF), generate(2, 600, as_of=AS_OF)
    # When their records are compared table by table
    everything_a, everything_b = _everything(a), _everything(b)
    # Then every large table differs
    for name in ("mainframe.orders", "mainframe.customers", "sap.A_SalesOrder", "quotes"):
        assert everything_a[name] != everything_b[name], name


def test_default_clock_is_fixed_so_a_seed_means_the_same_world_on_any_day():
    # Given no explicit as_of
    data = generate(3, 100)
    # Then the documented fixed clock is used (not the wall clock)
    assert data.as_of == DEFAULT_AS_OF


def test_chunks_regenerate_identically_in_any_order(world):
    # Given the streamed orders
    streamed = list(world.legacy.raw_orders())
    # When single orders are regenerated out of order (random access re-creates their chunk)
    world.legacy.chunk.cache_clear()
    picks = [1999, 3, 1000, 999, 0]
    # Then each equals the streamed one
    for index in picks:
        assert world.legacy.raw_order(index) == streamed[index]


# ---- scaling -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "accounts", "quotes"),
    [(100, 20, 10), (10_000, 500, 1000)],
)
def test_entity_counts_derive_from_the_scale(scale, accounts, quotes):
    # Given a world of `scale` legacy orders
    data = generate(5, scale, as_of=AS_OF)
    mainframe, sap = data.mainframe_seed(), data.sap_seed()
    # Then the derived counts follow the documented rules, and len() matches the records
    assert len(mainframe["orders"]) == scale
    assert sum(1 for _ in mainframe["orders"]) == scale
    assert data.counts.accounts == accounts
    assert data.counts.quotes == data.counts.sap_orders == quotes
    assert 30 <= data.counts.products <= 300
    assert len(mainframe["orderlines"]) == sum(1 for _ in mainframe["orderlines"])
    assert len(sap["A_SalesOrder"]) == sum(1 for _ in sap["A_SalesOrder"])
    # 1% of the accounts duplicated, at least one
    assert len(mainframe["customers"]) == accounts + max(1, round(accounts * 0.01))
    assert 4 <= len(data.geography.regions) <= 6
    assert data.counts.goals == data.counts.territories * 12


def test_a_million_orders_are_lazy_and_stream_from_any_chunk():
    # Given the largest documented scale
    data = generate(9, 1_000_000, as_of=AS_OF)
    orders = data.mainframe_seed()["orders"]
    # When only the count and a slice are asked for (no full pass)
    first = list(itertools.islice(orders, 3))
    last = data.legacy.order_record(data.legacy.raw_order(999_999))
    # Then the count is known up front and records come from their own chunk
    assert len(orders) == 1_000_000
    assert [r["ORDNO"] for r in first] == ["0001000001", "0001000002", "0001000003"]
    assert last["ORDNO"] == "0002000000"
    assert data.counts.products == 300
    assert data.counts.accounts == 50_000
    assert len(data.planted.get("mainframe.orders", "invalid_date")) == 10_000


# ---- mainframe format (docs/mainframe-api.md) ----------------------------------------------------

_DATE = re.compile(r"^\d{8}$")
_TS = re.compile(r"^\d{14}$")
_FIELD_NAME = re.compile(r"^[A-Z][A-Z0-9]{0,7}$")


def _date(text):
    return dt.datetime.strptime(text, "%Y%m%d").date()


def _ts(text):
    return dt.datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)


def _number(text):
    # Implied decimals: digits only, no sign, no point (docs/mainframe-api.md, Conventions).
    return int(text) if re.fullmatch(r"\d+", text) else None


def _valid_date(text):
    try:
        _date(text)
    except ValueError:
        return False
    return True


def test_mainframe_records_follow_the_documented_copybook_format(world):
    mainframe = world.mainframe_seed()
    planted_orders = world.planted.all_keys("mainframe.orders")
    planted_lines = world.planted.all_keys("mainframe.orderlines")
    # Given every record of every LOS entity
    for entity, records in mainframe.items():
        for record in records:
            # Then field names are upper case, at most 8 characters; values are strings
            assert all(_FIELD_NAME.match(k) for k in record), (entity, record)
            assert all(isinstance(v, str) for v in record.values())
            assert _TS.match(record["LSTUPD"]) and _ts(record["LSTUPD"]) <= AS_OF
    for order in mainframe["orders"]:
        assert re.fullmatch(r"\d{10}", order["ORDNO"])
        assert len(order["CUSTNO"]) == 10 and len(order["SLSREP"]) == 8
        assert len(order["QTREF"]) == 40
        assert order["STATUS"] in "ORSICX" and len(order["STATUS"]) == 1
        assert order["CURR"] in ("USD", "CAD")
        assert re.fullmatch(r"P\d00", order["PLANT"])
        assert _valid_date(order["REQDT"])
        if order["ORDNO"] not in planted_orders:
            assert _valid_date(order["ORDDT"]) and _date(order["ORDDT"]) < _date(order["REQDT"])
            assert re.fullmatch(r"\d{12}", order["TOTAMT"])
    for line in mainframe["orderlines"]:
        assert re.fullmatch(r"\d{4}", line["LINENO"]) and int(line["LINENO"]) % 10 == 0
        assert len(line["ITEMNO"]) == 18 and line["ITEMNO"][:4] in ("RTU-", "CHL-", "AHU-")
        if (line["ORDNO"], line["LINENO"]) not in planted_lines:
            assert re.fullmatch(r"\d{8}", line["QTY"]) and int(line["QTY"]) > 0
            assert re.fullmatch(r"\d{10}", line["UPRICE"])
    for item in mainframe["inventory"]:
        assert re.fullmatch(r"\d{7}", item["ONHAND"]) and re.fullmatch(r"\d{7}", item["ALLOC"])
        assert int(item["ALLOC"]) <= int(item["ONHAND"])
        assert len(item["ITEMNO"]) == 18
    for customer in mainframe["customers"]:
        assert re.fullmatch(r"C\d{7}  ", customer["CUSTNO"])
        assert len(customer["CUSTNM"]) == 40 and customer["CUSTNM"] == customer["CUSTNM"].upper()
        assert customer["STATUS"] in ("A", "I", "H")
        assert re.fullmatch(r"[A-Z]{2}", customer["CNTRY"])
        assert re.fullmatch(r"\d{5}", customer["ZIP"])


def test_order_totals_equal_the_sum_of_their_lines_in_implied_decimals(world):
    # Given valid orders and their valid lines
    mainframe = world.mainframe_seed()
    lines = {}
    for line in mainframe["orderlines"]:
        lines.setdefault(line["ORDNO"], []).append(line)
    checked = 0
    for order in mainframe["orders"]:
        own = lines[order["ORDNO"]]
        if _number(order["TOTAMT"]) is None or any(_number(x["QTY"]) is None for x in own):
            continue
        if any(_number(x["UPRICE"]) is None or _number(x["QTY"]) == 0 for x in own):
            continue
        # Then TOTAMT (2 implied decimals) = sum(QTY (3) x UPRICE (2))
        total = sum(Decimal(int(x["QTY"])) / 1000 * Decimal(int(x["UPRICE"])) / 100 for x in own)
        assert Decimal(int(order["TOTAMT"])) / 100 == total
        checked += 1
    assert checked > 1800


def test_planted_order_and_line_problems_are_exactly_what_a_parser_rejects(world):
    mainframe = world.mainframe_seed()
    customers = {c["CUSTNO"].strip() for c in mainframe["customers"]}
    orders = list(mainframe["orders"])
    order_numbers = {o["ORDNO"] for o in orders}
    # When an independent parser classifies every order and line
    found = {
        "invalid_date": {o["ORDNO"] for o in orders if not _valid_date(o["ORDDT"])},
        "non_numeric_amount": {o["ORDNO"] for o in orders if _number(o["TOTAMT"]) is None},
        "missing_customer": {o["ORDNO"] for o in orders if o["CUSTNO"].strip() not in customers},
    }
    lines = list(mainframe["orderlines"])
    found_lines = {
        "missing_order": {
            (x["ORDNO"], x["LINENO"]) for x in lines if x["ORDNO"] not in order_numbers
        },
        "non_positive_quantity": {
            (x["ORDNO"], x["LINENO"]) for x in lines if not (_number(x["QTY"]) or 0) > 0
        },
        "non_numeric_amount": {
            (x["ORDNO"], x["LINENO"]) for x in lines if _number(x["UPRICE"]) is None
        },
    }
    # Then the planted report names exactly those keys, 1% of 2000 each
    for kind, keys in found.items():
        assert world.planted.get("mainframe.orders", kind) == keys, kind
        assert len(keys) == 20
    for kind, keys in found_lines.items():
        assert world.planted.get("mainframe.orderlines", kind) == keys, kind
        assert len(keys) == 20
    # And the out-of-range values are the documented kinds: impossible dates, zero or negative
    # quantities
    bad_dates = {o["ORDDT"] for o in orders if not _valid_date(o["ORDDT"])}
    assert all(_DATE.match(d) for d in bad_dates)
    quantities = [
        x["QTY"] for x in lines if (x["ORDNO"], x["LINENO"]) in found_lines["non_positive_quantity"]
    ]
    assert "00000000" in quantities and any(q.startswith("-") for q in quantities)


def test_mainframe_duplicate_customers_share_a_custno_under_two_names(world):
    # Given the legacy customer records grouped by CUSTNO (the file does not enforce unique keys)
    names = {}
    for record in world.mainframe_seed()["customers"]:
        names.setdefault(record["CUSTNO"].strip(), []).append(record["CUSTNM"].strip())
    duplicated = {k for k, v in names.items() if len(v) > 1}
    # Then exactly the planted keys occur twice, under two different names
    assert duplicated == world.planted.get("mainframe.customers", "duplicate_key")
    assert duplicated and all(len(set(names[k])) == 2 for k in duplicated)


def test_sap_duplicate_customers_have_their_own_number_as_sap_keys_are_unique(world):
    # Given SAP's customer master and its sales orders
    customers = list(world.sap_seed()["A_Customer"])
    numbers = [c["Customer"] for c in customers]
    sold_to = {o["SoldToParty"] for o in world.sap_seed()["A_SalesOrder"]}
    accounts = world.truth.account_numbers()
    account_names = {c["CustomerName"] for c in customers if c["Customer"] in accounts}
    # Then no customer number occurs twice (KUNNR is the key of the customer master)
    assert len(numbers) == len(set(numbers))
    # And SAP knows every sold-to party, the SAP-only ones of planted orders included
    assert sold_to <= set(numbers)
    # And the numbers that are neither accounts nor sold-to parties are the planted duplicates:
    # C8 + the duplicated account's index, named differently from every account
    planted = world.planted.get("sap.A_Customer", "duplicate_customer")
    extra = {c["Customer"]: c["CustomerName"] for c in customers}
    extra = {n: name for n, name in extra.items() if n not in accounts and n not in sold_to}
    assert set(extra) == {f"C8{int(k[1:]) - 1:06d}" for k in planted}
    assert planted and not set(extra.values()) & account_names


def test_dataverse_duplicate_accounts_have_no_account_number_as_the_key_is_unique(world):
    # Given the Dataverse accounts (alternate key accountnumber: Dataverse refuses a second row
    # with the same value; empty key values are allowed and not indexed)
    accounts = list(world.dataverse_seed()["accounts"])
    numbered = [a for a in accounts if "accountnumber" in a]
    unnumbered = [a for a in accounts if "accountnumber" not in a]
    # Then account numbers are unique
    assert len({a["accountnumber"] for a in numbered}) == len(numbered)

    # And each unnumbered row is a planted duplicate: same address as one numbered account,
    # another name
    def address(a):
        return a["address1_line1"], a["address1_city"], a["address1_postalcode"]

    by_address = {}
    for account in numbered:
        by_address.setdefault(address(account), []).append(account)
    originals = set()
    for duplicate in unnumbered:
        (original,) = by_address[address(duplicate)]
        assert original["name"] != duplicate["name"]
        originals.add(original["accountnumber"])
    planted = world.planted.get("dataverse.accounts", "duplicate_account")
    assert planted and originals == planted and len(unnumbered) == len(planted)


# ---- Quote JSON ----------------------------------------------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _walk(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, f"{path}[]")
    else:
        yield path, value


def test_quotes_conform_to_the_hub_quote_json(world):
    skus = world.truth.skus()
    accounts = world.truth.account_numbers()
    ids = set()
    for quote in world.quoting_tool_quotes():
        # Then every field has the documented shape
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,40}", quote["quoteId"])
        ids.add(quote["quoteId"])
        assert isinstance(quote["revision"], int) and quote["revision"] >= 0
        assert re.fullmatch(r"[a-z0-9.]+@contoso\.com", quote["salesRep"])
        assert quote["currency"] in ("USD", "CAD")
        dt.date.fromisoformat(quote["expectedCloseDate"])
        assert set(quote["shipTo"]) == {
            "street",
            "city",
            "county",
            "region",
            "postalCode",
            "country",
        }
        assert re.fullmatch(r"[A-Z]{2}", quote["shipTo"]["country"])
        assert _RFC3339.match(quote["modifiedAt"])
        assert dt.datetime.fromisoformat(quote["modifiedAt"]).utcoffset() is not None
        assert 1 <= len(quote["lines"]) <= 500
        numbers = [line["lineNumber"] for line in quote["lines"]]
        assert len(set(numbers)) == len(numbers) and min(numbers) >= 1
        for line in quote["lines"]:
            assert re.fullmatch(r"\d+(\.\d+)?", line["quantity"])
            assert 0 < Decimal(line["quantity"]) <= 100_000
            assert re.fullmatch(r"\d+(\.\d{1,2})?", line["unitPrice"])
            assert 0 <= line["discountPct"] <= 100
            if "configuration" in line:
                assert set(line["configuration"]) == {
                    "tonnage",
                    "voltage",
                    "refrigerant",
                    "options",
                }
        # And money is never a float: floats occur only in probability and discountPct
        floats = {p for p, v in _walk(quote) if isinstance(v, float)}
        assert floats <= {".probability", ".lines[].discountPct"}
    assert len(ids) == world.counts.quotes
    # And the planted problems are exactly what a validator finds
    quotes = list(world.quoting_tool_quotes())
    assert world.planted.get("quotingtool.quotes", "unknown_sku") == {
        q["quoteId"] for q in quotes if any(x["sku"] not in skus for x in q["lines"])
    }
    assert world.planted.get("quotingtool.quotes", "unknown_account") == {
        q["quoteId"] for q in quotes if q["accountNumber"] not in accounts
    }
    assert world.planted.get("quotingtool.quotes", "probability_out_of_range") == {
        q["quoteId"] for q in quotes if not 0 <= q["probability"] <= 1
    }


# ---- SAP -------------------------------------------------------------------------------------------


def test_sap_orders_use_odata_names_and_orders_from_quotes_carry_the_quote(world):
    quotes = {q["quoteId"]: q for q in world.quoting_tool_quotes()}
    accounts = world.truth.account_numbers()
    orders = list(world.sap_seed()["A_SalesOrder"])
    from_quotes = world.truth.sap_orders_from_quotes()
    assert from_quotes  # some orders came from quotes
    for order in orders:
        # Then the header carries the documented sales area and types
        assert (order["SalesOrderType"], order["SalesOrganization"]) == ("OR", "1010")
        assert (order["DistributionChannel"], order["OrganizationDivision"]) == ("10", "00")
        assert order["OverallSDProcessStatus"] in ("A", "B", "C")
        assert order["LastChangeDateTime"].tzinfo is not None
        assert order["LastChangeDateTime"] <= AS_OF
        assert isinstance(order["RequestedDeliveryDate"], dt.date)
        items = order["to_Item"]
        assert [i["SalesOrderItem"] for i in items] == [
            str(10 * (n + 1)) for n in range(len(items))
        ]
        assert all(i["RequestedQuantityUnit"] == "EA" for i in items)
        assert order["TotalNetAmount"] == sum(i["NetAmount"] for i in items)
        assert all(isinstance(i["NetAmount"], Decimal) for i in items)
        # And an order from a quote references it and repeats its lines
        reference = order["PurchaseOrderByCustomer"]
        if order["SalesOrder"] in from_quotes:
            quote = quotes[reference]
            assert order["SoldToParty"] == quote["accountNumber"]
            assert [i["Material"] for i in items] == [x["sku"] for x in quote["lines"]]
    missing = {o["SalesOrder"] for o in orders if o["SoldToParty"] not in accounts}
    assert missing == world.planted.get("sap.A_SalesOrder", "missing_customer")


def test_sap_master_data_equipment_stock_and_prices(world):
    sap = world.sap_seed()
    skus = world.truth.skus()
    products = list(sap["A_Product"])
    assert {p["Product"] for p in products} == skus
    assert all((p["ProductType"], p["BaseUnit"]) == ("FERT", "EA") for p in products)
    equipment = list(sap["Equipment"])
    assert equipment and len({e["Equipment"] for e in equipment}) == len(equipment)
    assert len({e["SerialNumber"] for e in equipment}) == len(equipment)
    assert all(e["Material"] in skus and len(e["EquipmentName"]) <= 40 for e in equipment)
    # Equipment names its owner as a partner (Equipment has no customer property in SAP)
    accounts = world.truth.account_numbers()
    for unit in equipment:
        (partner,) = unit["to_Partner"]
        assert partner["PartnerFunction"] == "SP" and partner["Partner"] in accounts
    stock = list(sap["stock"])
    assert stock and all(s["Plant"] in world.plants and s["Material"] in skus for s in stock)
    # Prices: PPR0 records whose material and sales area are in the validity, as in SAP
    prices = list(sap["A_SlsPrcgConditionRecord"])
    validities = [(p, v) for p in prices for v in p["to_SlsPrcgCndnRecdValidity"]]
    assert len(validities) == len(prices)
    assert all(p["ConditionType"] == v["ConditionType"] == "PPR0" for p, v in validities)
    assert {(v["Material"], p["ConditionRateValueUnit"]) for p, v in validities} == {
        (s, c) for s in skus for c in ("USD", "CAD")
    }
    assert all(v["SalesOrganization"] == "1010" for _, v in validities)
    assert all(
        p["ConditionRateValue"] == p["ConditionRateValue"].quantize(Decimal("0.01")) for p in prices
    )


# ---- Dataverse -----------------------------------------------------------------------------------


def _bound_id(value):
    return value[value.index("(") + 1 : -1]


def test_dataverse_seed_has_the_documented_sets_keys_and_lookups(world):
    dv = {name: list(table) for name, table in world.dataverse_seed().items()}
    assert set(dv) == {
        "accounts", "contacts", "products", "transactioncurrencies", "pricelevels",
        "productpricelevels", "territories", "contoso_postalcodes", "goals",
    }  # fmt: skip
    currencies = {c["transactioncurrencyid"] for c in dv["transactioncurrencies"]}
    assert all(
        _bound_id(p["transactioncurrencyid@odata.bind"]) in currencies for p in dv["pricelevels"]
    )
    price_lists = {p["pricelevelid"] for p in dv["pricelevels"]}
    products = {p["productid"] for p in dv["products"]}
    for price in dv["productpricelevels"]:
        assert _bound_id(price["pricelevelid@odata.bind"]) in price_lists
        assert _bound_id(price["productid@odata.bind"]) in products
    account_ids = {a["accountid"] for a in dv["accounts"]}
    assert len(account_ids) == len(dv["accounts"])
    assert all(
        _bound_id(c["parentcustomerid_account@odata.bind"]) in account_ids for c in dv["contacts"]
    )
    territories = {t["territoryid"]: t for t in dv["territories"]}
    for territory in dv["territories"]:
        # Then each level-2/3 territory points at a parent one level up
        if territory["contoso_level"] > 1:
            parent = territories[_bound_id(territory["contoso_ParentTerritoryId@odata.bind"])]
            assert parent["contoso_level"] == territory["contoso_level"] - 1
    for postal in dv["contoso_postalcodes"]:
        assert re.fullmatch(r"\d{5}", postal["contoso_name"])
        target = territories[_bound_id(postal["contoso_TerritoryId@odata.bind"])]
        assert target["contoso_level"] == 3
    assert {p["productnumber"] for p in dv["products"]} == world.truth.skus()
    # Choice columns carry option values (100000000 RTU, 100000001 Chiller, 100000002 AHU)
    families = {p["productnumber"][:3]: p["contoso_productfamily"] for p in dv["products"]}
    assert families == {"RTU": 100000000, "CHL": 100000001, "AHU": 100000002}
    assert {a["contoso_creditstatus"] for a in dv["accounts"]} <= {100000000, 100000001}
    keys = [p["contoso_pricekey"] for p in dv["productpricelevels"]]
    assert len(set(keys)) == len(keys) and all(k.count("|") == 1 for k in keys)
    # And goals add up the hierarchy: a region's monthly goal is the sum of its cities'
    goals = {g["contoso_goalkey"]: g["targetmoney"] for g in dv["goals"]}
    assert len(goals) == len(dv["goals"])
    region = world.geography.regions[0]
    cities = [c for c in world.geography.cities if c.county.region == region]
    assert goals[f"{region.code}|2026-03"] == sum(goals[f"{c.code}|2026-03"] for c in cities)
    assert all(g["contoso_month"].startswith("2026-") for g in dv["goals"])


# ---- truth -----------------------------------------------------------------------------------------


def test_truth_equals_an_independent_parse_of_the_valid_mainframe_records(world):
    # Given the copybook records, parsed here without the generator's help
    mainframe = world.mainframe_seed()
    planted = world.planted.all_keys("mainframe.orders")
    parsed = {
        o["ORDNO"]: (
            o["CUSTNO"].strip(),
            _date(o["ORDDT"]),
            Decimal(int(o["TOTAMT"])) / 100,
            o["STATUS"],
            o["QTREF"].strip() or None,
            _ts(o["LSTUPD"]),
        )
        for o in mainframe["orders"]
        if o["ORDNO"] not in planted
    }
    # When the truth view is read
    truth = {
        o.order_number: (
            o.customer_number,
            o.order_date,
            o.total,
            o.status,
            o.quote_ref,
            o.last_update,
        )
        for o in world.truth.legacy_orders()
    }
    # Then both agree record by record, and the summary agrees with both
    assert truth == parsed
    summary = world.truth.legacy_summary()
    assert summary.orders == len(parsed)
    assert sum(summary.total_by_currency.values()) == sum(v[2] for v in parsed.values())
    assert summary.orders_by_status == dict(Counter(v[3] for v in parsed.values()))
    lines = list(world.truth.legacy_order_lines())
    assert summary.lines == len(lines)
    assert {(x.order_number, f"{x.line_number:04d}") for x in lines}.isdisjoint(
        world.planted.all_keys("mainframe.orderlines")
    )


def test_zero_problem_rate_gives_clean_data():
    data = generate(4, 500, as_of=AS_OF, problem_rate=0)
    assert all(n == 0 for kinds in data.planted.counts().values() for n in kinds.values())
    assert sum(1 for _ in data.truth.legacy_orders()) == 500
    assert len(data.mainframe_seed()["customers"]) == data.counts.accounts


# ---- changes ---------------------------------------------------------------------------------------


def test_touch_mainframe_returns_k_deterministic_newer_changes(world):
    before = {o["ORDNO"]: o for o in world.mainframe_seed()["orders"]}
    # When 20 changes of round 1 are asked for twice, and round 2 once
    first = world.touch_mainframe(20)
    again = world.touch_mainframe(20)
    other = world.touch_mainframe(20, round=2)
    # Then the same round gives the same changes; another round other records
    assert first == again and first != other
    assert sum(len(v) for v in first.values()) == 20
    assert {k: len(v) for k, v in first.items()} == {
        "orders": 10,
        "orderlines": 6,
        "inventory": 2,
        "customers": 2,
    }
    # And every change is newer than anything generated, on a valid record, and really changed
    newest = max(_ts(r["LSTUPD"]) for records in world.mainframe_seed().values() for r in records)
    for records in first.values():
        assert all(_ts(r["LSTUPD"]) > newest for r in records)
    for record in first["orders"]:
        assert record["ORDNO"] not in world.planted.all_keys("mainframe.orders")
        original = before[record["ORDNO"]]
        assert {k for k in record if record[k] != original[k]} > {"LSTUPD"}
    # And an explicit time is used as is
    at = dt.datetime(2026, 6, 1, 12, 0, 5, tzinfo=dt.UTC)
    stamped = world.touch_mainframe(5, at=at)
    assert {r["LSTUPD"] for v in stamped.values() for r in v} == {"20260601120005"}


# ---- CLI and arguments -----------------------------------------------------------------------------


def test_cli_writes_ndjson_per_system_and_prints_the_planted_report(tmp_path, capsys):
    # When the CLI writes a small world
    code = datagen_main(["--seed", "7", "--scale", "300", "--out", str(tmp_path)])
    # Then each system has NDJSON files whose counts the manifest states
    assert code == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"]["mainframe/orders.ndjson"] == 300
    for name, n in manifest["files"].items():
        rows = (tmp_path / name).read_text().splitlines()
        assert len(rows) == n, name
    first_sap = json.loads((tmp_path / "sap" / "A_SalesOrder.ndjson").read_text().splitlines()[0])
    assert isinstance(first_sap["TotalNetAmount"], str)  # Decimal as string, never a float
    planted = json.loads((tmp_path / "planted.json").read_text())
    assert planted["counts"]["mainframe.orders"]["invalid_date"] == 3
    out = capsys.readouterr().out
    assert "planted data-quality problems" in out and "invalid_date" in out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0}, "scale"),
        ({"scale": 100, "problem_rate": 0.5}, "problem_rate"),
        ({"scale": 100, "as_of": dt.datetime(2026, 1, 1)}, "timezone"),
    ],
)
def test_generate_rejects_arguments_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(1, **kwargs)


def test_json_encoding_never_turns_money_into_floats():
    encoded = to_jsonable({"a": Decimal("12.50"), "d": dt.date(2026, 1, 2), "t": AS_OF})
    assert encoded == {"a": "12.50", "d": "2026-01-02", "t": "2026-05-19T09:30:00Z"}
    with pytest.raises(ValueError, match="naive"):
        to_jsonable(dt.datetime(2026, 1, 1))


def test_json_numbers_are_written_with_their_exact_decimal_text():
    # Given decimals that JSON must carry as numbers (Dataverse money and decimal columns)
    values = {"rate": JsonNumber("1.37"), "amount": JsonNumber("8900.00"), "p": JsonNumber("0.95")}
    # When encoded
    text = json.dumps(to_jsonable(values))
    # Then they are JSON numbers whose text is the decimal's value
    assert text == '{"rate": 1.37, "amount": 8900, "p": 0.95}'
    assert json.loads(text, parse_float=Decimal) == values
    # And a value a binary double cannot carry exactly is refused, never rounded
    with pytest.raises(ValueError, match="exact"):
        to_jsonable(JsonNumber("1234567890.1234567891"))


def test_dataverse_money_and_decimals_encode_as_json_numbers_and_sap_amounts_as_strings(world):
    # Given the Dataverse and SAP projections, encoded as the seed requests carry them
    dv = world.dataverse_seed()
    dataverse_numbers = [
        (r["exchangerate"], to_jsonable(r)["exchangerate"]) for r in dv["transactioncurrencies"]
    ]
    dataverse_numbers += [(r["amount"], to_jsonable(r)["amount"]) for r in dv["productpricelevels"]]
    dataverse_numbers += [(r["targetmoney"], to_jsonable(r)["targetmoney"]) for r in dv["goals"]]
    order = to_jsonable(next(iter(world.sap_seed()["A_SalesOrder"])))
    # Then Dataverse gets numbers (the Web API refuses "8900.00" for Edm.Decimal) equal to the
    # generated Decimals, while SAP's OData V2 amounts stay strings
    assert all(isinstance(wire, int | float) for _, wire in dataverse_numbers)
    assert all(Decimal(json.dumps(wire)) == value for value, wire in dataverse_numbers)
    assert isinstance(order["TotalNetAmount"], str)
