"""A generated Contoso world through the mainframe peer, bronze, silver and gold, checked against
an independent computation over the generated records (not the hub's own parsers)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from decimal import Decimal

import pytest

from sandbox.datagen import generate, to_jsonable
from shared import wiring
from shared.adapters.state import WatermarkStore
from shared.lake.delta import read_frame
from shared.lake.gold import rebuild_gold
from shared.lake.storage import LakeConfig, LakeStorage
from shared.services.poll_mainframe import poll_mainframe

pytestmark = pytest.mark.integration
SCALE = 400


@pytest.fixture
def generated(world, hub_http):
    mainframe = world.endpoints()["mainframe"]
    hub_http.post(f"{mainframe}/_sandbox/reset").raise_for_status()
    data = generate(5, SCALE)
    for name, table in data.mainframe_seed().items():
        rows = [to_jsonable(r) for r in table]
        hub_http.post(f"{mainframe}/_sandbox/seed", json={name: rows}).raise_for_status()
    # An isolated lake and watermark table: the session's world is shared with other tests.
    tag = uuid.uuid4().hex[:8]
    lake = LakeStorage(
        LakeConfig(world.azurite.blob_url, use_emulator=True, container_prefix=f"g{tag}-")
    )
    marks = WatermarkStore.connect(
        world.azurite.table_url, use_emulator=True, table_name=f"wm{tag}"
    )
    return data, lake, marks


def _poll(lake, marks):
    return poll_mainframe(wiring.mainframe(), marks, lake, overlap=dt.timedelta(seconds=120))


def _expected_backlog(data) -> dict[tuple[str, dt.date, str], tuple[int, int, Decimal]]:
    """Open/Released orders by (plant, month of requested date, currency), computed from the
    raw copybook records with this test's own parsing."""
    bad = set(data.planted.get("mainframe.orders", "invalid_date")) | set(
        data.planted.get("mainframe.orders", "non_numeric_amount")
    )
    expected: dict[tuple[str, dt.date, str], list] = defaultdict(lambda: [0, 0, Decimal("0.00")])
    for record in data.mainframe_seed()["orders"]:
        order_no = record["ORDNO"].strip()
        if order_no in bad or record["STATUS"] not in ("O", "R"):
            continue
        month = dt.date(int(record["REQDT"][:4]), int(record["REQDT"][4:6]), 1)
        cell = expected[(record["PLANT"].strip(), month, record["CURR"])]
        cell[0 if record["STATUS"] == "O" else 1] += 1
        cell[2] += Decimal(int(record["TOTAMT"])) / 100
    return {k: (v[0], v[1], v[2]) for k, v in expected.items()}


def test_first_poll_lands_every_record_and_quarantines_exactly_the_planted_bad_ones(generated):
    data, lake, marks = generated
    result = _poll(lake, marks)
    orders = result.entities["orders"]
    bad = set(data.planted.get("mainframe.orders", "invalid_date")) | set(
        data.planted.get("mainframe.orders", "non_numeric_amount")
    )
    # Then every record reached bronze, and silver holds all but the planted unreadable ones
    assert orders.bronze_records == SCALE
    silver = read_frame(lake, "silver", "legacy_orders")
    assert silver.height == SCALE - len(bad)
    quarantine = read_frame(lake, "silver", "quarantine")
    quarantined = set(quarantine.filter(quarantine["entity"] == "orders")["business_key"].to_list())
    assert {k.strip() for k in quarantined} == {str(k) for k in bad}
    assert quarantine.filter(quarantine["entity"] == "orders")["reason"].null_count() == 0


def test_gold_order_backlog_matches_an_independent_computation(generated):
    data, lake, marks = generated
    _poll(lake, marks)
    rebuild_gold(lake)
    gold = read_frame(lake, "gold", "order_backlog")
    actual = {
        (row["plant"], row["month"], row["currency"]): (
            row["open_orders"],
            row["released_orders"],
            Decimal(str(row["backlog_amount"])),
        )
        for row in gold.filter(gold["source"] == "mainframe").iter_rows(named=True)
    }
    assert actual == _expected_backlog(data)


def test_second_poll_after_k_changes_lands_exactly_k_and_an_unchanged_poll_writes_nothing(
    generated, world, hub_http
):
    data, lake, marks = generated
    mainframe = world.endpoints()["mainframe"]

    def clock(stamp: str) -> None:
        hub_http.post(
            f"{mainframe}/_sandbox/seed", json={"settings": [{"now": stamp}]}
        ).raise_for_status()

    clock("20261122100000")
    _poll(lake, marks)
    # When k = 7 orders change in the mainframe an hour later
    clock("20261122110000")
    orders = [r["ORDNO"] for r in data.mainframe_seed()["orders"]][:7]
    touched = hub_http.post(
        f"{mainframe}/_sandbox/touch",
        json={"orders": [{"ORDNO": number, "STATUS": "C"} for number in orders]},
    )
    assert touched.status_code == 200, touched.text
    clock("20261122110500")  # past the overlap window, so the next poll finds nothing
    second = _poll(lake, marks)
    # Then the next poll reads exactly those 7
    assert second.entities["orders"].read == 7
    assert second.read == 7
    # And a poll an hour later, with nothing changed, reads nothing and writes nothing
    clock("20261122120000")
    versions = {t: read_frame(lake, "silver", t).height for t in ("legacy_orders",)}
    third = _poll(lake, marks)
    assert third.read == 0
    assert third.requests == 4
    assert sum(e.bronze_pages for e in third.entities.values()) == 0
    assert {t: read_frame(lake, "silver", t).height for t in versions} == versions
