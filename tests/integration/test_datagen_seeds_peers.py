"""A whole generated Contoso world loads into the sandbox peers through their control surface.

``sandbox.datagen`` projects one world onto each system in that system's own format; each
projection, encoded with ``to_jsonable``, is posted table by table to the peer's
``POST /_sandbox/seed`` exactly as ``make demo`` does. Every request must succeed and every peer
must then hold exactly the records the generator counted. The formats follow the real systems:

- Dataverse Web API: lookups bound through navigation properties (``contoso_TerritoryId``),
  choice option values, money and decimals as JSON numbers (powerapps-docs
  ``webapi/create-entity-web-api.md``; SupportArticles-docs ``web-api-client-errors.md`` for
  the 0x80048d19 answers to anything else), unique alternate keys.
- SAP OData V2: ``A_Customer`` (API_BUSINESS_PARTNER) with unique customer numbers, equipment
  owners as ``EquipmentPartner``, price validities under ``to_SlsPrcgCndnRecdValidity``
  (docs/sap-api.md [S7][S8]).
- The LOS gateway (docs/mainframe-api.md): copybook strings; the customer file may hold one
  ``CUSTNO`` twice, and both records must reach the hub.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests

from sandbox.datagen import ContosoData, Table, generate, to_jsonable

pytestmark = pytest.mark.integration

SCALE = 300
BATCH = 1000


@pytest.fixture(scope="module")
def world() -> ContosoData:
    return generate(7, SCALE)


def seed_all(http: requests.Session, base_url: str, tables: dict[str, Table]) -> dict[str, int]:
    """Post every table in bounded batches; returns the records each table had."""
    sent: dict[str, int] = {}
    for name, table in tables.items():
        sent[name] = 0
        for batch in table.batches(BATCH):
            response = http.post(
                f"{base_url}/_sandbox/seed", json={name: [to_jsonable(r) for r in batch]}
            )
            assert response.status_code == 200, f"{name}: {response.text[:500]}"
            assert response.json()["seeded"] == {name: len(batch)}
            sent[name] += len(batch)
    return sent


def records(http: requests.Session, base_url: str, table: str) -> list[dict[str, Any]]:
    response = http.get(f"{base_url}/_sandbox/records/{table}")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["records"]
    return rows


def test_generated_dataverse_master_data_seeds_with_every_lookup_resolved(world, dataverse, http):
    # Given the Dataverse projection: accounts, contacts, products, currencies, price lists and
    # their items, territories, postal codes and goals, each bound to its parents by id
    tables = world.dataverse_seed()
    # When every table is seeded over HTTP, parents first (the projection's order)
    sent = seed_all(http, dataverse.base_url, tables)
    # Then every request succeeded and each entity set holds exactly the generated records
    held = {name: len(records(http, dataverse.base_url, name)) for name in tables}
    assert held == sent == {name: len(table) for name, table in tables.items()}
    # And lookups landed on their targets: every City/ZIP territory has a county parent
    territories = records(http, dataverse.base_url, "territories")
    by_id = {t["territoryid"]: t for t in territories}
    for territory in territories:
        if territory["contoso_level"] > 1:
            parent = by_id[territory["_contoso_parentterritoryid_value"]]
            assert parent["contoso_level"] == territory["contoso_level"] - 1
    # And the planted duplicate accounts are there, without an account number (the alternate
    # key keeps account numbers unique)
    accounts = records(http, dataverse.base_url, "accounts")
    numbers = [a["accountnumber"] for a in accounts if a.get("accountnumber")]
    assert len(numbers) == len(set(numbers)) == world.counts.accounts
    planted = world.planted.get("dataverse.accounts", "duplicate_account")
    assert len(accounts) - len(numbers) == len(planted) > 0


def test_generated_sap_world_seeds_with_children_partners_and_stock(world, sap, http):
    # Given the SAP projection
    tables = world.sap_seed()
    # When every entity (and the stock table) is seeded over HTTP
    sent = seed_all(http, sap.base_url, tables)
    # Then each entity set holds exactly the generated records
    held = {name: len(records(http, sap.base_url, name)) for name in tables}
    assert held == sent == {name: len(table) for name, table in tables.items()}
    # And the inline children arrived with their parents: order items, equipment partners and
    # price validities
    items = sum(len(order["to_Item"]) for order in tables["A_SalesOrder"])
    assert len(records(http, sap.base_url, "A_SalesOrderItem")) == items
    partners = records(http, sap.base_url, "EquipmentPartner")
    assert len(partners) == len(tables["Equipment"])
    assert {p["PartnerFunction"] for p in partners} == {"SP"}
    validities = records(http, sap.base_url, "A_SlsPrcgCndnRecdValidity")
    assert len(validities) == len(tables["A_SlsPrcgConditionRecord"])
    # And every sold-to party of an order is a customer SAP knows
    customers = {c["Customer"] for c in records(http, sap.base_url, "A_Customer")}
    assert {o["SoldToParty"] for o in records(http, sap.base_url, "A_SalesOrder")} <= customers


def test_generated_legacy_files_seed_with_the_planted_duplicate_customers_kept(
    world, mainframe, mainframe_api_client, http
):
    # Given the mainframe projection, whose customer file holds some CUSTNOs twice
    tables = world.mainframe_seed()
    # When every file is seeded over HTTP
    sent = seed_all(http, mainframe.base_url, tables)
    # Then each file holds exactly the generated records
    held = {name: len(records(http, mainframe.base_url, name)) for name in tables}
    assert held == sent == {name: len(table) for name, table in tables.items()}
    # And the hub's own read path (token, then a paged listing) sees both records of each
    # planted duplicate customer, and no other CUSTNO twice
    token = http.post(
        f"{mainframe.base_url}/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": mainframe_api_client["clientId"],
            "client_secret": mainframe_api_client["clientSecret"],
        },
    ).json()["access_token"]
    listed: list[dict[str, str]] = []
    params: dict[str, Any] = {"pageSize": 7}
    while True:
        body = http.get(
            f"{mainframe.base_url}/los/v1/customers",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        listed += body["RECORDS"]
        if body["NEXTPAGE"] is None:
            break
        params = {"pageSize": 7, "pageToken": body["NEXTPAGE"]}
    assert len(listed) == len(tables["customers"])
    times = Counter(r["CUSTNO"].strip() for r in listed)
    twice = {custno for custno, n in times.items() if n == 2}
    planted = world.planted.get("mainframe.customers", "duplicate_key")
    assert twice == planted and planted
    assert max(times.values()) == 2
    for custno in planted:
        names = {r["CUSTNM"].strip() for r in listed if r["CUSTNO"].strip() == custno}
        assert len(names) == 2
