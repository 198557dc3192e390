"""GET /api/products/{sku}/availability against the sandbox SAP (API_PRODUCT_AVAILY_INFO_BASIC,
``DetermineAvailabilityAt`` per plant the material is extended to), with the hub's short cache and
its last-known value in Azure Tables (Azurite) for when SAP cannot be reached.

SAP behaviour reproduced by the peer (docs/sap-api.md; SAP API Business Hub,
API_PRODUCT_AVAILY_INFO_BASIC): the function import answers the available quantity of one
material at one plant; a material not maintained in a plant is a 400 from SAP, so the hub asks
only for the plants ``A_ProductPlant`` lists.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared import wiring

pytestmark = pytest.mark.integration


@pytest.fixture
def sap(world, hub_http):
    """The world's SAP, empty and without faults (faults are cleared again afterwards)."""
    base = world.endpoints()["sap"]
    hub_http.post(f"{base}/_sandbox/reset").raise_for_status()
    yield world
    hub_http.put(f"{base}/_sandbox/faults", json={}).raise_for_status()


def _sku() -> str:
    # Unique per test: the last-known table in the session's Azurite outlives the SAP reset.
    return f"AV-{uuid.uuid4().hex[:10].upper()}"


def _seed(world, http, sku: str, stock: dict[str, int] | None = None) -> None:
    body: dict[str, list[dict[str, Any]]] = {
        "A_Product": [{"Product": sku, "ProductType": "FERT", "BaseUnit": "PC"}],
        "stock": [{"Material": sku, "Plant": p, "qty": q} for p, q in (stock or {}).items()],
    }
    response = http.post(f"{world.endpoints()['sap']}/_sandbox/seed", json=body)
    assert response.status_code == 200, response.text


def _faults(world, http, **faults: Any) -> None:
    http.put(f"{world.endpoints()['sap']}/_sandbox/faults", json=faults).raise_for_status()


def _get(world, http, sku: str):
    return http.get(
        f"{world.hub.base_url}/api/products/{sku}/availability",
        headers={"x-functions-key": world.hub.function_key},
    )


def test_fresh_availability_per_plant_comes_from_sap(sap, hub_http):
    # Given a product with stock at two plants
    sku = _sku()
    _seed(sap, hub_http, sku, {"1710": 12, "1010": 3})
    # When its availability is requested
    response = _get(sap, hub_http, sku)
    # Then SAP's figures come back per plant, as exact 3-decimal strings, not stale
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plants"] == [
        {"plant": "1010", "available": "3.000", "unit": "PC"},
        {"plant": "1710", "available": "12.000", "unit": "PC"},
    ]
    assert body["sku"] == sku
    assert body["stale"] is False
    assert body["source"] == "SAP"
    assert body["asOf"].endswith("Z")


def test_sap_down_answers_the_cached_then_the_last_known_value_as_stale(sap, hub_http):
    # Given a product whose availability was read once
    sku = _sku()
    _seed(sap, hub_http, sku, {"1710": 40})
    fresh = _get(sap, hub_http, sku).json()
    # When SAP starts failing every request with 503
    _faults(sap, hub_http, rate5xx=1.0, faultPhase="before")
    # Then within the cache lifetime the same answer is given without asking SAP
    cached = _get(sap, hub_http, sku)
    assert cached.status_code == 200
    assert cached.json() == fresh
    # And after a restart (no in-process memory left) the hub answers the value it kept in
    # Azure Tables, marked stale, with the time SAP reported it
    wiring.reset()
    stale = _get(sap, hub_http, sku)
    assert stale.status_code == 200, stale.text
    body = stale.json()
    assert body["stale"] is True
    assert body["asOf"] == fresh["asOf"]
    assert body["plants"] == fresh["plants"]


def test_sap_unreachable_with_no_earlier_value_is_503_with_retry_after(sap, hub_http):
    # Given a product never read before, and SAP resetting every connection
    sku = _sku()
    _seed(sap, hub_http, sku, {"1710": 1})
    _faults(sap, hub_http, rateReset=1.0, faultPhase="before")
    # When its availability is requested
    response = _get(sap, hub_http, sku)
    # Then the hub answers 503 problem+json and says when to retry
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def test_unknown_sku_is_404_problem(sap, hub_http):
    # Given SAP knows no such material
    # When its availability is requested
    response = _get(sap, hub_http, _sku())
    # Then the answer is 404 not-found
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("/not-found")


def test_known_product_without_plants_has_no_stock_anywhere(sap, hub_http):
    # Given a product in SAP's product master that no plant carries
    sku = _sku()
    _seed(sap, hub_http, sku)
    # When its availability is requested
    response = _get(sap, hub_http, sku)
    # Then it exists, with an empty list of plants
    assert response.status_code == 200, response.text
    assert response.json()["plants"] == []


@pytest.mark.parametrize("sku", ["-LEADING-DASH", "A" * 41, "with%20space", "quote'1"])
def test_malformed_sku_is_400_and_sap_is_not_asked(sap, hub_http, sku):
    # When a SKU outside the contract's pattern is requested
    response = _get(sap, hub_http, sku)
    # Then the hub refuses it with a 400 naming the parameter, before any SAP request
    assert response.status_code == 400
    assert response.json()["invalidParams"][0]["name"] == "sku"
    log = hub_http.get(f"{sap.endpoints()['sap']}/_sandbox/requests").json()["requests"]
    assert log == []
