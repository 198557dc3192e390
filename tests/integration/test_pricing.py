"""GET /api/pricing against the sandbox Dataverse: approved price-list entries changed since a
time, paged with opaque continuation tokens.

Dataverse facts reproduced by the peer (powerapps-docs, developer/data-platform/webapi/query/
filter-rows.md: ``eq ne gt ge lt le`` and ``null`` comparisons in ``$filter``; ``$orderby`` on
several columns; ``$top``): the hub pages by keyset on (modifiedon, productpricelevelid), never by
``$skip``. The Web API shows ``modifiedon`` to the second, so the tests seed many entries within
one second (sub-second apart) to prove no entry is split, skipped or repeated at a page edge.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from shared import wiring
from shared.jsonbody import dumps
from shared.services.pricing import PricingFeed

pytestmark = pytest.mark.integration

SINCE = "2026-05-01T00:00:00Z"
APPROVED_ON = "2026-04-30T06:00:00Z"


def _ids() -> dict[str, str]:
    return {name: str(uuid.uuid4()) for name in ("usd", "cad", "us_list", "ca_list")}


def _master(ids: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {
        "transactioncurrencies": [
            {
                "transactioncurrencyid": ids["usd"],
                "isocurrencycode": "USD",
                "currencyname": "US Dollar",
                "currencysymbol": "$",
                "exchangerate": 1,
            },
            {
                "transactioncurrencyid": ids["cad"],
                "isocurrencycode": "CAD",
                "currencyname": "Canadian Dollar",
                "currencysymbol": "CA$",
            },
        ],
        "pricelevels": [
            {
                "pricelevelid": ids["us_list"],
                "name": "US Distributor 2026",
                "transactioncurrencyid@odata.bind": f"/transactioncurrencies({ids['usd']})",
            },
            {
                "pricelevelid": ids["ca_list"],
                "name": "CA Distributor 2026",
                "transactioncurrencyid@odata.bind": f"/transactioncurrencies({ids['cad']})",
            },
        ],
    }


def _entry(
    list_id: str,
    product_id: str,
    amount: Any,
    modified: str,
    *,
    approved: bool = True,
    key: str | None = None,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "productpricelevelid": str(uuid.uuid4()),
        "contoso_pricekey": key or str(uuid.uuid4()),
        "pricelevelid@odata.bind": f"/pricelevels({list_id})",
        "productid@odata.bind": f"/products({product_id})",
        "amount": amount,
        "modifiedon": modified,
    }
    if approved:
        row["contoso_approvedon"] = APPROVED_ON
        row["contoso_approvedby"] = "Pricing Desk"
    return row


def _seed(world, http, data: dict[str, list[dict[str, Any]]]) -> None:
    response = http.post(f"{world.endpoints()['dataverse']}/_sandbox/seed", json=data)
    assert response.status_code == 200, response.text


@pytest.fixture
def dataverse(world, hub_http):
    """The world's Dataverse, empty and without faults."""
    base = world.endpoints()["dataverse"]
    hub_http.post(f"{base}/_sandbox/reset").raise_for_status()
    yield world
    hub_http.put(f"{base}/_sandbox/faults", json={}).raise_for_status()


def _get(world, http, **params: str):
    return http.get(
        f"{world.hub.base_url}/api/pricing",
        params=params,
        headers={"x-functions-key": world.hub.function_key},
    )


def _many_entries(ids: dict[str, str], products: int) -> dict[str, list[dict[str, Any]]]:
    """``products`` products on both price lists. Most entries share a handful of seconds
    (sub-second apart), the rest are one per second, so pages end inside and between seconds."""
    data = _master(ids)
    data["products"] = []
    data["productpricelevels"] = []
    base = dt.datetime(2026, 5, 2, 8, 0, 0, tzinfo=dt.UTC)
    for i in range(products):
        product_id = str(uuid.uuid4())
        data["products"].append(
            {"productid": product_id, "productnumber": f"SKU-{i:05d}", "name": f"P{i}"}
        )
        for n, list_id in enumerate((ids["us_list"], ids["ca_list"])):
            index = 2 * i + n
            if index % 5:
                # Four of five entries fall into one of 3 seconds, 1 ms apart.
                stamp = base + dt.timedelta(seconds=index % 3, milliseconds=index % 997)
            else:
                stamp = base + dt.timedelta(seconds=10 + index)
            data["productpricelevels"].append(
                _entry(list_id, product_id, 100 + i, stamp.isoformat().replace("+00:00", "Z"))
            )
    return data


def _follow(fetch) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(1000):
        page = fetch(token)
        items.extend(page["items"])
        token = page.get("continuationToken")
        if token is None:
            return items
    raise AssertionError("paging did not end")


def test_only_approved_entries_changed_since_are_sent_with_sku_list_and_currency(
    dataverse, hub_http
):
    # Given two price lists in two currencies, two products, and four entries: two approved
    # and changed after `since`, one changed after but not approved, one approved but older
    ids = _ids()
    data = _master(ids)
    rtu, chl = str(uuid.uuid4()), str(uuid.uuid4())
    data["products"] = [
        {"productid": rtu, "productnumber": "RTU-050-460", "name": "Rooftop unit"},
        {"productid": chl, "productnumber": "CHL-0200", "name": "Chiller"},
    ]
    data["productpricelevels"] = [
        _entry(ids["us_list"], rtu, 8450, "2026-05-02T16:20:03Z"),
        _entry(ids["ca_list"], chl, 118000, "2026-05-01T09:00:00Z"),
        _entry(ids["us_list"], chl, 99000, "2026-05-03T00:00:00Z", approved=False),
        _entry(ids["ca_list"], rtu, 11500, "2026-04-29T00:00:00Z"),
    ]
    _seed(dataverse, hub_http, data)
    # and a price manager then sets a fractional price through the Web API (which reads JSON
    # numbers exactly; the seed surface would read them as binary floats), stamping it now
    rtu_entry = data["productpricelevels"][0]["productpricelevelid"]
    _patch(dataverse, hub_http, rtu_entry, {"amount": Decimal("8450.5")})
    # When the Quoting Tool asks for changes since 1 May
    response = _get(dataverse, hub_http, since=SINCE)
    # Then only the two approved, changed entries come, oldest change first, with the product
    # number as SKU, the price list's name and ISO currency, and the exact amount as a string
    assert response.status_code == 200, response.text
    page = response.json()
    assert "continuationToken" not in page
    patched_on = page["items"][-1]["modifiedOn"]
    assert patched_on > "2026-05-02T16:20:03Z"
    assert page["items"] == [
        {
            "sku": "CHL-0200",
            "priceList": "CA Distributor 2026",
            "currency": "CAD",
            "amount": "118000.0000",
            "approvedOn": APPROVED_ON,
            "approvedBy": "Pricing Desk",
            "modifiedOn": "2026-05-01T09:00:00Z",
        },
        {
            "sku": "RTU-050-460",
            "priceList": "US Distributor 2026",
            "currency": "USD",
            "amount": "8450.5000",
            "approvedOn": APPROVED_ON,
            "approvedBy": "Pricing Desk",
            "modifiedOn": patched_on,
        },
    ]
    # And an offset other than Z is the same instant: since 02:00+02:00 on 2 May is midnight
    # UTC, which leaves only the later entry
    later = _get(dataverse, hub_http, since="2026-05-02T02:00:00+02:00").json()
    assert [i["sku"] for i in later["items"]] == ["RTU-050-460"]


def test_http_pages_of_500_cover_every_entry_exactly_once(dataverse, hub_http):
    # Given 640 approved entries, most of them within three seconds of each other
    ids = _ids()
    data = _many_entries(ids, 320)
    _seed(dataverse, hub_http, data)

    # When the client follows continuation tokens to the end
    def fetch(token: str | None) -> dict[str, Any]:
        params = {"since": SINCE} | ({"continuationToken": token} if token else {})
        response = _get(dataverse, hub_http, **params)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) <= 500
        return response.json()

    items = _follow(fetch)
    # Then every entry came exactly once, in change order (to the second the API shows)
    keys = [(i["sku"], i["priceList"]) for i in items]
    assert len(keys) == len(set(keys)) == len(data["productpricelevels"])
    stamps = [i["modifiedOn"] for i in items]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(("page_size", "products"), [(2, 15), (7, 40), (50, 60)])
def test_small_pages_split_seconds_without_skipping_or_repeating(
    dataverse, hub_http, page_size, products
):
    # Given two entries per product, four in five of them sharing three seconds
    ids = _ids()
    data = _many_entries(ids, products)
    _seed(dataverse, hub_http, data)
    # When the hub's feed pages them with a small page size (the same code the endpoint runs)
    feed = PricingFeed(wiring.dataverse(), page_size=page_size)
    since = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)

    def fetch(token: str | None) -> dict[str, Any]:
        page = feed.page(since, token)
        assert len(page.items) <= page_size
        return page.model_dump(mode="json", by_alias=True, exclude_none=True)

    items = _follow(fetch)
    # Then each entry comes exactly once
    keys = [(i["sku"], i["priceList"]) for i in items]
    assert len(keys) == len(set(keys)) == 2 * products
    assert {i["amount"] for i in items} <= {f"{100 + n}.0000" for n in range(products)}


def test_entry_changed_while_paging_is_sent_again_and_nothing_is_lost(dataverse, hub_http):
    # Given 30 entries and a client that has read the first page of 10
    ids = _ids()
    data = _many_entries(ids, 15)
    _seed(dataverse, hub_http, data)
    feed = PricingFeed(wiring.dataverse(), page_size=10)
    since = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    first = feed.page(since)
    assert first.continuation_token is not None
    # When a pricing manager re-approves an entry the client already received
    seen = first.items[0]
    changed = next(
        e
        for e, p in zip(data["productpricelevels"], _products_of(data), strict=True)
        if p == seen.sku and e["pricelevelid@odata.bind"].endswith(_list_of(ids, seen.price_list))
    )
    _patch(dataverse, hub_http, changed["productpricelevelid"], {"amount": 777})
    # And the client pages on to the end
    rest: list[Any] = []
    token = first.continuation_token
    while token is not None:
        page = feed.page(since, token)
        rest.extend(page.items)
        token = page.continuation_token
    # Then every entry arrived, and the changed one once more, with its new amount, last
    received = [(i.sku, i.price_list) for i in [*first.items, *rest]]
    assert len(set(received)) == 30
    assert received.count((seen.sku, seen.price_list)) == 2
    assert (rest[-1].sku, rest[-1].price_list, rest[-1].amount) == (
        seen.sku,
        seen.price_list,
        Decimal("777.0000"),
    )


def _products_of(data: dict[str, list[dict[str, Any]]]) -> list[str]:
    numbers = {p["productid"]: p["productnumber"] for p in data["products"]}
    return [
        numbers[e["productid@odata.bind"].removeprefix("/products(").rstrip(")")]
        for e in data["productpricelevels"]
    ]


def _list_of(ids: dict[str, str], name: str) -> str:
    return f"({ids['us_list' if name.startswith('US') else 'ca_list']})"


def _patch(world, http, entry_id: str, values: dict[str, Any]) -> None:
    token = world.issuer.issue(world.test_client[0], world.endpoints()["dataverse"])
    response = http.patch(
        f"{world.endpoints()['dataverse']}/api/data/v9.2/productpricelevels({entry_id})",
        data=dumps(values),
        headers={
            "Authorization": f"Bearer {token}",
            "If-Match": "*",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 204, response.text


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({}, "since"),
        ({"since": "2026-05-01"}, "since"),
        ({"since": "2026-05-01T00:00:00"}, "since"),
        ({"since": "2026-05-01T00:00:00 02:00"}, "since"),
        ({"since": SINCE, "continuationToken": "not-a-token!"}, "continuationToken"),
        ({"since": SINCE, "continuationToken": "eyJ2IjoxfQ"}, "continuationToken"),
    ],
    ids=["missing", "date-only", "no-offset", "unencoded-plus", "garbage-token", "foreign-token"],
)
def test_malformed_parameters_are_400_problems_naming_the_parameter(
    dataverse, hub_http, params, name
):
    # When the query is malformed
    response = _get(dataverse, hub_http, **params)
    # Then the answer is a 400 problem that names the parameter
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/bad-request")
    assert body["invalidParams"][0]["name"] == name
    assert body["detail"].startswith(name)


def test_token_of_another_since_or_tampered_is_refused(dataverse, hub_http):
    # Given a real continuation token for since=1 May
    ids = _ids()
    _seed(dataverse, hub_http, _many_entries(ids, 10))
    feed = PricingFeed(wiring.dataverse(), page_size=3)
    token = feed.page(dt.datetime(2026, 5, 1, tzinfo=dt.UTC)).continuation_token
    assert token is not None
    # When it is sent with another since
    other = _get(dataverse, hub_http, since="2026-05-01T00:00:01Z", continuationToken=token)
    # Or with its window moved before since (decoded, edited, re-encoded)
    body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    body["w"] = "2020-01-01T00:00:00+00:00"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    edited = _get(dataverse, hub_http, since=SINCE, continuationToken=forged)
    # Then both are 400, while the token itself is accepted with its own since
    assert other.status_code == 400
    assert edited.status_code == 400
    assert _get(dataverse, hub_http, since=SINCE, continuationToken=token).status_code == 200


def test_dataverse_unavailable_is_503_with_retry_after(dataverse, hub_http):
    # Given Dataverse answers every request with 503 (before doing anything)
    hub_http.put(
        f"{dataverse.endpoints()['dataverse']}/_sandbox/faults",
        json={"rate5xx": 1.0, "faultPhase": "before"},
    ).raise_for_status()
    # When prices are requested
    response = _get(dataverse, hub_http, since=SINCE)
    # Then the hub answers 503 problem+json with Retry-After, after its bounded retries
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["type"].endswith("/unavailable")
