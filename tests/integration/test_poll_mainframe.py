"""poll_mainframe (flows 5a–5c) against the sandbox LOS gateway and Azurite.

The listing contract (changedSince strictly greater, ASOF at the first page, stable paging) is
docs/mainframe-api.md; the tests pin the gateway's business clock (seed ``settings.now``) so
changes land either side of a watermark without sleeping. A few tests use an in-memory fake of
our own port (shared.ports.MainframeChangeSource) where a scenario cannot be staged on the peer
(a clock running backwards, a lost watermark race).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from shared.adapters.mainframe import MainframeClient
from shared.adapters.state import WatermarkConflictError
from shared.http import RetryPolicy, make_session
from shared.lake.delta import read_frame, table_version
from shared.lake.gold import read_gold, rebuild_gold
from shared.lake.silver import QUARANTINE_TABLE
from shared.lake.specs import LINEAGE_COLUMNS, MAINFRAME_SPECS
from shared.lake.storage import LAYERS
from shared.services.poll_mainframe import JOB, poll_mainframe
from tests.fixtures.lake import (
    T0,
    FakeMainframe,
    FakePage,
    legacy_customer,
    legacy_inventory,
    legacy_line,
    legacy_order,
)

pytestmark = pytest.mark.integration

OVERLAP = dt.timedelta(seconds=120)
PAGE_SIZE = 5


@pytest.fixture
def client(mainframe, mainframe_api_client, tls) -> MainframeClient:
    return MainframeClient(
        mainframe.base_url,
        mainframe_api_client["clientId"],
        lambda: mainframe_api_client["clientSecret"],
        session=make_session(tls.ca_path),
        policy=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
    )


def pin(mainframe, when: dt.datetime) -> None:
    mainframe.seed({"settings": [{"now": when.strftime("%Y%m%d%H%M%S")}]})


BAD = {"customers": 1, "orders": 2, "orderlines": 1, "inventory": 0}


def seed_world(mainframe) -> dict[str, int]:
    """Records stamped T0 (08:00) with a few invalid ones; returns the count per entity."""
    data = {
        "customers": [legacy_customer(i) for i in range(1, 4)] + [legacy_customer(4, status="Q")],
        "orders": [legacy_order(i) for i in range(1, 13)]
        + [legacy_order(13, order_date="20261301"), legacy_order(14, status="Z")],
        "orderlines": [legacy_line(i, 10) for i in range(1, 7)] + [legacy_line(1, 20, qty_milli=0)],
        "inventory": [legacy_inventory("P100", i) for i in range(1, 4)],
    }
    mainframe.seed(data)
    return {entity: len(rows) for entity, rows in data.items()}


def lake_files(lake) -> list[str]:
    """Every blob in the lake's containers: bronze pages, Delta logs and data files."""
    names = []
    for layer in LAYERS:
        client = lake.blob_service.get_container_client(lake.container(layer))
        names += [f"{layer}/{b.name}" for b in client.list_blobs()]
    return sorted(names)


def silver_versions(lake) -> dict[str, int | None]:
    tables = [s.table for s in MAINFRAME_SPECS.values()] + [QUARANTINE_TABLE]
    return {t: table_version(lake, "silver", t) for t in tables}


def silver_content(lake) -> dict[str, list[tuple]]:
    """Silver business content (lineage differs between runs by design)."""
    content = {}
    for spec in MAINFRAME_SPECS.values():
        frame = read_frame(lake, "silver", spec.table)
        content[spec.table] = (
            [] if frame is None else frame.drop(*LINEAGE_COLUMNS).sort(list(spec.key)).rows()
        )
    return content


def poll(client, watermarks, lake, **options):
    return poll_mainframe(client, watermarks, lake, overlap=OVERLAP, page_size=PAGE_SIZE, **options)


def test_first_poll_lands_every_record_in_bronze_and_the_valid_ones_in_silver(
    mainframe, client, watermarks, lake
):
    # Given the gateway holding records of every entity, a few of them invalid
    counts = seed_world(mainframe)
    pin(mainframe, T0 + dt.timedelta(hours=1))
    # When the hub polls for the first time
    result = poll(client, watermarks, lake)
    # Then every record is in bronze, N - bad in silver and the bad ones in quarantine
    for entity, total in counts.items():
        got = result.entities[entity]
        assert (got.read, got.bronze_records) == (total, total), entity
        assert got.bronze_pages == -(-total // PAGE_SIZE), entity
        assert got.requests == got.bronze_pages, entity
        assert (got.silver_inserted, got.quarantined) == (total - BAD[entity], BAD[entity]), entity
        silver = read_frame(lake, "silver", MAINFRAME_SPECS[entity].table)
        assert silver.height == total - BAD[entity], entity
    quarantine = read_frame(lake, "silver", QUARANTINE_TABLE)
    assert sorted(quarantine["reason"].to_list()) == [
        "bad date ORDDT='20261301'",
        "non-positive QTY='00000000'",
        "unknown STATUS='Q'",
        "unknown STATUS='Z'",
    ]
    bronze = [f for f in lake_files(lake) if f.startswith("bronze/")]
    assert len(bronze) == sum(e.bronze_pages for e in result.entities.values())
    # and each watermark is the listing's ASOF
    for entity in counts:
        assert watermarks.read(JOB, entity).value == "2026-05-04T09:00:00Z"
    # and the run log feeds gold's integration health
    rebuild_gold(lake)
    health = read_gold(lake, "integration_health")
    assert {
        r["entity"]: (r["records_in"], r["records_rejected"], r["current_rows"])
        for r in health.iter_rows(named=True)
    } == {entity: (total, BAD[entity], total - BAD[entity]) for entity, total in counts.items()}


def test_a_poll_after_k_changes_lands_exactly_those_k(mainframe, client, watermarks, lake):
    # Given a first poll at 09:00
    seed_world(mainframe)
    pin(mainframe, T0 + dt.timedelta(hours=1))
    poll(client, watermarks, lake)
    # and three orders changed on the mainframe at 09:10
    pin(mainframe, T0 + dt.timedelta(hours=1, minutes=10))
    mainframe.touch(
        "orders",
        [{"ORDNO": f"{i:010d}", "STATUS": "S"} for i in (1, 2, 3)],
    )
    # When the hub polls again at 09:15
    pin(mainframe, T0 + dt.timedelta(hours=1, minutes=15))
    result = poll(client, watermarks, lake)
    # Then exactly those three are read, written to bronze and updated in silver
    orders = result.entities["orders"]
    assert (orders.read, orders.bronze_records, orders.silver_updated) == (3, 3, 3)
    assert (orders.silver_inserted, orders.silver_unchanged, orders.quarantined) == (0, 0, 0)
    assert [result.entities[e].read for e in ("customers", "orderlines", "inventory")] == [0, 0, 0]
    silver = read_frame(lake, "silver", "legacy_orders")
    shipped = silver.filter(silver["status"] == "Shipped")["order_no"].sort().to_list()
    assert shipped == ["0000000001", "0000000002", "0000000003"]


def test_an_unchanged_source_costs_one_request_per_entity_and_writes_nothing(
    mainframe, client, watermarks, lake
):
    # Given everything already polled, the last change older than the overlap
    seed_world(mainframe)
    pin(mainframe, T0 + dt.timedelta(hours=1))
    poll(client, watermarks, lake)
    files, versions = lake_files(lake), silver_versions(lake)
    logged = len(mainframe.request_log)
    # When the hub polls again later with nothing changed
    pin(mainframe, T0 + dt.timedelta(hours=1, minutes=5))
    result = poll(client, watermarks, lake)
    # Then one listing request per entity was made and no blob or Delta version was written
    assert {e: r.requests for e, r in result.entities.items()} == dict.fromkeys(MAINFRAME_SPECS, 1)
    assert result.read == 0
    assert lake_files(lake) == files
    assert silver_versions(lake) == versions
    # (the gateway's own request log agrees: four listings, each with changedSince)
    listings = [r for r in mainframe.request_log[logged:] if r.path.startswith("/los/v1/")]
    assert len(listings) == 4
    assert all("changedSince=20260504085800" in r.path for r in listings)


def test_records_re_read_inside_the_overlap_leave_silver_unchanged(
    mainframe, client, watermarks, lake
):
    # Given orders changed 30 s before the first poll's ASOF (inside the 120 s overlap)
    recent = T0 + dt.timedelta(hours=1) - dt.timedelta(seconds=30)
    mainframe.seed({"orders": [legacy_order(i, updated=recent) for i in (1, 2)]})
    pin(mainframe, T0 + dt.timedelta(hours=1))
    poll(client, watermarks, lake)
    version = table_version(lake, "silver", "legacy_orders")
    # When the next poll lists from the watermark less the overlap
    pin(mainframe, T0 + dt.timedelta(hours=1, minutes=1))
    result = poll(client, watermarks, lake)
    # Then the re-read versions reach bronze again but the MERGE changes nothing
    orders = result.entities["orders"]
    assert (orders.read, orders.bronze_records) == (2, 2)
    assert (orders.silver_inserted, orders.silver_updated, orders.silver_unchanged) == (0, 0, 2)
    assert table_version(lake, "silver", "legacy_orders") == version


class Crash(RuntimeError):
    """Stands in for the process dying."""


def test_a_run_killed_between_bronze_and_silver_reruns_to_the_same_silver(
    mainframe, client, watermarks_factory, lake_factory
):
    # Given the same mainframe data polled once without interruption (the reference)
    seed_world(mainframe)
    pin(mainframe, T0 + dt.timedelta(hours=1))
    reference_lake = lake_factory()
    poll(client, watermarks_factory(), reference_lake)
    expected = silver_content(reference_lake)
    lake, watermarks = lake_factory(), watermarks_factory()

    def die_at_orders(entity: str) -> None:
        if entity == "orders":
            raise Crash("killed after bronze, before the silver commit")

    # When a run dies after writing the orders' bronze pages, before their silver commit
    with pytest.raises(Crash):
        poll(client, watermarks, lake, before_silver=die_at_orders)
    # Then the orders watermark has not moved (customers, done before, has)
    assert watermarks.read(JOB, "orders").value is None
    assert watermarks.read(JOB, "customers").value == "2026-05-04T09:00:00Z"
    orphaned = [f for f in lake_files(lake) if f.startswith("bronze/mainframe/orders/")]
    assert orphaned
    # When the hub runs again (a new run id, so new bronze names)
    rerun = poll(client, watermarks, lake)
    # Then silver is exactly what the uninterrupted run produced
    assert rerun.entities["orders"].read == 14
    assert rerun.entities["customers"].read == 0
    assert silver_content(lake) == expected
    assert watermarks.read(JOB, "orders").value == "2026-05-04T09:00:00Z"


# --- Scenarios staged with a fake of the port ---------------------------------------------------


def test_listing_starts_at_the_watermark_less_the_overlap(watermarks, lake):
    # Given a stored watermark of 09:00
    fake = FakeMainframe()
    watermarks.advance(JOB, "orders", "2026-05-04T09:00:00Z", None)
    # When the hub polls orders
    poll_mainframe(fake, watermarks, lake, overlap=OVERLAP, entities=["orders"])
    # Then it asked for changes since 08:58 (and from the beginning for a first poll)
    assert fake.calls == [("orders", dt.datetime(2026, 5, 4, 8, 58, tzinfo=dt.UTC))]
    poll_mainframe(fake, watermarks, lake, overlap=OVERLAP, entities=["customers"])
    assert fake.calls[-1] == ("customers", None)


def test_the_watermark_never_moves_backwards(watermarks, lake):
    # Given a watermark at 10:00 and a mainframe whose clock now says 09:30
    fake = FakeMainframe(now=T0 + dt.timedelta(hours=1, minutes=30))
    watermarks.advance(JOB, "orders", "2026-05-04T10:00:00Z", None)
    # When the hub polls
    result = poll_mainframe(fake, watermarks, lake, overlap=OVERLAP, entities=["orders"])
    # Then the watermark stays at 10:00
    assert result.entities["orders"].watermark_after == "2026-05-04T10:00:00Z"
    assert watermarks.read(JOB, "orders").value == "2026-05-04T10:00:00Z"


@dataclass
class RacingWatermarks:
    """The real store, with another run advancing right after our read (a fake of the port)."""

    store: object

    def read(self, job: str, entity: str) -> tuple[str | None, str | None]:
        read = self.store.read(job, entity)
        self.store.advance(job, entity, "2026-05-04T08:30:00Z", read.etag, run_id="other-run")
        return read

    def advance(self, job, entity, new_value, etag, *, run_id=None):
        return self.store.advance(job, entity, new_value, etag, run_id=run_id)


def test_a_run_that_loses_the_watermark_race_raises_and_its_silver_stands(watermarks, lake):
    # Given an overlapping run that advances the watermark between our read and our advance
    fake = FakeMainframe()
    fake.put("orders", legacy_order(1))
    # When we poll
    # Then our advance is refused with a clear conflict
    with pytest.raises(WatermarkConflictError):
        poll_mainframe(
            fake, RacingWatermarks(watermarks), lake, overlap=OVERLAP, entities=["orders"]
        )
    # and the other run's watermark stands, while our (idempotent) silver commit is kept
    assert watermarks.read(JOB, "orders").value == "2026-05-04T08:30:00Z"
    assert read_frame(lake, "silver", "legacy_orders")["order_no"].to_list() == ["0000000001"]


def test_the_watermark_is_the_asof_of_the_first_page(watermarks, lake):
    # Given a listing whose pages report different ASOF times
    class DriftingMainframe(FakeMainframe):
        def list_changes(self, entity, since, page_size=500) -> Iterator[FakePage]:
            for n, page in enumerate(super().list_changes(entity, since, page_size)):
                yield FakePage(page.records, page.asof + dt.timedelta(minutes=n))

    fake = DriftingMainframe()
    fake.put("orders", *(legacy_order(i) for i in range(1, 8)))
    # When the hub polls in pages of 3
    result = poll_mainframe(
        fake, watermarks, lake, overlap=OVERLAP, page_size=3, entities=["orders"]
    )
    # Then the first page's ASOF is saved: records written during paging are not skipped
    assert result.entities["orders"].requests == 3
    assert watermarks.read(JOB, "orders").value == "2026-05-04T09:00:00Z"


def test_bounded_staging_merges_early_and_gives_the_same_silver(watermarks_factory, lake_factory):
    # Given 12 orders, including two versions of order 1 on different pages
    fake = FakeMainframe()
    fake.put("orders", *(legacy_order(i) for i in range(1, 12)))
    fake.put("orders", legacy_order(1, status="S", updated=T0 + dt.timedelta(minutes=1)))
    # When one lake stages everything and another merges every 4 rows
    whole, chunked = lake_factory(), lake_factory()
    poll_mainframe(fake, watermarks_factory(), whole, overlap=OVERLAP, page_size=4)
    poll_mainframe(
        fake, watermarks_factory(), chunked, overlap=OVERLAP, page_size=4, max_staged_rows=4
    )
    # Then both silvers are the same, though the chunked run committed several times
    assert silver_content(whole) == silver_content(chunked)
    assert table_version(chunked, "silver", "legacy_orders") > table_version(
        whole, "silver", "legacy_orders"
    )
