"""SapClient against the SAP sandbox peer over real HTTPS."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from sandbox.sap import AUDIENCE, SapPeer
from shared.adapters.sap import (
    EQUIPMENT,
    PRICE_VALIDITIES,
    SALES_ORDERS,
    EtagConflict,
    SapClient,
    literal,
)
from shared.errors import PermanentError, TransientError
from shared.http import HttpClient, RetryPolicy, make_session

pytestmark = pytest.mark.integration

UTC = dt.UTC
HEADER = {
    "SalesOrderType": "OR",
    "SalesOrganization": "1710",
    "DistributionChannel": "10",
    "OrganizationDivision": "00",
    "SoldToParty": "17100001",
    "TransactionCurrency": "EUR",
    "RequestedDeliveryDate": dt.date(2027, 1, 15),
}
ITEMS = [
    {"Material": "PUMP-100", "RequestedQuantity": Decimal("2"), "ProductionPlant": "1710"},
    {"Material": "VALVE-7", "RequestedQuantity": 10, "ProductionPlant": "1710"},
]


def http_client(tls, *, attempts: int = 3, token=None) -> HttpClient:
    return HttpClient(
        make_session(tls.ca_path),
        policy=RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0),
        sleep=lambda seconds: None,
        token=token,
        name="sap",
    )


@pytest.fixture
def client(sap, tls, sap_auth) -> SapClient:
    username, password = sap_auth
    return SapClient(
        http_client(tls), sap.base_url, username=username, password=lambda: password, page_size=3
    )


def seed(sap: SapPeer, data: dict[str, list[dict[str, Any]]]) -> None:
    with sap.lock:
        sap.seed(data)


def order_rows(count: int, stamp: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            **{k: v for k, v in HEADER.items() if k != "RequestedDeliveryDate"},
            "PurchaseOrderByCustomer": f"QT-{n:04d}",
            "TotalNetAmount": f"{n}.50",
            "LastChangeDateTime": stamp or f"2026-05-01T10:00:{n:02d}.{n:03d}Z",
        }
        for n in range(1, count + 1)
    ]


def log_count(sap: SapPeer, method: str, status: int | None = None) -> int:
    with sap.lock:
        return sum(
            1
            for r in sap.request_log
            if r.method == method and (status is None or r.status == status)
        )


# ---- reading ---------------------------------------------------------------------------------
def test_changed_since_pages_in_change_order_with_total_and_watermark(sap, client):
    # Given ten orders changed one per second, and SAP capping pages at two records
    seed(sap, {"A_SalesOrder": order_rows(10), "settings": [{"maxPageSize": 2}]})
    since = dt.datetime(2026, 5, 1, 10, 0, 3, 3000, tzinfo=UTC)  # exactly order 3's stamp
    # When the client reads changes after order 3's stamp
    pages = list(client.changed_since(SALES_ORDERS, since))
    # Then orders 4..10 arrive once each, in change order, with the total and a watermark
    got = [r["SalesOrder"] for p in pages for r in p.records]
    assert got == [str(n) for n in range(4, 11)]
    assert all(p.total == 7 for p in pages)
    assert pages[-1].high_watermark == dt.datetime(2026, 5, 1, 10, 0, 10, 10000, tzinfo=UTC)
    # And values are typed: Decimal amounts, aware datetimes, plain strings
    first = pages[0].records[0]
    assert first["TotalNetAmount"] == Decimal("4.50")
    assert first["LastChangeDateTime"].tzinfo is not None
    assert first.etag is not None and first.etag.startswith('W/"datetimeoffset')


def test_changed_since_drains_records_sharing_one_millisecond(sap, client):
    # Given seven orders stamped in the same millisecond (a mass change), page size 3
    seed(sap, {"A_SalesOrder": order_rows(7, stamp="/Date(1777629600000+0000)/")})
    # When reading changes since just before
    pages = list(client.changed_since(SALES_ORDERS, dt.datetime(2026, 5, 1, tzinfo=UTC)))
    # Then every order is delivered exactly once although no page boundary splits by time
    got = sorted(int(r["SalesOrder"]) for p in pages for r in p.records)
    assert got == list(range(1, 8))


def test_changed_since_misses_nothing_when_records_change_while_paging(sap, client):
    seed(sap, {"A_SalesOrder": order_rows(9)})
    pages = client.changed_since(SALES_ORDERS, dt.datetime(2026, 1, 1, tzinfo=UTC))
    first = next(pages)
    assert [r["SalesOrder"] for r in first.records] == ["1", "2", "3"]
    # When an order already read changes in SAP between two pages (it moves to the end)
    with sap.lock:
        sap.apply_change(
            {
                "entitySet": "A_SalesOrder",
                "key": {"SalesOrder": "2"},
                "values": {"ShippingCondition": "01"},
            }
        )
    rest = [r["SalesOrder"] for p in pages for r in p.records]
    # Then no other order is skipped (a $skip pager would lose order 4 here), and the changed
    # order comes again with its new data
    assert rest == ["4", "5", "6", "7", "8", "9", "2"]


def test_changed_since_with_select_still_pages_by_key_and_stamp(sap, client):
    seed(sap, {"A_SalesOrder": order_rows(5)})
    pages = list(
        client.changed_since(
            SALES_ORDERS, dt.datetime(2026, 1, 1, tzinfo=UTC), select=["PurchaseOrderByCustomer"]
        )
    )
    records = [r for p in pages for r in p.records]
    assert [r["PurchaseOrderByCustomer"] for r in records] == [f"QT-{n:04d}" for n in range(1, 6)]
    assert set(records[0].data) == {"PurchaseOrderByCustomer", "SalesOrder", "LastChangeDateTime"}


def test_changed_since_with_expand_returns_typed_items(sap, client, sap_catalog):
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-X"}, ITEMS)
    pages = list(
        client.changed_since(
            SALES_ORDERS,
            order.header["LastChangeDateTime"] - dt.timedelta(seconds=1),
            expand=["to_Item"],
        )
    )
    items = pages[0].records[0]["to_Item"]
    assert [i["NetAmount"] for i in items] == [Decimal("2500.00"), Decimal("405.00")]
    assert items[0]["PricingDate"].tzinfo is not None


def test_read_all_pages_by_key_with_a_filter(sap, client, sap_catalog):
    # Pricing conditions have no change stamp: read every valid condition in key order
    validities = list(
        client.read_all(
            PRICE_VALIDITIES,
            filter_expr=f"ConditionValidityEndDate ge {literal('Edm.DateTime', dt.datetime(2026, 6, 1, tzinfo=UTC))}",
            expand=["to_SlsPrcgConditionRecord"],
            page_size=1,
        )
    )
    assert len(validities) == 2
    prices = {
        v[0]["Material"]: v[0]["to_SlsPrcgConditionRecord"]["ConditionRateValue"]
        for v in validities
    }
    assert prices == {"PUMP-100": Decimal("1250"), "VALVE-7": Decimal("40.5")}


def test_equipment_changes_with_a_composite_key(sap, client):
    # Equipment is keyed by (Equipment, ValidityEndDate): keyset paging uses both
    rows = [
        {
            "Equipment": f"1000000{n}",
            "ValidityEndDate": "9999-12-31T00:00:00",
            "EquipmentName": f"Unit {n}",
            "LastChangeDateTime": "2026-05-01T08:00:00Z",
        }
        for n in range(5)
    ]
    seed(sap, {"Equipment": rows})
    pages = list(
        client.changed_since(EQUIPMENT, dt.datetime(2026, 4, 30, tzinfo=UTC), expand=["to_Partner"])
    )
    assert sorted(r["Equipment"] for p in pages for r in p.records) == [
        f"1000000{n}" for n in range(5)
    ]
    assert pages[0].records[0]["ValidityEndDate"] == dt.datetime(9999, 12, 31, tzinfo=UTC)


# ---- creating --------------------------------------------------------------------------------
def test_create_sales_order_deep_inserts_and_is_idempotent_by_reference(sap, client, sap_catalog):
    # When an order for quote QT-77 is created
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-77"}, ITEMS)
    # Then SAP numbered it, priced its items and returned its ETag
    assert order.created is True
    assert order.number == "1"
    assert order.etag
    assert order.header["TotalNetAmount"] == Decimal("2905.00")
    assert [i["SalesOrderItem"] for i in order.items] == ["10", "20"]
    assert order.header["RequestedDeliveryDate"] == dt.datetime(2027, 1, 15, tzinfo=UTC)
    # And creating it again (a redelivered message) returns the same order, not a second one
    again = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-77"}, ITEMS)
    assert again.number == "1"
    assert again.created is False
    assert len(sap.records("A_SalesOrder")) == 1


def test_create_whose_answer_is_lost_is_found_instead_of_duplicated(sap, client, http, sap_catalog):
    # Given SAP commits the next POST but its answer is lost (503 after the commit)
    http.post(
        f"{sap.base_url}/_sandbox/seed",
        json={"settings": [{"failNext": {"method": "POST", "phase": "after"}}]},
    ).raise_for_status()
    # When the client creates the order
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-LOST"}, ITEMS)
    # Then it finds the committed order by its reference instead of posting again
    assert order.number == "1"
    assert order.created is True
    assert len(sap.records("A_SalesOrder")) == 1
    assert log_count(sap, "POST") == 1


def test_create_refused_before_commit_is_resent_after_checking(sap, client, http, sap_catalog):
    # Given SAP fails the next POST before doing anything
    http.post(
        f"{sap.base_url}/_sandbox/seed",
        json={"settings": [{"failNext": {"method": "POST", "phase": "before"}}]},
    ).raise_for_status()
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-RETRY"}, ITEMS)
    # Then the client checked, found nothing and posted again: exactly one order
    assert order.created is True
    assert len(sap.records("A_SalesOrder")) == 1
    assert log_count(sap, "POST") == 2


def test_create_without_reference_does_not_risk_a_duplicate(sap, client, http, sap_catalog):
    http.post(
        f"{sap.base_url}/_sandbox/seed",
        json={"settings": [{"failNext": {"method": "POST", "phase": "after"}}]},
    ).raise_for_status()
    with pytest.raises(TransientError, match="may or may not"):
        client.create_sales_order(HEADER, ITEMS)
    assert log_count(sap, "POST") == 1


def test_sap_validation_errors_become_permanent_with_sap_message(sap, client, sap_catalog):
    with pytest.raises(PermanentError, match="Material NOPE does not exist") as caught:
        client.create_sales_order(
            {**HEADER, "PurchaseOrderByCustomer": "QT-BAD"},
            [{"Material": "NOPE", "RequestedQuantity": 1}],
        )
    assert caught.value.code == "400"
    # Money never travels as a float
    with pytest.raises(TypeError, match="float"):
        client.create_sales_order(
            {**HEADER, "PurchaseOrderByCustomer": "QT-F"},
            [{"Material": "PUMP-100", "RequestedQuantity": 1.5}],
        )
    # Unknown fields are caught before anything is sent
    with pytest.raises(PermanentError, match="QuoteId"):
        client.create_sales_order({**HEADER, "QuoteId": "x"}, ITEMS)


def test_reference_with_a_quote_is_escaped(sap, client, sap_catalog):
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "O'Brien/Q-1"}, ITEMS)
    found = client.find_sales_order("O'Brien/Q-1")
    assert found is not None and found.number == order.number
    assert client.find_sales_order("O'Brien") is None


# ---- updating --------------------------------------------------------------------------------
def test_update_with_current_etag_returns_the_new_etag(sap, client, sap_catalog):
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-U"}, ITEMS)
    new_etag = client.update_sales_order(
        order.number, {"RequestedDeliveryDate": dt.date(2027, 2, 1)}, order.etag
    )
    assert new_etag != order.etag
    current = client.get_sales_order(order.number)
    assert current.etag == new_etag
    assert current.header["RequestedDeliveryDate"] == dt.datetime(2027, 2, 1, tzinfo=UTC)
    item_etag = client.update_sales_order_item(
        order.number, "10", {"RequestedQuantity": Decimal("3")}, new_etag
    )
    assert client.get_sales_order(order.number).header["TotalNetAmount"] == Decimal("4155.00")
    assert item_etag != new_etag


def test_update_of_an_order_changed_in_sap_raises_etag_conflict_with_current(
    sap, client, sap_catalog
):
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-C"}, ITEMS)
    # Given a user changed the order in SAP after the hub read it
    with sap.lock:
        sap.apply_change(
            {
                "entitySet": "A_SalesOrder",
                "key": {"SalesOrder": order.number},
                "values": {"ShippingCondition": "07"},
            }
        )
    # When the hub updates with its old ETag
    with pytest.raises(EtagConflict) as caught:
        client.update_sales_order(order.number, {"ShippingCondition": "01"}, order.etag)
    # Then the conflict carries SAP's current record, and a retry with its ETag succeeds
    current = caught.value.current
    assert current.header["ShippingCondition"] == "07"
    assert current.etag != order.etag
    assert client.update_sales_order(order.number, {"ShippingCondition": "01"}, current.etag)


def test_expired_csrf_session_is_refetched_once(sap, client, sap_catalog):
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-S"}, ITEMS)
    fetches = log_count(sap, "GET", 200)
    # Given the security session (and with it the CSRF token) ended in SAP
    sap.expire_sessions()
    # When the client updates
    client.update_sales_order(order.number, {"ShippingCondition": "02"}, order.etag)
    # Then it got one 403 Required, fetched a new token and succeeded
    assert log_count(sap, "PATCH", 403) == 1
    assert log_count(sap, "PATCH", 204) == 1
    assert log_count(sap, "GET", 200) == fetches + 1


# ---- availability ----------------------------------------------------------------------------
def test_availability_at_one_plant_and_at_every_plant(sap, client, sap_catalog):
    client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-A"}, ITEMS)
    at_1710 = client.availability("PUMP-100", "1710")
    assert [(a.plant, a.quantity, a.unit) for a in at_1710] == [("1710", Decimal("10.000"), "PC")]
    everywhere = client.availability("PUMP-100")
    assert sorted((a.plant, a.quantity) for a in everywhere) == [
        ("1010", Decimal("3")),
        ("1710", Decimal("10")),
    ]
    with pytest.raises(PermanentError, match="not extended"):
        client.availability("GHOST")


# ---- authentication and failures -------------------------------------------------------------
def test_rotated_password_is_read_again_once(sap, tls, sap_auth, sap_catalog):
    username, password = sap_auth
    vault = {"value": "stale-password"}
    invalidated: list[bool] = []

    def invalidate() -> None:
        invalidated.append(True)
        vault["value"] = password

    client = SapClient(
        http_client(tls),
        sap.base_url,
        username=username,
        password=lambda: vault["value"],
        on_unauthorized=invalidate,
    )
    assert client.find_sales_order("nothing") is None
    assert invalidated == [True]


def test_refused_credentials_are_permanent(sap, tls, sap_auth):
    client = SapClient(http_client(tls), sap.base_url, username=sap_auth[0], password="wrong")
    with pytest.raises(PermanentError, match="refused") as caught:
        client.find_sales_order("QT-1")
    assert caught.value.code == "401"


def test_bearer_token_source_is_accepted(sap, tls, issuer, test_client, sap_catalog):
    def token(refresh: bool) -> str:
        return issuer.issue(test_client["clientId"], AUDIENCE)

    client = SapClient(http_client(tls, token=token), sap.base_url)
    order = client.create_sales_order({**HEADER, "PurchaseOrderByCustomer": "QT-B"}, ITEMS)
    assert order.number == "1"


def test_server_errors_become_transient_after_bounded_retries(sap, tls, sap_auth, http):
    http.put(
        f"{sap.base_url}/_sandbox/faults", json={"rate5xx": 1, "faultPhase": "before"}
    ).raise_for_status()
    client = SapClient(
        http_client(tls, attempts=2), sap.base_url, username=sap_auth[0], password=sap_auth[1]
    )
    with pytest.raises(TransientError):
        client.find_sales_order("QT-1")
    assert log_count(sap, "GET", 503) == 2


def test_sap_client_parameter_is_sent(sap, tls, sap_auth):
    good = SapClient(
        http_client(tls),
        sap.base_url,
        username=sap_auth[0],
        password=sap_auth[1],
        sap_client=sap.client,
    )
    assert good.find_sales_order("QT-1") is None
    wrong = SapClient(
        http_client(tls), sap.base_url, username=sap_auth[0], password=sap_auth[1], sap_client="999"
    )
    with pytest.raises(PermanentError):
        wrong.find_sales_order("QT-1")
