"""Flow 11 end to end against the sandbox: a confirmation made in Dataverse reaches SAP (CSRF +
If-Match PATCH) after one outbound batch; the inbound batch's own writes are not echoed back; a
price changed on the Sales side is refused and reported, never sent to SAP.

Dataverse change tracking: ``Prefer: odata.track-changes`` and ``@odata.deltaLink``
(use-change-tracking-synchronize-data-external-systems, docs/dataverse-schema.md); SAP updates need
``X-CSRF-Token`` and ``If-Match`` (428 without, 412 when stale: docs/sap-api.md [S5][S6][S10])."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared import wiring
from tests.integration.test_sap_inbound import reset, sap_order, seed_dataverse, seed_sap

pytestmark = pytest.mark.integration


def sap_patches(world, http) -> list[dict[str, Any]]:
    log = http.get(f"{world.endpoints()['sap']}/_sandbox/requests").json()["requests"]
    return [r for r in log if r["method"] in ("PATCH", "MERGE", "PUT")]


def sap_order_now(world, http, number: str) -> dict[str, Any]:
    rows = http.get(f"{world.endpoints()['sap']}/_sandbox/records/A_SalesOrder").json()["records"]
    return next(r for r in rows if r["SalesOrder"] == number)


def as_sales_user(world, http, path: str, body: dict[str, Any]) -> None:
    """A change made in Dataverse by someone other than the hub (the test client)."""
    token = world.issuer.issue(world.test_client[0], world.endpoints()["dataverse"])
    response = http.patch(
        f"{world.endpoints()['dataverse']}/api/data/v9.2/{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
    )
    assert response.status_code == 204, response.text


@pytest.fixture
def order_in_both(world, hub_http):
    """SAP order 4801 (awaiting confirmation) brought into Dataverse by one inbound batch."""
    reset(world, hub_http)
    seed_dataverse(world, hub_http)
    seed_sap(world, hub_http, {"A_SalesOrder": [sap_order("4801", "PO-4801")]})
    world.hub.run_timer("sap_inbound")
    return world


def test_inbound_writes_are_not_echoed_back_to_sap(order_in_both, hub_http):
    # Given the order the inbound batch just wrote to Dataverse
    # When the outbound batch runs
    result = wiring.sap_outbound().run()
    # Then it saw the hub's own write and sent SAP no update
    assert result.echoes >= 1
    assert result.written == []
    assert sap_patches(order_in_both, hub_http) == []


def test_confirmation_made_in_dataverse_reaches_sap_after_one_outbound_batch(
    order_in_both, hub_http
):
    # Given the outbound baseline after the inbound batch (nothing to send)
    order_in_both.hub.run_timer("sap_outbound")
    assert sap_order_now(order_in_both, hub_http, "4801")["DeliveryBlockReason"] == "ZC"
    # When a sales user confirms the order and moves its delivery date in Dataverse
    as_sales_user(
        order_in_both,
        hub_http,
        "salesorders(contoso_sapsalesorder='4801')",
        {"contoso_confirmed": True, "requestdeliveryby": "2027-02-01"},
    )
    # and one outbound batch runs
    order_in_both.hub.run_timer("sap_outbound")
    # Then SAP's order lost its confirmation block and carries the new date, by one PATCH
    now = sap_order_now(order_in_both, hub_http, "4801")
    assert now["DeliveryBlockReason"] == ""
    assert now["RequestedDeliveryDate"] == "/Date(1801440000000)/"
    patches = sap_patches(order_in_both, hub_http)
    assert len(patches) == 1 and patches[0]["status"] == 204
    # and the coupling SAP ↔ Dataverse is known from both sides
    ids = wiring.couplings().lookup("sales_orders", "sap", "4801")
    assert ids is not None and "dataverse" in ids
    # When the next inbound batch carries SAP's new version back to Dataverse and outbound runs
    order_in_both.hub.run_timer("sap_inbound")
    order_in_both.hub.run_timer("sap_outbound")
    # Then nothing loops back to SAP
    assert len(sap_patches(order_in_both, hub_http)) == 1


def test_price_change_from_sales_is_refused_and_reported_never_sent_to_sap(world, hub_http):
    # Given a price in Dataverse (SAP → Sales only) and the outbound baseline
    reset(world, hub_http)
    key = f"USD-{uuid.uuid4().hex[:6]}|RTU-0100"
    response = hub_http.post(
        f"{world.endpoints()['dataverse']}/_sandbox/seed",
        json={"productpricelevels": [{"contoso_pricekey": key, "amount": 12500}]},
    )
    assert response.status_code == 200, response.text
    world.hub.run_timer("sap_outbound")
    # When a sales user changes the price in Dataverse and the outbound batch runs
    as_sales_user(
        world, hub_http, f"productpricelevels(contoso_pricekey='{key}')", {"amount": 9999}
    )
    result = wiring.sap_outbound().run()
    # Then the change is refused, reported with both sides' values, and SAP saw no write
    assert result.prices_refused == 1
    refusal = next(
        r for r in wiring.rejections().list("sync-direction") if r.key == f"prices:{key}"
    )
    assert refusal.code == "wrong-direction"
    assert refusal.details["attempted"]["amount"] in ("9999", "9999.00", "9999.0000")
    assert refusal.details["sourceOfTruth"] == "sap"
    assert "sourceOfTruthValue" in refusal.details
    assert sap_patches(world, hub_http) == []


def test_lost_answer_to_the_sap_patch_is_a_write_not_a_conflict(order_in_both, hub_http):
    # Given the outbound baseline and a sales user's confirmation in Dataverse
    world = order_in_both
    world.hub.run_timer("sap_outbound")
    as_sales_user(
        world,
        hub_http,
        "salesorders(contoso_sapsalesorder='4801')",
        {"contoso_confirmed": True, "requestdeliveryby": "2027-02-01"},
    )
    # and SAP applying the next PATCH but losing its answer (503 after it ran; the retry then
    # meets the order's new ETag: 412, docs/sap-api.md, found by the fault soak)
    response = hub_http.post(
        f"{world.endpoints()['sap']}/_sandbox/seed",
        json={"settings": [{"failNext": {"method": "PATCH", "phase": "after", "times": 1}}]},
    )
    assert response.status_code == 200, response.text
    conflicts = wiring.sync_engine().conflicts
    before = len(conflicts.list("sales_orders"))  # type: ignore[attr-defined]
    # When the outbound batch runs
    result = wiring.sap_outbound().run()
    # Then the change counts as written, SAP holds it, and no conflict was resolved or logged
    assert result.written == ["4801"]
    assert (result.conflicts, result.conflicts_lost) == (0, 0)
    assert len(conflicts.list("sales_orders")) == before  # type: ignore[attr-defined]
    assert sap_order_now(world, hub_http, "4801")["DeliveryBlockReason"] == ""
    # (a 403 first is the CSRF token an earlier test's SAP session left behind, fetched anew)
    statuses = [p["status"] for p in sap_patches(world, hub_http) if p["status"] != 403]
    assert statuses == [503, 412]
