"""Silver on real Azurite + delta-rs: MERGE latest-wins, quarantine, retries, soft deletes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from decimal import Decimal

import polars as pl
import pytest
from deltalake import DeltaTable

from shared.lake.bronze import BronzeWriter, content_hash
from shared.lake.delta import read_frame, table_version, with_commit_retry
from shared.lake.silver import (
    QUARANTINE_TABLE,
    SilverStage,
    conform,
    merge_silver,
    raw_frame,
    reprocess_from_bronze,
)
from shared.lake.specs import (
    LEGACY_ORDER_LINES,
    LEGACY_ORDERS,
    Column,
    dataverse_deletions,
    json_spec,
)
from tests.fixtures.lake import T0, legacy_line, legacy_order

pytestmark = pytest.mark.integration

LATER = T0 + dt.timedelta(minutes=5)
BUSINESS = ["order_no", "status", "total_amount", "source_modified_at"]


def ingest(lake, spec, records, run_id="run-1", n=0):
    """Write records to bronze as one page and MERGE them, as a poll does."""
    page = BronzeWriter(lake).write_page(spec.source, spec.entity, run_id, n, records)
    stage = SilverStage(lake, spec)
    stage.add(records, page)
    return stage.commit()


def silver(lake, spec, columns=BUSINESS):
    return read_frame(lake, "silver", spec.table).select(columns).sort(list(spec.key))


def test_first_merge_inserts_and_a_newer_version_updates(lake):
    # Given two orders in silver
    first = ingest(lake, LEGACY_ORDERS, [legacy_order(1), legacy_order(2)])
    # When a newer version of order 1 arrives
    second = ingest(lake, LEGACY_ORDERS, [legacy_order(1, status="S", updated=LATER)], "run-2")
    # Then it replaced the stored one and order 2 is untouched
    assert (first.inserted, first.updated) == (2, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 1, 0)
    assert silver(lake, LEGACY_ORDERS).rows() == [
        ("0000000001", "Shipped", Decimal("12345.67"), LATER),
        ("0000000002", "Open", Decimal("12345.67"), T0),
    ]


def test_an_older_version_arriving_late_never_overwrites_a_newer_one(lake):
    # Given the newer version already in silver
    ingest(lake, LEGACY_ORDERS, [legacy_order(1, status="S", updated=LATER)])
    version = table_version(lake, "silver", LEGACY_ORDERS.table)
    # When the older version arrives afterwards (out of order)
    late = ingest(lake, LEGACY_ORDERS, [legacy_order(1, status="O", updated=T0)], "run-2")
    # Then silver keeps the newer one and no Delta version was added
    assert (late.inserted, late.updated, late.unchanged) == (0, 0, 1)
    assert silver(lake, LEGACY_ORDERS).rows() == [
        ("0000000001", "Shipped", Decimal("12345.67"), LATER)
    ]
    assert table_version(lake, "silver", LEGACY_ORDERS.table) == version


def test_re_reading_the_same_versions_changes_nothing_and_commits_nothing(lake):
    # Given orders in silver
    records = [legacy_order(1), legacy_order(2)]
    ingest(lake, LEGACY_ORDERS, records)
    version = table_version(lake, "silver", LEGACY_ORDERS.table)
    # When the same records are read again (the poll's overlap window)
    again = ingest(lake, LEGACY_ORDERS, records, "run-2")
    # Then the MERGE absorbs them: all unchanged, no new table version
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert table_version(lake, "silver", LEGACY_ORDERS.table) == version


def test_same_time_versions_resolve_to_the_higher_content_hash_in_any_arrival_order(lake):
    # Given two different versions of one order with the same LSTUPD
    a = legacy_order(1, cents=100)
    b = legacy_order(1, cents=200)
    winner = max((a, b), key=content_hash)
    forward = LEGACY_ORDERS
    backward = dataclasses.replace(LEGACY_ORDERS, table="legacy_orders_reverse")
    # When one table receives a then b, the other b then a (separate runs)
    ingest(lake, forward, [a], "run-1")
    ingest(lake, forward, [b], "run-2")
    ingest(lake, backward, [b], "run-3")
    ingest(lake, backward, [a], "run-4")
    # Then both converge on the same deterministic winner
    expected = Decimal(int(winner["TOTAMT"])) / 100
    assert silver(lake, forward)["total_amount"].to_list() == [expected]
    assert silver(lake, backward)["total_amount"].to_list() == [expected]


def test_silver_rows_carry_their_bronze_lineage(lake):
    # Given an order ingested through bronze
    record = legacy_order(1)
    ingest(lake, LEGACY_ORDERS, [record], "run-7")
    # When its silver row is read
    row = read_frame(lake, "silver", LEGACY_ORDERS.table).row(0, named=True)
    # Then it points at the bronze blob, run and exact raw content
    assert row["bronze_path"].startswith(
        f"{lake.container('bronze')}/mainframe/orders/ingest_date="
    )
    assert row["bronze_path"].endswith("/run-7-0.jsonl.gz")
    assert row["run_id"] == "run-7"
    assert row["content_hash"] == content_hash(record)
    assert row["ingested_at"].tzinfo is not None


def test_invalid_records_are_quarantined_once_with_reason_and_bronze_location(lake):
    # Given a page with a good line, a zero-quantity line and a line with a bad date stamp
    records = [
        legacy_line(1, 10),
        legacy_line(1, 20, qty_milli=0),
        {**legacy_line(1, 30), "LSTUPD": "20261340250000"},
    ]
    # When it is ingested twice (an overlap re-read)
    first = ingest(lake, LEGACY_ORDER_LINES, records, "run-1")
    second = ingest(lake, LEGACY_ORDER_LINES, records, "run-2")
    # Then silver has the good line and the quarantine holds each bad record exactly once
    assert (first.inserted, first.quarantined, first.quarantine_new) == (1, 2, 2)
    assert (second.quarantined, second.quarantine_new) == (2, 0)
    assert read_frame(lake, "silver", LEGACY_ORDER_LINES.table).height == 1
    quarantine = read_frame(lake, "silver", QUARANTINE_TABLE).sort("business_key")
    assert quarantine.select("business_key", "reason").rows() == [
        ("0000000001|0020", "non-positive QTY='00000000'"),
        ("0000000001|0030", "bad timestamp LSTUPD='20261340250000'"),
    ]
    assert all(p.endswith("/run-1-0.jsonl.gz") for p in quarantine["bronze_path"])
    assert quarantine["record"].to_list()[0] == (
        '{"ITEMNO":"SKU-00020         ","LINENO":"0020","LSTUPD":"20260504080000",'
        '"ORDNO":"0000000001","QTY":"00000000","STATUS":"O","UPRICE":"0000002500"}'
    )


def _valid(records):
    return conform(
        LEGACY_ORDERS,
        raw_frame(LEGACY_ORDERS, records),
        bronze_path="p",
        run_id="r",
        ingested_at=T0,
        content_hashes=[content_hash(r) for r in records],
    )[0]


def test_a_commit_lost_to_a_concurrent_writer_is_retried_against_the_new_version(lake):
    # Given orders 1 and 2 in silver, and a writer holding a snapshot from before a change
    merge_silver(lake, LEGACY_ORDERS, _valid([legacy_order(1), legacy_order(2)]))
    uri = lake.table_uri("silver", LEGACY_ORDERS.table)
    attempts = []
    source = _valid([legacy_order(2, status="R", updated=LATER)]).to_arrow()

    def merge_order_2():
        attempts.append(1)
        table = DeltaTable(uri, storage_options=lake.storage_options())
        if len(attempts) == 1:
            # Another run commits between our snapshot and our commit.
            merge_silver(lake, LEGACY_ORDERS, _valid([legacy_order(1, status="S", updated=LATER)]))
        return (
            table.merge(source, "t.order_no = s.order_no", source_alias="s", target_alias="t")
            .when_matched_update_all()
            .execute()
        )

    # When the operation runs under the commit retry (delta-rs raises CommitFailedError:
    # "a concurrent transaction added new data")
    with_commit_retry(merge_order_2, "test", sleep=lambda _: None)
    # Then it succeeded on the second attempt and both changes are in silver
    assert len(attempts) == 2
    assert silver(lake, LEGACY_ORDERS)["status"].to_list() == ["Shipped", "Released"]


def test_concurrent_merges_into_one_table_all_land(lake):
    # Given an existing table and four runs merging different orders at the same time
    merge_silver(lake, LEGACY_ORDERS, _valid([legacy_order(0)]))
    errors = []

    def run(worker):
        try:
            merge_silver(
                lake, LEGACY_ORDERS, _valid([legacy_order(100 * worker + i) for i in range(3)])
            )
        except Exception as exc:  # surfaced below; a thread would swallow it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(1, 5)]
    # When they commit concurrently (losers are retried)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then no run failed and every order is present exactly once
    assert errors == []
    orders = read_frame(lake, "silver", LEGACY_ORDERS.table)["order_no"].to_list()
    assert sorted(orders) == sorted(
        [f"{0:010d}"] + [f"{100 * w + i:010d}" for w in range(1, 5) for i in range(3)]
    )


def test_racing_first_loads_of_an_absent_table_insert_each_order_once(lake):
    # Given no silver table yet, and four runs that each bring the same two orders plus their own
    # (an initial load writes its rows as the table's first version, without a MERGE)
    errors = []
    barrier = threading.Barrier(4)

    def run(worker):
        try:
            barrier.wait()
            merge_silver(
                lake,
                LEGACY_ORDERS,
                _valid([legacy_order(1), legacy_order(2), legacy_order(100 + worker)]),
            )
        except Exception as exc:  # surfaced below; a thread would swallow it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    # When they all try to create the table at the same moment
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then one created it, the others merged into it, and no order is there twice
    assert errors == []
    orders = read_frame(lake, "silver", LEGACY_ORDERS.table)["order_no"].to_list()
    assert sorted(orders) == [f"{n:010d}" for n in (1, 2, 100, 101, 102, 103)]


ACCOUNTS = json_spec(
    "accounts",
    source="dataverse",
    entity="accounts",
    key=["account_id"],
    modified="modified_at",
    columns=[
        Column("account_id", "accountid", "id"),
        Column("name", "name", "text"),
        Column("modified_at", "modifiedon", "iso_timestamp"),
    ],
    soft_delete=dataverse_deletions("account_id"),
)


def test_a_deletion_marks_the_row_and_an_older_version_cannot_resurrect_it(lake):
    # Given an account in silver
    account = {"accountid": "a1", "name": "Contoso", "modifiedon": "2026-05-04T08:00:00Z"}
    ingest(lake, ACCOUNTS, [account])
    deletion = {
        "@odata.context": "https://org/api/data/v9.2/$metadata#accounts/$deletedEntity",
        "id": "a1",
        "reason": "deleted",
    }
    # When change tracking reports its deletion, and later a stale copy of the account
    deleted = ingest(lake, ACCOUNTS, [deletion], "run-2")
    stale = ingest(lake, ACCOUNTS, [account], "run-3")
    # Then the row is marked deleted (last values kept) and stays deleted
    row = read_frame(lake, "silver", ACCOUNTS.table).row(0, named=True)
    assert deleted.updated == 1
    assert stale.updated == 0
    assert (row["account_id"], row["name"], row["is_deleted"]) == ("a1", "Contoso", True)
    assert row["deleted_at"] is not None


def test_reprocessing_bronze_rebuilds_the_same_silver(lake):
    # Given two runs ingested, including a newer version and a bad record
    ingest(lake, LEGACY_ORDERS, [legacy_order(1), legacy_order(2, status="Q")], "run-1")
    ingest(lake, LEGACY_ORDERS, [legacy_order(1, status="S", updated=LATER)], "run-2")
    expected = silver(lake, LEGACY_ORDERS)
    # When silver is rebuilt from bronze into a fresh table
    rebuilt_spec = dataclasses.replace(LEGACY_ORDERS, table="legacy_orders_rebuilt")
    counts = reprocess_from_bronze(lake, rebuilt_spec)
    # Then it equals the silver the runs produced
    assert counts.received == 2 and counts.quarantined == 1
    assert silver(lake, rebuilt_spec).equals(expected)
    assert isinstance(expected, pl.DataFrame)
