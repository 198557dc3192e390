"""Flow 6 (silver → Dataverse) against the sandbox LOS gateway, Azurite and the Dataverse peer.

Silver is seeded the way production fills it: ``poll_mainframe`` against the mainframe peer seeded
from ``sandbox.datagen`` (or from the small record builders of ``tests.fixtures.lake``). The
Dataverse side is the real peer over HTTPS; what the load sent is read back from its records and
request log. Behaviours reproduced from the Dataverse documentation (MicrosoftDocs/powerapps-docs,
``developer/data-platform/``):

- upsert by alternate key, ``PATCH <set>(<key>='v')`` (``use-upsert-insert-update-record.md``);
- lookups bound by the target's alternate key, ``"<nav>@odata.bind": "/accounts(accountnumber='v')"``
  (``use-alternate-key-reference-record.md``), refused per row when the target does not exist;
- ``UpsertMultiple`` rolls the whole request back for one bad row on standard tables, so the
  client replays the chunk through ``$batch`` with ``Prefer: odata.continue-on-error``
  (``bulk-operations.md``, ``webapi/execute-batch-operations-using-web-api.md``);
- strings longer than the column's maximum are refused with 0x80044331.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from sandbox.datagen import ContosoData, generate
from shared.adapters.mainframe import MainframeClient
from shared.adapters.records import RejectionStore
from shared.adapters.tables import Tables
from shared.errors import TransientError
from shared.http import RetryPolicy, make_session
from shared.lake.delta import read_frame
from shared.mappings import MAPPINGS
from shared.services.load_dataverse import (
    FLOW,
    JOB,
    LoadCursor,
    LoadIncomplete,
    LoadResult,
    load_dataverse,
)
from shared.services.poll_mainframe import poll_mainframe
from tests.fixtures.lake import T0, legacy_customer, legacy_line, legacy_order

pytestmark = pytest.mark.integration

SEED, SCALE = 11, 200
OVERLAP = dt.timedelta(seconds=120)
ORDER_LETTER = {
    "Open": "O",
    "Released": "R",
    "Shipped": "S",
    "Invoiced": "I",
    "Closed": "C",
    "Cancelled": "X",
}


# --- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture
def client(mainframe, mainframe_api_client, tls) -> MainframeClient:
    return MainframeClient(
        mainframe.base_url,
        mainframe_api_client["clientId"],
        lambda: mainframe_api_client["clientSecret"],
        session=make_session(tls.ca_path),
        policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    )


@pytest.fixture
def rejections(azurite) -> Iterator[RejectionStore]:
    """A rejection store on a table of its own, dropped after the test."""
    tables = Tables(azurite.table_url, use_emulator=True, prefix=f"t{uuid.uuid4().hex[:10]}")
    store = RejectionStore(tables)
    yield store
    with contextlib.suppress(ResourceNotFoundError):
        tables.service.delete_table(store.table.table_name)


def pin(mainframe, when: dt.datetime) -> None:
    mainframe.seed({"settings": [{"now": when.strftime("%Y%m%d%H%M%S")}]})


def poll(client, watermarks, lake) -> None:
    poll_mainframe(client, watermarks, lake, overlap=OVERLAP, page_size=1000)


def load(dataverse_client, watermarks, rejections, lake, **options: Any) -> LoadResult:
    return load_dataverse(dataverse_client, watermarks, rejections, lake, **options)


def seed_datagen(mainframe, dv, data: ContosoData) -> None:
    """The generated world on the mainframe, and its product catalogue in Dataverse (the
    inventory rows look products up by SKU; the hub does not master products)."""
    mainframe.seed({entity: list(table) for entity, table in data.mainframe_seed().items()})
    dv.seed(
        {
            "products": [
                {"productid": str(uuid.uuid4()), "productnumber": p.sku, "name": p.sku}
                for p in data.products
            ]
        }
    )


def dv_by_key(dv, table: str, key: str) -> dict[str, dict[str, Any]]:
    return {str(r[key]): r for r in dv.records(table)}


def live(lake, table: str):
    frame = read_frame(lake, "silver", table)
    return frame.filter(~frame["is_deleted"])


def writes(dv) -> int:
    """Write requests the Dataverse peer received (bulk, $batch and single)."""
    log = dv.http.get(f"{dv.peer.base_url}/_sandbox/requests").json()["requests"]
    return sum(1 for r in log if r["method"] in ("POST", "PATCH", "DELETE"))


def rejected_keys(rejections: RejectionStore) -> dict[str, str]:
    return {r.key: r.reason for r in rejections.list(FLOW)}


# --- the first load --------------------------------------------------------------------------------


def test_first_load_lands_exactly_the_mapped_rows_and_records_the_refused_ones(
    mainframe, client, watermarks, lake, dv, dataverse_client, rejections
):
    # Given the generated world polled into silver, and Dataverse holding one of the customers
    # already (with a phone number only Dataverse masters)
    data = generate(SEED, SCALE, problem_rate=0.01)
    seed_datagen(mainframe, dv, data)
    pin(mainframe, data.as_of + dt.timedelta(hours=1))
    poll(client, watermarks, lake)
    customers = live(lake, "customers")
    first = customers.sort("customer_no").row(0, named=True)
    dv.seed(
        {
            "accounts": [
                {
                    "accountnumber": first["customer_no"],
                    "name": "Old name",
                    "telephone1": "+1 555 0100",
                }
            ]
        }
    )
    # When the hub loads Dataverse
    result = load(dataverse_client, watermarks, rejections, lake)
    # Then every live customer is an account, the existing one updated in place
    accounts = dv_by_key(dv, "accounts", "accountnumber")
    assert set(accounts) == set(customers["customer_no"].to_list())
    assert accounts[first["customer_no"]]["name"] == first["name"]
    assert accounts[first["customer_no"]]["telephone1"] == "+1 555 0100"
    for row in customers.iter_rows(named=True):
        account = accounts[row["customer_no"]]
        assert account["address1_postalcode"] == row["zip"]
        assert account["statecode"] == (1 if row["status"] == "Inactive" else 0)
        assert account["contoso_creditstatus"] == (
            100000001 if row["status"] == "CreditHold" else 100000000
        )
    # and every order whose customer exists landed, with its money, dates and status letter
    orders = live(lake, "legacy_orders")
    known = set(accounts)
    expected_orders = {r["order_no"]: r for r in orders.iter_rows(named=True)}
    landed_orders = dv_by_key(dv, "contoso_legacyorders", "contoso_ordernumber")
    orphans = {n for n, r in expected_orders.items() if r["customer_no"] not in known}
    assert orphans, "the generated world plants orders of unknown customers"
    assert set(landed_orders) == set(expected_orders) - orphans
    for number, row in landed_orders.items():
        source = expected_orders[number]
        assert Decimal(str(row["contoso_totalamount"])) == source["total_amount"]
        assert row["contoso_orderdate"] == source["order_date"].isoformat()
        assert row["contoso_status"] == ORDER_LETTER[source["status"]]
        account = accounts[source["customer_no"]]
        assert row["_contoso_accountid_value"] == account["accountid"]
    # and every line of a landed order landed, linked to it, its amount = quantity × price
    lines = live(lake, "legacy_order_lines")
    expected_lines = {f"{r['order_no']}|{r['line_no']}": r for r in lines.iter_rows(named=True)}
    landed_lines = dv_by_key(dv, "contoso_legacyorderlines", "contoso_orderlinekey")
    stranded = {k for k, r in expected_lines.items() if r["order_no"] not in landed_orders}
    assert set(landed_lines) == set(expected_lines) - stranded
    for key, row in landed_lines.items():
        source = expected_lines[key]
        order = landed_orders[source["order_no"]]
        assert row["_contoso_legacyorderid_value"] == order["contoso_legacyorderid"]
        amount = (source["quantity"] * source["unit_price"]).quantize(Decimal("0.01"))
        assert Decimal(str(row["contoso_amount"])) == amount
    # and all inventory landed, available = on hand − allocated
    inventory = live(lake, "plant_inventory")
    landed_stock = dv_by_key(dv, "contoso_plantinventories", "contoso_inventorykey")
    assert set(landed_stock) == {
        f"{r['plant']}|{r['item_no']}" for r in inventory.iter_rows(named=True)
    }
    for row in landed_stock.values():
        assert Decimal(str(row["contoso_available"])) == Decimal(
            str(row["contoso_onhand"])
        ) - Decimal(str(row["contoso_allocated"]))
    # and each refused row is recorded with Dataverse's reason, nothing else is
    refused = rejected_keys(rejections)
    assert set(refused) == {f"legacy_orders:{n}" for n in orphans} | {
        f"legacy_order_lines:{k}" for k in stranded
    }
    assert all("does not exist" in reason for reason in refused.values())
    assert result.rejected == len(refused)
    assert result.transient == 0
    # and each cursor points at the last row loaded
    for mapping in MAPPINGS:
        assert LoadCursor.loads(watermarks.read(JOB, mapping.name).value)


# --- incremental loads ---------------------------------------------------------------------------


def seed_small(mainframe, *, orders: int = 5, plant: str = "P100") -> None:
    """Three customers and ``orders`` orders (of customer 1), stamped 08:00."""
    mainframe.seed(
        {
            "customers": [legacy_customer(i) for i in (1, 2, 3)],
            "orders": [legacy_order(i, plant=plant) for i in range(1, orders + 1)],
        }
    )


SMALL = ["customers", "orders"]
SMALL_MAPPINGS = ["customers", "legacy_orders"]


def test_a_second_load_without_silver_changes_sends_no_request(
    mainframe, client, watermarks, lake, dv, dataverse_client, rejections
):
    # Given a first poll and load, then a second poll that re-reads its overlap and changes nothing
    seed_small(mainframe)
    pin(mainframe, T0 + dt.timedelta(minutes=1))
    poll_mainframe(client, watermarks, lake, overlap=OVERLAP, entities=SMALL)
    first = load(dataverse_client, watermarks, rejections, lake, entities=SMALL_MAPPINGS)
    assert (first.sent, first.landed) == (8, 8)
    pin(mainframe, T0 + dt.timedelta(minutes=2))
    again = poll_mainframe(client, watermarks, lake, overlap=OVERLAP, entities=SMALL)
    assert again.read == 8  # everything sits inside the overlap window, re-read, unchanged
    written = writes(dv)
    # When the hub loads again
    second = load(dataverse_client, watermarks, rejections, lake, entities=SMALL_MAPPINGS)
    # Then nothing is sent: no row, no request, and the peer saw no write
    assert (second.sent, second.requests) == (0, 0)
    assert writes(dv) == written


def test_after_k_mainframe_changes_the_load_sends_exactly_those_k_rows(
    mainframe, client, watermarks, lake, dv, dataverse_client, rejections
):
    # Given the generated world polled and loaded
    data = generate(SEED, SCALE, problem_rate=0)
    seed_datagen(mainframe, dv, data)
    pin(mainframe, data.as_of + dt.timedelta(minutes=30))
    poll(client, watermarks, lake)
    load(dataverse_client, watermarks, rejections, lake)
    # and k = 20 records changed on the mainframe at as_of + 1 h
    changes = data.touch_mainframe(20, round=1)
    mainframe.seed(changes)
    pin(mainframe, data.as_of + dt.timedelta(hours=2))
    poll(client, watermarks, lake)
    # When the hub loads again
    result = load(dataverse_client, watermarks, rejections, lake)
    # Then exactly the changed rows are sent, entity by entity, and they land
    sent = {name: e.sent for name, e in result.entities.items()}
    assert sent == {
        "customers": len(changes["customers"]),
        "legacy_orders": len(changes["orders"]),
        "legacy_order_lines": len(changes["orderlines"]),
        "plant_inventory": len(changes["inventory"]),
    }
    assert result.landed == result.sent == 20
    # and Dataverse shows the new values
    orders = dv_by_key(dv, "contoso_legacyorders", "contoso_ordernumber")
    for record in changes["orders"]:
        assert orders[record["ORDNO"]]["contoso_status"] == record["STATUS"]
        assert orders[record["ORDNO"]]["contoso_salesrep"] == record["SLSREP"].strip()


def test_a_row_dataverse_refuses_is_recorded_and_the_rest_land(
    mainframe, client, watermarks, lake, dv, dataverse_client, rejections
):
    # Given five orders, one of them shipping from a plant code longer than Dataverse's
    # contoso_plant column (4 characters)
    seed_small(mainframe)
    mainframe.seed({"orders": [legacy_order(3, plant="PLANT9")]})
    pin(mainframe, T0 + dt.timedelta(minutes=1))
    poll_mainframe(client, watermarks, lake, overlap=OVERLAP, entities=SMALL)
    # When the hub loads
    result = load(dataverse_client, watermarks, rejections, lake, entities=SMALL_MAPPINGS)
    # Then the four good orders landed and the bad one is recorded with Dataverse's reason
    landed = dv_by_key(dv, "contoso_legacyorders", "contoso_ordernumber")
    assert sorted(landed) == [f"{i:010d}" for i in (1, 2, 4, 5)]
    refused = rejected_keys(rejections)
    assert list(refused) == ["legacy_orders:0000000003"]
    assert "0x80044331" in refused["legacy_orders:0000000003"]
    orders = result.entities["legacy_orders"]
    assert (orders.sent, orders.landed, orders.rejected, orders.transient) == (5, 4, 1, 0)
    # (UpsertMultiple rolled the chunk back; the $batch replay isolated the bad row: 2 requests)
    assert (orders.bulk_requests, orders.batch_requests) == (1, 1)
    # and the cursor moved past it: an unchanged silver sends nothing again
    assert load(dataverse_client, watermarks, rejections, lake).requests == 0
    # When the mainframe corrects the plant and the hub polls and loads
    mainframe.touch("orders", [{"ORDNO": "0000000003", "PLANT": "P200"}])
    pin(mainframe, T0 + dt.timedelta(minutes=10))
    poll_mainframe(client, watermarks, lake, overlap=OVERLAP, entities=SMALL)
    fixed = load(dataverse_client, watermarks, rejections, lake, entities=SMALL_MAPPINGS)
    # Then only that order is sent, and it lands
    assert (fixed.sent, fixed.landed) == (1, 1)
    assert (
        dv_by_key(dv, "contoso_legacyorders", "contoso_ordernumber")["0000000003"]["contoso_plant"]
        == "P200"
    )


def test_transient_failures_stop_the_cursor_before_them_and_the_next_run_sends_them(
    mainframe, client, watermarks, lake, dv, dataverse_client, rejections
):
    # Given twelve orders loaded five at a time, and Dataverse failing with 503 from the
    # second batch of orders on (every retry included)
    seed_small(mainframe, orders=12)
    mainframe.seed({"orderlines": [legacy_line(i, 10) for i in range(1, 13)]})
    pin(mainframe, T0 + dt.timedelta(minutes=1))
    poll_mainframe(client, watermarks, lake, overlap=OVERLAP, entities=[*SMALL, "orderlines"])

    def outage_after_first_order_batch(progress) -> None:
        if progress.entity == "legacy_orders" and progress.batches == 1:
            dv.faults(rate5xx=1.0, faultPhase="before")

    # When the hub loads
    with pytest.raises(LoadIncomplete) as caught:
        load(
            dataverse_client,
            watermarks,
            rejections,
            lake,
            batch_rows=5,
            after_batch=outage_after_first_order_batch,
        )
    # Then the failure surfaces as transient, the orders cursor stops after the first batch,
    # the lines (children) were not attempted and nothing was recorded as rejected
    assert isinstance(caught.value, TransientError)
    stopped = caught.value.result
    assert stopped.entities["legacy_orders"].landed == 5
    assert stopped.entities["legacy_orders"].transient == 5
    assert "legacy_order_lines" not in stopped.entities
    cursor = LoadCursor.loads(watermarks.read(JOB, "legacy_orders").value)
    assert cursor.key == "0000000005"
    assert watermarks.read(JOB, "legacy_order_lines").value is None
    assert rejected_keys(rejections) == {}
    # When Dataverse recovers and the hub loads again
    dv.faults(rate5xx=0.0)
    recovered = load(dataverse_client, watermarks, rejections, lake, batch_rows=5)
    # Then the seven remaining orders and all twelve lines are sent, and everything landed
    assert recovered.entities["customers"].sent == 0
    assert recovered.entities["legacy_orders"].sent == 7
    assert recovered.entities["legacy_order_lines"].sent == 12
    assert len(dv.records("contoso_legacyorders")) == 12
    assert len(dv.records("contoso_legacyorderlines")) == 12


def test_bulk_load_takes_at_most_two_requests_per_thousand_rows(
    mainframe, client, watermarks, lake, dv, dataverse_client, rejections
):
    # Given 2,000 orders in silver, of a customer Dataverse already has as an account
    customer = legacy_customer(1)
    dv.seed({"accounts": [{"accountnumber": customer["CUSTNO"].strip(), "name": "Fabrikam"}]})
    mainframe.seed({"orders": [legacy_order(i) for i in range(1, 2001)]})
    pin(mainframe, T0 + dt.timedelta(minutes=1))
    poll_mainframe(client, watermarks, lake, overlap=OVERLAP, page_size=1000, entities=["orders"])
    # When the hub loads them
    result = load(dataverse_client, watermarks, rejections, lake, entities=["legacy_orders"])
    # Then all landed through UpsertMultiple in chunks of 1,000: per the BulkResult counts
    # (every HTTP attempt, retries included) at most 2 requests per 1,000 rows
    orders = result.entities["legacy_orders"]
    assert (orders.sent, orders.landed) == (2000, 2000)
    assert (orders.bulk_requests, orders.batch_requests) == (2, 0)
    assert orders.requests_per_1000_rows <= 2
    assert 1000 * result.requests / result.sent <= 2
    assert len(dv.records("contoso_legacyorders")) == 2000
