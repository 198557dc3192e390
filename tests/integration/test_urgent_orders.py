"""Flow 12 against the sandbox: urgent order updates over the session-enabled queues, delivered by
the local dispatcher into the app, applied to the Dataverse and SAP peers.

Service Bus facts relied on (docs/sandbox-dispatcher.md): a session-enabled queue delivers one
session (here: one order) strictly in order; a handler that returns completes its message, one
that raises abandons it and, after the maximum delivery count, it is dead-lettered
(learn.microsoft.com/azure/service-bus-messaging/message-sessions, .../service-bus-dead-letter-queues).
SAP optimistic locking with If-Match on LastChangeDateTime: docs/sap-api.md [S3][S5][S6].
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest

from shared import wiring

pytestmark = pytest.mark.integration

S2D = "urgent-sap-to-dataverse"
D2S = "urgent-dataverse-to-sap"


def _order_number() -> str:
    return "7" + f"{uuid.uuid4().int % 10**9:09d}"


def _seed(world, http, orders: list[str]) -> None:
    e = world.endpoints()
    sap_orders = [
        {
            "SalesOrder": n,
            "SalesOrderType": "OR",
            "SalesOrganization": "1010",
            "DistributionChannel": "10",
            "OrganizationDivision": "00",
            "SoldToParty": "C0000001",
            "PurchaseOrderByCustomer": f"QT-URG-{n}",
            "RequestedDeliveryDate": "2026-05-01",
            "DeliveryBlockReason": "ZC",
            "TransactionCurrency": "USD",
            "to_Item": [
                {
                    "SalesOrderItem": "10",
                    "Material": "RTU-0100",
                    "RequestedQuantity": "1",
                    "RequestedQuantityUnit": "EA",
                },
                {
                    "SalesOrderItem": "20",
                    "Material": "AHU-0300",
                    "RequestedQuantity": "2",
                    "RequestedQuantityUnit": "EA",
                },
            ],
        }
        for n in orders
    ]
    response = http.post(f"{e['sap']}/_sandbox/seed", json={"A_SalesOrder": sap_orders})
    assert response.status_code == 200, response.text
    header_ids = {n: str(uuid.uuid4()) for n in orders}
    body = {
        "salesorders": [
            {
                "salesorderid": header_ids[n],
                "name": f"Order {n}",
                "contoso_sapsalesorder": n,
                "requestdeliveryby": "2026-05-01",
                "contoso_sapstatus": "A",
            }
            for n in orders
        ],
        "salesorderdetails": [
            {
                "salesorderdetailid": str(uuid.uuid4()),
                "_salesorderid_value": header_ids[n],
                "contoso_saporderitemkey": f"{n}|{item}",
                "lineitemnumber": int(item),
                "quantity": 1,
            }
            for n in orders
            for item in ("10", "20")
        ],
    }
    response = http.post(f"{e['dataverse']}/_sandbox/seed", json=body)
    assert response.status_code == 200, response.text


@pytest.fixture
def urgent(world, hub_http):
    """Clean SAP and Dataverse peers and an empty dispatcher."""
    for name in ("sap", "dataverse"):
        hub_http.post(f"{world.endpoints()[name]}/_sandbox/reset").raise_for_status()
    world.hub.dispatcher.run_until_idle()
    world.hub.dispatcher.reset()
    return world


def _records(world, http, peer: str, table: str) -> list[dict[str, Any]]:
    response = http.get(f"{world.endpoints()[peer]}/_sandbox/records/{table}")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["records"]
    return rows


def _sap_date(value: str) -> dt.date:
    """SAP V2 JSON ``/Date(ms)/`` (docs/sap-api.md [S4]) as a date."""
    ms = int(value.removeprefix("/Date(").split(")")[0].split("+")[0])
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def _sap_update(order: str, minute: int, day: int, status: str, qty: int) -> dict[str, Any]:
    stamp = dt.datetime(2026, 3, 1, 12, minute, tzinfo=dt.UTC).isoformat()
    return {
        "orderNumber": order,
        "sourceVersion": stamp,
        "changes": {
            "requestedDeliveryDate": f"2026-06-{day:02d}",
            "status": status,
            "items": [{"item": "10", "quantity": str(qty)}],
        },
    }


def _dv_update(order: str, version: int, day: int, confirmed: bool, qty: int) -> dict[str, Any]:
    return {
        "orderNumber": order,
        "sourceVersion": version,
        "changes": {
            "requestedDeliveryDate": f"2026-07-{day:02d}",
            "confirmed": confirmed,
            "items": [{"item": "20", "quantity": str(qty)}],
        },
    }


def test_shuffled_urgent_messages_leave_both_sides_at_the_latest_version(urgent, hub_http):
    world = urgent
    a, b = _order_number(), _order_number()
    _seed(world, hub_http, [a, b])
    unknown = _order_number()
    # Given versioned updates both ways for two orders, each carrying every field it changes
    # (so "the latest version" fixes the expected end state whatever the arrival order) ...
    s2d = [
        (f"s-{a}-{m}", a, _sap_update(a, m, day, status, qty))
        for m, day, status, qty in ((1, 10, "A", 3), (2, 11, "B", 4), (3, 12, "C", 5))
    ] + [
        (f"s-{b}-{m}", b, _sap_update(b, m, day, "B", qty))
        for m, day, qty in ((1, 20, 6), (2, 21, 7))
    ]
    d2s = [
        (f"d-{a}-{v}", a, _dv_update(a, v, day, confirmed, qty))
        for v, day, confirmed, qty in ((100, 1, False, 8), (101, 2, True, 9), (102, 3, True, 10))
    ] + [(f"d-{b}-{v}", b, _dv_update(b, v, 5, True, 11)) for v in (7,)]
    # ... plus malformed and unmappable ones, which must be rejected with a reason
    bad_s2d = {
        f"s-bad-json-{a}": (a, "{not json"),
        f"s-unknown-order-{a}": (unknown, json.dumps(_sap_update(unknown, 5, 1, "A", 1))),
        f"s-unknown-field-{a}": (
            a,
            json.dumps({**_sap_update(a, 9, 1, "A", 1), "changes": {"price": "10"}}),
        ),
        f"s-unknown-item-{a}": (
            a,
            json.dumps(
                {
                    **_sap_update(a, 9, 1, "A", 1),
                    "changes": {"items": [{"item": "990", "quantity": "1"}]},
                }
            ),
        ),
    }
    bad_d2s = {
        # SAP masters the order status: Sales cannot send it
        f"d-status-{a}": (
            a,
            json.dumps({**_dv_update(a, 200, 1, True, 1), "changes": {"status": "C"}}),
        ),
        f"d-unknown-order-{b}": (unknown, json.dumps(_dv_update(unknown, 1, 1, True, 1))),
    }
    sends: list[tuple[str, str, str, str]] = [
        (S2D, mid, order, json.dumps(body)) for mid, order, body in s2d
    ] + [(D2S, mid, order, json.dumps(body)) for mid, order, body in d2s]
    sends += [(S2D, mid, order, raw) for mid, (order, raw) in bad_s2d.items()]
    sends += [(D2S, mid, order, raw) for mid, (order, raw) in bad_d2s.items()]
    # duplicates: the same message ids sent again
    sends += [sends[0], sends[len(s2d)], sends[-1]]
    random.Random(20260301).shuffle(sends)

    # When they are sent in that shuffled order (session = order number) and delivered
    for queue, mid, order, raw in sends:
        world.hub.dispatcher.send(queue, raw, message_id=mid, session_id=order)
    world.hub.dispatcher.run_until_idle()
    # and a duplicate the broker did not catch (sent after its duplicate-detection window)
    # reaches the app a second time
    again = wiring.urgent_orders().handle(
        S2D.removeprefix("urgent-"), sends[0][3].encode(), message_id=sends[0][1]
    )  # type: ignore[arg-type]

    # Then Dataverse holds the latest SAP version of each order ...
    orders = {
        r["contoso_sapsalesorder"]: r for r in _records(world, hub_http, "dataverse", "salesorders")
    }
    assert orders[a]["requestdeliveryby"].startswith("2026-06-12")
    assert orders[a]["contoso_sapstatus"] == "C"
    assert orders[a]["contoso_sapversion"].startswith("2026-03-01T12:03:00")
    assert orders[b]["requestdeliveryby"].startswith("2026-06-21")
    details = {
        r["contoso_saporderitemkey"]: r
        for r in _records(world, hub_http, "dataverse", "salesorderdetails")
    }
    assert Decimal(str(details[f"{a}|10"]["quantity"])) == 5
    assert Decimal(str(details[f"{b}|10"]["quantity"])) == 7
    # ... and SAP holds the latest Dataverse version of each order
    sap = {r["SalesOrder"]: r for r in _records(world, hub_http, "sap", "A_SalesOrder")}
    assert _sap_date(sap[a]["RequestedDeliveryDate"]) == dt.date(2026, 7, 3)
    assert _sap_date(sap[b]["RequestedDeliveryDate"]) == dt.date(2026, 7, 5)
    assert sap[a]["DeliveryBlockReason"] == ""
    items = {
        (i["SalesOrder"], i["SalesOrderItem"].lstrip("0")): i
        for i in _records(world, hub_http, "sap", "A_SalesOrderItem")
    }
    assert Decimal(str(items[(a, "20")]["RequestedQuantity"])) == 10
    assert Decimal(str(items[(b, "20")]["RequestedQuantity"])) == 11
    # And every malformed or unmappable message is recorded as rejected, with a reason
    store = wiring.rejections()
    rejected_s2d = {r.key: r.reason for r in store.list("urgent-sap-to-dataverse")}
    rejected_d2s = {r.key: r.reason for r in store.list("urgent-dataverse-to-sap")}
    assert set(bad_s2d) <= set(rejected_s2d)
    assert set(bad_d2s) <= set(rejected_d2s)
    assert "not JSON" in rejected_s2d[f"s-bad-json-{a}"]
    assert "unknown to Dataverse" in rejected_s2d[f"s-unknown-order-{a}"]
    assert "price" in rejected_s2d[f"s-unknown-field-{a}"]
    assert "status" in rejected_d2s[f"d-status-{a}"]
    assert "unknown to SAP" in rejected_d2s[f"d-unknown-order-{b}"]
    # and no valid message was rejected
    valid = {mid for mid, _, _ in s2d + d2s}
    assert not valid & (set(rejected_s2d) | set(rejected_d2s))
    # And the late duplicate was recognised, and nothing was dead-lettered
    assert again.result == "duplicate"
    assert world.hub.dispatcher.dead_letters(S2D) == []
    assert world.hub.dispatcher.dead_letters(D2S) == []
