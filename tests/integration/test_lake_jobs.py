"""The lake timers through the app: the sandbox world serves function_app.py and runs each timer
function by name with a real ``TimerRequest`` (``sandbox.app.LocalApp.run_timer``), so the
blueprint, the wiring, the settings and the jobs are exercised together against the world's
mainframe and Dataverse peers and its Azurite.

The world (and its lake and state tables) is shared by the whole session: each test resets the
peers it uses and works with keys of its own.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from shared.adapters.state import WatermarkStore
from shared.errors import TransientError
from shared.lake.delta import read_frame
from shared.lake.gold import read_gold
from shared.lake.storage import LakeConfig, LakeStorage
from shared.services.poll_mainframe import JOB as POLL_JOB
from tests.fixtures.lake import legacy_customer, legacy_order

pytestmark = pytest.mark.integration


@pytest.fixture
def jobs_world(world, hub_http):
    """The world with its mainframe and Dataverse reset (no records, faults or pinned clock)."""
    for name in ("mainframe", "dataverse"):
        hub_http.post(f"{world.endpoints()[name]}/_sandbox/reset").raise_for_status()
    return world


def world_lake(world) -> LakeStorage:
    return LakeStorage(LakeConfig(blob_url=world.azurite.blob_url, use_emulator=True))


def world_watermarks(world) -> WatermarkStore:
    return WatermarkStore.connect(world.azurite.table_url, use_emulator=True)


def dv_records(world, http, table: str) -> list[dict[str, Any]]:
    response = http.get(f"{world.endpoints()['dataverse']}/_sandbox/records/{table}")
    response.raise_for_status()
    return response.json()["records"]


def test_the_timers_poll_rebuild_gold_load_dataverse_and_export_it_back(jobs_world, hub_http):
    world = jobs_world
    rng = random.Random()
    # Given a customer and three open orders of a plant of this test's own on the mainframe
    customer = rng.randrange(1_000_000, 9_999_999)
    first_order = rng.randrange(10**8, 10**9)
    plant = f"T{rng.randrange(100, 999)}"
    number = f"C{customer:07d}"
    mainframe = world.peers["mainframe"]
    now = mainframe.now()  # the wall clock: after any watermark an earlier test left
    mainframe.seed(
        {
            "customers": [legacy_customer(customer, updated=now)],
            "orders": [
                legacy_order(first_order + i, plant=plant, customer=number, updated=now)
                for i in range(3)
            ],
        }
    )
    lake = world_lake(world)
    # When the mainframe poll timer fires
    world.hub.run_timer("mainframe_poll")
    # Then the records are in silver and gold's backlog already counts them (the poll changed
    # silver, so it rebuilt gold)
    orders = read_frame(lake, "silver", "legacy_orders")
    ours = orders.filter(orders["plant"] == plant)
    assert ours.height == 3
    backlog = read_gold(lake, "order_backlog")
    mine = backlog.filter((backlog["plant"] == plant) & (backlog["source"] == "mainframe"))
    assert sum(mine["open_orders"].to_list()) == 3
    # When the Dataverse load timer fires
    world.hub.run_timer("dataverse_load")
    # Then the customer is an account and the orders are legacy orders linked to it
    accounts = {r["accountnumber"]: r for r in dv_records(world, hub_http, "accounts")}
    assert number in accounts
    legacy = [
        r
        for r in dv_records(world, hub_http, "contoso_legacyorders")
        if r["contoso_plant"] == plant
    ]
    assert len(legacy) == 3
    assert {r["_contoso_accountid_value"] for r in legacy} == {accounts[number]["accountid"]}
    # When the Dataverse export timer fires
    world.hub.run_timer("dataverse_to_lake")
    # Then the account the hub wrote is in silver, with the hub's own user as its modifier
    # (what later flows use to suppress echoes)
    exported = read_frame(lake, "silver", "dataverse_accounts")
    row = exported.filter(exported["accountnumber"] == number).row(0, named=True)
    hub_user = next(
        u["systemuserid"]
        for u in dv_records(world, hub_http, "systemusers")
        if u.get("applicationid") == world.hub_client[0]
    )
    assert row["modified_by"] == hub_user
    # When the gold timer fires with silver unchanged since the poll's rebuild
    world.hub.run_timer("gold_rebuild")
    # Then gold's backlog is as it was
    assert read_gold(lake, "order_backlog").equals(backlog)


def test_a_failing_job_raises_and_leaves_its_watermark(jobs_world, hub_http):
    world = jobs_world
    mainframe_url = world.endpoints()["mainframe"]
    watermarks = world_watermarks(world)
    before = {e: watermarks.read(POLL_JOB, e).value for e in ("customers", "orders")}
    # Given the mainframe answering 503 to every request
    hub_http.put(
        f"{mainframe_url}/_sandbox/faults", json={"rate5xx": 1.0, "faultPhase": "before"}
    ).raise_for_status()
    try:
        # When the poll timer fires, Then the failure reaches the host as a transient error
        with pytest.raises(TransientError):
            world.hub.run_timer("mainframe_poll")
    finally:
        hub_http.post(f"{mainframe_url}/_sandbox/reset").raise_for_status()
    # and no watermark moved
    assert {e: watermarks.read(POLL_JOB, e).value for e in ("customers", "orders")} == before
